"""The library: tracks, their tag scores and embeddings, on top of the store.

All reads and writes of the database go through here; it knows which model scored a track
and what a tag name means for that model, but nothing about audio or the command line.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import bindparam, delete, func, insert, select, update

from tagger.errors import UsageError
from tagger.modelcard import ModelCard
from tagger.store.db import open_engine
from tagger.store.schema import embeddings, models, scores, tags, tracks, write_journal, write_runs
from tagger.vocab import Vocabulary, tag_name


@dataclass(frozen=True)
class StoredModel:
    """A model as the database knows it: its row id, and its tags' row ids in tag order."""
    id: int
    name: str
    sha256: str
    tag_ids: tuple[int, ...]
    vocabulary: Vocabulary

    def tag_id(self, raw: str) -> int:
        return self.tag_ids[self.vocabulary.tags.index(raw)]


@dataclass(frozen=True)
class TrackState:
    id: int
    path: str
    size: int
    mtime_ns: int
    fingerprint: str | None
    status: str
    model_id: int | None


@dataclass
class TrackResult:
    """What a scan learnt about one file: scores, or the error that stopped it."""
    path: str
    size: int
    mtime_ns: int
    fingerprint: str | None = None
    format: str | None = None
    duration_s: float | None = None
    chunks: int = 0
    probabilities: np.ndarray | None = None  # [n_tags]
    embedding: np.ndarray | None = None  # [embedding_size]
    error: str | None = None


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


class Library:
    def __init__(self, db: str, create: bool = True) -> None:
        self.db = db
        self.engine = open_engine(db, create=create)

    # --- models -------------------------------------------------------------------------
    def ensure_model(self, card: ModelCard, embedding_size: int) -> StoredModel:
        """The stored row of ``card``'s model (by file hash), added on first use."""
        with self.engine.begin() as conn:
            row = conn.execute(select(models.c.id).where(models.c.sha256 == card.sha256)).first()
            if row is None:
                model_id = conn.execute(insert(models).values(
                    name=card.name, sha256=card.sha256, architecture=card.architecture,
                    embedding_size=embedding_size, added_at=time.time(),
                    card={"tags": card.tags, "groups": card.groups, "aliases": card.aliases,
                          "provenance": card.provenance, "metrics": card.metrics})).inserted_primary_key[0]
                conn.execute(insert(tags), [{"model_id": model_id, "idx": i, "raw": t, "name": tag_name(t)}
                                            for i, t in enumerate(card.tags)])
        return self.model(sha256=card.sha256)

    def find_model(self, sha256: str) -> StoredModel | None:
        """The stored model with this file hash, or None (nothing is added)."""
        with self.engine.connect() as conn:
            if conn.execute(select(models.c.id).where(models.c.sha256 == sha256)).first() is None:
                return None
        return self.model(sha256=sha256)

    def model(self, name: str | None = None, sha256: str | None = None,
              model_id: int | None = None) -> StoredModel:
        """A stored model by row id, by hash, by name (the newest of that name), or, with none
        of them, the model that scored the most tracks."""
        with self.engine.connect() as conn:
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
            ids = conn.execute(select(tags.c.id).where(tags.c.model_id == row.id).order_by(tags.c.idx)).scalars().all()
        card = row.card
        return StoredModel(row.id, row.name, row.sha256, tuple(ids),
                           Vocabulary(card["tags"], card.get("groups"), card.get("aliases")))

    # --- scanning -----------------------------------------------------------------------
    def track_states(self) -> dict[str, TrackState]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(tracks.c.id, tracks.c.path, tracks.c.size, tracks.c.mtime_ns,
                                       tracks.c.fingerprint, tracks.c.status, tracks.c.model_id))
            return {r.path: TrackState(*r) for r in rows}

    def move(self, moves: Sequence[tuple[int, str, int]]) -> None:
        """Give tracks new paths (and mtimes), keeping their results: ``(id, path, mtime_ns)``."""
        with self.engine.begin() as conn:
            for track_id, path, mtime_ns in moves:
                conn.execute(update(tracks).where(tracks.c.id == track_id)
                             .values(path=path, mtime_ns=mtime_ns, status="ok"))

    def set_status(self, ids: Iterable[int], status: str) -> None:
        ids = list(ids)
        with self.engine.begin() as conn:
            for i in range(0, len(ids), 500):
                conn.execute(update(tracks).where(tracks.c.id.in_(ids[i:i + 500])).values(status=status))

    def save(self, results: Sequence[TrackResult], model: StoredModel) -> None:
        """Store scan results in one transaction: a track is either fully stored or not at all."""
        if not results:
            return
        now = time.time()
        rows = [dict(path=r.path, size=r.size, mtime_ns=r.mtime_ns, fingerprint=r.fingerprint,
                     format=r.format, duration_s=r.duration_s, chunks=r.chunks,
                     status="failed" if r.error else "ok", error=r.error,
                     model_id=None if r.error else model.id, scanned_at=now) for r in results]
        with self.engine.begin() as conn:
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
            if score_rows:
                conn.execute(insert(scores), score_rows)
                conn.execute(insert(embeddings), emb_rows)

    def update_file_state(self, path: str, size: int, mtime_ns: int, fingerprint: str) -> None:
        """After tagger rewrote a file's metadata (audio unchanged): keep its scores valid."""
        with self.engine.begin() as conn:
            conn.execute(update(tracks).where(tracks.c.path == path)
                         .values(size=size, mtime_ns=mtime_ns, fingerprint=fingerprint))

    def tracks_at(self, paths: Sequence[str]) -> list:
        """The rows of the tracks at ``paths`` (those in the database), by path."""
        rows = []
        with self.engine.connect() as conn:
            for i in range(0, len(paths), 500):
                rows += conn.execute(select(tracks).where(tracks.c.path.in_(paths[i:i + 500]))).all()
        return sorted(rows, key=lambda r: r.path)

    def tracks_under(self, roots: Sequence[str] | None = None, status: str = "ok") -> list:
        """Track rows (all, or those under ``roots``) with ``status``, by path."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(tracks).where(tracks.c.status == status).order_by(tracks.c.path)).all()
        if roots:
            from tagger.discover import under
            rows = [r for r in rows if under(r.path, roots)]
        return rows

    def prune(self) -> int:
        """Delete the tracks marked missing (and their scores); returns how many."""
        with self.engine.begin() as conn:
            ids = conn.execute(select(tracks.c.id).where(tracks.c.status == "missing")).scalars().all()
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                conn.execute(delete(scores).where(scores.c.track_id.in_(chunk)))
                conn.execute(delete(embeddings).where(embeddings.c.track_id.in_(chunk)))
                conn.execute(delete(tracks).where(tracks.c.id.in_(chunk)))
        return len(ids)

    # --- reading ------------------------------------------------------------------------
    def track(self, path: str):
        with self.engine.connect() as conn:
            return conn.execute(select(tracks).where(tracks.c.path == path)).first()

    def track_scores(self, track_id: int) -> dict[str, float]:
        """raw tag → probability for one track."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(tags.c.raw, scores.c.prob).join(tags, tags.c.id == scores.c.tag_id)
                                .where(scores.c.track_id == track_id).order_by(tags.c.idx))
            return {raw: prob for raw, prob in rows}

    def embedding(self, track_id: int) -> np.ndarray | None:
        with self.engine.connect() as conn:
            blob = conn.execute(select(embeddings.c.vector).where(embeddings.c.track_id == track_id)).scalar()
        return None if blob is None else np.frombuffer(blob, dtype="<f2").astype(np.float32)

    def tag_counts(self, model: StoredModel, threshold: float) -> dict[str, int]:
        """raw tag → number of tracks whose probability is at least ``threshold``."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(scores.c.tag_id, func.count()).where(
                scores.c.tag_id.in_(model.tag_ids), scores.c.prob >= threshold).group_by(scores.c.tag_id)).all()
        by_id = dict(rows)
        return {raw: by_id.get(tid, 0) for raw, tid in zip(model.vocabulary.tags, model.tag_ids)}

    def group_counts(self, model: StoredModel, threshold: float) -> dict[str, int]:
        """group → number of tracks with any member at least ``threshold``."""
        out = {}
        with self.engine.connect() as conn:
            for group, members in model.vocabulary.groups.items():
                ids = [model.tag_id(m) for m in members]
                out[group] = conn.execute(select(func.count(func.distinct(scores.c.track_id))).where(
                    scores.c.tag_id.in_(ids), scores.c.prob >= threshold)).scalar_one()
        return out

    def stats(self, failures: int = 20) -> Stats:
        with self.engine.connect() as conn:
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



class Journal:
    """The undo journal of tag writing, on the library's database."""

    def __init__(self, library: Library) -> None:
        self.engine = library.engine

    def start(self, action: str, options: dict) -> int:
        with self.engine.begin() as conn:
            return conn.execute(insert(write_runs).values(action=action, started_at=time.time(),
                                                          options=options)).inserted_primary_key[0]

    def record(self, run_id: int, path: str, changes: Sequence[tuple[str, list[str], list[str]]]) -> None:
        if changes:
            with self.engine.begin() as conn:
                conn.execute(insert(write_journal), [{"run_id": run_id, "path": path, "field": f,
                                                      "old": old, "new": new} for f, old, new in changes])

    def last_undoable(self) -> int | None:
        """The newest write or remove run that changed something and is not undone yet."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(write_runs.c.id))
                                .join(write_journal, write_journal.c.run_id == write_runs.c.id)
                                .where(write_runs.c.action != "undo", write_runs.c.undone_by.is_(None))).scalar()

    def run(self, run_id: int):
        with self.engine.connect() as conn:
            return conn.execute(select(write_runs).where(write_runs.c.id == run_id)).first()

    def entries(self, run_id: int) -> dict[str, list[tuple[str, list[str], list[str]]]]:
        """path → [(field, old, new)] of one run."""
        out: dict[str, list] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(select(write_journal).where(write_journal.c.run_id == run_id)
                                    .order_by(write_journal.c.id)):
                out.setdefault(row.path, []).append((row.field, row.old, row.new))
        return out

    def mark_undone(self, run_id: int, by: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(write_runs).where(write_runs.c.id == run_id).values(undone_by=by))
