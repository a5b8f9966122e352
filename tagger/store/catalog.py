"""The store's catalogue: tracks, models, tag scores, embeddings and learned classifiers.

Every read and write of these tables goes through ``Store``; it knows rows and what a tag
name means for a model (its vocabulary), not audio, files or the command line. What it stores
for a scanned file is anything shaped like a ``ScoredFile`` (the engine's TrackResult is one);
the scores of learned tags come from whoever saves (``save(..., extra_scores=…)``): the store
runs no model and no classifier.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from sqlalchemy import BigInteger, Connection, Text, bindparam, cast, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from tagger.errors import NOT_FINITE, UsageError, quoted
from tagger.model.modelcard import ModelCard
from tagger.model.vocab import Vocabulary, tag_name
from tagger.store.db import open_engine
from tagger.store.lock import WriterLock, writer_lock
from tagger.store.schema import (
    INDEX_VERSION,
    TEXT_FIELDS,
    TRACK_METADATA,
    embeddings,
    folded,
    learned_scores,
    learned_tags,
    meta,
    models,
    scores,
    tags,
    tracks,
)
from tagger.store.text import fold, path_key, storable

if TYPE_CHECKING:  # numpy loads where scores are written or vectors read: queries need none of it
    import numpy as np


class TrackState(NamedTuple):
    """What the store knows of a track, as a scan's plan compares it with the file on disk."""
    id: int
    path: str
    size: int
    mtime_ns: int
    fingerprint: str | None
    status: str
    model_ids: frozenset[int]  # the models whose scores of the track are stored


class ModelScores(Protocol):
    """One model's output for a file: its probabilities and its embedding."""
    probabilities: np.ndarray  # [n_tags]
    embedding: np.ndarray  # [embedding_size]


class ScoredFile(Protocol):
    """What ``Store.save`` keeps of one scanned file: its scores by each model saved (in the
    order of ``save``'s models), or the error that stopped it. ``error`` may be set by
    ``save`` itself (scores that cannot be stored)."""
    path: str
    size: int
    mtime_ns: int
    fingerprint: str | None
    format: str | None
    duration_s: float | None
    chunks: int
    outputs: Sequence[ModelScores]  # one per model saved; empty with an error
    error: str | None
    metadata: dict | None  # the file's own title, artist, … (files.tagfile.read_track_metadata)


_HEX = re.compile("[0-9a-f]{1,64}")
REBUILD_MIN_TRACKS = 5000  # prune: below this, SQLite deletes index entries one by one
FEW_TRACKS = 10_000  # embeddings_of: fewer tracks than this are read by id, more by reading them all

# embeddings float32 [N, E] as stored → {tag id: probabilities [N]}
ExtraScores = Callable[["np.ndarray"], Mapping[int, "np.ndarray"]]


@dataclass
class _Failure:
    """A file stored as failed, with the reason (a ScoredFile)."""
    path: str
    size: int
    mtime_ns: int
    error: str
    fingerprint: str | None = None
    format: str | None = None
    duration_s: float | None = None
    chunks: int = 0
    outputs: tuple = ()
    metadata: None = None


@dataclass(frozen=True)
class StoredModel:
    """A model as the database knows it: its row id, and its tags' row ids in tag order."""
    id: int
    name: str
    sha256: str
    tag_ids: tuple[int, ...]  # the model's own tags, in the model's order
    vocabulary: Vocabulary
    learned: dict[str, int] = field(default_factory=dict)  # learned tag name → its tags row id

    def tag_id(self, raw: str) -> int:
        return self.tag_ids[self.vocabulary.tags.index(raw)]


@dataclass
class Embeddings:
    """Some tracks' embeddings as stored (float16), widened to float32."""
    track_ids: np.ndarray  # int64 [N], ascending
    vectors: np.ndarray  # float32 [N, E]
    fingerprints: list | None = None  # [N] str | None; None where not asked for (Store.fingerprints)

    def __len__(self) -> int:
        return len(self.track_ids)


@dataclass
class Stats:
    tracks: int
    ok: int
    failed: int
    missing: int
    hours: float
    formats: dict[str, int]
    models: list[tuple[str, str, int]]  # (name, sha256, tracks)
    failures: list[tuple[str, str]] = field(default_factory=list)


class Store:
    """One library database (a SQLite file or a server URL)."""

    def __init__(self, db: str, create: bool = True, check: bool | str = False) -> None:
        """``check``: a SQLite file is checked for damage first, always (True) or where it is
        cheap ("cheap"; tagger.store.db.open_engine)."""
        self.db = db
        self.sql_engine = open_engine(db, create=create, check=check)
        self.lock: WriterLock | None = None  # the writer lock, while this process holds it

    @contextmanager
    def writing(self, shared: bool = False) -> Iterator[WriterLock]:
        """Hold the database's writer lock (``shared``: a scan's) while the block runs; every
        write transaction meanwhile verifies that it still holds it (tagger.store.lock)."""
        with writer_lock(self.db, shared) as lock:
            self.lock = lock
            try:
                yield lock
            finally:
                self.lock = None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction; refused before it writes when this process holds the writer
        lock and has lost it."""
        with self.sql_engine.begin() as conn:
            if self.lock is not None:
                self.lock.verify(conn)
            yield conn

    # --- models -------------------------------------------------------------------------
    def ensure_model(self, card: ModelCard, embedding_size: int) -> StoredModel:
        """The stored row of ``card``'s model (by file hash), added on first use."""
        try:
            self._add_model(card, embedding_size)
        except IntegrityError:  # another scanner added it at the same moment
            pass
        return self.model(sha256=card.sha256)

    def _add_model(self, card: ModelCard, embedding_size: int) -> None:
        with self.transaction() as conn:
            row = conn.execute(select(models.c.id).where(models.c.sha256 == card.sha256)).first()
            if row is None:
                model_id = conn.execute(insert(models).values(
                    name=card.name, sha256=card.sha256, architecture=card.architecture,
                    embedding_size=embedding_size, added_at=time.time(),
                    card={"tags": card.tags, "groups": card.groups, "aliases": card.aliases,
                          "provenance": card.provenance, "metrics": card.metrics})).inserted_primary_key[0]
                conn.execute(insert(tags), [{"model_id": model_id, "idx": i, "raw": t, "name": tag_name(t)}
                                            for i, t in enumerate(card.tags)])

    def find_model(self, sha256: str) -> StoredModel | None:
        """The stored model with this file hash, or None (nothing is added)."""
        with self.sql_engine.connect() as conn:
            if conn.execute(select(models.c.id).where(models.c.sha256 == sha256)).first() is None:
                return None
        return self.model(sha256=sha256)

    def model(self, name: str | None = None, sha256: str | None = None,
              model_id: int | None = None) -> StoredModel:
        """A stored model by row id, by hash, by name (the newest of that name), or, with none
        of them, the model that scored the most tracks."""
        with self.sql_engine.connect() as conn:
            q = select(models)
            if model_id is not None:
                q = q.where(models.c.id == model_id)
            elif sha256:
                q = q.where(models.c.sha256 == sha256)
            elif name:
                by_name = models.c.name == name
                if _HEX.fullmatch(name):  # or a prefix of its hash (hex digits only: LIKE sees no % or _)
                    by_name = by_name | models.c.sha256.startswith(name, autoescape=True)
                q = q.where(by_name).order_by(models.c.id.desc())
            else:
                used = (select(embeddings.c.model_id, func.count().label("n"))
                        .join(tracks, tracks.c.id == embeddings.c.track_id).where(tracks.c.status == "ok")
                        .group_by(embeddings.c.model_id).order_by(func.count().desc(), embeddings.c.model_id)
                        .limit(1)).subquery()
                q = q.join(used, used.c.model_id == models.c.id)
            row = conn.execute(q).first()
            if row is None:
                if name:
                    known = conn.execute(select(models.c.name).distinct()).scalars().all()
                    raise UsageError(None, f"no results from a model named {quoted(name)} in this database",
                                     f"models here: {', '.join(known) or 'none'}")
                raise UsageError(None, "the database holds no tagged tracks yet",
                                 "run 'tagger scan FOLDER' first")
            card = row.card
            ids = conn.execute(select(tags.c.id).where(tags.c.model_id == row.id, tags.c.idx < len(card["tags"]))
                               .order_by(tags.c.idx)).scalars().all()
            learned = dict(conn.execute(select(tags.c.raw, tags.c.id)
                                        .join(learned_tags, learned_tags.c.tag_id == tags.c.id)
                                        .where(tags.c.model_id == row.id)).all())
        return StoredModel(row.id, row.name, row.sha256, tuple(ids),
                           Vocabulary(card["tags"], card.get("groups"), card.get("aliases")), learned)

    # --- scanning -----------------------------------------------------------------------
    def track_states(self) -> dict[str, TrackState]:
        with self.sql_engine.connect() as conn:
            rows = conn.execute(select(tracks.c.id, tracks.c.path, tracks.c.size, tracks.c.mtime_ns,
                                       tracks.c.fingerprint, tracks.c.status)).all()
            scored = _model_sets(conn)
        none: frozenset[int] = frozenset()
        return {r.path: TrackState(*r, scored.get(r.id, none)) for r in rows}

    def model_sets(self, ids: Sequence[int]) -> dict[int, frozenset[int]]:
        """track id → the models whose scores of it are stored, for ``ids`` (none: not listed)."""
        out: dict[int, set[int]] = {}
        ids = [int(i) for i in ids]
        with self.sql_engine.connect() as conn:
            for i in range(0, len(ids), 900):
                for track_id, model_id in conn.execute(select(embeddings.c.track_id, embeddings.c.model_id)
                                                       .where(embeddings.c.track_id.in_(ids[i:i + 900]))):
                    out.setdefault(track_id, set()).add(model_id)
        return {k: frozenset(v) for k, v in out.items()}

    def move(self, moves: Sequence[tuple[int, str, int]]) -> None:
        """Give tracks new paths (and mtimes), keeping their results: ``(id, path, mtime_ns)``."""
        with self.transaction() as conn:
            for track_id, path, mtime_ns in moves:
                conn.execute(update(tracks).where(tracks.c.id == track_id)
                             .values(mtime_ns=mtime_ns, status="ok", **_path_columns(path)))
            _index_changed(conn)

    def set_mtimes(self, rows: Sequence[tuple[int, str, int]]) -> None:
        """Record new modification times of files whose content is as stored: ``(id, path, mtime_ns)``."""
        with self.transaction() as conn:
            for track_id, _, mtime_ns in rows:
                conn.execute(update(tracks).where(tracks.c.id == track_id).values(mtime_ns=mtime_ns))

    def set_status(self, ids: Iterable[int], status: str) -> None:
        ids = list(ids)
        with self.transaction() as conn:
            for i in range(0, len(ids), 500):
                conn.execute(update(tracks).where(tracks.c.id.in_(ids[i:i + 500])).values(status=status))
            _index_changed(conn)

    def set_missing(self, gone: Sequence[tuple[int, str]]) -> None:
        """Mark tracks ``(id, path)`` missing, each only where it still has that path: a scanner
        of another folder may have found it moved there since this one's plan."""
        if gone:
            with self.transaction() as conn:
                conn.execute(update(tracks).where(tracks.c.id == bindparam("track_id"),
                                                  tracks.c.path == bindparam("old_path"))
                             .values(status="missing"),
                             [{"track_id": i, "old_path": p} for i, p in gone])
                _index_changed(conn)

    def save(self, results: Sequence[ScoredFile], models: StoredModel | Sequence[StoredModel],
             extra_scores: Mapping[int, ExtraScores] | None = None) -> list[tuple[str, str]]:
        """Store scan results in one transaction, each track fully or not at all. Each result
        holds one output per model of ``models``, in that order. ``extra_scores``: model id →
        more tags' probabilities for that model's stored embeddings (the scan scores the
        models' learned tags through it), as ``{tag id: probabilities [N]}``.

        A stored track keeps the scores of models not in ``models`` only where its content
        (size and fingerprint) is the one they scored; else they go with the old content.

        A result whose scores cannot be stored (not finite, wrong length) is turned into a
        failure with the reason, in place. A track the database refuses costs only itself: it is
        stored as failed where possible, and returned in ``(path, reason)`` pairs; the others are
        kept. Errors of the database itself (disk full, locked, the lock lost) propagate."""
        models = [models] if isinstance(models, StoredModel) else list(models)
        for r in results:
            _check(r, models)
        if not results:
            return []
        try:
            self._save(results, models, extra_scores)
            return []
        except _REFUSED:
            pass
        unsaved = []
        for r in results:  # one transaction each, to find the track(s) the database refuses
            try:
                self._save([r], models, extra_scores)
            except _REFUSED as e:
                reason = f"could not be stored in the database: {_first_line(e)}"
                unsaved.append((r.path, reason))
                try:
                    self._save([_Failure(r.path, r.size, r.mtime_ns, reason)], models)
                except _REFUSED:
                    pass  # reported in the summary; the next scan tries again
        return unsaved

    def _save(self, results: Sequence[ScoredFile], models: Sequence[StoredModel],
              extra_scores: Mapping[int, ExtraScores] | None = None) -> None:
        import numpy as np

        now = time.time()
        rows = [dict(size=r.size, mtime_ns=r.mtime_ns, fingerprint=r.fingerprint,
                     duration_s=r.duration_s, chunks=r.chunks,
                     status="failed" if r.error else "ok", error=storable(r.error), scanned_at=now,
                     metadata_read=r.metadata is not None,
                     format=storable(r.format), **{folded("format"): fold(r.format)},
                     **_path_columns(r.path), **_metadata_columns(r.metadata or {})) for r in results]
        with self.transaction() as conn:
            stored = self._stored(conn, [r.path for r in results])
            existing = {path: row.id for path, row in stored.items()}
            old = [dict(row, track_id=existing[row["path"]]) for row in rows if row["path"] in existing]
            if old:
                # the scores of models not scanned now stay only with the content they scored
                same = [stored[r.path].id for r in results if r.path in stored and not r.error
                        and (stored[r.path].size, stored[r.path].fingerprint) == (r.size, r.fingerprint)
                        and r.fingerprint is not None]
                kept = set(same)
                _delete_scores(conn, [i for i in existing.values() if i not in kept])
                _delete_scores(conn, same, [m.id for m in models])
                conn.execute(update(tracks).where(tracks.c.id == bindparam("track_id")), old)
            new = [row for row in rows if row["path"] not in existing]
            if new:
                inserted = conn.execute(insert(tracks).returning(tracks.c.id, tracks.c.path,
                                                                 sort_by_parameter_order=True), new)
                existing.update({path: track_id for track_id, path in inserted})
            score_rows, emb_rows, learned_rows = [], [], []
            ok = [r for r in results if not r.error]
            for k, model in enumerate(models):
                for r in ok:
                    track_id = existing[r.path]
                    out = r.outputs[k]
                    score_rows += [{"track_id": track_id, "tag_id": t, "prob": float(p)}
                                   for t, p in zip(model.tag_ids, out.probabilities)]
                    emb_rows.append({"track_id": track_id, "model_id": model.id,
                                     "vector": np.asarray(out.embedding, dtype="<f2").tobytes()})
                learned = (extra_scores or {}).get(model.id)
                if learned is not None and ok:
                    # as stored (float16), so a track scores the same here as when it is read back
                    x = np.stack([np.asarray(r.outputs[k].embedding, dtype="<f2") for r in ok]).astype(np.float32)
                    for tag_id, probs in learned(x).items():
                        learned_rows += [{"track_id": existing[r.path], "tag_id": tag_id, "prob": float(p)}
                                         for r, p in zip(ok, probs)]
            if score_rows:
                conn.execute(insert(scores), score_rows)
                conn.execute(insert(embeddings), emb_rows)
            if learned_rows:
                conn.execute(insert(learned_scores), learned_rows)
            _index_changed(conn)

    @staticmethod
    def _stored(conn: Connection, paths: Sequence[str]) -> dict:
        """path → (id, size, fingerprint) of the stored tracks among ``paths``."""
        out = {}
        wanted = set(paths)
        keys = sorted({path_key(p) for p in wanted})
        for i in range(0, len(keys), 500):
            for row in conn.execute(select(tracks.c.id, tracks.c.path, tracks.c.size, tracks.c.fingerprint)
                                    .where(tracks.c.path_key.in_(keys[i:i + 500]))):
                if row.path in wanted:
                    out[row.path] = row
        return out

    def metadata_backlog(self) -> list[tuple[int, str]]:
        """(id, path) of the tagged tracks scanned before the database kept file metadata
        (schema 3) whose metadata has not been read since."""
        with self.sql_engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(tracks.c.id, tracks.c.path).where(
                tracks.c.status == "ok", tracks.c.metadata_read.is_(None)))]

    def set_metadata(self, rows: Sequence[tuple[int, dict]]) -> None:
        """Store files' own metadata for tracks ``(id, metadata)`` without touching their scores."""
        if rows:
            with self.transaction() as conn:
                conn.execute(update(tracks).where(tracks.c.id == bindparam("track_id")),
                             [{"track_id": i, "metadata_read": True, **_metadata_columns(m)} for i, m in rows])

    def update_file_state(self, path: str, size: int, mtime_ns: int, fingerprint: str) -> None:
        """After tagger rewrote a file's metadata (audio unchanged): keep its scores valid."""
        with self.transaction() as conn:
            conn.execute(update(tracks).where(*_at(path)).values(size=size, mtime_ns=mtime_ns, fingerprint=fingerprint))

    def tracks_at(self, paths: Sequence[str]) -> list:
        """The rows of the tracks at ``paths`` (those in the database), by path."""
        rows = []
        wanted = set(paths)
        keys = sorted({path_key(p) for p in wanted})
        with self.sql_engine.connect() as conn:
            for i in range(0, len(keys), 500):
                rows += conn.execute(select(tracks).where(tracks.c.path_key.in_(keys[i:i + 500]))).all()
        return sorted((r for r in rows if r.path in wanted), key=lambda r: r.path)

    def tracks_under(self, roots: Sequence[str] | None = None, status: str = "ok") -> list:
        """Track rows (all, or those under ``roots``) with ``status``, by path."""
        with self.sql_engine.connect() as conn:
            rows = conn.execute(select(tracks).where(tracks.c.status == status).order_by(tracks.c.path)).all()
        if roots:
            from tagger.audio.discover import under
            rows = [r for r in rows if under(r.path, roots)]
        return rows

    def prune(self) -> int:
        """Delete the tracks marked missing (and their scores); returns how many.

        Each table loses its rows in one statement. In SQLite, when a large share of the
        library goes (at least a tenth, and thousands of tracks), the ranked-lookup index of
        ``scores`` is dropped and built again from what is left: deleting its entries one by
        one (50 a track, in an order unlike the index's) cost 45 s for 50,000 tracks, a new
        index a few seconds. (PostgreSQL deletes without touching its indexes: VACUUM does.)"""
        gone = select(tracks.c.id).where(tracks.c.status == "missing").scalar_subquery()
        with self.transaction() as conn:
            n = conn.execute(select(func.count()).where(tracks.c.status == "missing")).scalar_one()
            if not n:
                return 0
            total = conn.execute(select(func.count()).select_from(tracks)).scalar_one()
            rebuild = conn.dialect.name == "sqlite" and n >= REBUILD_MIN_TRACKS and n * 10 >= total
            index = next(i for i in scores.indexes if i.name == "ix_scores_tag_prob")
            if rebuild:
                conn.exec_driver_sql("PRAGMA threads = 2")  # SQLite may sort the new index on two threads
                index.drop(conn)
            conn.execute(delete(scores).where(scores.c.track_id.in_(gone)))
            conn.execute(delete(learned_scores).where(*_learned_of(gone)))
            conn.execute(delete(embeddings).where(embeddings.c.track_id.in_(gone)))
            conn.execute(delete(tracks).where(tracks.c.status == "missing"))
            if rebuild:
                index.create(conn)
            _index_changed(conn)
        return n

    def delete_tracks(self, ids: Sequence[int]) -> None:
        """Delete these tracks, their scores and embeddings (a file's second track)."""
        if ids:
            with self.transaction() as conn:
                _delete_tracks(conn, list(ids))
                _index_changed(conn)

    # --- reading ------------------------------------------------------------------------
    def track(self, path: str):
        with self.sql_engine.connect() as conn:
            return conn.execute(select(tracks).where(*_at(path))).first()

    def track_scores(self, track_id: int, model: StoredModel) -> dict[str, float]:
        """raw tag → probability for one track by ``model`` (its learned tags' too), in the
        model's tag order; empty where the model has not scored it."""
        with self.sql_engine.connect() as conn:
            out = {}
            for table, where in ((scores, [scores.c.track_id == track_id]), (learned_scores, _learned_of([track_id]))):
                rows = conn.execute(select(tags.c.idx, tags.c.raw, table.c.prob).join(tags, tags.c.id == table.c.tag_id)
                                    .where(*where, tags.c.model_id == model.id))
                out.update({(idx, raw): prob for idx, raw, prob in rows})
            return {raw: prob for (_, raw), prob in sorted(out.items())}

    def embedding(self, track_id: int, model: StoredModel) -> np.ndarray | None:
        """The track's embedding by ``model``, or None where that model has not scored it."""
        with self.sql_engine.connect() as conn:
            blob = conn.execute(select(embeddings.c.vector).where(embeddings.c.track_id == track_id,
                                                                  embeddings.c.model_id == model.id)).scalar()
        import numpy as np

        return None if blob is None else np.frombuffer(blob, dtype="<f2").astype(np.float32)

    def tag_counts(self, model: StoredModel, threshold: float) -> dict[str, int]:
        """raw tag → number of tracks whose probability is at least ``threshold``."""
        with self.sql_engine.connect() as conn:
            rows = conn.execute(select(scores.c.tag_id, func.count()).where(
                scores.c.tag_id.in_(model.tag_ids), scores.c.prob >= threshold).group_by(scores.c.tag_id)).all()
        by_id = dict(rows)
        return {raw: by_id.get(tid, 0) for raw, tid in zip(model.vocabulary.tags, model.tag_ids)}

    def group_counts(self, model: StoredModel, threshold: float) -> dict[str, int]:
        """group → number of tracks with any member at least ``threshold``."""
        out = {}
        with self.sql_engine.connect() as conn:
            for group, members in model.vocabulary.groups.items():
                ids = [model.tag_id(m) for m in members]
                out[group] = conn.execute(select(func.count(func.distinct(scores.c.track_id))).where(
                    scores.c.tag_id.in_(ids), scores.c.prob >= threshold)).scalar_one()
        return out

    def stats(self, failures: int = 20) -> Stats:
        with self.sql_engine.connect() as conn:
            by_status = dict(conn.execute(select(tracks.c.status, func.count()).group_by(tracks.c.status)).all())
            seconds = conn.execute(select(func.coalesce(func.sum(tracks.c.duration_s), 0.0))
                                   .where(tracks.c.status == "ok")).scalar_one()
            formats = dict(conn.execute(select(tracks.c.format, func.count()).where(tracks.c.status == "ok")
                                        .group_by(tracks.c.format).order_by(func.count().desc())).all())
            used = conn.execute(select(models.c.name, models.c.sha256, func.count(tracks.c.id))
                                .join(embeddings, embeddings.c.model_id == models.c.id)
                                .join(tracks, tracks.c.id == embeddings.c.track_id)
                                .where(tracks.c.status == "ok").group_by(models.c.id)
                                .order_by(models.c.id)).all()
            failed = conn.execute(select(tracks.c.path, tracks.c.error).where(tracks.c.status == "failed")
                                  .order_by(tracks.c.path).limit(failures)).all()
        return Stats(sum(by_status.values()), by_status.get("ok", 0), by_status.get("failed", 0),
                     by_status.get("missing", 0), seconds / 3600, formats,
                     [tuple(u) for u in used], [tuple(f) for f in failed])

    def scored_models(self, prefer: StoredModel | None = None) -> list[StoredModel]:
        """Every model that scored tracks: ``prefer`` first, then by tracks scored, most first
        (the order in which a tag name both vocabularies have is looked up)."""
        found = [self.model(model_id=i) for i, *_ in self.model_counts()]
        if prefer is not None:
            found = [prefer] + [m for m in found if m.id != prefer.id]
        return found

    def ok_count(self) -> int:
        """How many tracks are tagged ('ok')."""
        with self.sql_engine.connect() as conn:
            return conn.execute(select(func.count()).where(tracks.c.status == "ok")).scalar_one()

    def model_counts(self) -> list[tuple[int, str, str, int]]:
        """(model id, name, sha256, 'ok' tracks) of every model that scored tracks, most first."""
        n = func.count(tracks.c.id)
        with self.sql_engine.connect() as conn:
            rows = conn.execute(select(models.c.id, models.c.name, models.c.sha256, n)
                                .join(embeddings, embeddings.c.model_id == models.c.id)
                                .join(tracks, tracks.c.id == embeddings.c.track_id).where(tracks.c.status == "ok")
                                .group_by(models.c.id).order_by(n.desc(), models.c.id)).all()
        return [tuple(r) for r in rows]

    def find_track(self, path: str):
        """The track of the file at absolute ``path`` by any path to it: as stored, with its
        symlinks resolved, or else as the same file (device and inode) as a stored track of
        the same size. A scan stores a file under the first path it reached it by."""
        import os

        row = self.track(path)
        if row is None and os.path.realpath(path) != path:
            row = self.track(os.path.realpath(path))
        if row is not None:
            return row
        try:
            st = os.stat(path)
        except OSError:
            return None
        with self.sql_engine.connect() as conn:
            same_size = conn.execute(select(tracks).where(tracks.c.size == st.st_size).order_by(tracks.c.path)).all()
        for r in same_size:
            try:
                other = os.stat(r.path)
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                return r
        return None

    # --- learned tags (tagger.library.learned fits them; their scores are rows of scores) ---------
    def embeddings_of(self, model: StoredModel, statuses: Sequence[str] = ("ok",),
                      fingerprints: bool = False) -> Embeddings:
        """The embeddings of the model's tracks with ``statuses`` ('ok'; 'missing' ones keep
        theirs until pruned), by track id (with their fingerprints, if asked for)."""
        import numpy as np

        # Two reads instead of a join: the tracks with those statuses (their index alone) and
        # the model's embeddings (in track order), matched here; a track's embedding is of the
        # model that scored it. 0.2 s less at 100,000 tracks, and the fingerprints only when
        # asked for (a search needs those of a few hundred tracks: Store.fingerprints).
        with self.sql_engine.connect() as conn:
            # the driver's own rows: 100,000 Row objects would cost more than the query (the
            # columns need no conversion; a bytea comes as a memoryview, which join() takes)
            wanted = _driver_rows(self.db, conn, select(tracks.c.id).where(tracks.c.status.in_(list(statuses))))
            of_model = select(embeddings.c.track_id, embeddings.c.vector).where(embeddings.c.model_id == model.id)
            if len(wanted) > FEW_TRACKS:  # (most of the library: read it all, keep what is wanted)
                rows = _driver_rows(self.db, conn, of_model.order_by(embeddings.c.track_id))
            else:  # a few (the missing ones): by their ids
                ids = sorted(r[0] for r in wanted)
                rows = []
                for i in range(0, len(ids), 900):
                    rows += _driver_rows(self.db, conn, of_model.where(embeddings.c.track_id.in_(ids[i:i + 900]))
                                         .order_by(embeddings.c.track_id))
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        keep = np.isin(ids, np.fromiter((r[0] for r in wanted), dtype=np.int64, count=len(wanted)))
        if not keep.all():
            rows = [r for r, k in zip(rows, keep) if k]
            ids = ids[keep]
        size = len(rows[0][1]) if rows else 0
        blob = b"".join([r[1] for r in rows])
        if len(blob) != size * len(rows):  # one model's vectors have one size: a guard
            rows = [r for r in rows if len(r[1]) == size]
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            blob = b"".join([r[1] for r in rows])
        x = np.frombuffer(blob, dtype="<f2").reshape(len(rows), size // 2)
        fps = None
        if fingerprints:
            with self.sql_engine.connect() as conn:
                known = dict(conn.execute(select(tracks.c.id, tracks.c.fingerprint)
                                          .where(tracks.c.status.in_(list(statuses)))).all())
            fps = [known.get(int(i)) for i in ids]
        return Embeddings(ids, x.astype(np.float32), fps)

    def index_version(self) -> str | None:
        """The library's index version (see tagger.store.schema.INDEX_VERSION): equal before and
        after a read of embeddings, it names what was read. None for a database without one."""
        with self.sql_engine.connect() as conn:
            return conn.execute(select(meta.c.value).where(meta.c.key == INDEX_VERSION)).scalar()

    def fingerprints(self, ids: Sequence[int]) -> dict[int, str | None]:
        """track id → its content fingerprint, for the ids that exist."""
        out = {}
        ids = [int(i) for i in ids]  # numpy integers bind as blobs in SQLite: nothing would match
        with self.sql_engine.connect() as conn:
            for i in range(0, len(ids), 900):
                out.update(conn.execute(select(tracks.c.id, tracks.c.fingerprint)
                                        .where(tracks.c.id.in_(list(ids[i:i + 900])))).all())
        return out

    def tracks_by_id(self, ids: Sequence[int], columns: Sequence[str] | None = None) -> dict[int, object]:
        """track id → its tracks row (or just ``columns`` of it, and its id), for the ids that exist."""
        out = {}
        ids = [int(i) for i in ids]  # numpy integers bind as blobs in SQLite: nothing would match
        wanted = [tracks.c.id, *(tracks.c[c] for c in columns if c != "id")] if columns else [tracks]
        with self.sql_engine.connect() as conn:
            for i in range(0, len(ids), 900):  # under SQLite's old limit of 999 parameters
                for r in conn.execute(select(*wanted).where(tracks.c.id.in_(ids[i:i + 900]))):
                    out[r.id] = r
        return out

    def score_matrix(self, track_ids: np.ndarray, tag_ids: Sequence[int]) -> np.ndarray:
        """Probabilities ``[N, T]`` float32 of tracks ``track_ids`` (int64, ascending) for tags
        ``tag_ids``, in those orders; NaN where a track has no score for a tag."""
        import numpy as np

        out = np.full((len(track_ids), len(tag_ids)), np.nan, dtype=np.float32)
        if not len(track_ids) or not len(tag_ids):
            return out
        wanted = [int(t) for t in tag_ids]
        with self.sql_engine.connect() as conn:
            rows = []
            for table in (scores, learned_scores):  # the model's own tags, learned tags (schema 4)
                stmt = select(table.c.track_id, table.c.tag_id, table.c.prob).where(table.c.tag_id.in_(wanted))
                rows += conn.execute(stmt).cursor.fetchall()  # the driver's rows: millions at 100,000 tracks
        if not rows:
            return out
        table = np.fromiter(rows, dtype=[("track", "i8"), ("tag", "i8"), ("prob", "f4")], count=len(rows))
        tid, tag, prob = table["track"], table["tag"], table["prob"]
        row = np.minimum(np.searchsorted(track_ids, tid), len(track_ids) - 1)
        keep = track_ids[row] == tid  # scores of tracks not asked for (other statuses, --where) are dropped
        lut = np.zeros(max(int(tag.max()), max(tag_ids)) + 1, dtype=np.int64)
        lut[list(tag_ids)] = np.arange(len(tag_ids))
        cols = lut[tag[keep]]
        out[row[keep], cols] = prob[keep]
        return out

    def learned_tag_rows(self, name: str | None = None) -> list:
        """Rows of the learned tags (all, or the one named ``name``), by name: tag_id, name,
        model_id, model_name, sha256, weights, bias, mean, scale, examples, created_at and
        tracks (how many tracks it scores)."""
        n = select(func.count()).where(learned_scores.c.tag_id == tags.c.id).scalar_subquery()
        q = (select(learned_tags, tags.c.raw.label("name"), tags.c.model_id, models.c.name.label("model_name"),
                    models.c.sha256, n.label("tracks"))
             .join(tags, tags.c.id == learned_tags.c.tag_id).join(models, models.c.id == tags.c.model_id)
             .order_by(tags.c.raw))
        if name is not None:
            q = q.where(tags.c.raw == name)
        with self.sql_engine.connect() as conn:
            return conn.execute(q).all()

    def store_learned(self, model: StoredModel, name: str, classifier: dict, examples: dict,
                      track_ids: Sequence[int], probs: Sequence[float]) -> bool:
        """Store learned tag ``name`` of ``model`` (``classifier``: the learned_tags columns)
        with its scores of ``track_ids``, in one transaction. A learned tag of that name, on
        any model, is replaced; returns whether there was one."""
        with self.transaction() as conn:
            old = conn.execute(select(tags.c.id, tags.c.model_id).join(learned_tags, learned_tags.c.tag_id == tags.c.id)
                               .where(tags.c.raw == name)).all()
            keep = next((tid for tid, mid in old if mid == model.id), None)
            for tid, _ in old:
                conn.execute(delete(learned_scores).where(learned_scores.c.tag_id == tid))
                if tid != keep:
                    conn.execute(delete(learned_tags).where(learned_tags.c.tag_id == tid))
                    conn.execute(delete(tags).where(tags.c.id == tid))
            values = dict(classifier, examples=examples, created_at=time.time())
            if keep is None:
                idx = conn.execute(select(func.max(tags.c.idx)).where(tags.c.model_id == model.id)).scalar_one()
                keep = conn.execute(insert(tags).values(model_id=model.id, idx=idx + 1, raw=name, name=name)
                                    ).inserted_primary_key[0]
                conn.execute(insert(learned_tags).values(tag_id=keep, **values))
            else:
                conn.execute(update(learned_tags).where(learned_tags.c.tag_id == keep).values(**values))
            if len(track_ids):
                _insert_scores(conn, keep, track_ids, probs)
        return bool(old)

    def remove_learned(self, name: str) -> bool:
        """Delete learned tag ``name``, its classifier and its scores; False if there is none."""
        with self.transaction() as conn:
            ids = conn.execute(select(tags.c.id).join(learned_tags, learned_tags.c.tag_id == tags.c.id)
                               .where(tags.c.raw == name)).scalars().all()
            for tid in ids:
                conn.execute(delete(learned_scores).where(learned_scores.c.tag_id == tid))
                conn.execute(delete(learned_tags).where(learned_tags.c.tag_id == tid))
                conn.execute(delete(tags).where(tags.c.id == tid))
        return bool(ids)

    def learned_counts(self, model: StoredModel, threshold: float) -> dict[str, int]:
        """learned tag name → number of tracks whose probability is at least ``threshold``."""
        if not model.learned:
            return {}
        with self.sql_engine.connect() as conn:
            by_id = dict(conn.execute(select(learned_scores.c.tag_id, func.count()).where(
                learned_scores.c.tag_id.in_(model.learned.values()), learned_scores.c.prob >= threshold)
                .group_by(learned_scores.c.tag_id)).all())
        return {name: by_id.get(tid, 0) for name, tid in sorted(model.learned.items())}

    def learned_classifiers(self, model: StoredModel) -> list:
        """Rows (tag_id, weights, bias, mean, scale, …) of the learned tags of ``model``."""
        with self.sql_engine.connect() as conn:
            return conn.execute(select(learned_tags).join(tags, tags.c.id == learned_tags.c.tag_id)
                                .where(tags.c.model_id == model.id).order_by(tags.c.id)).all()


def _path_columns(path: str) -> dict:
    """The columns that a track's path sets: itself, its key and its folded form."""
    return {"path": path, "path_key": path_key(path), folded("path"): fold(path)}


def _metadata_columns(metadata: Mapping) -> dict:
    """The columns of a file's own metadata (text as a database can hold it) and the folded
    forms of its text."""
    values = {k: storable(v) if isinstance(v, str) else v for k in TRACK_METADATA for v in [metadata.get(k)]}
    return values | {folded(k): fold(values[k]) if isinstance(values[k], str) else None
                     for k in TEXT_FIELDS if k in values}


def _delete_tracks(conn: Connection, ids: list[int]) -> None:
    """Delete tracks ``ids`` with their scores, learned scores and embeddings."""
    _delete_scores(conn, ids)
    for i in range(0, len(ids), 500):
        conn.execute(delete(tracks).where(tracks.c.id.in_(ids[i:i + 500])))


def _delete_scores(conn: Connection, ids: Sequence[int], model_ids: Sequence[int] | None = None) -> None:
    """Delete the scores, learned scores and embeddings of tracks ``ids``: by every model, or
    by ``model_ids`` only."""
    if model_ids is not None:
        of_models = select(tags.c.id).where(tags.c.model_id.in_(list(model_ids)))
        learned = select(learned_tags.c.tag_id).join(tags, tags.c.id == learned_tags.c.tag_id).where(
            tags.c.model_id.in_(list(model_ids)))
    for i in range(0, len(ids), 500):
        chunk = list(ids[i:i + 500])
        if model_ids is None:
            conn.execute(delete(scores).where(scores.c.track_id.in_(chunk)))
            conn.execute(delete(learned_scores).where(*_learned_of(chunk)))
            conn.execute(delete(embeddings).where(embeddings.c.track_id.in_(chunk)))
        else:
            conn.execute(delete(scores).where(scores.c.track_id.in_(chunk), scores.c.tag_id.in_(of_models)))
            conn.execute(delete(learned_scores).where(learned_scores.c.tag_id.in_(learned),
                                                      learned_scores.c.track_id.in_(chunk)))
            conn.execute(delete(embeddings).where(embeddings.c.track_id.in_(chunk),
                                                  embeddings.c.model_id.in_(list(model_ids))))


def _model_sets(conn: Connection) -> dict[int, frozenset[int]]:
    """track id → the models whose scores of it are stored, for every track that has any."""
    out: dict[int, set[int]] = {}
    for track_id, model_id in conn.execute(select(embeddings.c.track_id, embeddings.c.model_id)).cursor.fetchall():
        out.setdefault(track_id, set()).add(model_id)
    return {k: frozenset(v) for k, v in out.items()}


def _index_changed(conn: Connection) -> None:
    """Move the index version on, last in a transaction that changed which tracks are 'ok' or
    their embeddings (last: on PostgreSQL the row stays locked until the commit, and concurrent
    scanners' commits wait for each other here only that long)."""
    conn.execute(update(meta).where(meta.c.key == INDEX_VERSION)
                 .values(value=cast(cast(meta.c.value, BigInteger) + 1, Text)))


def _learned_of(track_ids) -> tuple:
    """The WHERE clause of the learned scores of ``track_ids`` (ids, or a subquery of them): by
    (each learned tag, track), the table's own key (it has no index led by the track)."""
    ids = track_ids if hasattr(track_ids, "compile") else list(track_ids)
    return learned_scores.c.tag_id.in_(select(learned_tags.c.tag_id)), learned_scores.c.track_id.in_(ids)


def _at(path: str) -> tuple:
    """The WHERE clause of the track at ``path``: by its key (indexed), then the path itself."""
    return tracks.c.path_key == path_key(path), tracks.c.path == path


def _insert_scores(conn: Connection, tag_id: int, track_ids, probs) -> None:
    """One learned tag's scores of many tracks, through the driver: SQLite's executemany,
    PostgreSQL's COPY (at 100,000 tracks, SQLAlchemy's insert() rows, or psycopg's executemany,
    cost seconds more than the database's own work)."""
    rows = list(zip([int(tag_id)] * len(track_ids), map(int, track_ids), map(float, probs)))
    columns = f"{learned_scores.name} (tag_id, track_id, prob)"
    if conn.dialect.name == "postgresql":
        with conn.connection.dbapi_connection.cursor() as cur, cur.copy(f"COPY {columns} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(f"INSERT INTO {columns} VALUES ({mark}, {mark}, {mark})", rows)


def _driver_rows(db: str, conn: Connection, stmt) -> list:
    """All rows of ``stmt`` as the driver's tuples: 100,000 of SQLAlchemy's Row objects cost
    more than the query. PostgreSQL sends them in its binary format: a bytea in the text one
    is twice its size in hex, decoded again here (at 100,000 embeddings: 1 s against 0.3)."""
    if conn.dialect.name != "postgresql":
        return conn.execute(stmt).cursor.fetchall()
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    try:
        with conn.connection.dbapi_connection.cursor(binary=True) as cur:
            cur.execute(str(compiled), compiled.params)
            return cur.fetchall()
    except Exception as e:  # the driver's own error: what handle_error would have made of it
        import psycopg

        from tagger.store.failures import database_failure

        lost = isinstance(e, psycopg.OperationalError) and getattr(e, "sqlstate", None) is None
        failure = database_failure(db, e, disconnect=lost)
        if failure is None:
            raise
        raise failure from e


# one track's fault: a value or a row the database refuses. The database's own failures (disk
# full, locked, read-only, damaged, the server gone) arrive as StoreError (tagger.store.failures)
# and stop the whole command
_REFUSED = (DBAPIError, StatementError, ValueError, TypeError, OverflowError)


def _check(r: ScoredFile, models: Sequence[StoredModel]) -> None:
    """Turn a result whose scores cannot be stored as they are into a failure with the reason."""
    import numpy as np

    if r.error:
        return
    if len(r.outputs) != len(models):
        r.error = f"internal error: the scores of {len(r.outputs)} models for {len(models)}"
        return
    for out, model in zip(r.outputs, models):
        probs, emb = out.probabilities, out.embedding
        if probs is None or len(probs) != len(model.tag_ids):
            r.error = f"internal error: {0 if probs is None else len(probs)} scores for {len(model.tag_ids)} tags"
        elif emb is None:
            r.error = f"internal error: no embedding from {model.name}"
        elif not (np.isfinite(probs).all() and np.isfinite(emb).all()):
            r.error = NOT_FINITE
        elif np.abs(emb).max(initial=0.0) > 65504:
            r.error = "its embedding does not fit in float16; it was not stored"
        if r.error:
            r.outputs = ()
            return


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:200]
