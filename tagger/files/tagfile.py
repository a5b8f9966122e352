"""Reading and writing metadata fields in audio files: the only module that imports mutagen.

Logical fields map to each format's keys (shared/docs/metadata.md):

| field    | ID3v2.4 (MP3, WAV, AIFF) | ID3v2.3          | Vorbis comment (FLAC, Ogg, Opus) | MP4 (M4A)                          |
|----------|--------------------------|------------------|----------------------------------|------------------------------------|
| tags     | TXXX:TAGGER_TAGS         | TXXX:TAGGER_TAGS | TAGGER_TAGS                      | ----:org.tagger:TAGGER_TAGS        |
| scores   | TXXX:TAGGER_SCORES       | same             | TAGGER_SCORES                    | ----:org.tagger:TAGGER_SCORES      |
| model    | TXXX:TAGGER_MODEL        | same             | TAGGER_MODEL                     | ----:org.tagger:TAGGER_MODEL       |
| genre    | TCON                     | TCON             | GENRE                            | ©gen                               |
| mood     | TMOO                     | TXXX:MOOD        | MOOD                             | ----:com.apple.iTunes:MOOD         |
| grouping | TIT1                     | TIT1             | GROUPING                         | ©grp                               |

Values are lists of strings: real multi-values (ID3v2.4 null-separated strings, repeated
Vorbis keys, MP4 lists); mutagen joins them with "/" for ID3v2.3, which has none.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import mutagen
from mutagen._util import delete_bytes, resize_bytes
from mutagen.flac import FLAC, Padding
from mutagen.id3 import ID3, TCON, TIT1, TMOO, TXXX
from mutagen.mp4 import MP4FreeForm, MP4Tags
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis

from tagger.errors import TaggerError
from tagger.files import oggpages
from tagger.files.fields import FIELDS

MP4_NAMESPACE = "org.tagger"


class TagWriteError(TaggerError):
    """A file's metadata could not be read or written."""


_ID3_TXXX = {"tags": "TAGGER_TAGS", "scores": "TAGGER_SCORES", "model": "TAGGER_MODEL"}
_ID3_FRAMES = {"genre": TCON, "mood": TMOO, "grouping": TIT1}
_VORBIS = {"tags": "TAGGER_TAGS", "scores": "TAGGER_SCORES", "model": "TAGGER_MODEL",
           "genre": "GENRE", "mood": "MOOD", "grouping": "GROUPING"}
_MP4 = {"tags": f"----:{MP4_NAMESPACE}:TAGGER_TAGS", "scores": f"----:{MP4_NAMESPACE}:TAGGER_SCORES",
        "model": f"----:{MP4_NAMESPACE}:TAGGER_MODEL", "genre": "\xa9gen",
        "mood": "----:com.apple.iTunes:MOOD", "grouping": "\xa9grp"}


class TagFile:
    """One file's metadata, loaded with mutagen; ``get``/``set``/``delete`` logical fields,
    then ``save``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._restores: list[tuple[str, list[str]]] = []  # (field, value before) of each set, in order
        # after save(): an Ogg file's comment pages as they were, where undoing the changes
        # field by field would not give them back byte for byte (the journal keeps them)
        self.undo_pages: bytes | None = None
        try:
            self.file = mutagen.File(str(self.path))
        except (mutagen.MutagenError, OSError, ValueError, EOFError) as e:
            raise TagWriteError(self.path, f"cannot read its metadata: {_short(e)}") from None
        if self.file is None:
            raise TagWriteError(self.path, "format not supported for tag writing",
                                "MP3, FLAC, Ogg, Opus, M4A, WAV and AIFF are")
        created = self.file.tags is None
        if created:
            try:
                self.file.add_tags()
            except (mutagen.MutagenError, TypeError, ValueError) as e:
                raise TagWriteError(self.path, f"cannot add a tag block: {_short(e)}") from None
        tags = self.file.tags
        if isinstance(tags, ID3):
            self.kind = "id3"
            if not created:
                tags = self.file.tags = _id3_as_stored(self.path, tags)
            # keep an ID3v2.3 file at v2.3 (players that read only v2.3 stay happy)
            self.id3_version = 3 if tags.version[:2] == (2, 3) else 4
            self._id3_had_frames = bool(len(tags) or tags.unknown_frames)
            # a WAV/AIFF ID3 chunk keeps the parity of its length (an odd one is followed by a
            # pad byte, so two lengths give one file size: undo must pick the one it had);
            # a chunk tagger adds has an even length
            self._chunk_odd = (not created and bool(getattr(tags, "size", 0) % 2)) if type(tags) is not ID3 else None
        elif isinstance(tags, MP4Tags):
            self.kind = "mp4"
        elif hasattr(tags, "keys") and hasattr(tags, "get") and _is_vorbis(tags):
            self.kind = "vorbis"
        else:
            raise TagWriteError(self.path, f"format not supported for tag writing ({type(self.file).__name__})")

    @property
    def format_label(self) -> str:
        return f"ID3v2.{self.id3_version}" if self.kind == "id3" else {"mp4": "MP4", "vorbis": "Vorbis"}[self.kind]

    def _id3_key(self, field: str) -> str:
        if field in _ID3_TXXX:
            return f"TXXX:{_ID3_TXXX[field]}"
        if field == "mood" and self.id3_version == 3:
            return "TXXX:MOOD"  # TMOO does not exist in ID3v2.3
        return _ID3_FRAMES[field].__name__

    def get(self, field: str) -> list[str]:
        tags = self.file.tags
        if self.kind == "id3":
            frames = tags.getall(self._id3_key(field))
            return [str(t) for f in frames for t in f.text]
        if self.kind == "vorbis":
            return list(tags.get(_VORBIS[field], []))
        values = tags.get(_MP4[field], [])
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]

    @property
    def is_ogg(self) -> bool:
        """Ogg Vorbis, Opus or FLAC: tagger rewrites only the comment's pages itself."""
        return isinstance(self.file, (OggVorbis, OggOpus, OggFLAC))

    def set(self, field: str, values: list[str]) -> None:
        self._restores.append((field, self.get(field)))
        if not values:
            self._delete(field)
            return
        tags = self.file.tags
        if self.kind == "id3":
            key = self._id3_key(field)
            encoding = _text_encoding(values, tags.getall(key))
            if key.startswith("TXXX:"):
                frame = TXXX(encoding=encoding, desc=key[5:], text=values)
            else:
                frame = _ID3_FRAMES[field](encoding=encoding, text=values)
            tags.setall(key, [frame])
        elif self.kind == "vorbis":
            tags[_VORBIS[field]] = values
        else:
            key = _MP4[field]
            tags[key] = [MP4FreeForm(v.encode("utf-8")) for v in values] if key.startswith("----") else values

    def delete(self, field: str) -> None:
        self._restores.append((field, self.get(field)))
        self._delete(field)

    def _delete(self, field: str) -> None:
        tags = self.file.tags
        if self.kind == "id3":
            tags.delall(self._id3_key(field))
        else:
            key = (_VORBIS if self.kind == "vorbis" else _MP4)[field]
            if key in tags:
                del tags[key]

    def read_all(self) -> dict[str, list[str]]:
        return {f: self.get(f) for f in FIELDS}

    def save(self, size: int | None = None, ogg_pages: bytes | None = None) -> None:
        """Write the changes into the file. ``size``: pad the tag block so that the file has
        this many bytes, where it can (undo gives a file back its size, and so its bytes).
        ``ogg_pages``: an Ogg file's comment pages to put back as they are (``undo_pages``
        of the write being undone) instead of the changes."""
        if self.is_ogg:
            try:
                self._save_ogg(size, ogg_pages)
            except oggpages.OggLayoutError as e:
                raise TagWriteError(self.path, f"cannot write its metadata: {e}",
                                    "left untouched: its Ogg pages are not laid out as tagger can rewrite "
                                    "them without touching the audio") from None
            except (mutagen.MutagenError, OSError, ValueError) as e:
                raise TagWriteError(self.path, f"cannot write its metadata: {_short(e)}") from None
            return
        kwargs = {"padding": _padding_to_reach(size, self.path.stat().st_size)} if size else {}
        try:
            if size and self._drop_empty_id3_tag(size):
                return
            if self._emptied_id3_tag():
                return
            if self.kind == "id3":
                id3v1 = _read_id3v1(self.path) if type(self.file.tags) is ID3 else None  # MP3, not WAV/AIFF
                self.file.save(v2_version=self.id3_version, **kwargs)
                got = self.path.stat().st_size
                if size and got != size:  # a new WAV/AIFF ID3 chunk: its 8-byte header was not counted
                    self.file.save(v2_version=self.id3_version, padding=_padding_to_reach(size, got))
                self._keep_chunk_parity()
                _put_back_id3v1(self.path, id3v1)
            else:
                self.file.save(**kwargs)
            if size and isinstance(self.file, FLAC):
                _drop_empty_flac_padding(self.path, size)
        except (mutagen.MutagenError, OSError, ValueError) as e:
            raise TagWriteError(self.path, f"cannot write its metadata: {_short(e)}") from None

    def comment_pages(self) -> bytes:
        """An Ogg file's pages that hold its comment packet, as they are now."""
        with open(self.path, "rb") as f:
            hp = oggpages.header_packets(f, 2)
        a, _, c, _ = hp.spans[1]
        return b"".join(p.raw for p in hp.pages[a:c + 1])

    def check_ogg(self) -> None:
        """Raise TagWriteError if this Ogg file's pages cannot be rewritten as ``save`` does
        (a dry run says so before anything is written)."""
        try:
            with open(self.path, "rb") as f:
                hp = oggpages.header_packets(f, 2)
            _comment_span(hp)
            self._ogg_packet(self.file.tags, hp.packet(1))
        except oggpages.OggLayoutError as e:
            raise TagWriteError(self.path, f"cannot write its metadata: {e}",
                                "left untouched: its Ogg pages are not laid out as tagger can rewrite "
                                "them without touching the audio") from None
        except OSError as e:
            raise TagWriteError(self.path, f"cannot read it: {e.strerror or e}") from None

    def _ogg_packet(self, tags, old: bytes) -> tuple[bytes, bool]:
        """The comment packet for ``tags`` (the old packet ``old`` gives its kind) without
        padding, and whether zero bytes may pad it."""
        if isinstance(self.file, OggVorbis):
            if not old.startswith(b"\x03vorbis"):
                raise oggpages.OggLayoutError("its second packet is not a Vorbis comment header")
            return b"\x03vorbis" + tags.write(), True
        if isinstance(self.file, OggOpus):
            if not old.startswith(b"OpusTags"):
                raise oggpages.OggLayoutError("its second packet is not an Opus comment header")
            kept = getattr(tags, "_pad_data", b"")  # binary data after the comments: kept as it is
            return b"OpusTags" + tags.write(framing=False) + kept, not kept
        if not old or old[0] & 0x7F != 4:  # Ogg FLAC: one metadata block per packet
            raise oggpages.OggLayoutError("its second packet is not a FLAC VORBIS_COMMENT block")
        data = tags.write(framing=False)
        if len(data) >= 1 << 24:
            raise oggpages.OggLayoutError("the comment is too large for a FLAC metadata block")
        return old[:1] + len(data).to_bytes(3, "big") + data, False  # the block's length is exact: no padding

    def _ogg_rebuild(self, hp: oggpages.HeaderPackets, tags, region_size: int | None):
        """The new comment pages for ``tags``: padded to the old packet's length where the
        comments fit in it (the file keeps its size and its pages), or, with ``region_size``,
        to the length that makes the pages that many bytes (undo: the size they had)."""
        old = hp.packet(1)
        base, paddable = self._ogg_packet(tags, old)

        def build(length: int):
            return oggpages.rebuild(hp, 1, base + b"\0" * (length - len(base)))

        def size_of(length: int) -> int:
            return sum(len(p) for p in build(length)[2])

        if region_size is not None:
            lo = len(base)
            got = size_of(lo)
            if got == region_size:
                return build(lo)
            if paddable and got < region_size:
                hi = lo + region_size - got  # each byte of packet adds a byte of page at least
                while lo < hi:
                    mid = (lo + hi) // 2
                    if size_of(mid) < region_size:
                        lo = mid + 1
                    else:
                        hi = mid
                if size_of(lo) == region_size:
                    return build(lo)
        return build(len(old) if paddable and len(base) <= len(old) else len(base))

    def _save_ogg(self, size: int | None, ogg_pages: bytes | None) -> None:
        with open(self.path, "r+b") as f:
            hp = oggpages.header_packets(f, 2)
            a, c, start, end = _comment_span(hp)
            old_region = b"".join(p.raw for p in hp.pages[a:c])
            if ogg_pages is not None:
                new_pages = oggpages.split_pages(ogg_pages)
            else:
                file_size = os.fstat(f.fileno()).st_size
                target = None if not size else size - (file_size - len(old_region))
                _, _, new_pages = self._ogg_rebuild(hp, self.file.tags, target)
                self.undo_pages = None if self._undo_restores(hp, a, c, new_pages, old_region) else old_region
            new_region = b"".join(new_pages)
            resize_bytes(f, len(old_region), len(new_region), start)
            f.seek(start)
            f.write(new_region)
            oggpages.shift_sequences(f, hp.serial, start + len(new_region), len(new_pages) - (c - a))

    def _undo_restores(self, hp, a: int, c: int, new_pages: list[bytes], old_region: bytes) -> bool:
        """Whether undoing this save field by field (as ``tagger write --undo`` does: each
        field set back to its old value, in the order they were set, padded to the old size)
        would give the comment pages back byte for byte."""
        tags = copy.deepcopy(self.file.tags)
        for f, old in self._restores:
            key = _VORBIS[f]
            if old:
                tags[key] = old
            elif key in tags:
                del tags[key]
        try:
            _, _, back = self._ogg_rebuild(oggpages.with_pages(hp, a, c, new_pages), tags, len(old_region))
        except oggpages.OggLayoutError:
            return False
        return b"".join(back) == old_region

    def _keep_chunk_parity(self) -> None:
        if self._chunk_odd is None:
            return
        saved = mutagen.File(str(self.path)).tags
        if saved is None or bool(saved.size % 2) == self._chunk_odd:
            return
        step = -1 if self._chunk_odd else 1  # odd + pad byte = even + 1: the file keeps its size
        self.file.save(v2_version=self.id3_version, padding=lambda info: max(info.padding + step, 0))

    def _emptied_id3_tag(self) -> bool:
        """Delete the ID3v2 tag (an MP3's, a WAV/AIFF file's ID3 chunk) if this save took its
        last frame (``tagger write --remove`` on a tag tagger made): no empty tag block, with
        its padding, is left behind."""
        tags = self.file.tags
        if self.kind != "id3" or len(tags) or tags.unknown_frames or not self._id3_had_frames:
            return False
        if type(tags) is ID3:
            tags.delete(str(self.path), delete_v1=False, delete_v2=True)
        else:
            tags.delete(str(self.path))
        return True

    def _drop_empty_id3_tag(self, size: int) -> bool:
        """Delete an ID3v2 tag left with no frame (an MP3's, or a WAV/AIFF file's ID3 chunk
        whole) if that gives the file back ``size`` bytes: tagger's write created the tag, so
        undo removes it."""
        tags = self.file.tags
        if self.kind != "id3" or len(tags) or tags.unknown_frames or not getattr(tags, "size", 0):
            return False
        mp3 = type(tags) is ID3
        # in WAV and AIFF the tag fills a chunk: an 8-byte header, then the tag, padded to even
        taken = tags.size if mp3 else 8 + tags.size + tags.size % 2
        if self.path.stat().st_size - taken != size:
            return False
        if mp3:
            tags.delete(str(self.path), delete_v1=False, delete_v2=True)
        else:
            tags.delete(str(self.path))  # the chunk, and the container's size with it
        return True


def _comment_span(hp: oggpages.HeaderPackets) -> tuple[int, int, int, int]:
    """(first page index, last + 1, first byte, byte after) of the comment packet's pages,
    which must lie next to each other in the file."""
    a, _, c, _ = hp.spans[1]
    start, end = hp.pages[a].offset, hp.pages[c].offset + hp.pages[c].size
    if end - start != sum(p.size for p in hp.pages[a:c + 1]):
        raise oggpages.OggLayoutError("another stream's pages lie between its comment's pages")
    return a, c + 1, start, end


def _text_encoding(values: list[str], replaced: list) -> int:
    """The ID3 text encoding for a frame that replaces ``replaced``: the one it had, where it
    can hold ``values`` (so an undo writes the user's frame back as it was: Latin-1 stays
    Latin-1), else UTF-8 (which mutagen turns into UTF-16 in ID3v2.3)."""
    if not replaced:
        return 3
    encoding = replaced[0].encoding
    if encoding != 0:
        return encoding
    try:
        "".join(values).encode("latin-1")
    except UnicodeEncodeError:
        return 3
    return 0


def _id3_as_stored(path: Path, tags: ID3) -> ID3:
    """The file's ID3v2 tag exactly as stored. ``mutagen.File`` upgrades ID3v2.3 frames to
    v2.4 ones (TYER + TDAT → TDRC, …) and merges an ID3v1 tag into the v2 one: saved back, a
    v2.3 file would get a TDRC it cannot hold and lose TDAT, and gain copies of the ID3v1
    fields, none of which tagger was asked to touch."""
    if tags.version[0] == 1:  # only an ID3v1 tag: tagger's fields go into a new, empty v2 tag
        return type(tags)()
    if tags.version[:2] not in ((2, 3), (2, 4)):
        return tags  # ID3v2.2: mutagen's upgrade to v2.4 is the only way to write it back
    try:
        return type(tags)(str(path), translate=False, load_v1=False)
    except (mutagen.MutagenError, OSError, ValueError, EOFError) as e:
        raise TagWriteError(path, f"cannot read its metadata: {_short(e)}") from None


def _read_id3v1(path: Path) -> bytes | None:
    """The 128-byte ID3v1 tag at the end of an MP3, if it has one."""
    with open(path, "rb") as f:
        if f.seek(0, os.SEEK_END) < 128:
            return None
        f.seek(-128, os.SEEK_END)
        tail = f.read(128)
    return tail if tail.startswith(b"TAG") else None


def _put_back_id3v1(path: Path, id3v1: bytes | None) -> None:
    """mutagen rewrites an existing ID3v1 tag from the v2 frames (losing what only the v1 tag
    held); tagger leaves it as it was."""
    if id3v1 is None:
        return
    with open(path, "r+b") as f:
        f.seek(-128, os.SEEK_END)
        if f.read(3) == b"TAG":
            f.seek(-128, os.SEEK_END)
            f.write(id3v1)


def _padding_to_reach(size: int, current_size: int):
    """A mutagen padding function that makes the saved file ``size`` bytes long, or, where
    that needs negative padding, as short as the tag block can be (no padding): undo wants
    the file as it was, and the structure a write added (a FLAC padding block, an ID3 tag) is
    what is left over, which the callers of this function then remove."""
    def padding(info) -> int:
        # info.padding is what would be left if the file kept its current size
        return max(info.padding + size - current_size, 0)
    return padding


_FLAC_BLOCK_HEADER = 4  # last-block flag and type (1 byte), length (3 bytes)


def _drop_empty_flac_padding(path: Path, size: int) -> None:
    """Remove the empty padding block that keeps a FLAC file 4 bytes over ``size``. mutagen
    always ends the metadata with a padding block; a file that had none (libsndfile writes
    none) gets its size back only without it."""
    if path.stat().st_size != size + _FLAC_BLOCK_HEADER:
        return
    with open(path, "r+b") as f:
        headers = _flac_block_headers(f)
        if len(headers) < 2:
            return
        (before, _, _), (last, kind, length) = headers[-2:]
        if kind != Padding.code or length:
            return
        f.seek(before)
        first = f.read(1)[0]
        f.seek(before)
        f.write(bytes([first | 0x80]))  # the block before becomes the last one
        delete_bytes(f, _FLAC_BLOCK_HEADER, last)


def _flac_block_headers(f) -> list[tuple[int, int, int]]:
    """(offset, type, length) of each metadata block header of a FLAC file, after the
    ``fLaC`` marker (and an ID3v2 tag before it, which some taggers add)."""
    head = f.read(10)
    start = 0
    if head[:3] == b"ID3" and len(head) == 10:
        start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))  # syncsafe
    f.seek(start)
    if f.read(4) != b"fLaC":
        return []
    headers, offset = [], start + 4
    while True:
        f.seek(offset)
        header = f.read(_FLAC_BLOCK_HEADER)
        if len(header) < _FLAC_BLOCK_HEADER:
            return []
        length = int.from_bytes(header[1:], "big")
        headers.append((offset, header[0] & 0x7F, length))
        if header[0] & 0x80:
            return headers
        offset += _FLAC_BLOCK_HEADER + length


def _is_vorbis(tags) -> bool:
    from mutagen._vorbis import VComment
    return isinstance(tags, VComment)


def _short(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


_EASY_KEYS = {"title": "title", "artist": "artist", "album": "album", "album_artist": "albumartist",
              "genre": "genre"}


def read_track_metadata(path: str | os.PathLike[str]) -> dict[str, str | int]:
    """The file's own title, artist, album, album artist, genre, year and track number, as far
    as it has them (mutagen's easy interface: ID3, Vorbis comments, MP4). Never raises: a file
    whose tags cannot be read has none, and is scored all the same."""
    try:
        return _read_track_metadata(path)
    except Exception:  # whatever a hostile tag block does, it must not cost the file its scores
        return {}


_LEADING_NUMBER = re.compile(r"\s*([0-9]{1,9})")  # ASCII digits only: "①".isdigit() is True


def _number(text: str | None, low: int, high: int) -> int | None:
    m = _LEADING_NUMBER.match(text or "")
    return int(m.group(1)) if m and low <= int(m.group(1)) <= high else None


def _read_track_metadata(path: str | os.PathLike[str]) -> dict[str, str | int]:
    try:
        f = mutagen.File(str(path), easy=True)
    except Exception:
        return {}
    tags = getattr(f, "tags", None) if f is not None else None
    if not tags:
        return {}
    out: dict[str, str | int] = {}

    def first(key: str) -> str | None:
        try:
            values = tags.get(key)
        except Exception:
            return None
        if not values:
            return None
        text = str(values[0] if isinstance(values, list) else values).strip()
        return text[:500] or None

    for name, key in _EASY_KEYS.items():
        value = first(key)
        if value:
            out[name] = value
    year = _number(first("date") or first("year"), 1, 9999)
    if year is not None:
        out["year"] = year
    track = _number(first("tracknumber"), 1, 100000)
    if track is not None:
        out["track_no"] = track
    return out
