"""The library scan: plan what to score, run the engine, store its results as they stream.

    scan()  plan (walk + compare with the database) → mark moved/missing → claims (scanners
            sharing a PostgreSQL database) → the engine's stream of TrackResults → the store,
            committed every second, each track whole, with its learned tags scored

This is the one module that composes the engine (tagger.engine, which knows nothing of the
database), the store (tagger.store, which runs no model) and the learned tags
(tagger.library.learned). The command line may add a consumer (``after_save``: writing tags
into the files once their scores are stored). An interrupted scan loses only the tracks in
flight and the next one resumes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from tagger.audio.discover import FoundFile
from tagger.engine.options import DEFAULT_CHUNKS, ScanOptions
from tagger.engine.plan import ScanPlan, plan_scan
from tagger.engine.results import EngineStats, TrackResult
from tagger.engine.runtime import Runner, check_options, open_runner
from tagger.errors import UsageError
from tagger.library.learned import LearnedScores
from tagger.model.modelcard import CardModel, ModelCard, read_card
from tagger.store.catalog import Store, StoredModel
from tagger.store.claims import Claims

__all__ = ["DEFAULT_CHUNKS", "ScanOptions", "ScanPlan", "ScanProgress", "ScanSummary", "scan"]

COMMIT_EVERY_S = 1.0
COMMIT_EVERY_TRACKS = 256
# files claimed at once by a scanner sharing a PostgreSQL database: at most a quarter of what it
# has left (a scanner that starts a little later still finds work), at most CLAIM_ROUND (the
# scanners finish close together), at least MIN_ROUND. Each round restarts the decode workers and
# drains the pipeline (~0.5 s), so rounds are kept large for fast machines
CLAIM_ROUND = 256
RAY_CLAIM_ROUND = 2000
MIN_ROUND = 2


@dataclass
class ScanProgress:
    done: int
    total: int
    audio_s: float
    path: str
    error: str | None


@dataclass
class ScanSummary:
    plan: ScanPlan
    scanned: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio_s: float = 0.0
    elapsed_s: float = 0.0
    interrupted: bool = False
    model_name: str = ""
    engine_stats: EngineStats = field(default_factory=EngineStats)
    metadata_read: int = 0  # tracks scanned before schema 3 whose file metadata was read now
    done_by_others: int = 0  # planned here, then stored by another scanner of the same database
    left_to_others: int = 0  # still claimed by another scanner at the end: it stores them


AfterSave = Callable[[Store, list[TrackResult]], None]


class _Committer:
    """Collects results and commits them in groups, each stored track with its learned tags
    scored; a track that cannot be stored costs only itself (Store.save isolates it) and is
    reported as failed."""

    def __init__(self, library: Store, model: StoredModel, summary: ScanSummary,
                 after_save: AfterSave | None) -> None:
        self.library, self.model, self.summary, self.after_save = library, model, summary, after_save
        self.learned = LearnedScores(library, model)
        self.pending: list[TrackResult] = []
        self.last = time.monotonic()

    def add(self, result: TrackResult) -> None:
        if self.library.lock is not None:  # a scan whose writer lock is gone stops now, in one line
            self.library.lock.check()
        self.pending.append(result)
        if len(self.pending) >= COMMIT_EVERY_TRACKS or time.monotonic() - self.last > COMMIT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        batch, self.last = self.pending, time.monotonic()
        if not batch:
            return
        unsaved = dict(self.library.save([r for r in batch if not r.retry], self.model, self.learned or None))
        self.pending = []
        s = self.summary
        for r in batch:
            error = r.error or unsaved.get(r.path)
            if error:
                s.failed.append((r.path, error))
            else:
                s.scanned += 1
                s.audio_s += r.duration_s or 0.0
        if self.after_save is not None:
            stored = [r for r in batch if not r.error and not r.retry and r.path not in unsaved]
            if stored:
                self.after_save(self.library, stored)


@dataclass
class _Run:
    """One scan, once its options are checked and its model file is read (its weights are
    loaded, and torch or OpenVINO imported, only once the plan has files to score)."""
    roots: Sequence[str]
    db: str
    options: ScanOptions
    card: ModelCard
    stats: EngineStats
    started: float  # perf_counter at the start
    on_progress: Callable[[ScanProgress], None] | None = None
    on_plan: Callable[[ScanPlan], None] | None = None
    after_save: AfterSave | None = None
    on_workers: Callable[[list[int]], None] | None = None


def scan(roots: Sequence[str], db: str, options: ScanOptions,
         on_progress: Callable[[ScanProgress], None] | None = None,
         on_plan: Callable[[ScanPlan], None] | None = None,
         after_save: AfterSave | None = None,
         on_workers: Callable[[list[int]], None] | None = None) -> ScanSummary:
    """Scan ``roots`` into the database ``db``. Raises TaggerError for problems with the
    model, device or database; problems with single files are recorded and counted.
    ``on_progress`` hears of each file done, ``on_plan`` gets the plan, ``after_save`` the
    results of each commit, ``on_workers`` the decode processes' PIDs."""
    from tagger.store.db import db_exists

    started = time.perf_counter()
    for root in roots:  # before anything is opened: an unmounted drive must not mark its tracks missing
        if not os.path.exists(os.path.expanduser(str(root))):
            raise UsageError(root, "no such file or folder", "nothing was scanned or changed")
    check_options(options)
    card = read_card(options.model)
    stats = EngineStats(device=options.device, precision=options.precision, runtime=options.runtime)
    if options.dry_run:  # read what is stored, if anything, and change nothing
        library = Store(db, create=False) if db_exists(db) else None
        known = library.track_states() if library else {}
        stored = library.find_model(card.sha256) if library else None
        plan = plan_scan(known, roots, stored.id if stored else None, options.force, options.include_hidden)
        if on_plan:
            on_plan(plan)
        return ScanSummary(plan=plan, model_name=card.name, engine_stats=stats,
                           elapsed_s=time.perf_counter() - started)
    run = _Run(roots, db, options, card, stats, started, on_progress, on_plan, after_save, on_workers)
    with contextlib.ExitStack() as session:
        if options.scan_engine == "ray":
            from tagger.engine.ray_engine import ray_session

            session.enter_context(ray_session(options))
        return _scan_into(run)


def _scan_into(run: _Run) -> ScanSummary:
    options = run.options
    library = Store(run.db, check=True)
    with library.writing(shared=True), Claims(library.sql_engine) as claims:
        stored = library.ensure_model(run.card, run.card.embedding_size)
        planned_at = time.time()  # what another scanner stores after this, it stored for us too
        known = library.track_states()
        plan = plan_scan(known, run.roots, stored.id, options.force, options.include_hidden)
        summary = ScanSummary(plan=plan, model_name=run.card.name, engine_stats=run.stats)
        if run.on_plan:
            run.on_plan(plan)
        path_of = {s.id: s.path for s in known.values()}
        library.delete_tracks(plan.duplicates)
        library.move(plan.moved)
        library.set_mtimes(plan.touched)
        library.set_missing([(i, path_of[i]) for i in plan.missing])
        library.set_status(plan.back, "ok")
        summary.metadata_read = _read_metadata_backlog(library, plan)
        committer = _Committer(library, stored, summary, run.after_save)
        for f, reason in plan.bad_names:
            committer.add(TrackResult(f.path, f.size, f.mtime_ns, error=reason))
        try:
            if plan.todo:
                scoring = _Scoring(library, claims, stored, plan, run, planned_at)
                total = len(plan.todo)
                for done, result in enumerate(scoring.results(committer), 1):
                    committer.add(result)
                    if run.on_progress:
                        run.on_progress(ScanProgress(done, total, summary.audio_s, result.path, result.error))
                summary.done_by_others = scoring.done_by_others
                summary.left_to_others = len(scoring.held_by_others)
        except KeyboardInterrupt:
            summary.interrupted = True
            committer.flush()  # whatever finished is kept
        except BaseException:
            try:
                committer.flush()
            except Exception:
                pass  # the first error is the one to report
            raise
        else:
            committer.flush()
    summary.elapsed_s = time.perf_counter() - run.started
    return summary


class _Scoring:
    """The files of a plan through the engine, in rounds of claimed files.

    Each round claims what it can of the files still to do (never waiting for a claim), drops
    those another scanner stored since the plan, scores the rest, commits them and only then
    releases their claims. Files another scanner holds are tried again in later rounds; those
    still held when nothing else is left are left to it (its claim goes when its session does:
    a scanner that died gives its files back to whoever comes next). On SQLite, the only
    writer, it is one round of every file, as before."""

    def __init__(self, library: Store, claims: Claims, stored: StoredModel, plan: ScanPlan, run: _Run,
                 started_at: float) -> None:
        options = run.options
        self.library, self.claims, self.stored, self.options, self.run = library, claims, stored, options, run
        self.started_at = started_at
        self.todo = list(plan.todo)
        self.done_by_others = 0
        self.held_by_others: list[str] = []
        self.one_round = not claims.shared
        # Ray: one pipeline (actor pool, model loads) per round, so rounds are larger; capped, as
        # every claim is a lock in the server's shared lock table (~6,400 by default)
        self.round_cap = RAY_CLAIM_ROUND if options.scan_engine == "ray" else CLAIM_ROUND
        # one model runner for every round, sized (compile or not) by the whole plan; made here,
        # once the plan has files to score, so that a scan with nothing to do loads no model
        self._runner = None if options.scan_engine == "ray" else open_runner(run.card, options, len(self.todo),
                                                                              run.stats)

    def results(self, committer: _Committer) -> Iterator[TrackResult]:
        """Every result this scanner scores (consumed by ``committer``, which each round commits)."""
        while self.todo:
            claimed, waiting = self._claim_round()
            if not claimed:  # all that is left is held by other scanners, alive: theirs to store
                fresh = self._not_stored(waiting)
                self.done_by_others += len(waiting) - len(fresh)
                self.held_by_others = [f.path for f in fresh]
                return
            fresh = self._not_stored(claimed)
            self.done_by_others += len(claimed) - len(fresh)
            self.todo = waiting
            if fresh:
                yield from _score(fresh, self.run, self._runner)
                committer.flush()  # committed before the claims go; if it fails, closing Claims frees them
            self.claims.release([f.path for f in claimed])

    def _claim_round(self) -> tuple[list[FoundFile], list[FoundFile]]:
        """(claimed, not claimed): up to about a round's worth of files claimed, in plan order,
        passing over those other scanners hold."""
        size = len(self.todo) if self.one_round else min(self.round_cap, max(MIN_ROUND, -(-len(self.todo) // 4)))
        claimed: list[FoundFile] = []
        start = 0
        while start < len(self.todo) and len(claimed) < size:
            part = self.todo[start:start + size - len(claimed)]
            start += len(part)
            mine = set(self.claims.try_claim([f.path for f in part]))
            claimed += [f for f in part if f.path in mine]
        got = {f.path for f in claimed}
        return claimed, [f for f in self.todo if f.path not in got]

    def _not_stored(self, files: list[FoundFile]) -> list[FoundFile]:
        """``files`` as they are on disk now (with --write-tags another scanner may have
        rewritten one since the plan), but those another scanner stored (SQLite: no other)."""
        if not self.claims.shared:
            return files
        rows = {r.path: r for r in self.library.tracks_at([f.path for f in files])}
        now = [_as_now(f) for f in files]
        return [f for f in now if not self._done(f, rows.get(f.path))]

    def _done(self, f: FoundFile, row) -> bool:
        """Whether another scanner stored ``f`` (as it is now) since this one planned."""
        if row is None or row.size != f.size or row.mtime_ns != f.mtime_ns or row.status == "missing":
            return False
        if row.status != "failed" and row.model_id != self.stored.id:
            return False  # stored by a scanner with another model: ours still has to score it
        if row.scanned_at is not None and row.scanned_at >= self.started_at:
            return True
        return not self.options.force and (row.status == "failed" or row.model_id == self.stored.id)


def _as_now(f: FoundFile) -> FoundFile:
    try:
        st = os.stat(f.path)
    except OSError:
        return f  # gone or unreadable since the plan: the engine records what happens
    return FoundFile(f.path, st.st_size, st.st_mtime_ns)


def _read_metadata_backlog(library: Store, plan: ScanPlan) -> int:
    """Tracks under the scanned folders that were scanned before the database kept file
    metadata get it read now, once, without being scored again; the files to score get theirs
    from the decoders. Measured 0.6 ms a file on local disk, 0.4 with threads (tag reads wait
    on I/O; more so on a NAS), so a 100,000-track library takes about a minute, once."""
    from concurrent.futures import ThreadPoolExecutor

    from tagger.audio.discover import under
    from tagger.files.tagfile import read_track_metadata

    todo = {f.path for f in plan.todo}
    here = [(i, p) for i, p in library.metadata_backlog() if p not in todo and under(p, plan.roots)
            and os.path.exists(p)]
    with ThreadPoolExecutor(8) as pool:
        for start in range(0, len(here), 500):
            part = here[start:start + 500]
            library.set_metadata(list(zip((i for i, _ in part), pool.map(read_track_metadata, (p for _, p in part)))))
    return len(here)


def _score(files: Sequence[FoundFile], run: _Run, runner: Runner) -> Iterator[TrackResult]:
    """The scan engine the options ask for, as one stream of TrackResults: exactly one per
    file. ``runner``: the local engine's, made once for every round (None for Ray)."""
    if run.options.scan_engine == "ray":
        from tagger.engine.ray_engine import score_files_ray

        return score_files_ray(files, CardModel(run.card), run.options, run.stats)
    from tagger.engine.decode import default_workers
    from tagger.engine.engine import score_files

    workers = run.options.workers
    run.stats.workers = default_workers(run.stats.device.split(":")[0]) if workers is None else workers
    return score_files(files, runner, run.options.chunks, run.stats.workers, run.stats, run.on_workers)
