"""The stages together: files in, a stream of TrackResults out (see the package docstring)."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from tagger.audio.discover import FoundFile
from tagger.engine.aggregate import Aggregator
from tagger.engine.batch import Batcher
from tagger.engine.decode import start_decoding
from tagger.engine.events import Chunks, Done, Failed, Restart, Started
from tagger.engine.results import EngineStats, ModelOutput, TrackResult, scored
from tagger.engine.runtime import Pending, Runner


def score_files(files: Sequence[FoundFile], runners: Runner | Sequence[Runner], n_chunks: int | None,
                workers: int, stats: EngineStats | None = None,
                on_workers: Callable[[list[int]], None] | None = None) -> Iterator[TrackResult]:
    """Decode ``files`` in ``workers`` processes (0: here), score their chunks with every one of
    ``runners`` (``n_chunks`` evenly spaced per track, None: all; each file is decoded once and
    each batch goes to the models back to back) and yield one TrackResult per file, in the
    order they finish, with one output per runner in their order. Every file yields exactly one
    result: its scores, or its error. ``stats`` is filled in as it runs; ``on_workers`` gets the
    decode processes' PIDs. The runners' models share one audio format (the scan checks)."""
    stats = stats if stats is not None else EngineStats()
    runners = [runners] if hasattr(runners, "submit") else list(runners)
    card = runners[0].model.card
    batcher = Batcher(runners[0].batch_size)
    aggs = [Aggregator(len(r.model.card.tags), r.model.embedding_size) for r in runners]
    slots = itertools.count()
    slot_of: dict[int, int] = {}  # file index → the slot its chunks are counted under now
    file_of: dict[int, int] = {}  # slot → file index
    ends: dict[int, Done] = {}  # slot → its file's Done event, while its chunks are still out
    in_flight: deque[tuple[list[Pending], np.ndarray]] = deque()

    def open_slot(i: int) -> None:
        slot = next(slots)
        slot_of[i], file_of[slot] = slot, i
        for agg in aggs:
            agg.open(slot)

    def close_slot(i: int) -> None:
        slot = slot_of.pop(i)
        batcher.drop(slot)
        for agg in aggs:
            agg.drop(slot)
        file_of.pop(slot)
        ends.pop(slot, None)

    def finish(slot: int) -> TrackResult:
        outputs = []
        for agg in aggs:
            probs, emb, n = agg.pop(slot)
            outputs.append(ModelOutput(probs, emb))
        i = file_of.pop(slot)
        del slot_of[i]
        result = scored(files[i], ends.pop(slot), outputs, n)
        stats.chunks += result.chunks
        return result

    def collect(keep: int) -> Iterator[TrackResult]:
        """Read results back until at most ``keep`` batches are still on the device."""
        while len(in_flight) > keep:
            pendings, owners = in_flight.popleft()
            complete = None
            for agg, pending in zip(aggs, pendings):
                probs, embs = pending.result()
                done = agg.add(owners, probs, embs)
                complete = done if complete is None else [s for s in complete if s in done]
            for slot in complete:  # (every model has the same rows back: they had the same batches)
                if slot in ends:
                    yield finish(slot)

    def run(flush: bool = False) -> Iterator[TrackResult]:
        while batcher.full() or (flush and batcher.queued):
            chunks, owners = batcher.take()
            in_flight.append(([runner.submit(chunks) for runner in runners], owners))
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
            i = event.file
            if isinstance(event, Started):
                open_slot(i)
            elif isinstance(event, Chunks):
                batcher.add(slot_of[i], event.block)
            elif isinstance(event, Restart):
                close_slot(i)
                open_slot(i)
            elif isinstance(event, Done):
                slot = slot_of[i]
                ends[slot] = event
                if all([agg.decoded(slot, event.n_chunks) for agg in aggs]):
                    yield finish(slot)
            elif isinstance(event, Failed):
                if i in slot_of:
                    close_slot(i)
                f = files[i]
                yield TrackResult(f.path, f.size, f.mtime_ns, error=event.reason)
            else:  # cannot happen: every event type is handled above
                raise TypeError(f"unknown decode event {event!r}")
        yield from run(flush=True)
        yield from collect(0)
        for slot in list(file_of):  # cannot happen unless a stage miscounts: never drop a file silently
            f = files[file_of.pop(slot)]
            yield TrackResult(f.path, f.size, f.mtime_ns, error="internal error: its chunks were miscounted")
    finally:
        decoder.close()
        stats.model_s = sum(r.host_s for r in runners)
        stats.device_busy_s = sum(r.device_s for r in runners)
        stats.worker_peak_rss = max(stats.worker_peak_rss, decoder.peak_rss)
        stats.workers_replaced += decoder.replaced
