"""``tagger tag FILE...``: tag single files and print their top tags."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from tagger.cli.common import DEVICE_METAVAR, bar, check_device, parse_chunks, printable, stdout_console
from tagger.errors import TaggerError
from tagger.model.modelcard import DEFAULT_MODEL

if TYPE_CHECKING:
    from tagger.engine.inference import TrackScores


def _table(scores: TrackScores, tags: list[str], top: int) -> Table:
    order = scores.probabilities.argsort()[::-1][:top]
    table = Table(show_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("tag")
    table.add_column("probability", justify="right")
    table.add_column("")
    for rank, i in enumerate(order, 1):
        p = float(scores.probabilities[i])
        table.add_row(str(rank), tags[i], f"{p:.3f}", bar(p))
    return table


def _expand_folders(paths: list[Path]) -> tuple[list[Path], int]:
    """Each folder among ``paths`` as the audio files under it (a file named stays as it is,
    audio or not: tag says what it could not read), and how many folders held none (an error
    each, as a file that cannot be read is)."""
    from tagger.audio.discover import discover

    out: list[Path] = []
    empty = 0
    for p in paths:
        if p.is_dir():
            found = discover([p])
            if not found.files:
                print(f"tagger: error: {printable(str(p))}: is a folder with no audio files in it", file=sys.stderr)
                empty += 1
            out += [Path(f.path) for f in found.files]
        else:
            out.append(p)
    return out, empty


def tag(
    files: list[Path] = typer.Argument(..., metavar="FILE", show_default=False,
                                       help="Audio files to tag, or folders (their audio files, as scan finds them)."),
    top: int = typer.Option(10, "--top", "-n", min=1, metavar="N", help="How many tags to show per file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of tables."),
    model_name: str = typer.Option(DEFAULT_MODEL, "--model", "-m", metavar="NAME|FILE",
                                   help="Built-in model name or path to a model file."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE_METAVAR, callback=check_device,
                               help="Where to run the model."),
    chunks: str = typer.Option("all", "--chunks", metavar="N|all",
                               help="'all' 3 s chunks, or N evenly spaced ones."),
) -> None:
    """Tag audio files and print their most probable tags."""
    n_chunks = parse_chunks(chunks)
    files, empty_folders = _expand_folders(files)
    from tagger.engine.inference import resolve_device, tag_file  # torch: only when a model runs
    from tagger.model.modelfile import load_model

    model = load_model(model_name, resolve_device(device))
    tags = model.card.tags
    console = stdout_console()
    failed = empty_folders
    for path in files:
        try:
            scores = tag_file(model, path, n_chunks)
        except TaggerError as e:  # one bad file must not hide the others' results
            print(f"tagger: error: {printable(str(e))}", file=sys.stderr)
            failed += 1
            continue
        if as_json:
            order = scores.probabilities.argsort()[::-1][:top]
            print(json.dumps({"path": str(path), "model": model.card.name,
                              "duration_s": round(scores.duration_s, 3), "chunks": scores.n_chunks,
                              "tags": {tags[i]: round(float(scores.probabilities[i]), 4) for i in order}}))
        else:
            console.print(f"[bold]{escape(str(path))}[/bold]  [dim]{scores.duration_s:.1f} s, "
                          f"{scores.n_chunks} chunks, {model.card.name}[/dim]")
            console.print(_table(scores, tags, top))
    if failed:
        raise typer.Exit(1)
