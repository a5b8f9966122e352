"""Options and helpers shared by several commands.

Nothing here imports torch, SQLAlchemy or numpy at the top: every command's ``--help`` imports
this module.
"""

from __future__ import annotations

import enum
import re
import sys
from pathlib import Path
from typing import get_args

import typer
from rich.console import Console
from typer.core import TyperArgument

from tagger.store.location import default_db

try:  # newer typer (0.29 here) bundles its own click
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer, on the real click
    import click

HELP_OPTION_NAMES = ["-h", "--help"]


def _home_short(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home):] if path.startswith(home + "/") else path


def _db_help() -> str:
    """--db's help: the database a command without --db uses, TAGGER_DB's where it is set."""
    import os

    from_env = os.environ.get("TAGGER_DB")
    if from_env:
        shown = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", from_env)  # no password in help
        return f"Library database: a file or an SQLAlchemy URL. Now: {_home_short(shown)} (from TAGGER_DB)"
    return f"Library database: a file or an SQLAlchemy URL. Default: {_home_short(default_db())} (or TAGGER_DB)"


DB_OPTION = typer.Option(None, "--db", envvar="TAGGER_DB", show_default=False, metavar="FILE|URL",
                         help=_db_help())
DEVICE_METAVAR = "[auto|cpu|cuda|cuda:N]"
# the largest count or row number an option takes (both databases' 32-bit integers; a number
# past it is a usage error, not an SQL overflow)
COUNT_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's seeds
# a probability at which a tag is taken to apply (as tagger write's default --min)
TAG_APPLIES = 0.2


def db_path(db: str | None) -> str:
    return db or default_db()


def db_line(db: str | None) -> str:
    """Which database a command reads, for people: ``database: PATH`` (and whether by default)."""
    from tagger.store.db import display_db  # SQLAlchemy

    default = "" if db else " (the default; --db or TAGGER_DB choose another)"
    return f"database: {display_db(db_path(db))}{default}"


# --- output ---------------------------------------------------------------------------------
class SafeConsole(Console):
    """A rich Console whose ``print`` shows control characters in the strings it is given as
    escapes (``printable``): a file name or a tag value cannot clear the screen, move the
    cursor or forge a line of tagger's output. (Tables escape their cells where they are made.)"""

    def print(self, *objects, **kwargs) -> None:
        super().print(*(printable(o) if isinstance(o, str) else o for o in objects), **kwargs)


def stdout_console() -> Console:
    """Rich output on stdout. On a terminal, tables fit its width; into a pipe or a file, nothing
    is wrapped or cut (a path stays whole, a row stays one line) and lines are never hard-wrapped."""
    console = SafeConsole(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 100_000
    return console


def stderr_console() -> Console:
    return SafeConsole(stderr=True, highlight=False)


def bar(p: float, width: int = 20) -> str:
    filled = max(0.0, min(1.0, p)) * width
    return "█" * int(filled) + ("▌" if filled - int(filled) >= 0.5 else "")


# C0 and C1 controls (ESC, CSI…), DEL, the line and paragraph separators, and the bidi controls
# that reorder what a terminal shows
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` on one line: control characters (a line break or an escape sequence in a file
    name) as escapes (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def warn(message: str) -> None:
    print(f"tagger: {printable(message)}", file=sys.stderr)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# --- values checked while parsing (a bad one is a usage error: exit status 2) ---------------------
def parse_chunks(text: str) -> int | None:
    """``all`` → None (every chunk); ``N`` → N evenly spaced chunks."""
    if text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise typer.BadParameter(f"must be 'all' or a positive number, not {text!r}", param_hint="'--chunks'")
    return n


def check_device(text: str) -> str:
    """auto, cpu, cuda or cuda:N (whether that device exists is checked when it is used)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text.strip().lower()):
        raise typer.BadParameter(f"{text!r} is not one of auto, cpu, cuda, cuda:N")
    return text.strip().lower()


# --- help that a person reads ---------------------------------------------------------------
def readable_help(command: click.Command) -> None:
    """Give every parameter of ``command`` and its subcommands a metavar a person reads.

    typer 0.29 (which bundles its own click) shows Python types where the metavar goes:
    ``<bool>`` beside every flag and ``--help``, ``<list[Path]>``, ``<str>``, and ``{paths}...``
    in usage lines. Set once on the built command tree, so every command gets the same: flags
    show nothing, values TEXT / N / NUMBER / PATH, choices ``[a|b|c]``, arguments their name in
    capitals (``FILE``, ``[PATHS]...``). A metavar a command declares is kept.
    """
    for param in command.params:
        _readable(param)
    help_option = command.get_help_option(click.Context(command, help_option_names=HELP_OPTION_NAMES))
    if help_option is not None and help_option.metavar is None:
        help_option.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        readable_help(sub)


class _Argument(TyperArgument):
    """An argument shown by its metavar alone: ``FILE``, ``PATHS...``, ``[MODEL]``."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx) -> None:
        return None

    def get_usage_pieces(self, ctx) -> list[str]:
        name = self.metavar
        return [(name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")]


def _readable(param: click.Parameter) -> None:
    if not hasattr(param, "type_descriptor"):
        return  # not typer 0.29's way of showing types
    if type(param) is TyperArgument:
        # typer builds its arguments itself, with no hook for their class: the subclass (no
        # fields of its own) changes only how the argument is shown
        param.__class__ = _Argument
        param.metavar = param.metavar or param.name.upper()
    elif param.metavar is None:  # else declared by the command
        param.metavar = "" if getattr(param, "is_flag", False) else _value_metavar(param.type_descriptor)


def _value_metavar(desc) -> str:
    if desc.choices:
        return "[" + "|".join(str(c.value if isinstance(c, enum.Enum) else c) for c in desc.choices) + "]"
    kind = get_args(desc.annotation)[0] if desc.is_list else desc.annotation
    if desc.is_path or (isinstance(kind, type) and issubclass(kind, Path)):
        return "PATH"
    return {int: "N", float: "NUMBER"}.get(kind, "TEXT")
