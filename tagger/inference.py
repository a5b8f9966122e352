"""Tagging one waveform or one file: cut chunks, run the model in batches, average.

The library scan (a later layer) batches chunks across many tracks; this module is the
single-file path and the reference for what a track's scores mean: the mean over its chunks of
the per-chunk sigmoid outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from tagger.audio import decode
from tagger.errors import UsageError
from tagger.tagmodel import TagModel


@dataclass
class TrackScores:
    """A track's mean tag probabilities ``[n_tags]`` and mean embedding ``[embedding_size]``."""
    probabilities: np.ndarray
    embedding: np.ndarray
    duration_s: float
    n_chunks: int


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


def resolve_device(device: str) -> torch.device:
    """``auto`` → the first CUDA device if there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(None, f"unknown device {device!r}", "use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(None, "CUDA is not available on this machine", "use --device cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(None, f"unsupported device {device!r}", "use auto, cpu, cuda or cuda:N")
    return dev


@torch.inference_mode()
def score_chunks(model: TagModel, chunks: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """chunks ``[N, chunk]`` → (probabilities ``[N, n_tags]``, embeddings ``[N, E]``)."""
    device = next(model.parameters()).device
    probs, embs = [], []
    for i in range(0, len(chunks), batch_size):
        x = torch.from_numpy(chunks[i:i + batch_size]).to(device)
        p, e = model.scores(x)
        probs.append(p.float().cpu())
        embs.append(e.float().cpu())
    return torch.cat(probs).numpy(), torch.cat(embs).numpy()


def tag_waveform(model: TagModel, samples: np.ndarray, n_chunks: int | None = None,
                 batch_size: int = 64) -> TrackScores:
    """samples ``[T]`` float32 mono at ``model.card.sample_rate`` → the track's scores."""
    card = model.card
    chunks = cut_chunks(samples, card.chunk_samples, n_chunks)
    probs, embs = score_chunks(model, chunks, batch_size)
    return TrackScores(probs.mean(axis=0), embs.mean(axis=0), samples.shape[0] / card.sample_rate,
                       len(chunks))


def tag_file(model: TagModel, path: str | os.PathLike[str], n_chunks: int | None = None,
             batch_size: int = 64) -> TrackScores:
    """Decode ``path`` and tag it; raises DecodeError for files that cannot be read."""
    return tag_waveform(model, decode(path, model.card.sample_rate), n_chunks, batch_size)
