"""Options and helpers shared by several commands."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from tagger.store.db import default_db

DB_OPTION = typer.Option(None, "--db", envvar="TAGGER_DB", show_default=False,
                         help="Library database: a file path or an SQLAlchemy URL "
                              "[default: library.db in the user data folder].")


def db_path(db: str | None) -> str:
    return db or default_db()


def stdout_console() -> Console:
    return Console(highlight=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def bar(p: float, width: int = 20) -> str:
    filled = max(0.0, min(1.0, p)) * width
    return "█" * int(filled) + ("▌" if filled - int(filled) >= 0.5 else "")


def warn(message: str) -> None:
    print(f"tagger: {message}", file=sys.stderr)
