"""Replacing a file atomically: write a temporary sibling, then ``os.replace`` it over the target.

Every file tagger writes in place (tag writes into audio files, model files, checkpoints,
cache entries) goes through ``replace_atomically``, so a crash leaves either the old file or
the new one, never half of one. Temporary siblings are named ``.NAME.PID-RANDOM.tagger-tmp``;
one whose PID is no longer running was left by a killed run, and ``remove_stale_temps`` (called
before each write) deletes it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUFFIX = ".tagger-tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary siblings of ``path`` left by killed tagger processes; returns them."""
    path = Path(path)
    removed = []
    try:
        candidates = list(path.parent.glob(f".{path.name}.*{SUFFIX}"))
    except OSError:
        return removed
    for tmp in candidates:
        pid_text = tmp.name[len(path.name) + 2:-len(SUFFIX)].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


@contextmanager
def replace_atomically(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; write the new content there. When the block
    ends without an exception the temporary file replaces ``path`` (same folder, so the rename
    is atomic); on any exception, or if nothing was written, it is removed and ``path`` is
    untouched. ``path`` itself must be the real file (resolve symlinks before calling)."""
    path = Path(path)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
