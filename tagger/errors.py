"""One error family: everything a user can cause raises a TaggerError that names the file.

The CLI catches TaggerError only, prints ``str(error)`` on one line and exits non-zero;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

# the reason recorded for a file whose scores came out NaN or infinite (the engine finds it;
# the store checks again before it writes)
NOT_FINITE = "the model's scores for this file are not finite (NaN or infinity); it was not stored"


def quoted(text: str, limit: int = 60) -> str:
    """``text`` as an error message quotes what a user typed: in quotes, cut at ``limit``
    characters (a 100 kB argument is not echoed whole)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]).rstrip("'\"") + "…" + repr(text)[-1]


class TaggerError(Exception):
    """An expected failure, described in one line for the user."""

    def __init__(self, path: str | Path | None, reason: str, hint: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = reason
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{self.reason}{hint}"

    def __reduce__(self):
        # pickled by its fields, not by Exception's args (the one message): Ray sends a
        # worker's error to the driver this way, and it must arrive as the error it was
        return type(self), (self.path, self.reason, self.hint), self.__dict__


class DecodeError(TaggerError):
    """An audio file could not be read or decoded."""


class ModelFileError(TaggerError):
    """A model or checkpoint file is missing, corrupt or of a kind we refuse to load."""


class UsageError(TaggerError):
    """A bad option or argument (unknown tag, unknown device...)."""


class CommandLineError(UsageError):
    """An option value or combination the command line cannot take (``--compile maybe``,
    ``--run`` without ``--undo``): exit status 2, like the parser's own errors. Problems with
    what the options name (an unknown tag, a file not in the library) stay UsageErrors: 1."""
