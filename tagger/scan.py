"""Library scan: find audio files, decide what needs scoring, decode in worker processes,
score chunks in fixed-size batches packed across tracks, and store each track's results.

    plan_scan()  walk + compare with the database → what is new, changed, moved, missing
    scan()       runs the plan; progress goes to a callback, the summary is returned

Decoding runs in DataLoader worker processes (``workers=0`` decodes in this process, for
debugging); the main process only packs chunks, runs the model and writes to the database,
so decoding overlaps inference. Finished tracks are committed every second, each in full or
not at all, so an interrupted scan loses only the tracks in flight and the next one resumes.
"""

from __future__ import annotations

import inspect
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tagger.audio import decode_chunks
from tagger.discover import FoundFile, discover, fingerprint, under
from tagger.errors import TaggerError, UsageError
from tagger.inference import resolve_device
from tagger.library import Library, TrackResult, TrackState
from tagger.modelfile import DEFAULT_MODEL, load_model
from tagger.runner import ModelRunner

if TYPE_CHECKING:
    from tagger.writer import WriteOptions

DEFAULT_CHUNKS = 16
COMPILE_MIN_CHUNKS = 4000  # below this a 5–25 s compile costs more than it saves (RESULTS.md)


@dataclass
class ScanOptions:
    model: str = DEFAULT_MODEL
    device: str = "auto"
    batch_size: int = 64
    workers: int | None = None  # None: chosen from the CPU count
    threads: int | None = None  # torch threads on CPU; None: every core
    chunks: int | None = DEFAULT_CHUNKS  # None: every chunk
    force: bool = False
    dry_run: bool = False
    include_hidden: bool = False
    compile: str = "auto"  # auto | yes | no
    write: "WriteOptions | None" = None  # write tags into the files after scoring them


@dataclass
class ScanPlan:
    todo: list[FoundFile]  # new and changed files, to decode and score
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    moved: list[tuple[int, str, int]] = field(default_factory=list)  # (track id, new path, mtime)
    missing: list[int] = field(default_factory=list)  # track ids gone from disk
    back: list[int] = field(default_factory=list)  # tracks marked missing that are here again
    problems: list[tuple[str, str]] = field(default_factory=list)


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
    model_s: float = 0.0  # time in the model (incl. host↔device copies)
    wait_s: float = 0.0  # time the model loop waited for decoded audio
    chunks: int = 0
    compiled: bool = False
    compile_error: str | None = None
    interrupted: bool = False
    written: dict[str, int] = field(default_factory=dict)  # tag-writing outcomes by status
    device: str = "cpu"
    workers: int = 0
    model_name: str = ""


def default_workers(device: torch.device) -> int:
    cpus = os.cpu_count() or 1
    if device.type == "cuda":  # the GPU outruns decoding: decode on every core but one
        return max(1, min(16, cpus - 1))
    # on CPU the model is the bottleneck (decode limit ~7× the scan rate, RESULTS.md)
    return max(1, min(4, cpus // 4))


def plan_scan(known: dict[str, TrackState], roots: Sequence[str], model_id: int | None,
              force: bool = False, include_hidden: bool = False) -> ScanPlan:
    """Compare the files under ``roots`` with the stored tracks ``known`` (path → state);
    ``model_id`` is the scanning model's row (None: not in the database yet)."""
    found = discover(roots, include_hidden)
    roots = [os.path.abspath(os.path.expanduser(str(r))) for r in roots]
    plan = ScanPlan(todo=[], problems=found.problems)
    seen: set[str] = set()
    new: list[FoundFile] = []
    for f in found.files:
        seen.add(f.path)
        state = known.get(f.path)
        if state is None:
            new.append(f)
        elif force or state.size != f.size or state.mtime_ns != f.mtime_ns or (
                state.status != "failed" and state.model_id != model_id):
            plan.todo.append(f)
            plan.changed += 1
        else:
            plan.unchanged += 1
            if state.status == "missing":
                plan.back.append(state.id)
    gone = [s for p, s in known.items() if p not in seen and s.status != "missing"
            and under(p, roots) and not os.path.exists(p)]
    gone_by_size: dict[int, list[TrackState]] = {}
    for s in gone + [s for s in known.values() if s.status == "missing"]:
        if s.fingerprint:
            gone_by_size.setdefault(s.size, []).append(s)
    moved_ids: set[int] = set()
    for f in new:
        candidates = [s for s in gone_by_size.get(f.size, []) if s.id not in moved_ids]
        match = None
        if candidates:
            try:
                fp = fingerprint(f.path, f.size)
                match = next((s for s in candidates if s.fingerprint == fp), None)
            except OSError:
                pass
        if match is not None and not force:
            moved_ids.add(match.id)
            plan.moved.append((match.id, f.path, f.mtime_ns))
            if match.status != "failed" and match.model_id != model_id:
                plan.todo.append(f)  # moved, and scored by another model: score again
        else:
            plan.todo.append(f)
            plan.new += 1
    plan.missing = [s.id for s in gone if s.id not in moved_ids]
    plan.todo.sort(key=lambda f: f.path)
    return plan


class _DecodeDataset(Dataset):
    """Item ``i``: the chunks of file ``i`` or the reason it could not be decoded."""

    def __init__(self, files: Sequence[FoundFile], sample_rate: int, chunk: int, n_chunks: int | None) -> None:
        self.files, self.sample_rate, self.chunk, self.n_chunks = files, sample_rate, chunk, n_chunks

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        f = self.files[i]
        item = {"index": i, "chunks": None, "duration": None, "format": None, "fingerprint": None, "error": None}
        try:
            decoded = decode_chunks(f.path, self.sample_rate, self.chunk, self.n_chunks)
            item.update(chunks=torch.from_numpy(decoded.chunks), duration=decoded.duration_s,
                        format=decoded.format, fingerprint=fingerprint(f.path, f.size))
        except TaggerError as e:
            item["error"] = e.reason
        except (OSError, MemoryError, ValueError, RuntimeError) as e:  # a decoder's own failure
            item["error"] = f"{type(e).__name__}: {e}"[:300]
        return item


def _worker_init(_: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    torch.set_num_threads(1)


def _items(dataset: _DecodeDataset, workers: int):
    if workers == 0:
        return (dataset[i] for i in range(len(dataset)))
    kwargs = {}
    if "in_order" in inspect.signature(DataLoader).parameters:  # torch ≥ 2.6
        kwargs["in_order"] = False  # a slow file must not hold back the ones behind it
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                        prefetch_factor=4, worker_init_fn=_worker_init, **kwargs)
    return iter(loader)


class _Accumulator:
    """Packs chunks of many tracks into model batches and averages each track's results."""

    def __init__(self, runner: ModelRunner, n_tags: int, emb: int) -> None:
        self.runner, self.n_tags, self.emb = runner, n_tags, emb
        self.queue: list[tuple[int, np.ndarray]] = []  # (slot, chunks not yet run)
        self.queued = 0
        self.sums: dict[int, list] = {}  # slot → [prob sum, emb sum, chunks left, chunks total]
        self.model_s = 0.0

    def add(self, slot: int, chunks: np.ndarray) -> list[int]:
        self.sums[slot] = [np.zeros(self.n_tags), np.zeros(self.emb), len(chunks), len(chunks)]
        self.queue.append((slot, chunks))
        self.queued += len(chunks)
        finished = []
        while self.queued >= self.runner.batch_size:
            finished += self._run(self.runner.batch_size)
        return finished

    def flush(self) -> list[int]:
        finished = []
        while self.queued:
            finished += self._run(min(self.queued, self.runner.batch_size))
        return finished

    def _run(self, n: int) -> list[int]:
        parts, owners, taken = [], [], 0
        while taken < n:
            slot, chunks = self.queue[0]
            take = min(len(chunks), n - taken)
            parts.append(chunks[:take])
            owners += [slot] * take
            taken += take
            if take == len(chunks):
                self.queue.pop(0)
            else:
                self.queue[0] = (slot, chunks[take:])
        self.queued -= n
        t0 = time.perf_counter()
        probs, embs = self.runner(np.concatenate(parts))
        self.model_s += time.perf_counter() - t0
        finished = []
        owners = np.asarray(owners)
        for slot in dict.fromkeys(owners.tolist()):
            rows = owners == slot
            acc = self.sums[slot]
            acc[0] += probs[rows].sum(axis=0)
            acc[1] += embs[rows].sum(axis=0)
            acc[2] -= int(rows.sum())
            if acc[2] == 0:
                finished.append(slot)
        return finished

    def result(self, slot: int) -> tuple[np.ndarray, np.ndarray, int]:
        probs, emb, _, total = self.sums.pop(slot)
        return probs / total, emb / total, total


def scan(roots: Sequence[str], db: str, options: ScanOptions,
         on_progress: Callable[[ScanProgress], None] | None = None,
         on_plan: Callable[[ScanPlan], None] | None = None) -> ScanSummary:
    """Scan ``roots`` into the database ``db``. Raises TaggerError for problems with the
    model, device or database; problems with single files are recorded and counted."""
    from tagger.store.db import db_exists, writer_lock

    started = time.perf_counter()
    for root in roots:  # before anything is opened: an unmounted drive must not mark its tracks missing
        if not os.path.exists(os.path.expanduser(str(root))):
            raise UsageError(root, "no such file or folder", "nothing was scanned or changed")
    device = resolve_device(options.device)
    model = load_model(options.model, device)
    workers = default_workers(device) if options.workers is None else options.workers
    if options.dry_run:  # read what is stored, if anything, and change nothing
        library = Library(db, create=False) if db_exists(db) else None
        known = library.track_states() if library else {}
        stored = library.find_model(model.card.sha256) if library else None
        plan = plan_scan(known, roots, stored.id if stored else None, options.force, options.include_hidden)
        if on_plan:
            on_plan(plan)
        return ScanSummary(plan=plan, device=str(device), workers=workers, model_name=model.card.name,
                           elapsed_s=time.perf_counter() - started)
    library = Library(db)
    with writer_lock(db):
        stored = library.ensure_model(model.card, model.embedding_size)
        plan = plan_scan(library.track_states(), roots, stored.id, options.force, options.include_hidden)
        summary = ScanSummary(plan=plan, device=str(device), workers=workers, model_name=model.card.name)
        if on_plan:
            on_plan(plan)
        library.move(plan.moved)
        library.set_status(plan.missing, "missing")
        library.set_status(plan.back, "ok")
        if plan.todo:
            _run(library, stored, model, plan, options, workers, device, summary, on_progress)
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _run(library, stored, model, plan, options, workers, device, summary, on_progress) -> None:
    card = model.card
    per_track = options.chunks or 80  # a 4-minute track when every chunk is used
    compile_ = options.compile == "yes" or (
        options.compile == "auto" and device.type == "cpu" and len(plan.todo) * per_track >= COMPILE_MIN_CHUNKS)
    if device.type == "cpu":
        # decoding needs a fraction of a core per track the model scores (RESULTS.md), so the
        # model gets every core; the decode workers' short bursts overlap it
        torch.set_num_threads(options.threads or os.cpu_count() or 1)
    runner = ModelRunner(model, options.batch_size, compile=compile_)
    summary.compiled, summary.compile_error = runner.compiled, runner.compile_error
    acc = _Accumulator(runner, len(card.tags), model.embedding_size)
    dataset = _DecodeDataset(plan.todo, card.sample_rate, card.chunk_samples, options.chunks)
    meta: dict[int, dict] = {}
    pending: list[TrackResult] = []
    last_flush = time.monotonic()
    done = 0

    def finish(result: TrackResult) -> None:
        nonlocal done, last_flush
        pending.append(result)
        done += 1
        if result.error:
            summary.failed.append((result.path, result.error))
        else:
            summary.scanned += 1
            summary.audio_s += result.duration_s or 0.0
            summary.chunks += result.chunks
        if on_progress:
            on_progress(ScanProgress(done, len(plan.todo), summary.audio_s, result.path, result.error))
        if len(pending) >= 256 or time.monotonic() - last_flush > 1.0:
            save(pending)
            pending.clear()
            last_flush = time.monotonic()

    write_run: int | None = None

    def save(results: list[TrackResult]) -> None:
        nonlocal write_run
        library.save(results, stored)
        ok = [r.path for r in results if not r.error]
        if options.write is not None and ok:  # tags go into files only once their scores are stored
            from tagger.writer import start_write_run, write_tracks
            if write_run is None:  # the whole scan is one run for 'tagger write --undo'
                write_run = start_write_run(library, options.write)
            for outcome in write_tracks(library, library.tracks_at(ok), options.write, run_id=write_run):
                summary.written[outcome.status] = summary.written.get(outcome.status, 0) + 1

    def complete(slots: list[int]) -> None:
        for slot in slots:
            probs, emb, n = acc.result(slot)
            m = meta.pop(slot)
            f = plan.todo[slot]
            finish(TrackResult(f.path, f.size, f.mtime_ns, m["fingerprint"], m["format"], m["duration"],
                               n, probs, emb))

    items = _items(dataset, workers)
    try:
        while True:
            t0 = time.perf_counter()
            item = next(items, None)
            summary.wait_s += time.perf_counter() - t0
            if item is None:
                break
            f = plan.todo[item["index"]]
            if item["error"]:
                finish(TrackResult(f.path, f.size, f.mtime_ns, error=item["error"]))
                continue
            meta[item["index"]] = item
            complete(acc.add(item["index"], item["chunks"].numpy()))
        complete(acc.flush())
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        summary.model_s = acc.model_s
        save(pending)  # whatever finished is kept, even on Ctrl-C
        del items
