"""Tables. Probabilities are one row per (track, tag) so that "top tracks for tag X" is an
index range scan on (tag_id, prob). A track holds the scores of every model that scored it
(schema 5; one at a time before): which ones is the set of its rows in ``embeddings``."""

from __future__ import annotations

from sqlalchemy import (
                        JSON,
                        BigInteger,
                        Boolean,
                        Column,
                        Float,
                        ForeignKey,
                        Index,
                        Integer,
                        LargeBinary,
                        MetaData,
                        String,
                        Table,
                        Text,
                        UniqueConstraint,
)

from tagger.files.fields import TRACK_METADATA

# 2: write_runs and write_journal (tag writing with undo); 3: track metadata, learned tags;
# 4: tracks found by a hash of their path (paths of any length), folded text for --where,
#    learned tags' scores in a table of their own
# 5: several models per track: embeddings keyed by (model, track), tracks.model_id gone
SCHEMA_VERSION = 5

# the text a --where filter can match, each with a folded copy (tagger.store.text.fold) beside it
TEXT_FIELDS = ("title", "artist", "album", "album_artist", "genre", "format", "path")


def folded(field: str) -> str:
    """The column holding ``field`` folded for --where."""
    return f"{field}_folded"


metadata = MetaData()

# meta keys: schema_version, and (schema 4) index_version: a counter that every transaction that
# changes which tracks are 'ok' or what their embeddings are moves on, so that a similarity index
# built from them can be kept between commands and known to be current
INDEX_VERSION = "index_version"

meta = Table("meta", metadata,
             Column("key", String(64), primary_key=True),
             Column("value", Text, nullable=False))

models = Table("models", metadata,
               Column("id", Integer, primary_key=True),
               Column("name", String(200), nullable=False),
               Column("sha256", String(64), nullable=False, unique=True),
               Column("architecture", String(64), nullable=False),
               Column("embedding_size", Integer, nullable=False),
               Column("card", JSON, nullable=False),  # tags, groups, aliases, provenance, metrics
               Column("added_at", Float, nullable=False))

tags = Table("tags", metadata,
             Column("id", Integer, primary_key=True),
             Column("model_id", ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
             Column("idx", Integer, nullable=False),
             Column("raw", String(200), nullable=False),
             Column("name", String(200), nullable=False),
             UniqueConstraint("model_id", "idx"))

tracks = Table("tracks", metadata,
               Column("id", Integer, primary_key=True),
               Column("path", Text, nullable=False),
               Column("path_key", String(32), nullable=False),  # tagger.store.text.path_key (schema 4)
               Column("size", BigInteger, nullable=False),
               Column("mtime_ns", BigInteger, nullable=False),
               Column("fingerprint", String(40)),
               Column("format", String(16)),
               Column("duration_s", Float),
               Column("chunks", Integer),
               Column("status", String(8), nullable=False),  # ok | failed | missing
               Column("error", Text),
               Column("scanned_at", Float),
               # the file's own metadata, read at scan time (schema 3); None where it has none
               *[Column(name, Text) for name in TRACK_METADATA[:5]],
               Column("year", Integer),
               Column("track_no", Integer),
               Column("metadata_read", Boolean),  # NULL: scanned before schema 3, not read yet
               *[Column(folded(name), Text) for name in TEXT_FIELDS])  # schema 4
Index("ix_tracks_size_fingerprint", tracks.c.size, tracks.c.fingerprint)
# unique on a hash of the path, not on the path: PostgreSQL's B-tree keys stop at ~2.7 kB
Index("ux_tracks_path_key", tracks.c.path_key, unique=True)
Index("ix_tracks_status", tracks.c.status)

scores = Table("scores", metadata,
               Column("track_id", ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True),
               Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
               Column("prob", Float, nullable=False),
               sqlite_with_rowid=False)
# The primary key clusters a track's 50 rows (appends on insert; show and rescans read one
# range); this index is the ranked lookup, and covers track_id because SQLite indexes of
# WITHOUT ROWID tables carry the primary key.
Index("ix_scores_tag_prob", scores.c.tag_id, scores.c.prob)

# A row per (model, track) that the model scored: the track's embedding by that model, and the
# record that the model's scores of the track are stored (schema 5; keyed by the track alone
# before). Keyed model first, so that one model's vectors are one range of the key in track
# order (similar, learn, map read them all); the second index finds a track's models by
# itself, so that which models scored which tracks (a scan's plan, query, show) is read from
# the two indexes alone and never from the pages of the vectors.
embeddings = Table("embeddings", metadata,
                   Column("model_id", ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
                   Column("track_id", ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True),
                   Column("vector", LargeBinary, nullable=False))  # float16 little-endian
Index("ix_embeddings_track", embeddings.c.track_id, embeddings.c.model_id)

# tag writing (schema 2): every field tagger changes in a file, with its previous value, so a
# run can be undone
write_runs = Table("write_runs", metadata,
                   Column("id", Integer, primary_key=True),
                   Column("action", String(16), nullable=False),  # write | remove | undo
                   Column("started_at", Float, nullable=False),
                   Column("options", JSON, nullable=False),
                   Column("undone_by", Integer))

write_journal = Table("write_journal", metadata,
                      Column("id", Integer, primary_key=True),
                      Column("run_id", ForeignKey("write_runs.id", ondelete="CASCADE"), nullable=False),
                      Column("path", Text, nullable=False),
                      Column("field", String(16), nullable=False),
                      Column("old", JSON, nullable=False),  # list of strings; [] = the field was absent
                      Column("new", JSON, nullable=False))
Index("ix_write_journal_run", write_journal.c.run_id)

# learned tags (schema 3): a tag a person taught from examples. It is a row of ``tags`` of the
# model whose embeddings it reads (idx after the model's own tags), its probabilities are rows
# of ``learned_scores`` (of ``scores`` before schema 4), and this table holds the classifier
# that makes them:
# p = sigmoid(weights · ((embedding − mean) / scale) + bias)
learned_tags = Table("learned_tags", metadata,
                     Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
                     Column("weights", LargeBinary, nullable=False),  # float32 little-endian [E]
                     Column("bias", Float, nullable=False),
                     Column("mean", LargeBinary, nullable=False),  # float32 [E]
                     Column("scale", LargeBinary, nullable=False),  # float32 [E]
                     Column("examples", JSON, nullable=False),  # like/unlike counts, cross-validated metrics
                     Column("created_at", Float, nullable=False))

# their scores (schema 4; in ``scores`` before): one tag's rows together, so learning a tag writes
# one run of rows and re-learning it deletes one, instead of touching every page of ``scores``
# (whose rows are clustered by track). Two B-trees: the rows by (tag, track), and the ranked
# lookup by (tag, probability). A track's rows are found by (each learned tag, track); there is
# no index led by the track, nor so a foreign key to tracks (its checks would need one, and every
# learned tag's 100,000 rows would maintain it): the store deletes a track's learned scores
# itself wherever it deletes or rescores the track (Store.save, Store.prune).
learned_scores = Table("learned_scores", metadata,
                       Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
                       Column("track_id", Integer, primary_key=True),  # tracks.id
                       Column("prob", Float, nullable=False),
                       sqlite_with_rowid=False)
Index("ix_learned_scores_tag_prob", learned_scores.c.tag_id, learned_scores.c.prob)
