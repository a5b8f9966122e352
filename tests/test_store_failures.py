"""One line for every database failure, in every command (issue 19): a full disk, damaged
pages, a read-only file or folder, a 0-byte file, a URL with an '@' in its password, a FIFO
named as audio; and errors that survive a pickle (Ray sends them so)."""

from __future__ import annotations

import pickle

import pytest
from conftest import file_bytes, one_line, short_library

from tagger.errors import TaggerError


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_every_error_class_survives_a_pickle_round_trip():
    """Ray sends a worker's exception to the driver pickled: a TaggerError must arrive whole."""
    import tagger.engine.ray_engine  # noqa: F401 - each module defines error classes of its own
    import tagger.files.tagfile  # noqa: F401
    import tagger.library.writer  # noqa: F401
    import tagger.store.db  # noqa: F401

    classes = [TaggerError, *_all_subclasses(TaggerError)]
    assert len(classes) >= 9
    for cls in classes:
        for args in (("/m/a.flac", "cannot be read", "try again"), (None, "no path", None)):
            error = cls(*args)
            back = pickle.loads(pickle.dumps(error))
            assert type(back) is cls and str(back) == str(error)
            assert (back.path, back.reason, back.hint) == (error.path, error.reason, error.hint)


# --- one line for every database failure, in every command --------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB file system of its own (tmpfs), unmounted after; skips where mounting is not allowed."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(folder) -> None:
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass


def test_a_full_disk_is_one_line_in_every_command_that_writes_and_nothing_is_half_written(tmp_path, small_disk):
    import sqlite3

    from conftest import run_cli

    files = short_library(tmp_path / "music", 3)
    db = small_disk / "lib.db"
    assert run_cli("scan", "-m", "musicnn-vgg-mtt", tmp_path / "music", "--db", db, "--workers", "1").returncode == 0
    assert run_cli("write", tmp_path / "music", "--db", db).returncode == 0  # a run to undo
    before = file_bytes(files)
    # another reader keeps DB-wal and DB-shm in place: the disk fills up under a command that
    # opened the database, mid-way (without it, opening fails already: a case of its own)
    holder = sqlite3.connect(db)
    holder.execute("SELECT count(*) FROM tracks").fetchall()
    _fill(small_disk)
    for command in (("learn", "mine", "--like", files[0]), ("write", tmp_path / "music", "--force"),
                    ("write", "--remove", tmp_path / "music"), ("write", "--undo")):
        line = one_line(run_cli(*command, "--db", db))
        assert "lib.db: the disk is full (database or disk is full) (free some space" in line, (command, line)
    holder.close()
    line = one_line(run_cli("learn", "mine", "--like", files[0], "--db", db))
    assert "lib.db: " in line and ("disk is full" in line or "I/O error" in line) and "free some space" in line
    assert file_bytes(files) == before  # no file was changed without its journal row
    (small_disk / "filler").unlink()
    assert run_cli("write", "--undo", "--db", db).returncode == 0  # and all works again
    assert file_bytes(files) != before


def _damage(db, table: str) -> None:
    """Overwrite the middle of ``table``'s root page with garbage, as a bad sector would."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size + 8)
        f.write(bytes(range(256)) * (page_size // 256 - 1))


@pytest.fixture(scope="module")
def scanned_copy(tmp_path_factory):
    """A small scanned library (SQLite): each test damages a copy of its database."""
    from conftest import run_cli

    root = tmp_path_factory.mktemp("faults")
    files = short_library(root / "music", 3)
    db = root / "lib.db"
    assert run_cli("scan", "-m", "musicnn-vgg-mtt", root / "music", "--db", db, "--workers", "1").returncode == 0
    return root, files, db


def _copy(scanned_copy, tmp_path):
    import shutil

    root, files, db = scanned_copy
    shutil.copy(db, tmp_path / "lib.db")
    return files, tmp_path / "lib.db"


def test_a_damaged_database_is_one_line_saying_so_in_every_command(scanned_copy, tmp_path):
    from conftest import run_cli

    files, db = _copy(scanned_copy, tmp_path)
    _damage(db, "tracks")  # every command reads it
    for command in (("query", "-t", "rock"), ("show", files[0]), ("similar", files[0]), ("stats",),
                    ("learn", "mine", "--like", files[0]), ("write", "--dry-run"), ("write", "--undo"), ("prune",),
                    ("scan", files[0].parent, "--workers", "1")):
        line = one_line(run_cli(*command, "--db", db))
        assert "damaged" in line and ".recover" in line, (command, line)


def test_damage_the_command_never_reads_is_found_by_the_ones_that_check(scanned_copy, tmp_path):
    """A damaged page of embeddings' vectors: query reads none of it (which models scored a track
    it reads from the key's index; its answers are whole); stats and the commands that write
    check the file first (PRAGMA quick_check) and say so."""
    from conftest import run_cli

    files, db = _copy(scanned_copy, tmp_path)
    _damage(db, "embeddings")
    assert run_cli("query", "-t", "rock", "--db", db).returncode == 0
    for command in (("stats",), ("scan", files[0].parent, "--workers", "1"), ("prune",),
                    ("learn", "mine", "--like", files[0]), ("similar", files[0])):
        line = one_line(run_cli(*command, "--db", db))
        assert "damaged" in line, (command, line)


def test_an_empty_file_is_not_a_library(tmp_path):
    from conftest import run_cli

    db = tmp_path / "lib.db"
    db.write_bytes(b"")
    short_library(tmp_path / "music", 1)
    for command in (("stats",), ("query", "-t", "rock"), ("scan", tmp_path / "music", "--workers", "1")):
        line = one_line(run_cli(*command, "--db", db))
        assert "empty file (0 bytes), not a tagger library" in line, line
    assert db.stat().st_size == 0  # left as it was


RUN_AS_USER = "import sys\nfrom tagger.cli import run\nsys.exit(run(sys.argv[1:]))\n"


def _as_user(*args):
    """The command line as a user without root's powers (skips where that cannot be)."""
    from conftest import as_unprivileged

    code = f"import sys; sys.argv = ['tagger', *{[str(a) for a in args]!r}]\n{RUN_AS_USER}"
    return as_unprivileged(code)


@pytest.fixture
def open_tmp():
    """A temporary folder that any user may enter (pytest's are root's own), removed after."""
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="tagger-faults-"))
    base.chmod(0o755)
    yield base
    for p in [base, *base.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(base, ignore_errors=True)


def test_a_read_only_database_is_one_line_for_commands_that_write_and_read_only_ones_work(scanned_copy, open_tmp):
    import os

    files, db = _copy(scanned_copy, open_tmp)
    open_tmp.chmod(0o777)  # the folder lets the user create DB-shm; the file is not theirs to write
    db.chmod(0o444)
    for f in files:
        os.chmod(f, 0o666)
    assert _as_user("query", "-t", "rock", "--db", db).returncode == 0
    for command in (("learn", "mine", "--like", files[0]), ("write",)):
        line = one_line(_as_user(*command, "--db", db))
        assert "read-only" in line and "write permission" in line, (command, line)


def test_a_database_in_a_read_only_folder_says_what_to_do(scanned_copy, open_tmp):
    files, db = _copy(scanned_copy, open_tmp)
    folder = open_tmp / "ro"
    folder.mkdir()
    ro_db = folder / "lib.db"
    db.rename(ro_db)
    ro_db.chmod(0o644)
    folder.chmod(0o555)
    line = one_line(_as_user("query", "-t", "rock", "--db", ro_db))
    assert "make its folder writable" in line, line


# --- smaller ones ------------------------------------------------------------------------------

def test_an_at_sign_in_a_password_is_one_line_that_shows_none_of_it(pg_server):
    from conftest import run_cli

    url = f"postgresql://tagger:sec@ret-pw@127.0.0.1:{pg_server.port}/postgres"
    line = one_line(run_cli("stats", "--db", url))
    assert "holds an '@'" in line and "%40" in line and "ret-pw" not in line and "sec" not in line, line


def test_a_fifo_or_a_device_is_not_an_audio_file(scanned_copy, tmp_path, vgg):
    """(A FIFO would block the read; /dev/zero was "empty file (0 bytes)".)"""
    import os

    from conftest import run_cli

    from tagger.engine.inference import tag_file
    from tagger.errors import DecodeError

    _, _, db = scanned_copy
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        with pytest.raises(DecodeError, match="is not a regular file"):
            tag_file(vgg, path, 1)
    line = one_line(run_cli("similar", fifo, "--db", db))  # the command, as a person meets it
    assert "is not a regular file" in line, line
