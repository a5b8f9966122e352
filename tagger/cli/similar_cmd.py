"""``tagger similar`` and ``tagger radio``: more like this, by embedding.

stdout holds only the results in the chosen format; notes (a file embedded now, tracks of
other models left out, the radio's random seed) go to stderr.
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

from tagger.cli.common import COUNT_MAX, DB_OPTION, db_path, plural, printable, stdout_console, warn
from tagger.cli.tracklist import Format, display_name, mmss, write_m3u, write_paths
from tagger.files.fields import TRACK_METADATA

if TYPE_CHECKING:
    from tagger.library.similar import Neighbour, Neighbourhood


FORMAT_OPTION = typer.Option(Format.table, "--format", "-f", help="Output format.")
MODEL_OPTION = typer.Option(None, "--model", "-m", metavar="NAME", show_default=False,
                            help="Whose embedding to compare by, where several models scored the library "
                                 "(default: the one that scored most tracks; of equals, the MagnaTagATune "
                                 "model, measured best at finding tracks of a kind).")


def _neighbourhood(db: str | None, model: str | None = None) -> Neighbourhood:
    from tagger.library.similar import Neighbourhood
    from tagger.store.catalog import Store  # SQLAlchemy and numpy: not needed for --help

    return Neighbourhood(Store(db_path(db), create=False), model_name=model)


def _say_embedding(hood: Neighbourhood, model_name: str | None) -> None:
    """Where several models scored the library, whose embedding this was (on stderr)."""
    if len(hood.model_counts()) > 1:
        how = "asked for" if model_name else "--model NAME chooses another"
        warn(f"compared by the embedding of {hood.main_model().name} ({how})")


def similar_command(
    target: str = typer.Argument(..., metavar="TRACK_OR_FILE", show_default=False,
                                 help="A library track (any path to it) or an audio file, embedded now."),
    top: int = typer.Option(20, "-n", "--top", min=1, max=COUNT_MAX, metavar="N", help="How many tracks."),
    fmt: Format = FORMAT_OPTION,
    same_model: bool = typer.Option(False, "--same-model",
                                    help="Compare with the tracks of the track's own model (default: "
                                         "the library's model, embedding the file with it if need be)."),
    model: str = MODEL_OPTION,
    db: str = DB_OPTION,
) -> None:
    """The tracks nearest to one track or file by embedding, most similar first.

    Similarity is the cosine of the embeddings standardised over the library (the best of the
    measured choices, RESULTS.md). The track itself and its copies (same content) are left out."""
    hood = _neighbourhood(db, model)
    result = hood.similar(target, top, same_model)
    _say_embedding(hood, model)
    if result.embedded:
        why = "is not in the library" if result.query.track is None else "was scanned by another model"
        warn(f"{printable(result.query.path)} {why}: embedded it now with {result.query.model.name}")
    WRITERS[fmt](result.neighbours)
    if result.other_models:
        warn(f"{plural(result.other_models, 'track')} not scored by {result.query.model.name} are not compared"
             + ("" if same_model else " (--same-model compares a track with those of its own model)"))
    if not result.neighbours:
        warn("no other track to compare with")


def radio_command(
    seeds: list[str] = typer.Argument(..., metavar="SEED", show_default=False,
                                      help="Tracks (or audio files) to start from; the playlist opens with them."),
    top: int = typer.Option(50, "-n", "--top", min=1, max=COUNT_MAX, metavar="N", help="How many tracks, seeds included."),
    fmt: Format = FORMAT_OPTION,
    max_per_artist: int = typer.Option(None, "--max-per-artist", min=1, metavar="K", show_default=False,
                                       help="At most K tracks of one artist (else album artist, album, "
                                            "folder). Default: no limit."),
    seed: int = typer.Option(None, "--seed", min=0, metavar="S", show_default=False,
                             help="Random seed: the same S gives the same playlist. Default: a new one."),
    model: str = MODEL_OPTION,
    db: str = DB_OPTION,
) -> None:
    """A playlist that walks the seeds' neighbourhood: no track twice, near the seeds.

    Each next track is one of the five best by similarity to the track before and to the
    nearest seed, drawn at random: --seed S repeats a playlist."""
    hood = _neighbourhood(db, model)
    result = hood.radio(seeds, top, max_per_artist, random_seed=seed)
    _say_embedding(hood, model)
    WRITERS[fmt](result.tracks)
    if seed is None:
        warn(f"--seed {result.random_seed} repeats this playlist")
    if result.short:
        why = f" with at most {max_per_artist} per artist" if max_per_artist else ""
        warn(f"only {plural(len(result.tracks), 'track')}{why}: the library has no more")


# --- output ---------------------------------------------------------------------------------


def _table(rows: list[Neighbour]) -> None:
    table = Table(show_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("similarity", justify="right")
    table.add_column("time", justify="right")
    named = any(display_name(r) for r in rows)
    if named:
        table.add_column("track")
    table.add_column("path", overflow="fold")
    for r in rows:
        sim = "seed" if r.is_seed else f"{r.similarity:.3f}"
        track = [escape(printable(display_name(r) or Path(r.path).stem))] if named else []
        table.add_row(str(r.rank), sim, mmss(r.duration_s), *track, escape(printable(r.path)))
    stdout_console().print(table)


def _record(r: Neighbour) -> dict:
    return {"rank": r.rank, "path": r.path, "similarity": round(r.similarity, 6), "seed": r.is_seed,
            "duration_s": None if r.duration_s is None else round(r.duration_s, 3), "format": r.format,
            **{k: r.metadata.get(k) for k in TRACK_METADATA}}


def _json(rows: list[Neighbour]) -> None:
    json.dump([_record(r) for r in rows], sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


def _jsonl(rows: list[Neighbour]) -> None:
    for r in rows:
        sys.stdout.write(json.dumps(_record(r), ensure_ascii=False) + "\n")


def _csv(rows: list[Neighbour]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\r\n")  # RFC 4180: a CR in a value is quoted too
    writer.writerow(["rank", "similarity", "seed", "duration_s", "format", *TRACK_METADATA, "path"])
    for r in rows:
        writer.writerow([r.rank, f"{r.similarity:.6f}", int(r.is_seed),
                         "" if r.duration_s is None else f"{r.duration_s:.3f}", r.format or "",
                         *["" if r.metadata.get(k) is None else r.metadata[k] for k in TRACK_METADATA], r.path])


WRITERS = {Format.table: _table, Format.json: _json, Format.jsonl: _jsonl, Format.csv: _csv,
           Format.m3u: write_m3u, Format.paths: write_paths}
