"""What comes out of the engine: one TrackResult per file, and the engine's own figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from tagger.errors import NOT_FINITE

if TYPE_CHECKING:  # annotations only
    import numpy as np

    from tagger.audio.discover import FoundFile
    from tagger.engine.events import Done


class ModelOutput(NamedTuple):
    """One model's scores of a file: the mean of its chunks."""
    probabilities: np.ndarray  # [n_tags], finite, in [0, 1]
    embedding: np.ndarray  # [embedding_size], finite


@dataclass
class TrackResult:
    """What a scan learnt about one file: each model's scores, or the error that stopped it."""
    path: str
    size: int
    mtime_ns: int
    fingerprint: str | None = None
    format: str | None = None
    duration_s: float | None = None
    chunks: int = 0
    outputs: tuple[ModelOutput, ...] = ()  # one per model run, in the scan's model order
    error: str | None = None
    metadata: dict | None = None  # the file's own title, artist, album, … (tagfile.read_track_metadata)
    retry: bool = False  # the error is the cluster's, not the file's: reported, not stored, tried again next scan


@dataclass
class EngineStats:
    device: str = "cpu"
    workers: int = 0
    threads: int = 0
    compiled: bool = False
    compile_error: str | None = None
    precision: str = "fp32"
    runtime: str = "torch"  # the inference runtime that ran the model: torch or openvino
    notes: list[str] = field(default_factory=list)  # one line each, for the summary (an int8 fallback, an export)
    per_model: dict[str, str] = field(default_factory=dict)  # model name → "runtime precision" it ran with
    chunks: int = 0  # chunks scored
    model_s: float = 0.0  # host time spent submitting batches and waiting for their results
    wait_s: float = 0.0  # time the loop waited for decoded audio
    device_busy_s: float = 0.0  # time the device spent on batches (CUDA events; CPU: = model_s)
    worker_peak_rss: int = 0  # bytes, the largest peak RSS a decode worker reported
    workers_replaced: int = 0  # decode workers that died and were replaced


def scored(f: FoundFile, done: Done, outputs: Sequence[ModelOutput], n_chunks: int) -> TrackResult:
    """The result of a file whose chunks all came back from every model: their mean scores,
    or the NOT_FINITE failure (a non-finite score is never stored)."""
    import numpy as np

    if not all(np.isfinite(o.probabilities).all() and np.isfinite(o.embedding).all() for o in outputs):
        return TrackResult(f.path, f.size, f.mtime_ns, done.fingerprint, done.format, done.duration_s,
                           error=NOT_FINITE, metadata=done.metadata)
    return TrackResult(f.path, f.size, f.mtime_ns, done.fingerprint, done.format, done.duration_s, n_chunks,
                       tuple(outputs), metadata=done.metadata)
