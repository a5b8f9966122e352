"""Stage 3, batch: chunks of many tracks packed into fixed-size model batches."""

from __future__ import annotations

from collections import deque

import numpy as np


class Batcher:
    """Queues chunk blocks per track ``slot`` and hands out batches of exactly ``size`` rows
    (the last one may be smaller), each with the slot of every row."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._queue: deque[tuple[int, np.ndarray]] = deque()  # (slot, chunks not yet batched)
        self.queued = 0

    def add(self, slot: int, chunks: np.ndarray) -> None:
        if len(chunks):
            self._queue.append((slot, chunks))
            self.queued += len(chunks)

    def drop(self, slot: int) -> None:
        """Forget the queued chunks of ``slot`` (its file is being read again, or failed)."""
        kept = deque((s, c) for s, c in self._queue if s != slot)
        self.queued = sum(len(c) for _, c in kept)
        self._queue = kept

    def full(self) -> bool:
        return self.queued >= self.size

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``size`` rows, oldest first → (chunks ``[n, T]``, owners ``[n]`` int64)."""
        parts, owners, taken = [], [], 0
        while taken < self.size and self._queue:
            slot, chunks = self._queue[0]
            take = min(len(chunks), self.size - taken)
            parts.append(chunks[:take])
            owners.append(np.full(take, slot, dtype=np.int64))
            taken += take
            if take == len(chunks):
                self._queue.popleft()
            else:
                self._queue[0] = (slot, chunks[take:])
        self.queued -= taken
        return np.concatenate(parts), np.concatenate(owners)
