"""``tagger show``, ``tags``, ``stats`` and ``prune``: looking into the library."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from tagger.cli.common import DB_OPTION, TAG_APPLIES, bar, db_line, db_path, plural, printable, stdout_console
from tagger.errors import TaggerError, UsageError
from tagger.files.fields import TRACK_METADATA
from tagger.model.vocab import Vocabulary, kind_of, tag_name

if TYPE_CHECKING:
    from tagger.store.catalog import Store


def _library(db: str | None) -> Store:
    from tagger.store.catalog import Store  # SQLAlchemy and numpy: not needed for --help

    return Store(db_path(db), create=False)


def show_command(file: Path = typer.Argument(..., help="A scanned audio file (any path to it).", show_default=False),
                 top: int = typer.Option(0, "--top", "-n", min=0, metavar="N",
                                         help="Only the N most probable tags (0: all)."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                 db: str = DB_OPTION) -> None:
    """All tag probabilities of one track, highest first, and its groups' scores."""
    library = _library(db)
    path = os.path.abspath(os.path.expanduser(str(file)))
    row = library.find_track(path)
    if row is None and not os.path.exists(path):
        raise UsageError(file, "no such file, and no track of that path in the library")
    if row is None:
        raise UsageError(file, "is not in the library", "run 'tagger scan' on its folder first")
    if row.status != "ok":
        reason = row.error if row.status == "failed" else "the file is gone (run 'tagger prune')"
        raise TaggerError(row.path, f"has no scores: {row.status}: {reason}")
    scored_by = library.model_sets([row.id]).get(row.id, frozenset())
    models = [m for m in library.scored_models() if m.id in scored_by]
    views = [_ModelView(m, library.track_scores(row.id, m), top) for m in models]
    own = {k: getattr(row, k) for k in TRACK_METADATA if getattr(row, k, None) is not None}
    if as_json:
        main = views[0] if views else _ModelView(None, {}, top)
        print(json.dumps({"path": row.path, "model": main.name, "duration_s": row.duration_s, **own,
                          **main.as_json(), "models": {v.name: v.as_json() for v in views}}, indent=1))
        return
    console = stdout_console()
    console.print(f"[bold]{escape(printable(row.path))}[/bold]  [dim]{row.duration_s or 0:.1f} s, "
                  f"{row.chunks} chunks, {row.format}, {', '.join(v.name for v in views)}[/dim]")
    if own:
        console.print(escape(printable("  ".join(f"{k.replace('_', ' ')}: {v}" for k, v in own.items()))))
    several = len(views) > 1
    table = Table(show_edge=False)
    columns = (("tag", "left"), ("name", "left"), ("probability", "right"), ("", "left"))
    for col, just in ((("model", "left"),) if several else ()) + columns:
        table.add_column(col, justify=just)
    for v in views:
        for raw, p in sorted({**v.scores, **v.learned}.items(), key=lambda kv: -kv[1]):
            first = [escape(v.name)] if several else []
            if raw in v.learned:
                table.add_row(*first, "[dim](learned)[/dim]", escape(raw), f"{p:.3f}", bar(p))
            else:
                table.add_row(*first, raw, query_name(v.model.vocabulary, raw), f"{p:.3f}", bar(p))
        if several and v is not views[-1]:
            table.add_section()
    console.print(table)
    for v in views:
        if v.groups:
            console.print(("groups" + (f" ({escape(v.name)})" if several else "") + ": ")
                          + ", ".join(f"{g} {p:.3f}" for g, p in sorted(v.groups.items(), key=lambda kv: -kv[1])))


class _ModelView:
    """One model's scores of a track as show prints them: its tags, groups and learned tags
    (``top``: only the N most probable of its tags and learned tags)."""

    def __init__(self, model, scores: dict[str, float], top: int) -> None:
        self.model, self.name = model, model.name if model else None
        learned_names = model.learned if model else {}
        self.learned = {k: scores.pop(k) for k in list(scores) if k in learned_names}  # tagger learn's
        self.groups = {g: max(scores[m] for m in members) for g, members in model.vocabulary.groups.items()} \
            if model and scores else {}
        self.scores = scores
        if top:
            kept = sorted({**scores, **self.learned}.items(), key=lambda kv: -kv[1])[:top]
            self.scores = {k: p for k, p in kept if k in scores}
            self.learned = {k: p for k, p in kept if k in self.learned}

    def as_json(self) -> dict:
        return {"tags": dict(sorted(self.scores.items(), key=lambda kv: -kv[1])),
                "groups": dict(sorted(self.groups.items(), key=lambda kv: -kv[1])),
                "learned": dict(sorted(self.learned.items(), key=lambda kv: -kv[1]))}


def query_name(vocab: Vocabulary, raw: str) -> str:
    """What to type to get raw tag ``raw`` alone: its name, or ``raw:NAME`` where a group has
    taken the name (``vocals`` is the group, ``raw:vocals`` the raw tag)."""
    name = tag_name(raw)
    return name if vocab.resolve(name) == [raw] else f"raw:{name}"


def tags_command(min_score: float = typer.Option(TAG_APPLIES, "--min", min=0.0, max=1.0, metavar="P",
                                                 help="Count tracks at or above this probability (as query "
                                                      "and write take a tag to apply; learned tags from "
                                                      "their own 0.5, or P if higher)."),
                 model: str = typer.Option(None, "--model", "-m", metavar="NAME", show_default=False,
                                           help="Only this model's vocabulary (default: every model that "
                                                "scored tracks, the one that scored most first)."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                 db: str = DB_OPTION) -> None:
    """The vocabularies: groups and raw tags, with how many tracks reach --min.

    A library scanned with several models (scan -m A -m B) lists each model's; a name two of
    them have is read by query from the first listed, unless --model says otherwise."""
    library = _library(db)
    models = [library.model(name=model)] if model else library.scored_models()
    if not models:
        models = [library.model()]  # raises: no tagged tracks yet
    from tagger.library.learned import LEARNED_MIN  # numpy: loaded when the command runs, not for --help

    liked_all = {(r.model_id, r.name): r.examples.get("like") for r in library.learned_tag_rows()}
    listings = []
    for stored in models:
        learned = library.learned_counts(stored, max(min_score, LEARNED_MIN))  # tagger learn's, on this model
        listings.append((stored, library.tag_counts(stored, min_score), library.group_counts(stored, min_score),
                         learned, {t: liked_all.get((stored.id, t)) for t in learned}))
    if as_json:
        views = {stored.name: _tags_json(stored, *rest) for stored, *rest in listings}
        main = next(iter(views.values()))
        print(json.dumps({"model": models[0].name, "min": min_score, **main, "models": views}, indent=1))
        return
    console = stdout_console()
    seen: dict[str, str] = {}  # name → the model a query reads it from (the first listed that has it)
    for stored, counts, groups, learned, liked in listings:
        vocab = stored.vocabulary
        table = Table(show_edge=False, title=f"tags of {stored.name}: tracks with p ≥ {min_score}",
                      title_justify="left")
        table.add_column("name (for --tag)")
        table.add_column("kind")
        table.add_column("raw tag / members")
        table.add_column("tracks", justify="right")
        shadowed = []
        for g, n in sorted(groups.items()):
            table.add_row(f"[bold]{g}[/bold]", "group" if kind_of(g) == "tag" else f"group, {kind_of(g)}",
                          ", ".join(vocab.groups[g]), str(n))
        for t, n in learned.items():
            table.add_row(f"[bold]{escape(t)}[/bold]", "learned", f"from {liked.get(t)} liked tracks (tagger learn)",
                          str(n))
        for t, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            table.add_row(query_name(vocab, t), kind_of(tag_name(t)), t, str(n))
        for name in [*groups, *learned, *(tag_name(t) for t in counts)]:
            if name in seen and seen[name] != stored.name:
                shadowed.append(name)
            seen.setdefault(name, stored.name)
        console.print(table)
        if shadowed:
            console.print(f"{', '.join(sorted(set(shadowed)))}: also a name of {seen[shadowed[0]]}, which "
                          f"query reads it from; --model {stored.name} reads it from this one.", style="dim")
        if any(query_name(vocab, t).startswith("raw:") for t in counts):
            console.print("A group scores a track by its best member; raw:NAME is the raw tag of the "
                          "group's name.", style="dim")


def _tags_json(stored, counts: dict, groups: dict, learned: dict, liked: dict) -> dict:
    vocab = stored.vocabulary
    return {"tags": {tag_name(t): {"raw": t, "query": query_name(vocab, t), "kind": kind_of(tag_name(t)), "tracks": n}
                     for t, n in counts.items()},
            "groups": {g: {"members": vocab.groups[g], "tracks": n} for g, n in groups.items()},
            "learned": {t: {"liked": liked.get(t), "tracks": n} for t, n in learned.items()}}


def stats_command(as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                  db: str = DB_OPTION) -> None:
    """Tracks, hours, formats, failures and models in the library, and where it is.

    Also whether the database file is damaged, where checking is quick."""
    from tagger.store.catalog import Store

    s = Store(db_path(db), create=False, check="cheap").stats()
    if as_json:
        from tagger.store.db import display_db

        print(json.dumps({"database": display_db(db_path(db))} | s.__dict__, indent=1))
        return
    console = stdout_console()
    console.print(escape(db_line(db)))
    console.print(f"{s.tracks} tracks: {s.ok} tagged ({s.hours:.2f} h), {s.failed} failed, {s.missing} missing")
    if s.formats:
        console.print("formats: " + ", ".join(f"{k} {v}" for k, v in s.formats.items()))
    for name, sha, n in s.models:
        console.print(f"model {name} ({sha[:12]}): {n} tracks")
    for path, error in s.failures:
        console.print(f"  failed: {escape(printable(path))}: {escape(error or '')}", style="red")


def prune_command(db: str = DB_OPTION) -> None:
    """Delete tracks whose files are gone (marked missing by the last scan)."""
    from tagger.store.catalog import Store

    library = Store(db_path(db), create=False, check="cheap")
    with library.writing():  # not beside a scan (whose moves it could drop) or a write
        n = library.prune()
    print(f"removed {plural(n, 'missing track')}")
    gone = [r.path for r in library.tracks_under() if not os.path.exists(r.path)]
    if gone:  # deleted (or moved) since the last scan: a scan marks them, prune forgets them
        theirs = "has its file" if len(gone) == 1 else "have their files"
        print(f"tagger: {plural(len(gone), 'track')} of the library {theirs} "
              f"gone since the last scan (first: {printable(gone[0])}); run 'tagger scan' on the library first "
              "(a moved file keeps its scores), then 'tagger prune'", file=sys.stderr)
