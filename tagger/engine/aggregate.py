"""Stage 5, aggregate: a track's scores are the mean of its chunks' probabilities (and its
embedding the mean of their penultimate features), final once decoding has said how many
chunks there were and every one of them has come back from the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class _Track:
    probs: np.ndarray  # float64 sums
    emb: np.ndarray
    returned: int = 0  # rows back from the model
    expected: int | None = None  # rows decoding produced; None while it still runs


class Aggregator:
    def __init__(self, n_tags: int, embedding_size: int) -> None:
        self.n_tags, self.embedding_size = n_tags, embedding_size
        self._tracks: dict[int, _Track] = {}

    def open(self, slot: int) -> None:
        self._tracks[slot] = _Track(np.zeros(self.n_tags), np.zeros(self.embedding_size))

    def drop(self, slot: int) -> None:
        """Forget ``slot``; rows of it still on the device are ignored when they return."""
        self._tracks.pop(slot, None)

    def decoded(self, slot: int, n_chunks: int) -> bool:
        """Decoding of ``slot`` ended with ``n_chunks`` rows; True if it is complete now."""
        track = self._tracks[slot]
        track.expected = n_chunks
        return track.returned == n_chunks

    def add(self, owners: np.ndarray, probs: np.ndarray, embs: np.ndarray) -> list[int]:
        """One batch's rows back from the model → the slots that are complete now."""
        complete = []
        for slot in np.unique(owners).tolist():
            track = self._tracks.get(slot)
            if track is None:
                continue  # dropped while its rows were on the device
            rows = owners == slot
            track.probs += probs[rows].sum(axis=0, dtype=np.float64)
            track.emb += embs[rows].sum(axis=0, dtype=np.float64)
            track.returned += int(rows.sum())
            if track.returned == track.expected:
                complete.append(slot)
        return complete

    def pop(self, slot: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The finished track's mean probabilities ``[n_tags]``, embedding ``[E]`` (float32) and
        chunk count."""
        track = self._tracks.pop(slot)
        n = max(track.returned, 1)
        return (track.probs / n).astype(np.float32), (track.emb / n).astype(np.float32), track.returned

    def __len__(self) -> int:
        return len(self._tracks)
