"""Audio files as a scan sees them: finding them (discover), decoding them to 16 kHz mono
(decode: soundfile, then PyAV; soxr), and where a track's chunks come from (chunks).

Imports nothing of tagger but its errors: no torch, no database, no tags."""
