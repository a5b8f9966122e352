"""Replacing a file atomically: write a temporary sibling, then ``os.replace`` it over the target.

Every file tagger writes in place (tag writes into audio files, model files, checkpoints,
cache entries) goes through ``replace_atomically``, so a crash leaves either the old file or
the new one, never half of one: the temporary file is flushed to disk before the rename, so
this holds across a power cut too, not only a killed process.

Temporary siblings are named ``.NAME.HOST-PID-RANDOM.tagger-tmp``. One of this host whose
PID is no longer running was left by a killed run; so was one of another host (a music folder
on NFS or SMB, a volume shared by containers) last changed over a day ago: its PIDs mean
nothing here, so only age tells. ``remove_stale_temps`` (one file's) and
``remove_stale_temps_in`` (a whole folder's) delete those. A temporary file is only ever a
copy, so deleting one never loses data: at worst the run that made it fails that one file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUFFIX = ".tagger-tmp"
_NAME_BYTES = 180  # of the file's name kept in its temp's name: NAME_MAX is 255 bytes
_HOST_CHARS = 32  # of the host's name: 180 + 32 + PID, RANDOM and the rest stay under 255
OTHER_HOST_STALE_S = 24 * 3600  # no run takes a day over one file


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@functools.cache
def this_host() -> str:
    """This host's name as temps carry it: no dots (the name's parts are found by them), at
    most _HOST_CHARS characters. A longer name keeps its start and a hash of the whole, so
    that containers named alike (``worker-5d8f7c9b4-xk2lp``, ``worker-5d8f7c9b4-q9wzt``)
    stay apart."""
    name = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname()) or "host"
    if len(name) > _HOST_CHARS:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:_HOST_CHARS - 9]}_{digest}"
    return name


def _is_stale(folder: Path, temp_name: str, now: float | None = None) -> bool:
    """Whether a ``.NAME.HOST-PID-RANDOM.tagger-tmp`` temp was left by a run that is over:
    this host's whose process is gone, another host's last changed over a day before ``now``.
    Older names: ``.NAME.PID-RANDOM.tagger-tmp`` (before hosts were recorded) is judged by
    its PID as this host's; ``.NAME.RANDOM.tagger-tmp`` (before PIDs were) is stale, as no
    such tagger runs beside this one."""
    if not (temp_name.startswith(".") and temp_name.endswith(SUFFIX)):
        return False
    # mkstemp's RANDOM has no dots or dashes, this_host() no dots: split from the right
    parts = temp_name[:-len(SUFFIX)].rsplit(".", 1)[-1].rsplit("-", 2)
    if len(parts) == 1 or not parts[-2].isdigit():
        return True
    host, pid = (parts[0] if len(parts) == 3 else this_host()), int(parts[-2])
    if host != this_host():
        return _changed_before(folder / temp_name, (time.time() if now is None else now) - OTHER_HOST_STALE_S)
    return pid != os.getpid() and not _pid_alive(pid)


def _changed_before(path: Path, when: float) -> bool:
    """By the file's status change time: a copy takes the original's modification time
    (shutil.copy2), which says nothing about when the copy was made."""
    try:
        return path.stat().st_ctime < when
    except OSError:  # gone already
        return False


def _remove(folder: Path, names: list[str]) -> list[Path]:
    removed = []
    for name in names:
        try:
            (folder / name).unlink()
            removed.append(folder / name)
        except OSError:  # gone already, or not ours to delete
            pass
    return removed


def _temp_names(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return [e.name for e in entries if e.name.endswith(SUFFIX) and e.name.startswith(".")]
    except OSError:
        return []


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary siblings of ``path`` left by killed tagger processes; returns them."""
    path = Path(path)
    prefix = f".{_short_name(path.name)}."
    folder = path.parent
    return _remove(folder, [n for n in _temp_names(folder) if n.startswith(prefix) and _is_stale(folder, n)])


def remove_stale_temps_in(folder: str | os.PathLike[str], now: float | None = None) -> list[Path]:
    """Delete every temporary file in ``folder`` left by a killed tagger process; returns them.
    One listing per folder: cheaper than ``remove_stale_temps`` for each of its files.
    ``now``: the time other hosts' temps are judged by (default: the clock's)."""
    folder = Path(folder)
    return _remove(folder, [n for n in _temp_names(folder) if _is_stale(folder, n, now)])


def _short_name(name: str) -> str:
    """``name`` cut to fit in a temp's name (a long track title must not make mkstemp fail)."""
    return name.encode("utf-8", "surrogateescape")[:_NAME_BYTES].decode("utf-8", "ignore")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replace_atomically(path: str | os.PathLike[str], remove_stale: bool = True,
                       sync: bool = True) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; write the new content there. When the block
    ends without an exception the temporary file is synced to disk and replaces ``path`` (same
    folder, so the rename is atomic); on any exception it is removed and ``path`` is untouched.
    ``path`` itself must be the real file (resolve symlinks before calling). ``remove_stale``:
    first delete ``path``'s temps left by killed runs (callers that swept the folder already
    pass False). ``sync=False`` skips the sync (a few ms per file) for files that can be made
    again, such as cache entries: a killed process still leaves the old file or the new one,
    a power cut may leave an empty one."""
    path = Path(path)
    if remove_stale:
        remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{_short_name(path.name)}.{this_host()}-{os.getpid()}-", suffix=SUFFIX,
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # the data reaches the disk before the new name does, so a power cut leaves the old file
        # or the new one, never an empty one. (The folder is not synced: the rename may then be
        # lost, which leaves the old file, and would cost a second sync per file.)
        if sync:
            _fsync_file(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
