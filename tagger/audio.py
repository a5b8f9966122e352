"""Decoding: soundfile (libsndfile) first, PyAV (FFmpeg) for what libsndfile cannot read and as
a fallback; downmix to mono; resample with soxr. This is the only module that opens audio."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tagger.errors import DecodeError


@contextmanager
def _c_stderr_silenced():
    """libmpg123 inside libsndfile prints resync notes straight to fd 2 on damaged MP3s;
    the user gets our one-line error instead."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _soundfile(path: Path) -> tuple[np.ndarray, int]:
    with _c_stderr_silenced():
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), sr


def _pyav(path: Path) -> tuple[np.ndarray, int]:
    import av  # imported late: it loads FFmpeg's libraries, which most files never need

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        # float planar keeps every channel; we downmix ourselves, the same way as soundfile
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.rate)
        parts = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray())
        for out in resampler.resample(None):
            parts.append(out.to_ndarray())
        if not parts:
            raise ValueError("no audio frames decoded")
        return np.concatenate(parts, axis=1).mean(axis=0).astype(np.float32), stream.rate


def _reason(e: BaseException, path: Path) -> str:
    """The backend's own short reason, without the path it repeats."""
    text = getattr(e, "error_string", None) or getattr(e, "strerror", None) or str(e)
    text = text.replace(f"'{path}'", "").replace(str(path), "").strip(" :.")
    if "is not a regular file" in text:  # libsndfile's words for a format it does not know
        text = "format not recognised"
    return (text.splitlines()[0] if text else type(e).__name__)[:160]


def decode(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray:
    """The whole file as mono float32 samples at ``sample_rate``: ``[T]``.

    Raises DecodeError naming the file and every backend's reason.
    """
    path = Path(path)
    if not path.exists():
        raise DecodeError(path, "no such file")
    if path.is_dir():
        raise DecodeError(path, "is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise DecodeError(path, "permission denied")
    if path.stat().st_size == 0:
        raise DecodeError(path, "empty file (0 bytes)")
    reasons = []
    for name, backend in (("soundfile", _soundfile), ("pyav", _pyav)):
        try:
            samples, sr = backend(path)
            break
        except Exception as e:  # each backend fails in its own ways; keep them all for the message
            reasons.append(f"{name}: {_reason(e, path)}")
    else:
        raise DecodeError(path, "cannot decode audio (" + "; ".join(reasons) + ")",
                          "not an audio file, or damaged")
    if samples.size == 0:
        raise DecodeError(path, "contains no audio samples")
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    if sr != sample_rate:
        samples = soxr.resample(samples, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)
