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

import os
from pathlib import Path

import mutagen
from mutagen.id3 import ID3, TCON, TIT1, TMOO, TXXX
from mutagen.mp4 import MP4FreeForm, MP4Tags

from tagger.errors import TaggerError

FIELDS = ("tags", "scores", "model", "genre", "mood", "grouping")
OWN_FIELDS = ("tags", "scores", "model")
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
        try:
            self.file = mutagen.File(str(self.path))
        except (mutagen.MutagenError, OSError, ValueError, EOFError) as e:
            raise TagWriteError(self.path, f"cannot read its metadata: {_short(e)}") from None
        if self.file is None:
            raise TagWriteError(self.path, "format not supported for tag writing",
                                "MP3, FLAC, Ogg, Opus, M4A, WAV and AIFF are")
        if self.file.tags is None:
            try:
                self.file.add_tags()
            except (mutagen.MutagenError, TypeError, ValueError) as e:
                raise TagWriteError(self.path, f"cannot add a tag block: {_short(e)}") from None
        tags = self.file.tags
        if isinstance(tags, ID3):
            self.kind = "id3"
            # keep an ID3v2.3 file at v2.3 (players that read only v2.3 stay happy)
            self.id3_version = 3 if tags.version[:2] == (2, 3) else 4
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

    def set(self, field: str, values: list[str]) -> None:
        if not values:
            self.delete(field)
            return
        tags = self.file.tags
        if self.kind == "id3":
            key = self._id3_key(field)
            if key.startswith("TXXX:"):
                frame = TXXX(encoding=3, desc=key[5:], text=values)
            else:
                frame = _ID3_FRAMES[field](encoding=3, text=values)
            tags.setall(key, [frame])
        elif self.kind == "vorbis":
            tags[_VORBIS[field]] = values
        else:
            key = _MP4[field]
            tags[key] = [MP4FreeForm(v.encode("utf-8")) for v in values] if key.startswith("----") else values

    def delete(self, field: str) -> None:
        tags = self.file.tags
        if self.kind == "id3":
            tags.delall(self._id3_key(field))
        else:
            key = (_VORBIS if self.kind == "vorbis" else _MP4)[field]
            if key in tags:
                del tags[key]

    def read_all(self) -> dict[str, list[str]]:
        return {f: self.get(f) for f in FIELDS}

    def save(self) -> None:
        try:
            if self.kind == "id3":
                self.file.save(v2_version=self.id3_version)
            else:
                self.file.save()
        except (mutagen.MutagenError, OSError, ValueError) as e:
            raise TagWriteError(self.path, f"cannot write its metadata: {_short(e)}") from None


def _is_vorbis(tags) -> bool:
    from mutagen._vorbis import VComment
    return isinstance(tags, VComment)


def _short(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
