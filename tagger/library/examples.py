"""What ``tagger learn --like`` and ``--unlike`` name: tracks of the library.

An example set is one or more of

- a file or folder: the track at that path, or every tagged track under the folder;
- a playlist (``.m3u``/``.m3u8``): its entries, relative to the playlist's folder;
- a query ``tag:TAG[,TAG…][>=P]``: the tracks whose score for the tags (as in ``tagger
  query --tag``, several: their minimum) is at least P (default 0.5).

A file not in the library, a folder or playlist that names none, or a query nothing matches
is an error: a typo must not turn into a tag learned from nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from tagger.errors import CommandLineError, UsageError

if TYPE_CHECKING:
    from tagger.store.catalog import Store, StoredModel

QUERY_PREFIX = "tag:"
QUERY_MIN = 0.5
PLAYLISTS = (".m3u", ".m3u8")
_QUERY = re.compile(r"(?P<tags>[^>]+?)\s*(?:>=\s*(?P<min>[0-9]*\.?[0-9]+))?\s*")


@dataclass
class ExampleSet:
    ids: list[int] = field(default_factory=list)  # track ids scored by the model, in order, once each
    specs: list[str] = field(default_factory=list)  # as they can be typed again (paths made absolute)
    other_model: int = 0  # tracks named but not scored by the model: left out


def resolve(library: Store, model: StoredModel, specs: Sequence[str], option: str) -> ExampleSet:
    """The tracks ``specs`` name (``option``: ``--like`` or ``--unlike``, for messages)."""
    out, seen = ExampleSet(), set()
    for spec in specs:
        rows, typed = _rows(library, model, spec, option)
        out.specs.append(typed)
        scored_by = library.model_sets([r.id for r in rows])
        for r in rows:
            if model.id not in scored_by.get(r.id, ()):
                out.other_model += 1
            elif r.id not in seen:
                seen.add(r.id)
                out.ids.append(r.id)
    return out


def _rows(library: Store, model: StoredModel, spec: str, option: str) -> tuple[list, str]:
    if spec.lower().startswith(QUERY_PREFIX):
        return _query(library, model, spec[len(QUERY_PREFIX):], option), spec
    path = os.path.abspath(os.path.expanduser(spec))
    if os.path.isdir(path):
        rows = library.tracks_under([path])
        if not rows:
            raise UsageError(spec, f"{option}: no tagged track under this folder",
                             "run 'tagger scan' on it first; nothing was learned")
        return rows, path
    if not os.path.exists(path) and library.track(path) is None:
        raise UsageError(spec, f"{option}: no such file or folder",
                         f"a file, folder, .m3u playlist or {QUERY_PREFIX}TAG[>=P] query")
    if path.lower().endswith(PLAYLISTS):
        return _playlist(library, path, spec, option), path
    return [_track(library, path, spec, option)], path


def _track(library: Store, path: str, spec: str, option: str):
    row = library.find_track(path)
    if row is None:
        raise UsageError(spec, f"{option}: is not in the library",
                         "run 'tagger scan' on its folder first; nothing was learned")
    if row.status != "ok":
        reason = row.error if row.status == "failed" else "its file is gone"
        raise UsageError(spec, f"{option}: has no embedding ({row.status}: {reason})", "nothing was learned")
    return row


def _entry_track(library: Store, base: str, entry: str):
    if entry.lower().startswith("file://"):
        entry = unquote(urlparse(entry).path)
    return library.find_track(os.path.normpath(os.path.join(base, os.path.expanduser(entry))))


def _playlist(library: Store, path: str, spec: str, option: str) -> list:
    try:
        text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise UsageError(spec, f"{option}: cannot read the playlist: {e.strerror}") from None
    # an entry per line, as M3U has it: split on line feeds only (str.splitlines would also cut
    # a file name at a form feed, a vertical tab, U+2028…), a CR of CRLF files dropped
    lines = (line.removesuffix("\r") for line in text.split("\n"))
    entries = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise UsageError(spec, f"{option}: the playlist lists no tracks", "nothing was learned")
    base, rows, missing = os.path.dirname(path), [], []
    for entry in entries:
        row = _entry_track(library, base, entry)
        if row is None and entry.strip() != entry:  # spaces around a hand-written entry
            entry = entry.strip()
            row = _entry_track(library, base, entry)
        if row is None or row.status != "ok":
            missing.append(entry)
        else:
            rows.append(row)
    if missing:
        raise UsageError(spec, f"{option}: {len(missing)} of its {len(entries)} entries are not tagged tracks "
                         f"of the library (first: {missing[0]})",
                         "scan them first or leave them out; nothing was learned")
    return rows


def _query(library: Store, model: StoredModel, text: str, option: str) -> list:
    from tagger.library.query import model_terms
    from tagger.store.query import TrackQuery, run_query

    m = _QUERY.fullmatch(text)
    names = [t.strip() for t in m.group("tags").split(",") if t.strip()] if m else []
    if not names:
        raise CommandLineError(None, f"{option} {QUERY_PREFIX}{text}: expected {QUERY_PREFIX}TAG[,TAG…][>=P]",
                         f"e.g. {QUERY_PREFIX}piano>=0.6")
    threshold = float(m.group("min")) if m.group("min") else QUERY_MIN
    if not 0.0 <= threshold <= 1.0:
        raise CommandLineError(None, f"{option} {QUERY_PREFIX}{text}: P must lie between 0 and 1")
    found = run_query(library, TrackQuery(model_terms(library, model, names), threshold, None), model)
    if not found:
        raise UsageError(None, f"{option} {QUERY_PREFIX}{text}: no track scores at least {threshold} "
                         f"for {' and '.join(names)}", "lower P, or name the tracks; nothing was learned")
    return library.tracks_at([r.path for r in found])
