"""Writing a ranked list of tracks (from query, similar, radio) in the one-path-per-line
formats, and the bits of a track line they share. Rows have ``path``, ``duration_s`` and
``metadata`` (the file's own title, artist, …)."""

from __future__ import annotations

import enum
import re
import sys
from pathlib import Path

from tagger.cli.common import plural, warn


class Format(str, enum.Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    m3u = "m3u"
    paths = "paths"


def display_name(row) -> str:
    """"Artist - Title" as players show it, whichever of the two the file has, else ''."""
    return " - ".join(str(v) for v in (row.metadata.get("artist"), row.metadata.get("title")) if v)


def mmss(seconds: float | None) -> str:
    return "" if seconds is None else f"{int(seconds // 60)}:{int(seconds % 60):02d}"


# every character str.splitlines() splits on: a reader that splits lines so must not cut an entry
LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def one_per_line(rows: list, fmt: str) -> list:
    """The rows a one-path-per-line format can hold: a line break in a path (any character
    that ``str.splitlines()`` splits on) would make it two entries, so those tracks are left
    out, and counted on stderr."""
    kept = [r for r in rows if not LINE_BREAKS.search(r.path)]
    if len(kept) < len(rows):
        n = len(rows) - len(kept)
        warn(f"skipped {plural(n, 'track')} whose path has a line break ({fmt} cannot hold "
             f"{'it' if n == 1 else 'them'}; --format json, jsonl or csv can)")
    return kept


def write_m3u(rows: list) -> None:
    lines = ["#EXTM3U"]
    for r in one_per_line(rows, "m3u"):
        name = LINE_BREAKS.sub(" ", display_name(r)) or LINE_BREAKS.sub(" ", Path(r.path).stem)
        lines.append(f"#EXTINF:{round(r.duration_s or -1)},{name}")
        lines.append(r.path)
    sys.stdout.write("\n".join(lines) + "\n")


def write_paths(rows: list) -> None:
    for r in one_per_line(rows, "paths"):
        sys.stdout.write(r.path + "\n")
