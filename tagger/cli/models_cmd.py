"""``tagger models``: list, inspect and convert model files."""

from __future__ import annotations

import enum
import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from tagger.cli.common import stdout_console
from tagger.engine.options import DEFAULT_MODELS
from tagger.model.modelcard import DEFAULT_MODEL, ModelCard, builtin_names, read_card

app = typer.Typer(help="List, inspect and convert models.", invoke_without_command=True,
                  no_args_is_help=False)


class MusicnnModel(str, enum.Enum):
    """The checkpoints tagger.model.convert.musicnn.SOURCES converts (named here: it imports torch)."""
    MTT_vgg = "MTT_vgg"
    MTT_musicnn = "MTT_musicnn"
    MSD_vgg = "MSD_vgg"
    MSD_musicnn = "MSD_musicnn"


def _trained_on(card: ModelCard) -> str:
    """The vocabulary's data set in a word: MTAT, MSD, or where the model was trained."""
    text = str(card.metrics.get("dataset") or card.provenance.get("trained_on") or "")
    return "MTAT" if "MagnaTagATune" in text else "MSD" if "Million Song" in text else (text[:20] or "—")


def _metric(card: ModelCard, key: str) -> str:
    value = card.metrics.get(key)
    return f"{value:.4f}" if isinstance(value, (int, float)) else "—"


@app.callback()
def list_models(ctx: typer.Context,
                as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the built-in models (run `tagger models info NAME` for one)."""
    if ctx.invoked_subcommand is not None:
        return
    cards = [read_card(name) for name in builtin_names()]
    if as_json:
        print(json.dumps([{"name": c.name, "default": c.name in DEFAULT_MODELS,
                           "architecture": c.architecture, "tags": len(c.tags), "data": _trained_on(c),
                           "parameters": c.parameters, "size_bytes": c.size_bytes,
                           "metrics": c.metrics} for c in cards], indent=1))
        return
    table = Table(show_edge=False)
    for col in ("name", "architecture", "data", "tags", "parameters", "size", "ROC-AUC", "PR-AUC"):
        table.add_column(col, justify="left" if col in ("name", "architecture", "data") else "right",
                         no_wrap=col in ("name", "architecture"))
    cards.sort(key=lambda c: (c.name not in DEFAULT_MODELS, _trained_on(c), c.name))
    for c in cards:
        name = f"{c.name} *" if c.name in DEFAULT_MODELS else c.name
        table.add_row(name, c.architecture, _trained_on(c), str(len(c.tags)), f"{c.parameters:,}",
                      f"{c.size_bytes / 1e6:.1f} MB", _metric(c, "roc_auc"), _metric(c, "pr_auc"))
    console = stdout_console()
    console.print(table)
    console.print("* what 'tagger scan' runs by default (together, each file decoded once; 'tagger tag' "
                  f"uses {DEFAULT_MODEL}).  data: the tags' source, MagnaTagATune (instruments, styles) or the Million "
                  "Song Dataset's Last.fm tags (genres, moods, decades). ROC-AUC / PR-AUC: macro averages on "
                  "that data set's test split, as reported by each model's authors (not comparable across "
                  "data sets).", style="dim")


@app.command("info")
def info(model: str = typer.Argument(DEFAULT_MODEL, metavar="NAME|FILE",
                                    help="Built-in model name or model file."),
         as_json: bool = typer.Option(False, "--json", help="Print the full metadata as JSON.")) -> None:
    """Show one model's metadata: tags, groups, front-end, provenance, metrics, license."""
    card = read_card(model)
    meta = card.to_metadata() | {"path": str(card.path), "sha256": card.sha256,
                                 "size_bytes": card.size_bytes}
    if as_json:
        print(json.dumps(meta, indent=1))
        return
    console = stdout_console()
    console.print(f"[bold]{card.name}[/bold]  {card.architecture}, {card.parameters:,} parameters, "
                  f"{card.size_bytes / 1e6:.1f} MB")
    rows = [("file", str(card.path)), ("sha256", card.sha256),
            ("input", f"{card.chunk_samples / card.sample_rate:g} s chunks at {card.sample_rate} Hz mono"),
            ("front-end", ", ".join(f"{k}={v}" for k, v in card.frontend.to_dict().items())),
            ("tags", ", ".join(card.tags)),
            ("groups", "; ".join(f"{g}: {', '.join(m)}" for g, m in card.groups.items()) or "—"),
            ("metrics", ", ".join(f"{k}={v}" for k, v in card.metrics.items()) or "—")]
    rows += [(k, str(v)) for k, v in card.provenance.items()]
    if not console.is_terminal:  # into a file or a pipe: plain lines, nothing padded or cut
        rows.append(("license", " ".join(card.license.split())))
        for k, v in rows:
            console.print(f"  {k}: {escape(v)}", soft_wrap=True)
        return
    rows.append(("license", card.license[:160] + ("…" if len(card.license) > 160 else "")))
    table = Table(show_header=False, show_edge=False, box=None)
    table.add_column(style="cyan", no_wrap=True)
    table.add_column()
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)


@app.command("convert-musicnn")
def convert(source: Path = typer.Argument(..., help="musicnn 0.1.0 wheel, or a folder holding "
                                          "its checkpoints (e.g. site-packages/musicnn)."),
            model: MusicnnModel = typer.Option(MusicnnModel.MTT_vgg, "--model", help="The checkpoint."),
            output: Path = typer.Option(None, "--output", "-o", metavar="FILE", show_default=False,
                                        help="Model file to write (default: ./NAME.safetensors)."),
            ) -> None:
    """Convert a musicnn TensorFlow checkpoint into a tagger model file (no TensorFlow needed).

    Get the wheel with: pip download --no-deps musicnn==0.1.0
    """
    from tagger.model.convert.musicnn import SOURCES, convert_musicnn  # torch

    out = output or Path(f"{SOURCES[model.value]['name']}.safetensors")
    card = convert_musicnn(source, out, model.value)
    print(f"wrote {out} ({card.name}, {card.parameters:,} parameters, sha256 {card.sha256[:16]}…)")
