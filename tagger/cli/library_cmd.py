"""``tagger show``, ``tags``, ``stats`` and ``prune``: looking into the library."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from tagger.cli.common import DB_OPTION, bar, db_path, stdout_console
from tagger.errors import UsageError
from tagger.library import Library
from tagger.vocab import tag_name


def show_command(file: Path = typer.Argument(..., help="A scanned audio file.", show_default=False),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                 db: str = DB_OPTION) -> None:
    """All tag probabilities of one track, highest first, and its groups' scores."""
    library = Library(db_path(db), create=False)
    path = os.path.abspath(os.path.expanduser(str(file)))
    row = library.track(path)
    if row is None:
        raise UsageError(file, "is not in the library", "run 'tagger scan' on its folder first")
    if row.status != "ok":
        reason = row.error if row.status == "failed" else "the file is gone (run 'tagger prune')"
        raise UsageError(file, f"has no scores: {row.status}: {reason}")
    scores = library.track_scores(row.id)
    stored = library.model(model_id=row.model_id)
    groups = {g: max(scores[m] for m in members) for g, members in stored.vocabulary.groups.items()}
    if as_json:
        print(json.dumps({"path": path, "model": stored.name, "duration_s": row.duration_s,
                          "tags": dict(sorted(scores.items(), key=lambda kv: -kv[1])),
                          "groups": dict(sorted(groups.items(), key=lambda kv: -kv[1]))}, indent=1))
        return
    console = stdout_console()
    console.print(f"[bold]{escape(path)}[/bold]  [dim]{row.duration_s or 0:.1f} s, {row.chunks} chunks, "
                  f"{row.format}, {stored.name}[/dim]")
    table = Table(show_edge=False)
    for col, just in (("tag", "left"), ("name", "left"), ("probability", "right"), ("", "left")):
        table.add_column(col, justify=just)
    for raw, p in sorted(scores.items(), key=lambda kv: -kv[1]):
        table.add_row(raw, tag_name(raw), f"{p:.3f}", bar(p))
    console.print(table)
    if groups:
        console.print("groups: " + ", ".join(f"{g} {p:.3f}" for g, p in sorted(groups.items(), key=lambda kv: -kv[1])))


def tags_command(min_score: float = typer.Option(0.5, "--min", min=0.0, max=1.0,
                                                 help="Count tracks at or above this probability."),
                 model: str = typer.Option(None, "--model", "-m", show_default=False,
                                           help="Model (default: the one that scored most tracks)."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                 db: str = DB_OPTION) -> None:
    """The vocabulary: raw tags and groups, with how many tracks reach --min."""
    library = Library(db_path(db), create=False)
    stored = library.model(name=model)
    counts = library.tag_counts(stored, min_score)
    groups = library.group_counts(stored, min_score)
    if as_json:
        print(json.dumps({"model": stored.name, "min": min_score,
                          "tags": {tag_name(t): {"raw": t, "tracks": n} for t, n in counts.items()},
                          "groups": {g: {"members": stored.vocabulary.groups[g], "tracks": n}
                                     for g, n in groups.items()}}, indent=1))
        return
    console = stdout_console()
    table = Table(show_edge=False, title=f"tags of {stored.name}: tracks with p ≥ {min_score}", title_justify="left")
    table.add_column("name")
    table.add_column("raw tag / members")
    table.add_column("tracks", justify="right")
    for g, n in sorted(groups.items()):
        table.add_row(f"[bold]{g}[/bold]", ", ".join(stored.vocabulary.groups[g]), str(n))
    for t, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        table.add_row(tag_name(t), t, str(n))
    console.print(table)


def stats_command(as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                  db: str = DB_OPTION) -> None:
    """Tracks, hours, formats, failures and models in the library."""
    s = Library(db_path(db), create=False).stats()
    if as_json:
        print(json.dumps(s.__dict__, indent=1))
        return
    console = stdout_console()
    console.print(f"{s.tracks} tracks: {s.ok} tagged ({s.hours:.2f} h), {s.failed} failed, {s.missing} missing")
    if s.formats:
        console.print("formats: " + ", ".join(f"{k} {v}" for k, v in s.formats.items()))
    for name, sha, n in s.models:
        console.print(f"model {name} ({sha[:12]}): {n} tracks")
    for path, error in s.failures:
        console.print(f"  failed: {escape(path)}: {escape(error or '')}", style="red", soft_wrap=True)


def prune_command(db: str = DB_OPTION) -> None:
    """Delete tracks whose files are gone (marked missing by the last scan)."""
    n = Library(db_path(db), create=False).prune()
    print(f"removed {n} missing track{'s' if n != 1 else ''}")
