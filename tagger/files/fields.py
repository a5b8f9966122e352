"""Field names: the metadata fields tagger writes into files (tagfile maps them to each
format), and the file's own metadata it reads at scan time."""

FIELDS = ("tags", "scores", "model", "genre", "mood", "grouping")
OWN_FIELDS = ("tags", "scores", "model")  # tagger's own: always written
OPTIONAL_FIELDS = ("mood", "genre", "grouping")  # the user's fields: only when asked, only if empty
FIELD_CHOICES = ("tags", *OPTIONAL_FIELDS)  # what --fields takes

# read from each file at scan time (tagfile.read_track_metadata), stored on its track
TRACK_METADATA = ("title", "artist", "album", "album_artist", "genre", "year", "track_no")
