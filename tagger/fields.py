"""The metadata fields tagger writes into files, by name (tagfile maps them to each format)."""

FIELDS = ("tags", "scores", "model", "genre", "mood", "grouping")
OWN_FIELDS = ("tags", "scores", "model")  # tagger's own: always written
OPTIONAL_FIELDS = ("mood", "genre", "grouping")  # the user's fields: only when asked, only if empty
FIELD_CHOICES = ("tags", *OPTIONAL_FIELDS)  # what --fields takes
