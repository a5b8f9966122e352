"""``tagger query``: tracks ranked by tags, as a table, JSON, CSV, M3U or paths.

stdout holds only the results in the chosen format; notes for the person reading (tracks left
out, no good match) go to stderr.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from tagger.cli.common import COUNT_MAX, DB_OPTION, TAG_APPLIES, db_path, plural, printable, stdout_console, warn
from tagger.cli.tracklist import Format, display_name, mmss, write_m3u, write_paths
from tagger.files.fields import TRACK_METADATA

if TYPE_CHECKING:
    from tagger.store.query import QueryRow, Term


def query_command(
    tag: list[str] = typer.Option(..., "--tag", "-t", metavar="TAG", show_default=False,
                                  help="Tag or group name; repeat to require several."),
    not_tag: list[str] = typer.Option([], "--not", metavar="TAG", show_default=False,
                                      help="Rank down tracks with this tag (score 1 − p)."),
    min_score: float = typer.Option(None, "--min", min=0.0, max=1.0, metavar="P", show_default=False,
                                    help="Only tracks whose score is at least this."),
    top: int = typer.Option(50, "--top", "-n", min=0, max=COUNT_MAX, metavar="N", help="How many tracks; 0 for all."),
    model: str = typer.Option(None, "--model", "-m", metavar="NAME", show_default=False,
                              help="Where several models scored the library: the model to read a tag name "
                                   "from when more than one has it (rock, guitar, …). Default: the model "
                                   "that scored the most tracks. A name only one model has is read from it."),
    where: list[str] = typer.Option([], "--where", "-w", metavar="FIELD=VALUE", show_default=False,
                                    help="Only tracks whose own metadata matches: artist=NAME (equal, any case), "
                                         "genre~jazz (contains), year>=1990, year<=1999. Fields: title, artist, "
                                         "album, album_artist, genre, year, track_no, format, path. Repeat: all must hold."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
    db: str = DB_OPTION,
) -> None:
    """Tracks ranked by tag probability.

    Several --tag: a track's score is the minimum of its tags' scores; a group (female_vocals,
    …) scores the maximum of its members. Where the library holds several models' scores
    (scan -m A -m B), each tag is read from the model that has it: jazz from the Million Song
    Dataset model, piano from the MagnaTagATune one; a name both have (rock) from --model, or
    else from the model that scored the most tracks. Notes (tracks left out, no good match) go
    to stderr: stdout holds only the results."""
    from tagger.library.query import library_terms, parse_where
    from tagger.store.catalog import Store  # SQLAlchemy and numpy: not needed for --help
    from tagger.store.query import TrackQuery, run_query

    library = Store(db_path(db), create=False)
    prefer = library.model(name=model) if model else None
    terms = library_terms(library, tag, not_tag, prefer)
    rows = run_query(library, TrackQuery(terms, min_score, top or None, parse_where(where)))
    WRITERS[fmt](rows, terms)
    _note_unscored(library.model_counts(), library.ok_count(), terms)
    _note_weak_match(rows, terms, min_score, where)


def _note_unscored(counts: list[tuple[int, str, str, int]], ok: int, terms: tuple[Term, ...]) -> None:
    """Tracks that a term's model has not scored are not in the ranking: say so, and how to
    have them ranked."""
    scored = {mid: n for mid, _, _, n in counts}
    names = [name for _, name, _, _ in counts]
    for m in {t.model.id: t.model for t in terms}.values():
        left = ok - scored.get(m.id, 0)
        if left > 0:
            label = m.name if names.count(m.name) == 1 else f"{m.name} {m.sha256[:12]}"
            which = " and ".join(t.label for t in terms if t.model.id == m.id)
            warn(f"{plural(left, 'track')} not scored by {label} (where {which} comes from) are not ranked; "
                 f"'tagger scan FOLDER --model {m.name}' scores them")


def _note_weak_match(rows: list[QueryRow], terms: tuple[Term, ...], min_score: float | None,
                     where: list[str] | None = None) -> None:
    """Every track is ranked, however badly it matches: say when even the best one does not."""
    label = " and ".join(t.label for t in terms)
    if not rows:
        conditions = ([f"with a score of at least {min_score}"] if min_score is not None else []) + \
            [f"--where {w}" for w in where or []]
        warn(f"no track matches {label}" + (" " + " and ".join(conditions) if conditions else ""))
    elif rows[0].score < TAG_APPLIES:
        warn(f"no track scores above {TAG_APPLIES} for {label} (best: {rows[0].score:.3f}); the tracks are "
             "still ranked by it, best first. The model gives some tags high probabilities rarely, so a "
             "low best score need not mean the library has no such tracks")


def _table(rows: list[QueryRow], terms: tuple[Term, ...]) -> None:
    table = Table(show_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("score", justify="right")
    if len(terms) > 1:
        for t in terms:
            table.add_column(t.label, justify="right")
    table.add_column("time", justify="right")
    named = any(r.metadata.get("title") or r.metadata.get("artist") for r in rows)
    if named:
        table.add_column("track")
    table.add_column("path", overflow="fold")
    for r in rows:
        extra = [f"{s:.3f}" for s in r.term_scores] if len(terms) > 1 else []
        track = [escape(printable(display_name(r) or Path(r.path).stem))] if named else []
        table.add_row(str(r.rank), f"{r.score:.3f}", *extra, mmss(r.duration_s), *track, escape(printable(r.path)))
    stdout_console().print(table)


def _record(r: QueryRow, terms: tuple[Term, ...]) -> dict:
    return {"rank": r.rank, "path": r.path, "score": round(r.score, 6),
            "scores": {t.label: round(s, 6) for t, s in zip(terms, r.term_scores)},
            "duration_s": None if r.duration_s is None else round(r.duration_s, 3), "format": r.format,
            **{k: r.metadata.get(k) for k in TRACK_METADATA}}


def _json(rows, terms) -> None:
    json.dump([_record(r, terms) for r in rows], sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


def _jsonl(rows, terms) -> None:
    for r in rows:
        sys.stdout.write(json.dumps(_record(r, terms), ensure_ascii=False) + "\n")


def _csv(rows, terms) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\r\n")  # RFC 4180: a CR in a value is quoted too
    writer.writerow(["rank", "score", *[t.label for t in terms], "duration_s", "format", *TRACK_METADATA, "path"])
    for r in rows:
        writer.writerow([r.rank, f"{r.score:.6f}", *[f"{s:.6f}" for s in r.term_scores],
                         "" if r.duration_s is None else f"{r.duration_s:.3f}", r.format or "",
                         *["" if r.metadata.get(k) is None else r.metadata[k] for k in TRACK_METADATA], r.path])


WRITERS = {Format.table: _table, Format.json: _json, Format.jsonl: _jsonl, Format.csv: _csv,
           Format.m3u: lambda rows, terms: write_m3u(rows), Format.paths: lambda rows, terms: write_paths(rows)}
