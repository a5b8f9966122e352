"""Decoding: soundfile (libsndfile) first, PyAV (FFmpeg) for what libsndfile cannot read and as
a fallback; downmix to mono; resample with soxr's streaming resampler. This is the only module
that opens audio, and it never holds a whole long track: audio flows through in blocks."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tagger.audio.chunks import chunk_starts, cut_chunks
from tagger.audio.container import content_format, truncation
from tagger.errors import DecodeError


@contextmanager
def c_stderr_silenced():
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


BLOCK_FRAMES = 1 << 16  # source frames per read: ~1.5 s at 44.1 kHz, a few hundred KB


def _soundfile_blocks(path: Path) -> tuple[Iterator[np.ndarray], int, str]:
    """Mono float32 blocks at the file's own rate, read ``BLOCK_FRAMES`` at a time."""
    with c_stderr_silenced():
        f = sf.SoundFile(str(path))
    fmt = "opus" if f.subtype == "OPUS" else f.format

    def blocks() -> Iterator[np.ndarray]:
        with f:
            while True:
                with c_stderr_silenced():
                    data = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(data):
                    return
                yield data.mean(axis=1)
    return blocks(), f.samplerate, fmt


def _pyav_blocks(path: Path) -> tuple[Iterator[np.ndarray], int, str]:
    """Mono float32 blocks at the stream's own rate, one decoded frame at a time."""
    import av  # imported late: it loads FFmpeg's libraries, which most files never need

    container = av.open(str(path))
    if not container.streams.audio:
        container.close()
        raise ValueError("no audio stream")
    stream = container.streams.audio[0]
    rate = stream.rate
    fmt = (container.format.name or "audio").split(",")[0]

    def blocks() -> Iterator[np.ndarray]:
        # float planar keeps every channel; we downmix ourselves, the same way as soundfile
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=rate)
        with container:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().mean(axis=0).astype(np.float32, copy=False)
            for out in resampler.resample(None):
                yield out.to_ndarray().mean(axis=0).astype(np.float32, copy=False)
    return blocks(), rate, fmt


BACKENDS = (("soundfile", _soundfile_blocks), ("pyav", _pyav_blocks))


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
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read; /dev/zero would never end
        raise DecodeError(path, "is not a regular file (a FIFO, socket or device)", "give an audio file")
    if st.st_size == 0:
        raise DecodeError(path, "empty file (0 bytes)")
    return path


RESTART = None  # in a block stream: discard what came before, the file is being read again
MAX_BUFFER_S = 600.0  # evenly spaced chunks without seeks: up to this much audio is held at once


def _finite_and_clipped(block: np.ndarray, path: Path, offset: int, sr: int) -> np.ndarray:
    """Float formats may hold any value. NaN/inf are damage: the file fails. Values beyond ±1
    are what a player would clip at the DAC, so they are clipped here too; integer formats
    never exceed full scale, and unclipped loud floats overflow musicnn's float16 mel power."""
    if not np.isfinite(block).all():
        first = offset + int(np.flatnonzero(~np.isfinite(block))[0])
        raise DecodeError(path, f"contains non-finite samples (NaN or infinity) near {first / sr:.1f} s",
                          "the file is damaged; re-encode or replace it")
    return np.clip(block, -1.0, 1.0, out=block)


def _stream_from(path: Path, backend, sample_rate: int) -> tuple[Iterator[np.ndarray], str]:
    blocks, sr, fmt = backend(path)

    def resampled() -> Iterator[np.ndarray]:
        stream = soxr.ResampleStream(sr, sample_rate, 1, dtype="float32", quality="HQ") if sr != sample_rate else None
        seen = 0
        for block in blocks:
            block = _finite_and_clipped(np.ascontiguousarray(block, dtype=np.float32), path, seen, sr)
            seen += len(block)
            out = stream.resample_chunk(block, last=False) if stream else block
            if len(out):
                yield out
        if stream:
            tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)
            if len(tail):
                yield tail
    return resampled(), fmt


def stream_samples(path: str | os.PathLike[str], sample_rate: int) -> Iterator[np.ndarray | None]:
    """Mono float32 blocks at ``sample_rate``, in order, without holding the file in memory.

    soundfile first, PyAV next. A backend that fails before its first block hands over
    silently; one that fails later yields ``RESTART`` (None) and the next backend starts
    from the beginning, so a consumer drops what it had. Raises DecodeError naming the file
    and every backend's reason when none can read it.
    """
    path = _check_readable(Path(path))
    reasons = []
    for name, backend in BACKENDS:
        started = False
        try:
            blocks, _ = _stream_from(path, backend, sample_rate)
            for block in blocks:
                started = True
                yield block
            if started:
                return
            reasons.append(f"{name}: no audio samples")
        except DecodeError:
            raise  # damage that another decoder would read the same way
        except Exception as e:  # each backend fails in its own ways; keep them all for the message
            reasons.append(f"{name}: {_reason(e, path)}")
        if started:
            yield RESTART
    if all(r.endswith("no audio samples") for r in reasons):
        raise DecodeError(path, "contains no audio samples")
    raise DecodeError(path, "cannot decode audio (" + "; ".join(reasons) + ")", "not an audio file, or damaged")


def decode(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray:
    """The whole file as mono float32 samples at ``sample_rate``: ``[T]`` (for short clips:
    training data, tests; the library scan streams with ``ChunkReader``)."""
    parts: list[np.ndarray] = []
    for block in stream_samples(path, sample_rate):
        if block is RESTART:
            parts.clear()
        else:
            parts.append(block)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def _format_name(path: Path, fallback: str) -> str:
    """The format from the file's content (an MP3 named .flac is an MP3), else its extension."""
    found = content_format(path)
    if found:
        return found
    ext = path.suffix.lower().lstrip(".")
    return ext if ext and len(ext) <= 5 else fallback.lower()


def _seek_chunks(path: Path, sample_rate: int, chunk: int, n_chunks: int) -> tuple[np.ndarray, float, str] | None:
    """Read only the N chunks, with libsndfile's sample-exact seeks; None when the file is
    short enough that reading it whole is as cheap, or libsndfile cannot open it."""
    try:
        with c_stderr_silenced(), sf.SoundFile(str(path)) as f:
            sr, frames = f.samplerate, f.frames
            if frames <= 0 or not f.seekable():
                return None
            total = int(round(frames * sample_rate / sr))
            starts = chunk_starts(total, chunk, n_chunks)
            if len(starts) >= total // chunk:  # wants (nearly) every chunk: stream it whole
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
                if not np.isfinite(seg).all():
                    return None  # the streaming path names the damage
                seg = np.clip(seg, -1.0, 1.0)
                if sr != sample_rate:
                    seg = soxr.resample(seg, sr, sample_rate, quality="HQ")
                seg = seg[:chunk]
                out[i, :len(seg)] = seg
            fmt = "opus" if f.subtype == "OPUS" else f.format
            return out, frames / sr, _format_name(path, fmt)
    except Exception:  # anything odd: the streaming path below reports it properly
        return None


class ChunkReader:
    """The chunks of one file that the model will see, as a stream of blocks ``[k, chunk]``
    float32 (``RESTART``, None, means: forget the blocks so far). After iterating,
    ``duration_s``, ``format`` and ``chunks`` describe the track.

    ``n_chunks`` evenly spaced chunks (None: all, per ``chunks.chunk_starts``). Memory does not
    grow with the track: libsndfile seeks straight to N chunks where it can (WAV, FLAC, Ogg,
    MP3); every chunk streams through a two-chunk buffer; N chunks from a file that cannot seek
    sample-exactly (M4A, …) hold at most ``MAX_BUFFER_S`` of audio, and a longer file is read
    twice (once to count its samples, once to cut).
    """

    def __init__(self, path: str | os.PathLike[str], sample_rate: int, chunk: int, n_chunks: int | None,
                 block_chunks: int = 16) -> None:
        self.path, self.sample_rate, self.chunk, self.n_chunks = Path(path), sample_rate, chunk, n_chunks
        self.block_chunks = block_chunks
        self.duration_s = 0.0
        self.format = _format_name(self.path, "audio")
        self.chunks = 0

    def __iter__(self) -> Iterator[np.ndarray | None]:
        _check_readable(self.path)
        cut_short = truncation(self.path)
        if cut_short:
            raise DecodeError(self.path, cut_short, "copy or download it again; the part that is there "
                                                    "would be scored as if it were the whole track")
        self.chunks = 0
        if self.n_chunks is not None:
            seeked = _seek_chunks(self.path, self.sample_rate, self.chunk, self.n_chunks)
            if seeked is not None:
                out, self.duration_s, self.format = seeked
                self.chunks = len(out)
                yield out
                return
        cut = self._every_chunk() if self.n_chunks is None else self._evenly_spaced()
        pending: list[np.ndarray] = []
        for item in cut:
            if item is RESTART:
                pending.clear()
                self.chunks = 0
                yield RESTART
                continue
            pending.append(item)
            self.chunks += 1
            if len(pending) == self.block_chunks:
                yield np.stack(pending)
                pending = []
        if pending:
            yield np.stack(pending)

    def _samples(self) -> Iterator[np.ndarray | None]:
        return stream_samples(self.path, self.sample_rate)

    def _every_chunk(self) -> Iterator[np.ndarray | None]:
        """Consecutive chunks, then one aligned to the end if the tail is ≥ half a chunk."""
        chunk = self.chunk
        parts: list[np.ndarray] = []
        have, total, last = 0, 0, None
        for block in self._samples():
            if block is RESTART:
                parts, have, total, last = [], 0, 0, None
                yield RESTART
                continue
            parts.append(block)
            have += len(block)
            total += len(block)
            if have >= chunk:  # join once per chunk, not once per (small) decoded frame
                buf = np.concatenate(parts)
                while len(buf) >= chunk:
                    last = buf[:chunk]
                    yield last
                    buf = buf[chunk:]
                parts, have = [buf], len(buf)
        self.duration_s = total / self.sample_rate
        tail = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if last is None:  # shorter than one chunk: repeated to fill it
            yield cut_chunks(tail, chunk)[0]
        elif len(tail) >= chunk // 2:
            yield np.concatenate([last[len(tail):], tail])

    def _evenly_spaced(self) -> Iterator[np.ndarray | None]:
        limit = int(MAX_BUFFER_S * self.sample_rate)
        held: list[np.ndarray] = []
        total = 0
        samples = self._samples()
        for block in samples:
            if block is RESTART:
                held, total = [], 0
                continue  # nothing was yielded yet: nothing to retract
            held.append(block)
            total += len(block)
            if total > limit:
                break
        else:
            whole = np.concatenate(held) if held else np.zeros(0, np.float32)
            self.duration_s = total / self.sample_rate
            yield from cut_chunks(whole, self.chunk, self.n_chunks)
            return
        held = []
        for block in samples:  # too long to hold: count it, then read again and cut
            total = 0 if block is RESTART else total + len(block)
        self.duration_s = total / self.sample_rate
        yield from _windows(self._samples(), chunk_starts(total, self.chunk, self.n_chunks), self.chunk)


def _windows(blocks: Iterator[np.ndarray | None], starts: list[int], chunk: int) -> Iterator[np.ndarray | None]:
    """The ``chunk``-long windows at ``starts`` (sorted) of a block stream; a RESTART in the
    stream is passed on (the windows so far are void) and cutting starts again."""
    parts: list[np.ndarray] = []
    buf_start, have, i = 0, 0, 0  # parts hold stream samples [buf_start, buf_start + have)
    for block in blocks:
        if block is RESTART:  # read again from the start by the next decoder
            parts, buf_start, have, i = [], 0, 0, 0
            yield RESTART
            continue
        if i == len(starts):
            continue
        parts.append(block)
        have += len(block)
        if buf_start + have <= starts[i]:  # nothing wanted yet: drop it
            buf_start, parts, have = buf_start + have, [], 0
            continue
        if starts[i] + chunk > buf_start + have:
            continue
        buf = np.concatenate(parts)
        while i < len(starts) and starts[i] + chunk <= buf_start + len(buf):
            s = starts[i] - buf_start
            yield buf[s:s + chunk].copy()
            i += 1
        keep_from = min(len(buf), (starts[i] if i < len(starts) else buf_start + len(buf)) - buf_start)
        buf_start += keep_from
        parts = [buf[keep_from:]]
        have = len(parts[0])
    tail = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    for s in starts[i:]:  # a window that runs past the end of a slightly short second read
        w = np.zeros(chunk, np.float32)
        part = tail[max(0, s - buf_start):][:chunk]
        w[:len(part)] = part
        yield w
