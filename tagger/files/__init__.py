"""The tags inside audio files: the field names (fields), reading and writing them per format
(tagfile, the one module that imports mutagen), and replacing a file safely (atomic).

Imports nothing of tagger but its errors."""
