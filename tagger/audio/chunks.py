"""Where a track's 3 s chunks come from: the one rule shared by decoding, tagging and scanning."""

from __future__ import annotations

import numpy as np


def chunk_starts(n_samples: int, chunk: int, n_chunks: int | None = None) -> list[int]:
    """Start offsets of the chunks cut from a track of ``n_samples``.

    ``n_chunks=None`` ("all"): non-overlapping chunks from the start, plus one chunk aligned to
    the end when the leftover tail is at least half a chunk. ``n_chunks=N``: N chunks evenly
    spaced over the track (fewer when the track does not hold N without overlap).
    """
    if n_samples <= chunk:
        return [0]
    full = n_samples // chunk
    starts = [i * chunk for i in range(full)]
    if n_samples - full * chunk >= chunk // 2:
        starts.append(n_samples - chunk)
    if n_chunks is None or n_chunks >= len(starts):
        return starts
    return [int(round(s)) for s in np.linspace(0, n_samples - chunk, n_chunks)]


def cut_chunks(samples: np.ndarray, chunk: int, n_chunks: int | None = None) -> np.ndarray:
    """``[T]`` → ``[N, chunk]``. A track shorter than one chunk is repeated to fill it, as
    musicnn padded its short training clips (silence would shift the scores)."""
    if samples.shape[0] < chunk:
        reps = -(-chunk // max(samples.shape[0], 1))
        samples = np.tile(samples, reps)[:chunk]
    return np.stack([samples[s:s + chunk] for s in chunk_starts(samples.shape[0], chunk, n_chunks)])
