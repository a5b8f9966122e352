"""What the decode stage says about each file, as typed events (tagger.engine.decode explains
when each comes). They cross a process boundary pickled, so they live here, in a module that
a decode worker (run as ``__main__``) and the scan both import by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Union

if TYPE_CHECKING:
    import numpy as np


class Started(NamedTuple):
    file: int  # the index of the file in the list being decoded


class Chunks(NamedTuple):
    file: int
    block: np.ndarray  # float32 [k, chunk]


class Restart(NamedTuple):
    """Forget the file's chunks so far: a decoder fell back to another, which starts again."""
    file: int


class Done(NamedTuple):
    file: int
    duration_s: float
    format: str | None
    fingerprint: str | None
    n_chunks: int  # how many Chunks rows the file gave, in all
    metadata: dict | None  # the file's own title, artist, … (files.tagfile.read_track_metadata)


class Failed(NamedTuple):
    file: int
    reason: str


DecodeEvent = Union[Started, Chunks, Restart, Done, Failed]


class PeakRss(NamedTuple):
    """A worker's peak memory, for the pool (not an event of a file)."""
    bytes: int
