"""The stages together: files in, a stream of TrackResults out (see the package docstring)."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from tagger.discover import FoundFile
from tagger.engine.aggregate import Aggregator
from tagger.engine.batch import Batcher
from tagger.engine.decode import start_decoding
from tagger.engine.results import NOT_FINITE, EngineStats, TrackResult
from tagger.runner import ModelRunner, PendingBatch


def score_files(files: Sequence[FoundFile], runner: ModelRunner, n_chunks: int | None, workers: int,
                stats: EngineStats | None = None,
                on_workers: Callable[[list[int]], None] | None = None) -> Iterator[TrackResult]:
    """Decode ``files`` in ``workers`` processes (0: here), score their chunks with ``runner``
    (``n_chunks`` evenly spaced per track, None: all) and yield one TrackResult per file, in
    the order they finish. Every file yields exactly one result: its scores, or its error.
    ``stats`` is filled in as it runs; ``on_workers`` gets the decode processes' PIDs."""
    stats = stats if stats is not None else EngineStats()
    card = runner.model.card
    batcher = Batcher(runner.batch_size)
    agg = Aggregator(len(card.tags), runner.model.embedding_size)
    slots = itertools.count()
    slot_of: dict[int, int] = {}  # file index → the slot its chunks are counted under now
    file_of: dict[int, int] = {}  # slot → file index
    meta: dict[int, tuple] = {}  # slot → (duration_s, format, fingerprint, metadata)
    in_flight: deque[tuple[PendingBatch, np.ndarray]] = deque()

    def open_slot(i: int) -> None:
        slot = next(slots)
        slot_of[i], file_of[slot] = slot, i
        agg.open(slot)

    def close_slot(i: int) -> None:
        slot = slot_of.pop(i)
        batcher.drop(slot)
        agg.drop(slot)
        file_of.pop(slot)
        meta.pop(slot, None)

    def finish(slot: int) -> TrackResult:
        probs, emb, n = agg.pop(slot)
        i = file_of.pop(slot)
        del slot_of[i]
        duration, fmt, fp, tags = meta.pop(slot)
        f = files[i]
        if not (np.isfinite(probs).all() and np.isfinite(emb).all()):
            return TrackResult(f.path, f.size, f.mtime_ns, fp, fmt, duration, error=NOT_FINITE, metadata=tags)
        stats.chunks += n
        return TrackResult(f.path, f.size, f.mtime_ns, fp, fmt, duration, n, probs, emb, metadata=tags)

    def collect(keep: int) -> Iterator[TrackResult]:
        """Read results back until at most ``keep`` batches are still on the device."""
        while len(in_flight) > keep:
            pending, owners = in_flight.popleft()
            probs, embs = pending.result()
            for slot in agg.add(owners, probs, embs):
                if slot in meta:
                    yield finish(slot)

    def run(flush: bool = False) -> Iterator[TrackResult]:
        while batcher.full() or (flush and batcher.queued):
            chunks, owners = batcher.take()
            in_flight.append((runner.submit(chunks), owners))
            yield from collect(1)  # one batch stays in flight while the next is packed

    decoder = start_decoding(files, card.sample_rate, card.chunk_samples, n_chunks, workers)
    try:
        if on_workers:
            on_workers(decoder.pids())
        events = decoder.events()
        while True:
            yield from run()
            t0 = time.perf_counter()
            event = next(events, None)
            stats.wait_s += time.perf_counter() - t0
            if event is None:
                break
            kind, i = event[0], event[1]
            if kind == "start":
                open_slot(i)
            elif kind == "chunks":
                batcher.add(slot_of[i], event[2])
            elif kind == "restart":
                close_slot(i)
                open_slot(i)
            elif kind == "done":
                slot = slot_of[i]
                meta[slot] = (*event[2:5], event[6])
                if agg.decoded(slot, event[5]):
                    yield finish(slot)
            else:  # failed, died
                if i in slot_of:
                    close_slot(i)
                f = files[i]
                yield TrackResult(f.path, f.size, f.mtime_ns, error=event[2])
        yield from run(flush=True)
        yield from collect(0)
        for slot in list(file_of):  # cannot happen unless a stage miscounts: never drop a file silently
            f = files[file_of.pop(slot)]
            yield TrackResult(f.path, f.size, f.mtime_ns, error="internal error: its chunks were miscounted")
    finally:
        decoder.close()
        stats.model_s, stats.device_busy_s = runner.host_s, runner.device_s
        stats.worker_peak_rss = max(stats.worker_peak_rss, decoder.peak_rss)
        stats.workers_replaced += decoder.replaced
