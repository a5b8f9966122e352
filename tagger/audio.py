"""Decoding: soundfile (libsndfile) first, PyAV (FFmpeg) for what libsndfile cannot read and as
a fallback; downmix to mono; resample with soxr. This is the only module that opens audio."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tagger.chunks import chunk_starts, cut_chunks
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


def _check_readable(path: Path) -> Path:
    if not path.exists():
        raise DecodeError(path, "no such file")
    if path.is_dir():
        raise DecodeError(path, "is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise DecodeError(path, "permission denied")
    if path.stat().st_size == 0:
        raise DecodeError(path, "empty file (0 bytes)")
    return path


def decode(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray:
    """The whole file as mono float32 samples at ``sample_rate``: ``[T]``.

    Raises DecodeError naming the file and every backend's reason.
    """
    path = _check_readable(Path(path))
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


@dataclass
class DecodedChunks:
    chunks: np.ndarray  # [N, chunk_samples] float32
    duration_s: float
    format: str


def _format_name(path: Path, fallback: str) -> str:
    ext = path.suffix.lower().lstrip(".")
    return ext if ext and len(ext) <= 5 else fallback.lower()


def _seek_chunks(path: Path, sample_rate: int, chunk: int, n_chunks: int) -> DecodedChunks | None:
    """Read only the N chunks, with libsndfile's sample-exact seeks; None when the file is
    short enough that reading it whole is as cheap, or libsndfile cannot open it."""
    try:
        with _c_stderr_silenced(), sf.SoundFile(str(path)) as f:
            sr, frames = f.samplerate, f.frames
            if frames <= 0 or not f.seekable():
                return None
            total = int(round(frames * sample_rate / sr))
            starts = chunk_starts(total, chunk, n_chunks)
            if len(starts) >= total // chunk:  # wants (nearly) every chunk: decode it whole
                return None
            src_len = int(np.ceil(chunk * sr / sample_rate)) + 16
            out = np.zeros((len(starts), chunk), dtype=np.float32)
            for i, start in enumerate(starts):
                f.seek(min(int(start * sr / sample_rate), frames - 1))
                seg = f.read(src_len, dtype="float32", always_2d=True)
                if len(seg) < src_len:  # MP3 frame counts are estimates: align to the real end
                    f.seek(max(0, f.tell() - src_len))
                    seg = f.read(src_len, dtype="float32", always_2d=True)
                seg = seg.mean(axis=1)
                if sr != sample_rate:
                    seg = soxr.resample(seg, sr, sample_rate, quality="HQ")
                seg = seg[:chunk]
                out[i, :len(seg)] = seg
            fmt = "opus" if f.subtype == "OPUS" else f.format
            return DecodedChunks(out, frames / sr, _format_name(path, fmt))
    except Exception:  # anything odd: the whole-file path below reports it properly
        return None


def decode_chunks(path: str | os.PathLike[str], sample_rate: int, chunk: int,
                  n_chunks: int | None) -> DecodedChunks:
    """The chunks of one file that the model will see: ``n_chunks`` evenly spaced ones (None:
    all). Seeks where libsndfile can (WAV, FLAC, Ogg, MP3…); decodes whole elsewhere (PyAV's
    seeks in MP3/Opus/M4A are not sample-accurate)."""
    path = _check_readable(Path(path))
    if n_chunks is not None:
        seeked = _seek_chunks(path, sample_rate, chunk, n_chunks)
        if seeked is not None:
            return seeked
    samples = decode(path, sample_rate)
    return DecodedChunks(cut_chunks(samples, chunk, n_chunks), samples.shape[0] / sample_rate,
                         _format_name(path, "audio"))
