"""The ``tagger`` command line. Commands parse options, call one library function, and print;
the library never prints. Expected failures (TaggerError) become one line on stderr and exit
status 1; ``--verbose`` adds the traceback."""

from __future__ import annotations

import sys
import traceback

import typer

from tagger import __version__
from tagger.cli import library_cmd, models_cmd, query_cmd, scan_cmd, tag_cmd, train_cmd, write_cmd
from tagger.errors import TaggerError

app = typer.Typer(
    name="tagger", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Tag a music library with short-chunk CNNs (50 MagnaTagATune tags).",
    context_settings={"help_option_names": ["-h", "--help"]})
app.command("scan")(scan_cmd.scan_command)
app.command("query")(query_cmd.query_command)
app.command("show")(library_cmd.show_command)
app.command("tags")(library_cmd.tags_command)
app.command("stats")(library_cmd.stats_command)
app.command("prune")(library_cmd.prune_command)
app.command("write")(write_cmd.write_command)
app.command("tag")(tag_cmd.tag)
app.add_typer(models_cmd.app, name="models")
app.add_typer(train_cmd.app, name="train")
app.command("evaluate")(train_cmd.evaluate_command)

_verbose = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tagger {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks for errors."),
) -> None:
    global _verbose
    _verbose = verbose


def main() -> None:
    try:
        app(prog_name="tagger")
    except TaggerError as e:
        if _verbose:
            traceback.print_exc()
        print(f"tagger: error: {e}", file=sys.stderr)
        sys.exit(1)
