"""The library: tracks, their tag scores and embeddings, on top of the store.

All reads and writes of the database go through here; it knows which model scored a track
and what a tag name means for that model, but nothing about audio or the command line.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from tagger.engine.plan import TrackState
from tagger.engine.results import NOT_FINITE, TrackResult
from tagger.errors import UsageError
from tagger.modelcard import ModelCard
from tagger.store.db import open_engine
from tagger.store.schema import (TRACK_METADATA, embeddings, learned_tags, models, scores, tags, tracks,
                                 write_journal, write_runs)
from tagger.vocab import Vocabulary, tag_name

if TYPE_CHECKING:  # numpy loads where scores are written or vectors read: queries need none of it
    import numpy as np


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
        try:
            self._add_model(card, embedding_size)
        except IntegrityError:  # another scanner added it at the same moment
            pass
        return self.model(sha256=card.sha256)

    def _add_model(self, card: ModelCard, embedding_size: int) -> None:
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

    def set_missing(self, gone: Sequence[tuple[int, str]]) -> None:
        """Mark tracks ``(id, path)`` missing, each only where it still has that path: a scanner
        of another folder may have found it moved there since this one's plan."""
        if gone:
            with self.engine.begin() as conn:
                conn.execute(update(tracks).where(tracks.c.id == bindparam("track_id"),
                                                  tracks.c.path == bindparam("old_path"))
                             .values(status="missing"),
                             [{"track_id": i, "old_path": p} for i, p in gone])

    def save(self, results: Sequence[TrackResult], model: StoredModel) -> list[tuple[str, str]]:
        """Store scan results in one transaction, each track fully or not at all.

        A result whose scores cannot be stored (not finite, wrong length) is turned into a
        failure with the reason, in place. A track the database refuses costs only itself: it is
        stored as failed where possible, and returned in ``(path, reason)`` pairs; the others are
        kept. Errors of the database itself (disk full, locked) propagate."""
        for r in results:
            _check(r, model)
        if not results:
            return []
        try:
            self._save(results, model)
            return []
        except _REFUSED as e:
            _raise_if_database_failed(e)
        unsaved = []
        for r in results:  # one transaction each, to find the track(s) the database refuses
            try:
                self._save([r], model)
            except _REFUSED as e:
                _raise_if_database_failed(e)
                reason = f"could not be stored in the database: {_first_line(e)}"
                unsaved.append((r.path, reason))
                try:
                    self._save([TrackResult(r.path, r.size, r.mtime_ns, error=reason)], model)
                except _REFUSED as e2:
                    _raise_if_database_failed(e2)  # else: reported in the summary; the next scan tries again
        return unsaved

    def _save(self, results: Sequence[TrackResult], model: StoredModel) -> None:
        import numpy as np

        now = time.time()
        rows = [dict(path=r.path, size=r.size, mtime_ns=r.mtime_ns, fingerprint=r.fingerprint,
                     format=r.format, duration_s=r.duration_s, chunks=r.chunks,
                     status="failed" if r.error else "ok", error=r.error,
                     model_id=None if r.error else model.id, scanned_at=now,
                     metadata_read=r.metadata is not None,
                     **{k: (r.metadata or {}).get(k) for k in TRACK_METADATA}) for r in results]
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
            score_rows += self._learned_score_rows(conn, model, [(existing[r.path], r.embedding)
                                                                 for r in results if not r.error])
            if score_rows:
                conn.execute(insert(scores), score_rows)
                conn.execute(insert(embeddings), emb_rows)

    def metadata_backlog(self) -> list[tuple[int, str]]:
        """(id, path) of the tagged tracks scanned before the database kept file metadata
        (schema 3) whose metadata has not been read since."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(tracks.c.id, tracks.c.path).where(
                tracks.c.status == "ok", tracks.c.metadata_read.is_(None)))]

    def set_metadata(self, rows: Sequence[tuple[int, dict]]) -> None:
        """Store files' own metadata for tracks ``(id, metadata)`` without touching their scores."""
        if rows:
            with self.engine.begin() as conn:
                conn.execute(update(tracks).where(tracks.c.id == bindparam("track_id")),
                             [{"track_id": i, "metadata_read": True, **{k: m.get(k) for k in TRACK_METADATA}}
                              for i, m in rows])

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
        import numpy as np

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

    def model_counts(self) -> list[tuple[int, str, str, int]]:
        """(model id, name, sha256, 'ok' tracks) of every model that scored tracks, most first."""
        n = func.count(tracks.c.id)
        with self.engine.connect() as conn:
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
        with self.engine.connect() as conn:
            same_size = conn.execute(select(tracks).where(tracks.c.size == st.st_size).order_by(tracks.c.path)).all()
        for r in same_size:
            try:
                other = os.stat(r.path)
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                return r
        return None

    # --- learned tags (tagger.learned fits them; their scores are rows of scores) ---------
    def embeddings_of(self, model: StoredModel, statuses: Sequence[str] = ("ok",)) -> tuple[np.ndarray, np.ndarray]:
        """(track ids int64 [N], embeddings float32 [N, E]) of the model's tracks with
        ``statuses`` ('ok'; 'missing' ones keep theirs until pruned), by id."""
        import numpy as np

        with self.engine.connect() as conn:
            rows = conn.execute(select(embeddings.c.track_id, embeddings.c.vector)
                                .join(tracks, tracks.c.id == embeddings.c.track_id)
                                .where(tracks.c.status.in_(list(statuses)), tracks.c.model_id == model.id,
                                       embeddings.c.model_id == model.id)
                                .order_by(embeddings.c.track_id)).all()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return ids, np.zeros((0, 0), dtype=np.float32)
        x = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f2").reshape(len(rows), -1)
        return ids, x.astype(np.float32)

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
        with self.engine.connect() as conn:
            return conn.execute(q).all()

    def store_learned(self, model: StoredModel, name: str, classifier: dict, examples: dict,
                      track_ids: Sequence[int], probs: Sequence[float]) -> bool:
        """Store learned tag ``name`` of ``model`` (``classifier``: the learned_tags columns)
        with its scores of ``track_ids``, in one transaction. A learned tag of that name, on
        any model, is replaced; returns whether there was one."""
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
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
        with self.engine.connect() as conn:
            by_id = dict(conn.execute(select(scores.c.tag_id, func.count()).where(
                scores.c.tag_id.in_(model.learned.values()), scores.c.prob >= threshold)
                .group_by(scores.c.tag_id)).all())
        return {name: by_id.get(tid, 0) for name, tid in sorted(model.learned.items())}

    def _learned_score_rows(self, conn, model: StoredModel, stored: Sequence[tuple[int, object]]) -> list[dict]:
        """Score rows of the model's learned tags for ``(track_id, embedding)`` pairs, with the
        classifiers as they are in this transaction. The embedding is rounded to float16 first,
        as stored, so a track scores the same here as when its tag was learned."""
        stored = [(t, e) for t, e in stored if e is not None]
        if not stored:
            return []
        classifiers = conn.execute(select(learned_tags).join(tags, tags.c.id == learned_tags.c.tag_id)
                                   .where(tags.c.model_id == model.id)).all()
        if not classifiers:
            return []
        import numpy as np

        from tagger.learned import Classifier

        x = np.stack([np.asarray(e, dtype="<f2") for _, e in stored]).astype(np.float32)
        rows = []
        for c in classifiers:
            probs = Classifier.from_blobs(c.weights, c.bias, c.mean, c.scale).probabilities(x)
            rows += [{"track_id": t, "tag_id": c.tag_id, "prob": float(p)} for (t, _), p in zip(stored, probs)]
        return rows


_REFUSED = (IntegrityError, DataError, StatementError, ValueError, TypeError, OverflowError)  # one track's fault…


def _raise_if_database_failed(e: BaseException) -> None:
    """…unless it is the database's own (disk full, locked, gone: OperationalError and the
    other driver errors), which would fail every track alike: that stops the scan."""
    if isinstance(e, DBAPIError) and not isinstance(e, (IntegrityError, DataError)):
        from tagger.store.db import StoreError

        raise StoreError(None, f"cannot write to the database: {_first_line(e)}",
                         "tracks committed before this are kept; fix the cause and run the scan again") from e


def _check(r: TrackResult, model: StoredModel) -> None:
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


class Journal:
    """The undo journal of tag writing, on the library's database.

    Rows are written before the file is replaced, so a killed run's changes can be undone.
    Beside each file's field rows, one ``FILE_STATE`` row holds the file's ``[size, mtime_ns]``
    before the write (old) and ``[size, mtime_ns, fingerprint]`` of the written file (new): a
    file found in that state was written by tagger, even if the run died before recording it.
    """

    FILE_STATE = "(file)"  # not a tag field: the file's state before and after the write

    def __init__(self, library: Library) -> None:
        self.engine = library.engine

    def start(self, action: str, options: dict) -> int:
        with self.engine.begin() as conn:
            return conn.execute(insert(write_runs).values(action=action, started_at=time.time(),
                                                          options=options)).inserted_primary_key[0]

    def record(self, run_id: int, path: str, changes: Sequence[tuple[str, list[str], list[str]]],
               state: tuple[list, list] | None = None) -> None:
        """Journal ``changes`` (and the file's ``(before, after)`` state) in one transaction."""
        rows = [{"run_id": run_id, "path": path, "field": f, "old": old, "new": new} for f, old, new in changes]
        if rows and state is not None:
            rows.append({"run_id": run_id, "path": path, "field": self.FILE_STATE,
                         "old": list(state[0]), "new": list(state[1])})
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(write_journal), rows)

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
            for row in conn.execute(select(write_journal).where(write_journal.c.run_id == run_id,
                                                                write_journal.c.field != self.FILE_STATE)
                                    .order_by(write_journal.c.id)):
                out.setdefault(row.path, []).append((row.field, row.old, row.new))
        return out

    def file_states(self, run_id: int) -> dict[str, tuple[list, list]]:
        """path → (state before the run's write, state it left) of one run."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(write_journal).where(write_journal.c.run_id == run_id,
                                                            write_journal.c.field == self.FILE_STATE)
                                .order_by(write_journal.c.id)).all()
        out: dict[str, tuple[list, list]] = {}
        for row in rows:  # a path written twice in one run: its first before, its last after
            out[row.path] = (out.get(row.path, (row.old,))[0], row.new)
        return out

    def last_written_state(self, path: str) -> list | None:
        """``[size, mtime_ns, fingerprint]`` of the file tagger last wrote at ``path``, if any."""
        with self.engine.connect() as conn:
            return conn.execute(select(write_journal.c.new).where(write_journal.c.path == path,
                                                                  write_journal.c.field == self.FILE_STATE)
                                .order_by(write_journal.c.id.desc()).limit(1)).scalar()

    def runs(self, limit: int = 5) -> list:
        """The newest write and remove runs that changed files and can still be undone:
        rows of (id, action, started_at, files)."""
        files = func.count(func.distinct(write_journal.c.path)).label("files")
        with self.engine.connect() as conn:
            return conn.execute(select(write_runs.c.id, write_runs.c.action, write_runs.c.started_at, files)
                                .join(write_journal, write_journal.c.run_id == write_runs.c.id)
                                .where(write_runs.c.action != "undo", write_runs.c.undone_by.is_(None))
                                .group_by(write_runs.c.id).order_by(write_runs.c.id.desc()).limit(limit)).all()

    def mark_undone(self, run_id: int, by: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(write_runs).where(write_runs.c.id == run_id).values(undone_by=by))
