"""Ogg pages as bytes: replacing one header packet (the comment) without touching anything else.

An Ogg file is a sequence of pages (``OggS``, flags, granule position, serial, sequence
number, CRC, a lacing table of segment lengths, then the data). mutagen's writers rebuild the
header packets' pages from scratch: the first audio packet sharing the last header page is
moved to a page without its granule position, and when the rebuilt headers take another
number of pages every later page gets a new sequence number and CRC. libsndfile then decodes
some files differently, and an undo cannot give the file its bytes back.

``replace_comment`` changes only the pages the comment packet lies on: the segments before it
on its first page and after it on its last page (the setup header, or audio packets, with that
page's granule position and flags) are kept as they were, and so is every other page. The new
comment keeps the old one's page count where it can (its earlier pages keep their segment
counts); only when it cannot do later pages of the stream change, and then only in their
sequence number and CRC, shifted by the page count's change (an invalid CRC stays as invalid
as it was), so that writing the old pages back and shifting again restores every byte.

Pure bytes: no mutagen here (tagfile.py is the one module that imports it).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, sequence, crc, segments
_CONTINUED, _BOS, _EOS = 1, 2, 4
_BITSWAP = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
NO_GRANULE = -1  # a page on which no packet ends
MAX_SEGMENTS = 255


class OggLayoutError(ValueError):
    """The file's pages are not laid out as an Ogg stream this module can rewrite."""


def crc(data: bytes) -> int:
    """The Ogg CRC-32 (polynomial 0x04c11db7, not reflected, initial 0) of a page whose CRC
    field is zero: zlib's reflected CRC on bit-swapped bytes, swapped back."""
    value = (~zlib.crc32(data.translate(_BITSWAP), -1)) & 0xFFFFFFFF
    return int.from_bytes(value.to_bytes(4, "big").translate(_BITSWAP), "little")


@dataclass
class Page:
    offset: int  # in the file
    flags: int
    granule: int
    serial: int
    sequence: int
    stored_crc: int
    lacing: list[int]
    data: bytes
    raw: bytes = field(repr=False, default=b"")

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def ends_packet(self) -> bool:
        return bool(self.lacing) and self.lacing[-1] < 255


def parse_page(buf: bytes, offset: int = 0) -> Page:
    if len(buf) - offset < HEADER.size:
        raise OggLayoutError(f"a page header is cut short at byte {offset}")
    capture, version, flags, granule, serial, sequence, stored, segments = HEADER.unpack_from(buf, offset)
    if capture != b"OggS" or version != 0:
        raise OggLayoutError(f"no Ogg page at byte {offset}")
    lacing = list(buf[offset + HEADER.size:offset + HEADER.size + segments])
    start = offset + HEADER.size + segments
    end = start + sum(lacing)
    if len(lacing) != segments or end > len(buf):
        raise OggLayoutError(f"the page at byte {offset} is cut short")
    return Page(offset, flags, granule, serial, sequence, stored, lacing, bytes(buf[start:end]), bytes(buf[offset:end]))


def build_page(flags: int, granule: int, serial: int, sequence: int, lacing: list[int], data: bytes) -> bytes:
    if len(lacing) > MAX_SEGMENTS:
        raise OggLayoutError("a page cannot hold more than 255 segments")
    head = HEADER.pack(b"OggS", 0, flags, granule, serial, sequence, 0, len(lacing)) + bytes(lacing)
    page = head + data
    return page[:22] + struct.pack("<I", crc(page)) + page[26:]


def read_pages(f, limit: int | None = None):
    """Yield the pages of an open file from its start (``limit``: stop after that many)."""
    f.seek(0)
    offset, n = 0, 0
    while limit is None or n < limit:
        head = f.read(HEADER.size)
        if not head:
            return
        if len(head) < HEADER.size:
            raise OggLayoutError(f"a page header is cut short at byte {offset}")
        segments = head[-1]
        lacing = f.read(segments)
        body = f.read(sum(lacing))
        page = parse_page(head + lacing + body)
        page.offset = offset
        yield page
        offset += page.size
        n += 1


def split_pages(buf: bytes) -> list[bytes]:
    """The pages of a run of whole pages, each as bytes."""
    out, offset = [], 0
    while offset < len(buf):
        page = parse_page(buf, offset)
        out.append(page.raw)
        offset += page.size
    return out


def lacing_of(length: int) -> list[int]:
    return [255] * (length // 255) + [length % 255]


@dataclass
class HeaderPackets:
    """Where a stream's first packets lie: ``pages`` are the stream's pages (from the file's
    start) up to the one on which the last wanted packet ends; ``spans[i]`` is packet i's
    ``(first page index, first segment, last page index, segment after its last)``."""
    serial: int
    pages: list[Page]
    spans: list[tuple[int, int, int, int]]

    def packet(self, i: int) -> bytes:
        a, sa, c, sc = self.spans[i]
        parts = []
        for k in range(a, c + 1):
            page = self.pages[k]
            lo = sa if k == a else 0
            hi = sc if k == c else len(page.lacing)
            start = sum(page.lacing[:lo])
            parts.append(page.data[start:start + sum(page.lacing[lo:hi])])
        return b"".join(parts)


def header_packets(f, count: int) -> HeaderPackets:
    """The first ``count`` packets of the file's first logical stream."""
    serial = None
    pages: list[Page] = []
    for page in read_pages(f):
        if serial is None:
            if not page.flags & _BOS:
                raise OggLayoutError("the first page does not begin a stream")
            serial = page.serial
        if page.serial != serial:
            continue  # another stream's page: left where it is
        pages.append(page)
        spans = _spans(pages, count)
        if len(spans) == count:
            return HeaderPackets(serial, pages, spans)
    raise OggLayoutError(f"the stream ends before its {count} header packets")


def _spans(pages: list[Page], count: int) -> list[tuple[int, int, int, int]]:
    spans: list[tuple[int, int, int, int]] = []
    start = None  # (page index, segment) where the packet being read began
    for k, page in enumerate(pages):
        if k and bool(page.flags & _CONTINUED) != (start is not None):
            raise OggLayoutError(f"page {page.sequence} does not continue the packet before it as flagged")
        for s, value in enumerate(page.lacing):
            if start is None:
                start = (k, s)
            if value < 255:
                spans.append((start[0], start[1], k, s + 1))
                start = None
                if len(spans) == count:
                    return spans
    return spans


def with_pages(hp: HeaderPackets, lo: int, hi: int, new_pages: list[bytes]) -> HeaderPackets:
    """``hp`` with its pages ``lo:hi`` replaced by ``new_pages`` (as ``rebuild`` made them)."""
    pages = hp.pages[:lo] + [parse_page(p) for p in new_pages] + hp.pages[hi:]
    return HeaderPackets(hp.serial, pages, _spans(pages, len(hp.spans)))


def _layout(old_before: list[int], head: int, tail: int, new: int) -> list[int]:
    """How many of the new packet's ``new`` segments go on each page. The pages before the
    last keep their old counts (``old_before``) as far as the packet reaches, the last page
    takes the rest with the ``tail`` segments that follow the packet; where that does not
    fit, the pages are filled from the first (after the ``head`` segments before the packet),
    on as few pages as hold it."""
    counts, left = [], new
    for c in old_before:
        if left - c < 1:
            break
        counts.append(c)
        left -= c
    if left + tail + (head if not counts else 0) <= MAX_SEGMENTS:
        return counts + [left]
    k = len(counts) + 1
    while True:
        caps = [MAX_SEGMENTS] * k
        caps[0] -= head
        caps[-1] -= tail
        if min(caps) >= 1 and sum(caps) >= new and new >= k:
            break
        if new < k or (k == 1 and head + tail >= MAX_SEGMENTS):
            raise OggLayoutError("the comment does not fit in Ogg pages beside the packets that share them")
        k += 1
    counts, left = [], new
    for i in range(k - 1):
        take = min(caps[i], left - (k - 1 - i))
        counts.append(take)
        left -= take
    return counts + [left]


def rebuild(hp: HeaderPackets, index: int, packet: bytes) -> tuple[int, int, list[bytes]]:
    """New pages for packet ``index`` replaced by ``packet``: returns (first page index, last
    page index + 1) of the old pages they replace in ``hp.pages``, and the new pages' bytes."""
    a, sa, c, sc = hp.spans[index]
    first, last = hp.pages[a], hp.pages[c]
    head_lacing, tail_lacing = first.lacing[:sa], last.lacing[sc:]
    head_data = first.data[:sum(head_lacing)]
    tail_data = last.data[len(last.data) - sum(tail_lacing):] if tail_lacing else b""
    segs = lacing_of(len(packet))
    if a == c:
        old_counts = [sc - sa]
    else:
        old_counts = [len(first.lacing) - sa] + [len(hp.pages[k].lacing) for k in range(a + 1, c)] + [sc]
    counts = _layout(old_counts[:-1], len(head_lacing), len(tail_lacing), len(segs))
    pages, pos, seg = [], 0, 0
    for i, n in enumerate(counts):
        lacing = segs[seg:seg + n]
        size = sum(lacing)
        body = packet[pos:pos + size]
        seg, pos = seg + n, pos + size
        is_first, is_last = i == 0, i == len(counts) - 1
        if is_first:
            lacing, body = head_lacing + lacing, head_data + body
            flags = first.flags & ~_EOS
        else:
            flags = _CONTINUED
        if is_last:
            lacing, body = lacing + tail_lacing, body + tail_data
            flags |= last.flags & _EOS
            granule = last.granule
        elif is_first and a != c:
            granule = first.granule  # the page as it was: the packets before the comment end on it, or none
        else:
            granule = 0 if is_first and head_lacing else NO_GRANULE  # header packets end at granule 0
        pages.append(build_page(flags, granule, hp.serial, first.sequence + i, lacing, body))
    return a, c + 1, pages


def shift_sequences(f, serial: int, start: int, delta: int) -> None:
    """Add ``delta`` to the sequence number of every page of stream ``serial`` from byte
    ``start`` on, keeping each page's CRC as right (or as wrong) as it was."""
    if not delta:
        return
    offset = start
    f.seek(0, 2)
    end = f.tell()
    while offset < end:
        f.seek(offset)
        head = f.read(HEADER.size)
        if len(head) < HEADER.size or head[:4] != b"OggS":
            raise OggLayoutError(f"no Ogg page at byte {offset}")
        segments = head[-1]
        lacing = f.read(segments)
        size = HEADER.size + segments + sum(lacing)
        _, _, _, _, page_serial, sequence, stored, _ = HEADER.unpack(head)
        if page_serial == serial:
            f.seek(offset)
            raw = bytearray(f.read(size))
            raw[22:26] = b"\0\0\0\0"
            before = crc(bytes(raw))
            raw[18:22] = struct.pack("<I", (sequence + delta) & 0xFFFFFFFF)
            after = crc(bytes(raw))
            f.seek(offset + 18)
            f.write(struct.pack("<II", (sequence + delta) & 0xFFFFFFFF, stored ^ before ^ after))
        offset += size
