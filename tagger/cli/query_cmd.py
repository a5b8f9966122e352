"""``tagger query``: tracks ranked by tags, as a table, JSON, CSV, M3U or paths."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from tagger.cli.common import DB_OPTION, db_path, stdout_console
from tagger.errors import UsageError
from tagger.library import Library
from tagger.query import QueryRow, Term, TrackQuery, parse_terms, run_query

FORMATS = ("table", "json", "jsonl", "csv", "m3u", "paths")


def query_command(
    tag: list[str] = typer.Option(..., "--tag", "-t", help="Tag or group name; repeat to require several.",
                                  show_default=False),
    not_tag: list[str] = typer.Option([], "--not", help="Rank down tracks with this tag (score 1 − p).",
                                      show_default=False),
    min_score: float = typer.Option(None, "--min", min=0.0, max=1.0, show_default=False,
                                    help="Only tracks whose score is at least this."),
    top: int = typer.Option(50, "--top", "-n", min=0, help="How many tracks; 0 for all."),
    model: str = typer.Option(None, "--model", "-m", show_default=False,
                              help="Whose scores to rank by (default: the model that scored most tracks)."),
    fmt: str = typer.Option("table", "--format", "-f", help=f"One of {', '.join(FORMATS)}."),
    db: str = DB_OPTION,
) -> None:
    """Tracks ranked by tag probability. Several --tag: a track's score is the minimum of its
    tags' scores; a group (female_vocals, …) scores the maximum of its members."""
    if fmt not in FORMATS:
        raise UsageError(None, f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    library = Library(db_path(db), create=False)
    stored = library.model(name=model)
    terms = parse_terms(stored.vocabulary, tag, not_tag)
    rows = run_query(library, TrackQuery(terms, min_score, top or None), stored)
    WRITERS[fmt](rows, terms)


def _table(rows: list[QueryRow], terms: tuple[Term, ...]) -> None:
    table = Table(show_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("score", justify="right")
    if len(terms) > 1:
        for t in terms:
            table.add_column(t.label, justify="right")
    table.add_column("time", justify="right")
    table.add_column("path", overflow="fold")
    for r in rows:
        extra = [f"{s:.3f}" for s in r.term_scores] if len(terms) > 1 else []
        table.add_row(str(r.rank), f"{r.score:.3f}", *extra, _mmss(r.duration_s), escape(r.path))
    console = stdout_console()
    console.print(table)
    if not rows:
        console.print("no tracks match", style="dim")


def _mmss(seconds: float | None) -> str:
    return "" if seconds is None else f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _record(r: QueryRow, terms: tuple[Term, ...]) -> dict:
    return {"rank": r.rank, "path": r.path, "score": round(r.score, 6),
            "scores": {t.label: round(s, 6) for t, s in zip(terms, r.term_scores)},
            "duration_s": None if r.duration_s is None else round(r.duration_s, 3), "format": r.format}


def _json(rows, terms) -> None:
    json.dump([_record(r, terms) for r in rows], sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


def _jsonl(rows, terms) -> None:
    for r in rows:
        sys.stdout.write(json.dumps(_record(r, terms), ensure_ascii=False) + "\n")


def _csv(rows, terms) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["rank", "score", *[t.label for t in terms], "duration_s", "format", "path"])
    for r in rows:
        writer.writerow([r.rank, f"{r.score:.6f}", *[f"{s:.6f}" for s in r.term_scores],
                         "" if r.duration_s is None else f"{r.duration_s:.3f}", r.format or "", r.path])


def _m3u(rows, terms) -> None:
    lines = ["#EXTM3U"]
    for r in rows:
        lines.append(f"#EXTINF:{round(r.duration_s or -1)},{Path(r.path).stem}")
        lines.append(r.path)
    sys.stdout.write("\n".join(lines) + "\n")


def _paths(rows, terms) -> None:
    for r in rows:
        sys.stdout.write(r.path + "\n")


WRITERS = {"table": _table, "json": _json, "jsonl": _jsonl, "csv": _csv, "m3u": _m3u, "paths": _paths}
