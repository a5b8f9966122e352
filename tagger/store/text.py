"""Text as the store keeps it, the same on SQLite and PostgreSQL.

- ``storable``: what either database can hold. PostgreSQL refuses NUL in text and Python's lone
  surrogates are not UTF-8, so a file's tag value keeps the rest of its text (NUL dropped, a lone
  surrogate as U+FFFD) instead of costing the file its scores; SQLite gets the same value.
- ``fold``: the one folding rule of ``--where``, applied in Python to the stored value (kept
  beside it, ``*_folded`` columns) and to what the user typed, so that both databases compare
  the same strings: NFKC, full Unicode case folding (ß → ss, ﬁ → fi, ς → σ), NFKC again.
  (SQLite's ``lower()`` folds ASCII only and PostgreSQL's ``lower()`` folds one letter to one
  letter, by the server's locale: neither is used.)
- ``path_key``: the key a track is found by. A path is any length the file system allows; a
  B-tree index on the path itself stops at ~2.7 kB in PostgreSQL, so the unique index is on
  this 128-bit hash of it and every lookup compares the path too.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NOT_STORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str | None) -> str | None:
    """``text`` without what a database cannot hold: NUL dropped, lone surrogates as U+FFFD."""
    if text is None or not _NOT_STORABLE.search(text):
        return text
    return _NOT_STORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


def fold(text: str | None) -> str | None:
    """``text`` folded for caseless, compatibility-equivalent comparison (see the module)."""
    if text is None:
        return None
    text = storable(text)
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def path_key(path: str) -> str:
    """The unique key of a track's path: 32 hex digits of its BLAKE2b hash."""
    return hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
