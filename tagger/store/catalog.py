"""The store's catalogue: tracks, models, tag scores, embeddings and learned classifiers.

Every read and write of these tables goes through ``Store``; it knows rows and what a tag
name means for a model (its vocabulary), not audio, files or the command line. What it stores
for a scanned file is anything shaped like a ``ScoredFile`` (the engine's TrackResult is one);
the scores of learned tags come from whoever saves (``save(..., extra_scores=…)``): the store
runs no model and no classifier.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from tagger.errors import NOT_FINITE, UsageError
from tagger.model.modelcard import ModelCard
from tagger.model.vocab import Vocabulary, tag_name
from tagger.store.db import open_engine
from tagger.store.schema import TRACK_METADATA, embeddings, learned_tags, models, scores, tags, tracks

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
    model_id: int | None


class ScoredFile(Protocol):
    """What ``Store.save`` keeps of one scanned file: its scores, or the error that stopped it.
    ``error`` may be set by ``save`` itself (scores that cannot be stored)."""
    path: str
    size: int
    mtime_ns: int
    fingerprint: str | None
    format: str | None
    duration_s: float | None
    chunks: int
    probabilities: np.ndarray | None  # [n_tags]
    embedding: np.ndarray | None  # [embedding_size]
    error: str | None
    metadata: dict | None  # the file's own title, artist, … (files.tagfile.read_track_metadata)


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
    probabilities: None = None
    embedding: None = None
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
    fingerprints: list  # [N] str | None

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

    def __init__(self, db: str, create: bool = True) -> None:
        self.db = db
        self.sql_engine = open_engine(db, create=create)

    # --- models -------------------------------------------------------------------------
    def ensure_model(self, card: ModelCard, embedding_size: int) -> StoredModel:
        """The stored row of ``card``'s model (by file hash), added on first use."""
        try:
            self._add_model(card, embedding_size)
        except IntegrityError:  # another scanner added it at the same moment
            pass
        return self.model(sha256=card.sha256)

    def _add_model(self, card: ModelCard, embedding_size: int) -> None:
        with self.sql_engine.begin() as conn:
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
                q = q.where((models.c.name == name) | (models.c.sha256.startswith(name))).order_by(models.c.id.desc())
            else:
                used = (select(tracks.c.model_id, func.count().label("n")).where(tracks.c.status == "ok")
                        .group_by(tracks.c.model_id).order_by(func.count().desc()).limit(1)).subquery()
                q = q.join(used, used.c.model_id == models.c.id)
            row = conn.execute(q).first()
            if row is None:
                if name:
                    known = conn.execute(select(models.c.name).distinct()).scalars().all()
                    raise UsageError(None, f"no results from a model named {name!r} in this database",
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
                                       tracks.c.fingerprint, tracks.c.status, tracks.c.model_id))
            return {r.path: TrackState(*r) for r in rows}

    def move(self, moves: Sequence[tuple[int, str, int]]) -> None:
        """Give tracks new paths (and mtimes), keeping their results: ``(id, path, mtime_ns)``."""
        with self.sql_engine.begin() as conn:
            for track_id, path, mtime_ns in moves:
                conn.execute(update(tracks).where(tracks.c.id == track_id)
                             .values(path=path, mtime_ns=mtime_ns, status="ok"))

    def set_status(self, ids: Iterable[int], status: str) -> None:
        ids = list(ids)
        with self.sql_engine.begin() as conn:
            for i in range(0, len(ids), 500):
                conn.execute(update(tracks).where(tracks.c.id.in_(ids[i:i + 500])).values(status=status))

    def set_missing(self, gone: Sequence[tuple[int, str]]) -> None:
        """Mark tracks ``(id, path)`` missing, each only where it still has that path: a scanner
        of another folder may have found it moved there since this one's plan."""
        if gone:
            with self.sql_engine.begin() as conn:
                conn.execute(update(tracks).where(tracks.c.id == bindparam("track_id"),
                                                  tracks.c.path == bindparam("old_path"))
                             .values(status="missing"),
                             [{"track_id": i, "old_path": p} for i, p in gone])

    def save(self, results: Sequence[ScoredFile], model: StoredModel,
             extra_scores: ExtraScores | None = None) -> list[tuple[str, str]]:
        """Store scan results in one transaction, each track fully or not at all.
        ``extra_scores``: more tags' probabilities for the stored embeddings (the scan scores
        the model's learned tags through it), as ``{tag id: probabilities [N]}``.

        A result whose scores cannot be stored (not finite, wrong length) is turned into a
        failure with the reason, in place. A track the database refuses costs only itself: it is
        stored as failed where possible, and returned in ``(path, reason)`` pairs; the others are
        kept. Errors of the database itself (disk full, locked) propagate."""
        for r in results:
            _check(r, model)
        if not results:
            return []
        try:
            self._save(results, model, extra_scores)
            return []
        except _REFUSED as e:
            _raise_if_database_failed(e)
        unsaved = []
        for r in results:  # one transaction each, to find the track(s) the database refuses
            try:
                self._save([r], model, extra_scores)
            except _REFUSED as e:
                _raise_if_database_failed(e)
                reason = f"could not be stored in the database: {_first_line(e)}"
                unsaved.append((r.path, reason))
                try:
                    self._save([_Failure(r.path, r.size, r.mtime_ns, reason)], model)
                except _REFUSED as e2:
                    _raise_if_database_failed(e2)  # else: reported in the summary; the next scan tries again
        return unsaved

    def _save(self, results: Sequence[ScoredFile], model: StoredModel,
              extra_scores: ExtraScores | None = None) -> None:
        import numpy as np

        now = time.time()
        rows = [dict(path=r.path, size=r.size, mtime_ns=r.mtime_ns, fingerprint=r.fingerprint,
                     format=r.format, duration_s=r.duration_s, chunks=r.chunks,
                     status="failed" if r.error else "ok", error=r.error,
                     model_id=None if r.error else model.id, scanned_at=now,
                     metadata_read=r.metadata is not None,
                     **{k: (r.metadata or {}).get(k) for k in TRACK_METADATA}) for r in results]
        with self.sql_engine.begin() as conn:
            existing = dict(conn.execute(select(tracks.c.path, tracks.c.id)
                                         .where(tracks.c.path.in_([r.path for r in results]))).all())
            old = [dict(row, track_id=existing[row["path"]]) for row in rows if row["path"] in existing]
            if old:
                conn.execute(update(tracks).where(tracks.c.id == bindparam("track_id")), old)
                conn.execute(delete(scores).where(scores.c.track_id.in_(existing.values())))
                conn.execute(delete(embeddings).where(embeddings.c.track_id.in_(existing.values())))
            new = [row for row in rows if row["path"] not in existing]
            if new:
                inserted = conn.execute(insert(tracks).returning(tracks.c.id, tracks.c.path,
                                                                 sort_by_parameter_order=True), new)
                existing.update({path: track_id for track_id, path in inserted})
            score_rows, emb_rows = [], []
            for r in results:
                if r.error:
                    continue
                track_id = existing[r.path]
                score_rows += [{"track_id": track_id, "tag_id": t, "prob": float(p)}
                               for t, p in zip(model.tag_ids, r.probabilities)]
                emb_rows.append({"track_id": track_id, "model_id": model.id,
                                 "vector": np.asarray(r.embedding, dtype="<f2").tobytes()})
            ok = [r for r in results if not r.error and r.embedding is not None]
            if extra_scores is not None and ok:
                # as stored (float16), so a track scores the same here as when it is read back
                x = np.stack([np.asarray(r.embedding, dtype="<f2") for r in ok]).astype(np.float32)
                for tag_id, probs in extra_scores(x).items():
                    score_rows += [{"track_id": existing[r.path], "tag_id": tag_id, "prob": float(p)}
                                   for r, p in zip(ok, probs)]
            if score_rows:
                conn.execute(insert(scores), score_rows)
                conn.execute(insert(embeddings), emb_rows)

    def metadata_backlog(self) -> list[tuple[int, str]]:
        """(id, path) of the tagged tracks scanned before the database kept file metadata
        (schema 3) whose metadata has not been read since."""
        with self.sql_engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(tracks.c.id, tracks.c.path).where(
                tracks.c.status == "ok", tracks.c.metadata_read.is_(None)))]

    def set_metadata(self, rows: Sequence[tuple[int, dict]]) -> None:
        """Store files' own metadata for tracks ``(id, metadata)`` without touching their scores."""
        if rows:
            with self.sql_engine.begin() as conn:
                conn.execute(update(tracks).where(tracks.c.id == bindparam("track_id")),
                             [{"track_id": i, "metadata_read": True, **{k: m.get(k) for k in TRACK_METADATA}}
                              for i, m in rows])

    def update_file_state(self, path: str, size: int, mtime_ns: int, fingerprint: str) -> None:
        """After tagger rewrote a file's metadata (audio unchanged): keep its scores valid."""
        with self.sql_engine.begin() as conn:
            conn.execute(update(tracks).where(tracks.c.path == path)
                         .values(size=size, mtime_ns=mtime_ns, fingerprint=fingerprint))

    def tracks_at(self, paths: Sequence[str]) -> list:
        """The rows of the tracks at ``paths`` (those in the database), by path."""
        rows = []
        with self.sql_engine.connect() as conn:
            for i in range(0, len(paths), 500):
                rows += conn.execute(select(tracks).where(tracks.c.path.in_(paths[i:i + 500]))).all()
        return sorted(rows, key=lambda r: r.path)

    def tracks_under(self, roots: Sequence[str] | None = None, status: str = "ok") -> list:
        """Track rows (all, or those under ``roots``) with ``status``, by path."""
        with self.sql_engine.connect() as conn:
            rows = conn.execute(select(tracks).where(tracks.c.status == status).order_by(tracks.c.path)).all()
        if roots:
            from tagger.audio.discover import under
            rows = [r for r in rows if under(r.path, roots)]
        return rows

    def prune(self) -> int:
        """Delete the tracks marked missing (and their scores); returns how many."""
        with self.sql_engine.begin() as conn:
            ids = conn.execute(select(tracks.c.id).where(tracks.c.status == "missing")).scalars().all()
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                conn.execute(delete(scores).where(scores.c.track_id.in_(chunk)))
                conn.execute(delete(embeddings).where(embeddings.c.track_id.in_(chunk)))
                conn.execute(delete(tracks).where(tracks.c.id.in_(chunk)))
        return len(ids)

    # --- reading ------------------------------------------------------------------------
    def track(self, path: str):
        with self.sql_engine.connect() as conn:
            return conn.execute(select(tracks).where(tracks.c.path == path)).first()

    def track_scores(self, track_id: int) -> dict[str, float]:
        """raw tag → probability for one track."""
        with self.sql_engine.connect() as conn:
            rows = conn.execute(select(tags.c.raw, scores.c.prob).join(tags, tags.c.id == scores.c.tag_id)
                                .where(scores.c.track_id == track_id).order_by(tags.c.idx))
            return {raw: prob for raw, prob in rows}

    def embedding(self, track_id: int) -> np.ndarray | None:
        with self.sql_engine.connect() as conn:
            blob = conn.execute(select(embeddings.c.vector).where(embeddings.c.track_id == track_id)).scalar()
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
                                .join(tracks, tracks.c.model_id == models.c.id)
                                .where(tracks.c.status == "ok").group_by(models.c.id)).all()
            failed = conn.execute(select(tracks.c.path, tracks.c.error).where(tracks.c.status == "failed")
                                  .order_by(tracks.c.path).limit(failures)).all()
        return Stats(sum(by_status.values()), by_status.get("ok", 0), by_status.get("failed", 0),
                     by_status.get("missing", 0), seconds / 3600, formats,
                     [tuple(u) for u in used], [tuple(f) for f in failed])

    def model_counts(self) -> list[tuple[int, str, str, int]]:
        """(model id, name, sha256, 'ok' tracks) of every model that scored tracks, most first."""
        n = func.count(tracks.c.id)
        with self.sql_engine.connect() as conn:
            rows = conn.execute(select(models.c.id, models.c.name, models.c.sha256, n)
                                .join(tracks, tracks.c.model_id == models.c.id).where(tracks.c.status == "ok")
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
    def embeddings_of(self, model: StoredModel, statuses: Sequence[str] = ("ok",)) -> Embeddings:
        """The embeddings of the model's tracks with ``statuses`` ('ok'; 'missing' ones keep
        theirs until pruned), by track id."""
        import numpy as np

        stmt = (select(embeddings.c.track_id, embeddings.c.vector, tracks.c.fingerprint)
                .join(tracks, tracks.c.id == embeddings.c.track_id)
                .where(tracks.c.status.in_(list(statuses)), tracks.c.model_id == model.id,
                       embeddings.c.model_id == model.id))
        with self.sql_engine.connect() as conn:
            # the driver's own rows: 100,000 Row objects would cost more than the query (the
            # columns need no conversion; a bytea comes as a memoryview, which join() takes)
            rows = conn.execute(stmt).cursor.fetchall()
        size = len(rows[0][1]) if rows else 0
        rows = [r for r in rows if len(r[1]) == size]  # one model's vectors have one size: a guard
        rows.sort(key=lambda r: r[0])  # by track id (a temporary B-tree in SQLite costs more)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        x = np.frombuffer(b"".join([r[1] for r in rows]), dtype="<f2").reshape(len(rows), size // 2)
        return Embeddings(ids, x.astype(np.float32), [r[2] for r in rows])

    def tracks_by_id(self, ids: Sequence[int]) -> dict[int, object]:
        """track id → its tracks row, for the ids that exist."""
        out = {}
        ids = [int(i) for i in ids]  # numpy integers bind as blobs in SQLite: nothing would match
        with self.sql_engine.connect() as conn:
            for i in range(0, len(ids), 900):  # under SQLite's old limit of 999 parameters
                for r in conn.execute(select(tracks).where(tracks.c.id.in_(ids[i:i + 900]))):
                    out[r.id] = r
        return out

    def score_matrix(self, track_ids: np.ndarray, tag_ids: Sequence[int]) -> np.ndarray:
        """Probabilities ``[N, T]`` float32 of tracks ``track_ids`` (int64, ascending) for tags
        ``tag_ids``, in those orders; NaN where a track has no score for a tag."""
        import numpy as np

        out = np.full((len(track_ids), len(tag_ids)), np.nan, dtype=np.float32)
        if not len(track_ids) or not len(tag_ids):
            return out
        stmt = (select(scores.c.track_id, scores.c.tag_id, scores.c.prob)
                .where(scores.c.tag_id.in_([int(t) for t in tag_ids])))
        with self.sql_engine.connect() as conn:
            rows = conn.execute(stmt).cursor.fetchall()  # the driver's rows: millions at 100,000 tracks
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
        n = select(func.count()).where(scores.c.tag_id == tags.c.id).scalar_subquery()
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
        with self.sql_engine.begin() as conn:
            old = conn.execute(select(tags.c.id, tags.c.model_id).join(learned_tags, learned_tags.c.tag_id == tags.c.id)
                               .where(tags.c.raw == name)).all()
            keep = next((tid for tid, mid in old if mid == model.id), None)
            for tid, _ in old:
                conn.execute(delete(scores).where(scores.c.tag_id == tid))
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
            rows = [{"track_id": int(t), "tag_id": keep, "prob": float(p)} for t, p in zip(track_ids, probs)]
            if rows:
                conn.execute(insert(scores), rows)
        return bool(old)

    def remove_learned(self, name: str) -> bool:
        """Delete learned tag ``name``, its classifier and its scores; False if there is none."""
        with self.sql_engine.begin() as conn:
            ids = conn.execute(select(tags.c.id).join(learned_tags, learned_tags.c.tag_id == tags.c.id)
                               .where(tags.c.raw == name)).scalars().all()
            for tid in ids:
                conn.execute(delete(scores).where(scores.c.tag_id == tid))
                conn.execute(delete(learned_tags).where(learned_tags.c.tag_id == tid))
                conn.execute(delete(tags).where(tags.c.id == tid))
        return bool(ids)

    def learned_counts(self, model: StoredModel, threshold: float) -> dict[str, int]:
        """learned tag name → number of tracks whose probability is at least ``threshold``."""
        if not model.learned:
            return {}
        with self.sql_engine.connect() as conn:
            by_id = dict(conn.execute(select(scores.c.tag_id, func.count()).where(
                scores.c.tag_id.in_(model.learned.values()), scores.c.prob >= threshold)
                .group_by(scores.c.tag_id)).all())
        return {name: by_id.get(tid, 0) for name, tid in sorted(model.learned.items())}

    def learned_classifiers(self, model: StoredModel) -> list:
        """Rows (tag_id, weights, bias, mean, scale, …) of the learned tags of ``model``."""
        with self.sql_engine.connect() as conn:
            return conn.execute(select(learned_tags).join(tags, tags.c.id == learned_tags.c.tag_id)
                                .where(tags.c.model_id == model.id).order_by(tags.c.id)).all()


_REFUSED = (IntegrityError, DataError, StatementError, ValueError, TypeError, OverflowError)  # one track's fault…


def _raise_if_database_failed(e: BaseException) -> None:
    """…unless it is the database's own (disk full, locked, gone: OperationalError and the
    other driver errors), which would fail every track alike: that stops the scan."""
    if isinstance(e, DBAPIError) and not isinstance(e, (IntegrityError, DataError)):
        from tagger.store.db import StoreError

        raise StoreError(None, f"cannot write to the database: {_first_line(e)}",
                         "tracks committed before this are kept; fix the cause and run the scan again") from e


def _check(r: ScoredFile, model: StoredModel) -> None:
    """Turn a result whose scores cannot be stored as they are into a failure with the reason."""
    import numpy as np

    if r.error:
        return
    probs, emb = r.probabilities, r.embedding
    if probs is None or len(probs) != len(model.tag_ids):
        r.error = f"internal error: {0 if probs is None else len(probs)} scores for {len(model.tag_ids)} tags"
    elif not (np.isfinite(probs).all() and (emb is None or np.isfinite(emb).all())):
        r.error = NOT_FINITE
    elif emb is not None and np.abs(emb).max(initial=0.0) > 65504:
        r.error = "its embedding does not fit in float16; it was not stored"


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:200]
