"""The ``tagger`` command line. Commands parse options, call one library function, and print;
the library never prints.

Exit status: 0 done; 1 an error tagger reports (TaggerError: a file, database or model problem,
an unknown tag...), as one line on stderr (``--verbose`` adds the traceback); 2 a command line
that does not parse (unknown command or option, missing argument, a value of the wrong kind or
outside its choices), also one line; 130 interrupted (Ctrl-C).

Every command module imports only torch-free modules at the top (the rest inside the command),
so ``--help`` and the commands that need no model start without importing torch.
"""

from __future__ import annotations

import sys
import traceback

import typer

from tagger import __version__
from tagger.cli import (
    learn_cmd,
    library_cmd,
    map_cmd,
    models_cmd,
    query_cmd,
    scan_cmd,
    similar_cmd,
    tag_cmd,
    train_cmd,
    write_cmd,
)
from tagger.cli.common import HELP_OPTION_NAMES, click, printable, readable_help
from tagger.errors import CommandLineError, TaggerError

app = typer.Typer(
    name="tagger", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Tag a music library with short-chunk CNNs (50 MagnaTagATune tags).",
    context_settings={"help_option_names": HELP_OPTION_NAMES})
app.command("scan")(scan_cmd.scan_command)
app.command("query")(query_cmd.query_command)
app.command("similar")(similar_cmd.similar_command)
app.command("radio")(similar_cmd.radio_command)
app.command("show")(library_cmd.show_command)
app.command("tags")(library_cmd.tags_command)
app.command("stats")(library_cmd.stats_command)
app.command("prune")(library_cmd.prune_command)
app.command("map")(map_cmd.map_command)
app.command("write")(write_cmd.write_command)
app.command("learn")(learn_cmd.learn_command)
app.command("tag")(tag_cmd.tag)
app.add_typer(models_cmd.app, name="models")
app.command("train")(train_cmd.train_command)
app.command("evaluate")(train_cmd.evaluate_command)

_verbose = False
_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click ≥ 8.2


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


def command() -> click.Command:
    """The whole command tree, with readable help."""
    cli = typer.main.get_command(app)
    readable_help(cli)
    return cli


def run(args: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    try:
        status = command().main(args, prog_name="tagger", standalone_mode=False)
    except _NO_ARGS as e:  # bare `tagger`: the help, as a usage error
        print(e.format_message(), file=sys.stderr)
        return 2
    except click.exceptions.UsageError as e:
        return _error(_usage_message(e), e, 2)
    except click.exceptions.ClickException as e:  # e.g. a file option that cannot be opened
        return _error(e.format_message(), e, e.exit_code)
    except typer.Abort:  # end of input at a prompt
        return 1
    except CommandLineError as e:
        return _error(str(e), e, 2)
    except TaggerError as e:
        return _error(str(e), e, 1)
    except KeyboardInterrupt:  # typer turns one inside a command into exit status 130 itself
        return 130
    return status if isinstance(status, int) else 0


def _usage_message(e) -> str:
    text = " ".join(e.format_message().split()).replace("Value error, ", "").rstrip(".")
    where = e.ctx.command_path if e.ctx is not None else "tagger"
    return f"{text[:1].lower()}{text[1:]} (see '{where} --help')"


def _error(message: str, e: BaseException, status: int) -> int:
    if _verbose:
        traceback.print_exception(e)
    print(f"tagger: error: {printable(message)}", file=sys.stderr)
    return status


def main() -> None:
    sys.exit(run())
