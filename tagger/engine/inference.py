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

from tagger.audio.chunks import cut_chunks
from tagger.audio.decode import RESTART, ChunkReader
from tagger.engine.runner import ModelRunner
from tagger.errors import UsageError
from tagger.model.tagmodel import TagModel


@dataclass
class TrackScores:
    """A track's mean tag probabilities ``[n_tags]`` and mean embedding ``[embedding_size]``."""
    probabilities: np.ndarray
    embedding: np.ndarray
    duration_s: float
    n_chunks: int


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


def score_chunks(model: TagModel, chunks: np.ndarray, batch_size: int = 64,
                 runner: ModelRunner | None = None) -> tuple[np.ndarray, np.ndarray]:
    """chunks ``[N, chunk]`` → (probabilities ``[N, n_tags]``, embeddings ``[N, E]``), with
    ``runner`` if given (e.g. a compiled one), else an eager one."""
    runner = runner or ModelRunner(model, min(batch_size, len(chunks)))
    batch_size = runner.batch_size
    parts = [runner(chunks[i:i + batch_size]) for i in range(0, len(chunks), batch_size)]
    return np.concatenate([p for p, _ in parts]), np.concatenate([e for _, e in parts])


def tag_waveform(model: TagModel, samples: np.ndarray, n_chunks: int | None = None,
                 batch_size: int = 64) -> TrackScores:
    """samples ``[T]`` float32 mono at ``model.card.sample_rate`` → the track's scores."""
    card = model.card
    chunks = cut_chunks(samples, card.chunk_samples, n_chunks)
    probs, embs = score_chunks(model, chunks, batch_size)
    return TrackScores(probs.mean(axis=0), embs.mean(axis=0), samples.shape[0] / card.sample_rate,
                       len(chunks))


def tag_file(model: TagModel, path: str | os.PathLike[str], n_chunks: int | None = None,
             batch_size: int = 64, runner: ModelRunner | None = None) -> TrackScores:
    """Read the chunks of ``path`` the way a library scan does (``audio.ChunkReader``: seeks or
    streaming) and tag it, scoring blocks as they come so that memory does not grow with the
    track; raises DecodeError for files that cannot be read."""
    card = model.card
    runner = runner or ModelRunner(model, batch_size)
    reader = ChunkReader(path, card.sample_rate, card.chunk_samples, n_chunks)
    probs = np.zeros(len(card.tags))
    embs = np.zeros(model.embedding_size)
    n = 0
    for block in reader:
        if block is RESTART:
            probs[:], embs[:], n = 0.0, 0.0, 0
            continue
        for i in range(0, len(block), runner.batch_size):
            p, e = runner(block[i:i + runner.batch_size])
            probs += p.sum(axis=0, dtype=np.float64)
            embs += e.sum(axis=0, dtype=np.float64)
            n += len(p)
    return TrackScores((probs / n).astype(np.float32), (embs / n).astype(np.float32), reader.duration_s, n)
