"""Options and helpers shared by several commands."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from tagger.errors import UsageError
from tagger.store.db import default_db

DB_OPTION = typer.Option(None, "--db", envvar="TAGGER_DB", show_default=False,
                         help="Library database: a file path or an SQLAlchemy URL "
                              "(default: library.db in the user data folder).")


def db_path(db: str | None) -> str:
    return db or default_db()


def stdout_console() -> Console:
    # lines never hard-wrapped: piped output stays one record per line for scripts
    return Console(highlight=False, soft_wrap=True)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def bar(p: float, width: int = 20) -> str:
    filled = max(0.0, min(1.0, p)) * width
    return "█" * int(filled) + ("▌" if filled - int(filled) >= 0.5 else "")


def warn(message: str) -> None:
    print(f"tagger: {message}", file=sys.stderr)


def parse_chunks(text: str) -> int | None:
    """``all`` → None (every chunk); ``N`` → N evenly spaced chunks."""
    if text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(None, f"--chunks must be 'all' or a positive number, not {text!r}")
    return n
