"""The library scan: plan what to score, run the engine, store its results as they stream.

    scan()  plan (walk + compare with the database) → mark moved/missing → claims (scanners
            sharing a PostgreSQL database) → the engine's stream of TrackResults → the store,
            committed every second, each track whole, with its learned tags scored

Several models scan together: each file is decoded once and its chunks go to every model that
has still to score it (a model added to a library scores only the files it lacks).

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
from tagger.errors import UsageError, quoted
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
    model_name: str = ""  # the scan's models' names, joined by ", "
    engine_stats: EngineStats = field(default_factory=EngineStats)
    metadata_read: int = 0  # tracks scanned before schema 3 whose file metadata was read now
    done_by_others: int = 0  # planned here, then stored by another scanner of the same database
    left_to_others: int = 0  # still claimed by another scanner at the end: it stores them


AfterSave = Callable[[Store, list[TrackResult]], None]


class _Committer:
    """Collects results and commits them in groups, each stored track with its learned tags
    scored; a track that cannot be stored costs only itself (Store.save isolates it) and is
    reported as failed. Each result comes with the models whose outputs it holds."""

    def __init__(self, library: Store, models: Sequence[StoredModel], summary: ScanSummary,
                 after_save: AfterSave | None) -> None:
        self.library, self.summary, self.after_save = library, summary, after_save
        self.learned = {m.id: learned for m in models for learned in [LearnedScores(library, m)] if learned}
        self.pending: list[tuple[TrackResult, tuple[StoredModel, ...]]] = []
        self.last = time.monotonic()
        self.counted: set[str] = set()  # files in the summary already (Ray scores a file once per model)

    def add(self, result: TrackResult, models: Sequence[StoredModel]) -> None:
        if self.library.lock is not None:  # a scan whose writer lock is gone stops now, in one line
            self.library.lock.check()
        self.pending.append((result, tuple(models)))
        if len(self.pending) >= COMMIT_EVERY_TRACKS or time.monotonic() - self.last > COMMIT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        pending, self.last = self.pending, time.monotonic()
        if not pending:
            return
        by_models: dict[tuple[int, ...], list[TrackResult]] = {}
        models_of: dict[tuple[int, ...], tuple[StoredModel, ...]] = {}
        for r, models in pending:
            key = tuple(m.id for m in models)
            models_of[key] = models
            if not r.retry:
                by_models.setdefault(key, []).append(r)
        unsaved = {}
        for key, results in by_models.items():
            unsaved.update(self.library.save(results, models_of[key], self.learned))
        self.pending = []
        batch = [r for r, _ in pending]
        s = self.summary
        for r in batch:
            if r.path in self.counted:
                continue
            self.counted.add(r.path)
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
    """One scan, once its options are checked and its model files are read (their weights are
    loaded, and torch or OpenVINO imported, only once the plan has files to score)."""
    roots: Sequence[str]
    db: str
    options: ScanOptions
    cards: list[ModelCard]  # in the order asked for, each model once
    asked: list[str]  # their names (or files) as given
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
    """Scan ``roots`` into the database ``db`` with ``options.models``. Raises TaggerError for
    problems with the models, device or database; problems with single files are recorded and
    counted. ``on_progress`` hears of each file done, ``on_plan`` gets the plan, ``after_save``
    the results of each commit, ``on_workers`` the decode processes' PIDs."""
    from tagger.store.db import db_exists

    started = time.perf_counter()
    for root in roots:  # before anything is opened: an unmounted drive must not mark its tracks missing
        if not os.path.exists(os.path.expanduser(str(root))):
            raise UsageError(root, "no such file or folder", "nothing was scanned or changed")
    check_options(options)
    asked, cards = read_cards(options.models)
    stats = EngineStats(device=options.device, precision=options.precision, runtime=options.runtime)
    names = ", ".join(c.name for c in cards)
    if options.dry_run:  # read what is stored, if anything, and change nothing
        library = Store(db, create=False) if db_exists(db) else None
        known = library.track_states() if library else {}
        stored = [library.find_model(c.sha256) if library else None for c in cards]
        plan = plan_scan(known, roots, [m.id if m else None for m in stored], options.force, options.include_hidden)
        if on_plan:
            on_plan(plan)
        return ScanSummary(plan=plan, model_name=names, engine_stats=stats,
                           elapsed_s=time.perf_counter() - started)
    run = _Run(roots, db, options, cards, asked, stats, started, on_progress, on_plan, after_save, on_workers)
    with contextlib.ExitStack() as session:
        if options.scan_engine == "ray":
            from tagger.engine.ray_engine import ray_session

            session.enter_context(ray_session(options))
        return _scan_into(run)


def read_cards(names: Sequence[str]) -> tuple[list[str], list[ModelCard]]:
    """The models asked for, each once (by file hash), in order: (names as given, cards).
    Models that take different audio (rate, chunk length) cannot share one decode: refused."""
    asked: list[str] = []
    cards: list[ModelCard] = []
    for name in names:
        card = read_card(name)
        if all(c.sha256 != card.sha256 for c in cards):
            asked.append(str(name))
            cards.append(card)
    if not cards:
        raise UsageError(None, "no model to scan with", "give --model NAME (tagger models lists them)")
    first = cards[0]
    for card in cards[1:]:
        if (card.sample_rate, card.chunk_samples) != (first.sample_rate, first.chunk_samples):
            raise UsageError(None, f"{quoted(card.name)} takes {card.chunk_samples} samples at {card.sample_rate} Hz "
                             f"and {quoted(first.name)} {first.chunk_samples} at {first.sample_rate} Hz: one scan "
                             "decodes once for all its models", "scan with each of them in a scan of its own")
    return asked, cards


def _scan_into(run: _Run) -> ScanSummary:
    options = run.options
    library = Store(run.db, check=True)
    with library.writing(shared=True), Claims(library.sql_engine) as claims:
        stored = [library.ensure_model(card, card.embedding_size) for card in run.cards]
        planned_at = time.time()  # what another scanner stores after this, it stored for us too
        known = library.track_states()
        plan = plan_scan(known, run.roots, [m.id for m in stored], options.force, options.include_hidden)
        summary = ScanSummary(plan=plan, model_name=", ".join(c.name for c in run.cards), engine_stats=run.stats)
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
            committer.add(TrackResult(f.path, f.size, f.mtime_ns, error=reason), stored)
        try:
            if plan.todo:
                scoring = _Scoring(library, claims, stored, plan, run, planned_at)
                total = sum(len(files) for _, files in scoring.groups)  # (Ray: a file once per model)
                for done, (result, models) in enumerate(scoring.results(committer), 1):
                    committer.add(result, models)
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


def _groups(plan: ScanPlan, stored: Sequence[StoredModel], one_model: bool) -> list[tuple[tuple[int, ...], list[FoundFile]]]:
    """The plan's files by the models they need (positions in ``stored``), every model first:
    each group is one pass of the engine (``one_model``: Ray, a pass per model)."""
    everything = tuple(range(len(stored)))
    groups: dict[tuple[int, ...], list[FoundFile]] = {}
    for f in plan.todo:
        groups.setdefault(plan.only.get(f.path, everything), []).append(f)
    ordered = sorted(groups.items(), key=lambda g: (-len(g[0]), g[0]))
    if one_model:
        ordered = [((k,), files) for ks, files in ordered for k in ks]
    return ordered


class _Scoring:
    """The files of a plan through the engine, in rounds of claimed files.

    Each round claims what it can of the files still to do (never waiting for a claim), drops
    those another scanner stored since the plan, scores the rest, commits them and only then
    releases their claims. Files another scanner holds are tried again in later rounds; those
    still held when nothing else is left are left to it (its claim goes when its session does:
    a scanner that died gives its files back to whoever comes next). On SQLite, the only
    writer, it is one round of every file, as before. Files that lack only some of the scan's
    models (a model added to the library) are a pass of their own, with only those models."""

    def __init__(self, library: Store, claims: Claims, stored: Sequence[StoredModel], plan: ScanPlan, run: _Run,
                 started_at: float) -> None:
        options = run.options
        self.library, self.claims, self.stored, self.options, self.run = library, claims, stored, options, run
        self.started_at = started_at
        self.groups = _groups(plan, stored, options.scan_engine == "ray")
        self.n_files = len(plan.todo)
        self.todo: list[FoundFile] = []
        self.models: tuple[StoredModel, ...] = ()
        self.done_by_others = 0
        self.held_by_others: list[str] = []
        self.one_round = not claims.shared
        # Ray: one pipeline (actor pool, model loads) per round, so rounds are larger; capped, as
        # every claim is a lock in the server's shared lock table (~6,400 by default)
        self.round_cap = RAY_CLAIM_ROUND if options.scan_engine == "ray" else CLAIM_ROUND
        self._runners: dict[int, Runner] = {}  # model position → its runner, made once for every pass

    def _runner(self, k: int) -> Runner:
        """The local engine's runner of model ``k``, sized (compile or not) by the whole plan;
        made once the plan has files for it, so that a scan with nothing to do loads no model."""
        if k not in self._runners:
            stats = self.run.stats
            self._runners[k] = open_runner(self.run.cards[k], self.options, self.n_files, stats)
            stats.per_model[self.run.cards[k].name] = f"{stats.runtime} {stats.precision}"
        return self._runners[k]

    def results(self, committer: _Committer) -> Iterator[tuple[TrackResult, tuple[StoredModel, ...]]]:
        """Every result this scanner scores with the models it holds the outputs of (consumed by
        ``committer``, which each round commits)."""
        for ks, files in self.groups:
            self.todo, self.models = list(files), tuple(self.stored[k] for k in ks)
            runners = None if self.options.scan_engine == "ray" else [self._runner(k) for k in ks]
            held_before = len(self.held_by_others)
            while self.todo:
                claimed, waiting = self._claim_round()
                if not claimed:  # all that is left is held by other scanners, alive: theirs to store
                    fresh = self._not_stored(waiting)
                    self.done_by_others += len(waiting) - len(fresh)
                    self.held_by_others[held_before:] = [f.path for f in fresh]
                    break
                fresh = self._not_stored(claimed)
                self.done_by_others += len(claimed) - len(fresh)
                self.todo = waiting
                if fresh:
                    for result in _score(fresh, self.run, ks, runners):
                        yield result, self.models
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
        scored_by = self.library.model_sets([r.id for r in rows.values()])
        now = [_as_now(f) for f in files]
        return [f for f in now if not self._done(f, rows.get(f.path), scored_by)]

    def _done(self, f: FoundFile, row, scored_by: dict[int, frozenset[int]]) -> bool:
        """Whether another scanner stored ``f`` (as it is now) with this pass's models since
        this one planned."""
        if row is None or row.size != f.size or row.mtime_ns != f.mtime_ns or row.status == "missing":
            return False
        has_all = {m.id for m in self.models} <= scored_by.get(row.id, frozenset())
        if row.status != "failed" and not has_all:
            return False  # stored by a scanner with other models: ours still have to score it
        if row.scanned_at is not None and row.scanned_at >= self.started_at:
            return True
        return not self.options.force and (row.status == "failed" or has_all)


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


def _score(files: Sequence[FoundFile], run: _Run, ks: Sequence[int],
           runners: Sequence[Runner] | None) -> Iterator[TrackResult]:
    """The scan engine the options ask for, as one stream of TrackResults: exactly one per
    file, with the outputs of models ``ks`` (positions in ``run.cards``). ``runners``: the
    local engine's, made once for every round (None for Ray, which runs one model a pass)."""
    if run.options.scan_engine == "ray":
        import dataclasses

        from tagger.engine.ray_engine import score_files_ray

        (k,) = ks  # the name as typed: each Ray node resolves it itself
        options = dataclasses.replace(run.options, models=(run.asked[k],))
        return score_files_ray(files, CardModel(run.cards[k]), options, run.stats)
    from tagger.engine.decode import default_workers
    from tagger.engine.engine import score_files

    workers = run.options.workers
    run.stats.workers = default_workers(run.stats.device.split(":")[0]) if workers is None else workers
    return score_files(files, runners, run.options.chunks, run.stats.workers, run.stats, run.on_workers)

