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
import zlib
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


def _ogg_crc(page: bytes) -> int:
    """The Ogg CRC-32 of a page whose CRC field is zeroed (zlib's reflected CRC on bit-swapped bytes)."""
    value = (~zlib.crc32(page.translate(_BITSWAP), -1)) & 0xFFFFFFFF
    return int.from_bytes(value.to_bytes(4, "big").translate(_BITSWAP), "little")


_BITSWAP = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_truncation(path: Path) -> str | None:
    """From the first page near the end whose CRC holds (a real page, not the bytes ``OggS``
    inside compressed audio), walk page by page: the file must end where its last page does,
    and that page must end the stream."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - 2 * _TAIL))
        tail = f.read()
    at = tail.find(b"OggS")
    while at >= 0 and not _whole_page_at(tail, at):
        at = tail.find(b"OggS", at + 1)
    if at < 0:
        return None  # no whole page near the end to start from: nothing to say
    flags = 0
    while at < len(tail):
        head = tail[at:at + 27]
        if len(head) < 27 or head[:4] != b"OggS":
            return "truncated: its last Ogg page is cut short (the file ends in the middle of it)"
        lacing = tail[at + 27:at + 27 + head[26]]
        end = at + 27 + head[26] + sum(lacing)
        if len(lacing) < head[26] or end > len(tail):
            return "truncated: its last Ogg page is cut short (the file ends in the middle of it)"
        flags, at = head[5], end
    if not flags & 4:
        return "truncated: the Ogg stream ends without its last page (no end-of-stream flag)"
    return None


def _whole_page_at(buf: bytes, at: int) -> bool:
    head = buf[at:at + 27]
    if len(head) < 27 or head[4] != 0:
        return False
    lacing = buf[at + 27:at + 27 + head[26]]
    end = at + 27 + head[26] + sum(lacing)
    if len(lacing) < head[26] or end > len(buf):
        return False
    page = bytearray(buf[at:end])
    stored = int.from_bytes(page[22:26], "little")
    page[22:26] = b"\0\0\0\0"
    return _ogg_crc(bytes(page)) == stored


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
