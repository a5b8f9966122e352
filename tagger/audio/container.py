"""What a file's own bytes say about it: its format (from the content, not the extension: an
MP3 renamed ``.flac`` is an MP3), and whether it is whole (the container states more audio
than the file holds: a copy or download cut short).

A decoder reads a truncated file to where it ends and says nothing; these checks compare the
file with what its container promises:

- Ogg: the last page must be whole and end the stream (its end-of-stream flag);
- FLAC: STREAMINFO's sample count must be readable to its last sample;
- WAV: the ``data`` chunk must fit in the file.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

_TAIL = 1 << 16  # an Ogg page is at most 65,307 bytes


def _skip_id3(f) -> int:
    head = f.read(10)
    if head[:3] == b"ID3" and len(head) == 10:
        return 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10])) + (10 if head[5] & 0x10 else 0)
    return 0


def content_format(path: str | os.PathLike[str]) -> str | None:
    """The file's format from its first bytes, named as tagger stores formats (``flac``,
    ``ogg`` (Vorbis and FLAC in Ogg), ``opus``, ``mp3``, ``wav``, ``aiff``, ``m4a``, ``wma``,
    ``wv``, ``ape``, ``caf``, ``w64``), or None when they say nothing known."""
    try:
        with open(path, "rb") as f:
            start = _skip_id3(f)
            f.seek(start)
            head = f.read(64)
    except OSError:
        return None
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "opus" if head[28:36] == b"OpusHead" else "ogg"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "wma"
    if head.startswith(b"wvpk"):
        return "wv"
    if head.startswith(b"MAC "):
        return "ape"
    if head.startswith(b"caff"):
        return "caf"
    if head.startswith(b"riff\x2e\x91\xcf\x11"):
        return "w64"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and (head[1] >> 1) & 3:  # MPEG audio, layer 1–3
        return {1: "mp3", 2: "mp2", 3: "mp1"}[(head[1] >> 1) & 3]  # the layer bits: 01 is layer III
    return None


def truncation(path: str | os.PathLike[str]) -> str | None:
    """Why the file holds less audio than its container states, or None if it looks whole (or
    its format states nothing to compare with)."""
    path = Path(path)
    fmt = content_format(path)
    try:
        if fmt in ("ogg", "opus"):
            return _ogg_truncation(path)
        if fmt == "flac":
            return _flac_truncation(path)
        if fmt == "wav":
            return _wav_truncation(path)
    except OSError:
        return None
    return None


def _ogg_truncation(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        start = max(0, size - _TAIL - 27)
        f.seek(start)
        tail = f.read()
    at = tail.rfind(b"OggS")
    while at >= 0:
        head = tail[at:at + 27]
        if len(head) == 27 and head[4] == 0:
            segments = head[26]
            lacing = tail[at + 27:at + 27 + segments]
            end = at + 27 + segments + sum(lacing)
            if len(lacing) < segments or end > len(tail):
                return "truncated: its last Ogg page is cut short (the file ends in the middle of it)"
            if end == len(tail):
                if not head[5] & 4:
                    return "truncated: the Ogg stream ends without its last page (no end-of-stream flag)"
                return None
        at = tail.rfind(b"OggS", 0, at)
    return None  # no page boundary found near the end: nothing to say


def _flac_truncation(path: Path) -> str | None:
    with open(path, "rb") as f:
        f.seek(_skip_id3(f) + 4)
        header = f.read(4 + 34)
    if len(header) < 38 or header[0] & 0x7F != 0:  # STREAMINFO comes first
        return None
    info = header[4:]
    rate = int.from_bytes(info[10:13], "big") >> 4
    total = int.from_bytes(info[13:18], "big") & ((1 << 36) - 1)
    if not total or not rate:
        return None  # unknown length (a stream encoder leaves it 0)
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            f.seek(total - 1)
            last = f.read(1)
    except Exception:  # seeking past what is there
        last = []
    if len(last) == 1:
        return None
    return f"truncated: its header states {total / rate:.1f} s of audio, and the file ends before that"


def _wav_truncation(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(12)
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            cid, length = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                if length != 0xFFFFFFFF and offset + 8 + length > size:  # 0xFFFFFFFF: length unknown (streamed)
                    held = size - offset - 8
                    return (f"truncated: its data chunk states {length:,} bytes of audio and the file holds "
                            f"{held:,}")
                return None
            offset += 8 + length + (length & 1)
    return None
