"""The shared store under faults (issue 19): real SQLite files and the real PostgreSQL server
(tests/pg_server.py) with faults injected: full disks, read-only and damaged files, server
timeouts, terminated sessions and restarts, hostile strings. What is checked: no silent loss
of the writer lock, one bad path costs one file, and one line for every failure."""

from __future__ import annotations

import pickle

import pytest
from conftest import module_db

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


# --- the PostgreSQL writer lock: held for real ------------------------------------------------

def _lock_pids(url: str) -> list[int]:
    """Backends holding the writer lock (shared or not) of the database at ``url``."""
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    engine = create_engine(db_url(url))
    with engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 8021863 "
                                 "AND objid = 1 AND objsubid = 2 AND granted AND database = "
                                 "(SELECT oid FROM pg_database WHERE datname = current_database())")).scalars().all()
    engine.dispose()
    return list(pids)


def _terminate(url: str, pids: list[int]) -> None:
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    engine = create_engine(db_url(url))
    with engine.connect() as conn:
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    engine.dispose()


def _result(path: str, p: float = 0.3):
    import numpy as np

    from tagger.engine.results import TrackResult

    return TrackResult(path, 1, 1, "f", "flac", 3.0, 1, np.full(50, p, np.float32), np.zeros(256, np.float32))


def test_a_command_whose_lock_session_the_server_ended_writes_nothing_more(pg_url):
    from tagger.model.modelfile import read_card
    from tagger.store.catalog import Store
    from tagger.store.db import StoreError

    library = Store(pg_url)
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    for shared in (True, False):  # a scan's lock, and a write's or learn's
        with library.writing(shared=shared):
            library.save([_result(f"/m/before-{shared}.flac")], model)
            _terminate(pg_url, _lock_pids(pg_url))  # an administrator, a reaper, a restart
            with pytest.raises(StoreError, match="lost the database's writer lock"):
                library.save([_result(f"/m/after-{shared}.flac")], model)
            with pytest.raises(StoreError, match="lost the database's writer lock"):
                library.lock.check()  # and it says so from then on, without asking the server
        assert library.track(f"/m/before-{shared}.flac").status == "ok"
        assert library.track(f"/m/after-{shared}.flac") is None
    library.sql_engine.dispose()


def _scan(*args, **kw):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "tagger", "scan", *map(str, args), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _one_line(result_or_stderr, status: int = 1) -> str:
    stderr = result_or_stderr if isinstance(result_or_stderr, str) else result_or_stderr.stderr
    if not isinstance(result_or_stderr, str):
        assert result_or_stderr.returncode == status, result_or_stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tagger: error: "), stderr
    return lines[0]


def _library(root, n: int, seconds: float = 4.0, first: int = 0) -> list:
    from conftest import music_like, write_audio

    root.mkdir(parents=True, exist_ok=True)
    return [write_audio(root / f"t{i:02d}.wav", music_like(seconds, 16000, first + i), 16000) for i in range(n)]


def _count(url: str, sql: str) -> int:
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    engine = create_engine(db_url(url))
    with engine.connect() as conn:
        n = conn.execute(text(sql)).scalar_one()
    engine.dispose()
    return n


def test_a_scan_that_lost_its_lock_stops_and_a_learn_beside_it_misses_no_track(tmp_path, pg_url):
    """The issue's case: the server ends the session of a scan's lock mid-scan, a learn runs
    (the lock is free), and the scan must not go on storing tracks that the learned tag never
    scored: it stops with one line, and every stored track has the learned tag's score."""
    import time

    from conftest import run_cli

    liked = _library(tmp_path / "liked", 3)
    assert run_cli("scan", tmp_path / "liked", "--db", pg_url, "--workers", "1").returncode == 0
    _library(tmp_path / "more", 40, first=10)
    scan = _scan(tmp_path / "more", "--db", pg_url)
    deadline = time.monotonic() + 120
    while _count(pg_url, "SELECT count(*) FROM tracks") <= 3 and scan.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _terminate(pg_url, _lock_pids(pg_url))
    while True:  # the lock is free now (a scan's commit may hold it for a moment)
        learned = run_cli("learn", "mine", *[a for p in liked for a in ("--like", p)], "--db", pg_url)
        if learned.returncode == 0 or scan.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    out, err = scan.communicate(timeout=300)
    assert learned.returncode == 0, learned.stderr
    assert scan.returncode == 1, (out, err)
    assert "lost the database's writer lock" in _one_line(err)
    import json

    ok = _count(pg_url, "SELECT count(*) FROM tracks WHERE status = 'ok'")
    ranked = run_cli("query", "-t", "mine", "-n", "0", "-f", "json", "--db", pg_url)  # tracks with its score
    assert 3 < ok < 43 and len(json.loads(ranked.stdout)) == ok, (ok, ranked.stdout[-500:])


def test_scans_survive_a_server_that_ends_idle_sessions_quickly(tmp_path, pg_url):
    """idle_session_timeout shorter than a round of claims: the lock's and the claims'
    sessions sit idle between rounds; the scan must neither lose them nor die."""
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    files = _library(tmp_path / "music", 6)
    name = pg_url.rsplit("/", 1)[1]
    engine = create_engine(db_url(pg_url))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" SET idle_session_timeout = 300'))  # 0.3 s
    engine.dispose()
    scan = _scan(tmp_path / "music", "--db", pg_url)
    out, err = scan.communicate(timeout=300)
    assert scan.returncode == 0, err
    assert f"{len(files)} scanned" in out
    assert _count(pg_url, "SELECT count(*) FROM tracks WHERE status = 'ok'") == len(files)


# --- any path, any text: one bad row costs one file ---------------------------------------------

def _long_folder(root):
    """A folder whose path is over 3 kB of characters that do not compress (the index limit is
    2,704 bytes, after compression), in components of at most 255 bytes."""
    part = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(1100))
    folder = root
    for i in range(0, len(part), 80):  # 80 CJK characters: 240 bytes a name
        folder = folder / part[i:i + 80]
    folder.mkdir(parents=True)
    assert len(str(folder).encode()) > 3000
    return folder


def test_a_path_of_any_length_and_a_nul_in_a_tag_cost_nothing(tmp_path, db):
    """A scan of a folder holding a file at a path of over 3 kB and a file whose title has a
    NUL: every file is stored, with its scores (PostgreSQL refused both: the first stopped
    the whole scan, the second cost the file its scores)."""
    import json

    from conftest import music_like, run_cli, write_audio
    from mutagen.flac import FLAC

    root = tmp_path / "music"
    files = _library(root, 2)
    deep = _long_folder(root / "deep") / "long.wav"  # (libsndfile cannot write at such a path)
    write_audio(tmp_path / "long.wav", music_like(4.0, 16000, 7), 16000).rename(deep)
    nul = write_audio(root / "nul.flac", music_like(4.0, 16000, 8), 16000)
    tags = FLAC(nul)
    tags["title"] = "before\x00after"
    tags["artist"] = "Straße"
    tags.save()
    result = run_cli("scan", root, "--db", db, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "4 scanned" in result.stdout and "failed 0" in result.stdout, result.stdout
    for path in [*files, deep, nul]:
        shown = run_cli("show", path, "--db", db, "--json")
        assert shown.returncode == 0, shown.stderr
        assert len(json.loads(shown.stdout)["tags"]) == 50
    assert json.loads(run_cli("show", nul, "--db", db, "--json").stdout)["title"] == "beforeafter"
    again = run_cli("scan", root, "--db", db, "--workers", "1")  # and a rescan finds them unchanged
    assert "0 scanned" in again.stdout and "unchanged 4" in again.stdout, again.stdout


def test_a_row_the_database_refuses_costs_that_file_alone_named(db):
    """What the database still refuses (here an integer out of its range) fails that file, with
    the reason, and the others of the commit are kept."""
    from tagger.model.modelfile import read_card
    from tagger.store.catalog import Store

    library = Store(db)
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    batch = [_result("/m/a.flac"), _result("/m/big.flac"), _result("/m/b.flac")]
    batch[1].size = 2**70  # no file is that large; a BIGINT cannot hold it
    unsaved = dict(library.save(batch, model))
    assert list(unsaved) == ["/m/big.flac"] and "could not be stored" in unsaved["/m/big.flac"]
    assert library.track("/m/a.flac").status == "ok" and library.track("/m/b.flac").status == "ok"
    library.sql_engine.dispose()


# --- --where: one folding rule on both stores ---------------------------------------------------

PROBE_VALUES = ["Straße", "STRASSE", "strasse", "Ǆemal", "ǆemal", "ﬁnale", "Finale", "ΟΔΥΣΣΕΥΣ", "Οδυσσεύς",
                "ὈΔΥΣΣΕΎΣ", "İstanbul", "istanbul", "ıstanbul", "Ａｂｃ", "abc", "Å", "Å", "ß", "ẞ", "Ⅸ", "ix",
                "Ꮳherokee", "ꮳherokee", "\u00e9t\u00e9", "e\u0301te\u0301", "100% Band", "a_b", None]
PROBES = ["artist=Straße", "artist=strasse", "artist~SS", "artist=ǅemal", "artist=FINALE", "artist~ﬁ",
          "artist=ὀδυσσεύς", "artist~σσ", "artist=İSTANBUL", "artist=ISTANBUL", "artist=abc", "artist=Å",
          "artist=ss", "artist=ix", "artist=ꮳHEROKEE", "artist=été", "artist~%", "artist~_", "artist~",
          "path~STRASSE", "format=FLAC"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def probed(request, tmp_path_factory):
    """A library whose artists are the probe values, on each store."""
    import numpy as np

    from tagger.engine.results import TrackResult
    from tagger.model.modelfile import read_card
    from tagger.store.catalog import Store

    library = Store(module_db(request, tmp_path_factory, "probed"))
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    rng = np.random.default_rng(5)
    batch = [TrackResult(f"/m/{i:02d}-{(v or 'none').replace('/', '')}.flac", 1, i, f"{i:040x}", "flac", 3.0, 1,
                         rng.random(50).astype(np.float32), rng.standard_normal(256).astype(np.float32),
                         metadata={"artist": v} if v else {})
             for i, v in enumerate(PROBE_VALUES)]
    library.save(batch, model)
    yield request.param, library, model


_answers: dict[str, dict] = {}


def test_where_gives_the_same_answers_on_both_stores_for_any_unicode(probed):
    from tagger.library.query import parse_terms, parse_where
    from tagger.store.query import TrackQuery, run_query
    from tagger.store.text import fold

    kind, library, model = probed
    terms = parse_terms(model.vocabulary, ["rock"])
    got = {}
    for probe in PROBES:
        (f,) = parse_where([probe])
        rows = run_query(library, TrackQuery(terms, None, None, (f,)), model)
        got[probe] = sorted(r.path for r in rows)
        value = fold(f.value)
        expected = sorted(
            f"/m/{i:02d}-{(v or 'none').replace('/', '')}.flac" for i, v in enumerate(PROBE_VALUES)
            if (f.field == "format") or (f.field == "path" and value in fold(f"/m/{i:02d}-{v or 'none'}.flac"))
            or (f.field == "artist" and v is not None and (value in fold(v) if f.op == "~" else fold(v) == value)))
        assert got[probe] == expected, probe
    assert len(got["artist=strasse"]) == 3 and len(got["artist=ss"]) == 2 and len(got["artist=ix"]) == 2  # ẞ, Ⅸ
    _answers[kind] = got
    if len(_answers) == 2:
        assert _answers["sqlite"] == _answers["postgresql"]


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


def _bytes(paths) -> dict:
    return {p: p.read_bytes() for p in paths}


def test_a_full_disk_is_one_line_in_every_command_that_writes_and_nothing_is_half_written(tmp_path, small_disk):
    import sqlite3

    from conftest import run_cli

    files = _library(tmp_path / "music", 3)
    db = small_disk / "lib.db"
    assert run_cli("scan", tmp_path / "music", "--db", db, "--workers", "1").returncode == 0
    assert run_cli("write", tmp_path / "music", "--db", db).returncode == 0  # a run to undo
    before = _bytes(files)
    # another reader keeps DB-wal and DB-shm in place: the disk fills up under a command that
    # opened the database, mid-way (without it, opening fails already: a case of its own)
    holder = sqlite3.connect(db)
    holder.execute("SELECT count(*) FROM tracks").fetchall()
    _fill(small_disk)
    for command in (("learn", "mine", "--like", files[0]), ("write", tmp_path / "music", "--force"),
                    ("write", "--remove", tmp_path / "music"), ("write", "--undo")):
        line = _one_line(run_cli(*command, "--db", db))
        assert "lib.db: the disk is full (database or disk is full) (free some space" in line, (command, line)
    holder.close()
    line = _one_line(run_cli("learn", "mine", "--like", files[0], "--db", db))
    assert "lib.db: " in line and ("disk is full" in line or "I/O error" in line) and "free some space" in line
    assert _bytes(files) == before  # no file was changed without its journal row
    (small_disk / "filler").unlink()
    assert run_cli("write", "--undo", "--db", db).returncode == 0  # and all works again
    assert _bytes(files) != before


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
    files = _library(root / "music", 3)
    db = root / "lib.db"
    assert run_cli("scan", root / "music", "--db", db, "--workers", "1").returncode == 0
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
    for command in (("query", "-t", "rock"), ("show", files[0]), ("similar", files[0]), ("radio", files[0]),
                    ("stats",), ("learn", "mine", "--like", files[0]),
                    ("write", "--dry-run"), ("write",), ("write", "--undo"), ("prune",),
                    ("scan", files[0].parent, "--workers", "1")):
        line = _one_line(run_cli(*command, "--db", db))
        assert "damaged" in line and ".recover" in line, (command, line)


def test_damage_the_command_never_reads_is_found_by_the_ones_that_check(scanned_copy, tmp_path):
    """A damaged page of embeddings: query and show read none of it (their answers are whole);
    stats and the commands that write check the file first (PRAGMA quick_check) and say so."""
    from conftest import run_cli

    files, db = _copy(scanned_copy, tmp_path)
    _damage(db, "embeddings")
    assert run_cli("query", "-t", "rock", "--db", db).returncode == 0
    for command in (("stats",), ("scan", files[0].parent, "--workers", "1"), ("prune",),
                    ("learn", "mine", "--like", files[0]), ("similar", files[0])):
        line = _one_line(run_cli(*command, "--db", db))
        assert "damaged" in line, (command, line)


def test_an_empty_file_is_not_a_library(tmp_path):
    from conftest import run_cli

    db = tmp_path / "lib.db"
    db.write_bytes(b"")
    _library(tmp_path / "music", 1)
    for command in (("stats",), ("query", "-t", "rock"), ("scan", tmp_path / "music", "--workers", "1")):
        line = _one_line(run_cli(*command, "--db", db))
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
        line = _one_line(_as_user(*command, "--db", db))
        assert "read-only" in line and "write permission" in line, (command, line)


def test_a_database_in_a_read_only_folder_says_what_to_do(scanned_copy, open_tmp):
    files, db = _copy(scanned_copy, open_tmp)
    folder = open_tmp / "ro"
    folder.mkdir()
    ro_db = folder / "lib.db"
    db.rename(ro_db)
    ro_db.chmod(0o644)
    folder.chmod(0o555)
    line = _one_line(_as_user("query", "-t", "rock", "--db", ro_db))
    assert "make its folder writable" in line, line


def test_the_server_going_away_during_write_is_one_line_and_undo_restores_every_file(tmp_path, pg_url):
    import subprocess
    import sys
    import time

    from conftest import run_cli
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    files = _library(tmp_path / "music", 30, seconds=3.0)
    assert run_cli("scan", tmp_path / "music", "--db", pg_url, "--workers", "1").returncode == 0
    before = _bytes(files)
    write = subprocess.Popen([sys.executable, "-m", "tagger", "write", tmp_path / "music", "--db", pg_url],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    engine = create_engine(db_url(pg_url))
    deadline = time.monotonic() + 120
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        while _bytes(files) == before and write.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # until the first file is written
        while write.poll() is None and time.monotonic() < deadline:  # as a restart would: every session
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                              "datname = current_database() AND pid <> pg_backend_pid()"))
            time.sleep(0.05)
    engine.dispose()
    out, err = write.communicate(timeout=60)
    line = _one_line(err)
    assert "lost" in line and ("writer lock" in line or "connection to the database server" in line), line
    undo = run_cli("write", "--undo", "--db", pg_url)
    assert undo.returncode == 0, undo.stderr
    assert _bytes(files) == before  # the journal held every file the write changed


def test_prune_takes_the_writer_lock_like_write(db):
    """prune beside a scan: on SQLite it held the database's write lock for a minute (the scan
    and a learn beside it failed, the learn with a traceback), on PostgreSQL it could drop a
    track that the scan was moving. Now it waits for no one and refuses in one line."""
    from conftest import run_cli

    from tagger.store.catalog import Store
    from tagger.store.lock import writer_lock

    Store(db).sql_engine.dispose()
    with writer_lock(db, shared=True):  # as a running scan holds it
        line = _one_line(run_cli("prune", "--db", db))
        assert "another tagger scan or write is writing to this database" in line, line
    assert run_cli("prune", "--db", db).returncode == 0


# --- numbers and strings bounded before they reach SQL ------------------------------------------

@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tiny(request, tmp_path_factory):
    """A scanned library of two tracks on each store, read by the bound probes."""
    from conftest import run_cli

    root = tmp_path_factory.mktemp("tiny")
    files = _library(root / "music", 2)
    db = module_db(request, tmp_path_factory, "tiny-db")
    assert run_cli("scan", root / "music", "--db", db, "--workers", "1").returncode == 0
    return files, db


def test_numbers_and_strings_are_bounded_before_they_reach_sql(tiny):
    from conftest import run_cli

    files, db = tiny
    huge = "99999999999999999999"
    for command, status in ((("query", "-t", "rock", "--where", f"year>={huge}"), 2),
                            (("query", "-t", "rock", "--where", "year<=3000000000"), 2),
                            (("query", "-t", "rock", "--where", "track_no=2147483648"), 2),
                            (("query", "-t", "rock", "-n", huge), 2),
                            (("similar", files[0], "-n", huge), 2),
                            (("radio", files[0], "-n", huge), 2),
                            (("write", "--undo", "--run", huge), 2),
                            (("learn", "x", "--like", files[0], "--seed", huge), 2),
                            (("query", "-t", "rock", "--where", "artist~" + "x" * 50_000), 2),
                            (("query", "-t", "rock", "-m", "m" * 50_000), 1),
                            (("learn", "x" * 100_000, "--like", files[0]), 2),
                            (("query", "-t", "y" * 100_000), 1)):
        line = _one_line(run_cli(*command, "--db", db), status)
        assert len(line) < 400, (command[:2], line[:400])  # what was typed is not echoed whole
    # a model is named, or picked by a prefix of its hash: LIKE's % and _ are not wildcards
    line = _one_line(run_cli("query", "-t", "rock", "-m", "%", "--db", db))
    assert "no results from a model named '%'" in line, line
    assert run_cli("query", "-t", "rock", "-m", "51363aaf", "--db", db).returncode == 0
    assert run_cli("query", "-t", "rock", "--where", "year<=2147483647", "--db", db).returncode == 0


# --- smaller ones ------------------------------------------------------------------------------

def test_an_at_sign_in_a_password_is_one_line_that_shows_none_of_it(pg_server):
    from conftest import run_cli

    url = f"postgresql://tagger:sec@ret-pw@127.0.0.1:{pg_server.port}/postgres"
    line = _one_line(run_cli("stats", "--db", url))
    assert "holds an '@'" in line and "%40" in line and "ret-pw" not in line and "sec" not in line, line


def test_a_fifo_or_a_device_is_not_an_audio_file(scanned_copy, tmp_path):
    import os

    from conftest import run_cli

    _, _, db = scanned_copy
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    for command in (("tag", fifo), ("tag", "/dev/zero"), ("similar", fifo, "--db", db),
                    ("similar", "/dev/zero", "--db", db)):
        line = _one_line(run_cli(*command))
        assert "is not a regular file" in line, (command, line)
