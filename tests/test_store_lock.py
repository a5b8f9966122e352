"""The writer lock held for real (issue 19): a command whose PostgreSQL session the server ended
(pg_terminate_backend, a restart) stores nothing more and says so in one line; scans survive a
server's short idle_session_timeout; prune takes the lock like write."""

from __future__ import annotations

import pytest
from conftest import count_rows, file_bytes, one_line, short_library, stored_result


def _lock_pids(url: str, idle_only: bool = False) -> list[int]:
    """Backends holding the writer lock (shared or not) of the database at ``url``.
    ``idle_only``: only sessions sitting idle, as the lock's own session does between its
    keepalives; a scan's write transaction also holds the lock, shared, while it commits, and
    ending that one is a lost connection, not a lost lock (falls back to every holder when no
    idle one shows within 5 s)."""
    import time

    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    query = ("SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
             "WHERE l.locktype = 'advisory' AND l.classid = 8021863 AND l.objid = 1 AND l.objsubid = 2 "
             "AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")
    engine = create_engine(db_url(url))
    pids: list[int] = []
    for _ in range(50 if idle_only else 0):
        with engine.connect() as conn:
            pids = list(conn.execute(text(query + " AND a.state = 'idle'")).scalars())
        if pids:
            break
        time.sleep(0.1)
    if not pids:
        with engine.connect() as conn:
            pids = list(conn.execute(text(query)).scalars())
    engine.dispose()
    return pids


def _terminate(url: str, pids: list[int]) -> None:
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    engine = create_engine(db_url(url))
    with engine.connect() as conn:
        for pid in pids:
            # (with a timeout it waits until the backend is gone, so its locks are released: without
            # one it only signals, and a check right after could still see the lock held)
            conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
    engine.dispose()


def test_a_command_whose_lock_session_the_server_ended_writes_nothing_more(pg_url):
    from tagger.model.modelfile import read_card
    from tagger.store.catalog import Store
    from tagger.store.db import StoreError

    library = Store(pg_url)
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    for shared in (True, False):  # a scan's lock, and a write's or learn's
        with library.writing(shared=shared):
            library.save([stored_result(f"/m/before-{shared}.flac")], model)
            _terminate(pg_url, _lock_pids(pg_url))  # an administrator, a reaper, a restart
            with pytest.raises(StoreError, match="lost the database's writer lock"):
                library.save([stored_result(f"/m/after-{shared}.flac")], model)
            with pytest.raises(StoreError, match="lost the database's writer lock"):
                library.lock.check()  # and it says so from then on, without asking the server
        assert library.track(f"/m/before-{shared}.flac").status == "ok"
        assert library.track(f"/m/after-{shared}.flac") is None
    library.sql_engine.dispose()


def _scan(*args, **kw):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "tagger", "scan", "-m", "musicnn-vgg-mtt", *map(str, args), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_a_scan_that_lost_its_lock_stops_and_a_learn_beside_it_misses_no_track(tmp_path, pg_url):
    """The issue's case: the server ends the session of a scan's lock mid-scan, a learn runs
    (the lock is free), and the scan must not go on storing tracks that the learned tag never
    scored: it stops with one line, and every stored track has the learned tag's score."""
    import time

    from conftest import run_cli

    liked = short_library(tmp_path / "liked", 3)
    assert run_cli("scan", "-m", "musicnn-vgg-mtt", tmp_path / "liked", "--db", pg_url, "--workers", "1").returncode == 0
    short_library(tmp_path / "more", 40, first=10)
    scan = _scan(tmp_path / "more", "--db", pg_url)
    deadline = time.monotonic() + 120
    while count_rows(pg_url, "SELECT count(*) FROM tracks") <= 3 and scan.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _terminate(pg_url, _lock_pids(pg_url, idle_only=True))
    while True:  # the lock is free now (a scan's commit may hold it for a moment)
        learned = run_cli("learn", "mine", *[a for p in liked for a in ("--like", p)], "--db", pg_url)
        if learned.returncode == 0 or scan.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    out, err = scan.communicate(timeout=300)
    assert learned.returncode == 0, learned.stderr
    assert scan.returncode == 1, (out, err)
    assert "lost the database's writer lock" in one_line(err)
    import json

    ok = count_rows(pg_url, "SELECT count(*) FROM tracks WHERE status = 'ok'")
    ranked = run_cli("query", "-t", "mine", "-n", "0", "-f", "json", "--db", pg_url)  # tracks with its score
    assert 3 < ok < 43 and len(json.loads(ranked.stdout)) == ok, (ok, ranked.stdout[-500:])


def test_scans_survive_a_server_that_ends_idle_sessions_quickly(tmp_path, pg_url):
    """idle_session_timeout shorter than a round of claims: the lock's and the claims'
    sessions sit idle between rounds; the scan must neither lose them nor die."""
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    files = short_library(tmp_path / "music", 6)
    name = pg_url.rsplit("/", 1)[1]
    engine = create_engine(db_url(pg_url))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" SET idle_session_timeout = 300'))  # 0.3 s
    engine.dispose()
    scan = _scan(tmp_path / "music", "--db", pg_url)
    out, err = scan.communicate(timeout=300)
    assert scan.returncode == 0, err
    assert f"{len(files)} scanned" in out
    assert count_rows(pg_url, "SELECT count(*) FROM tracks WHERE status = 'ok'") == len(files)


def test_the_server_going_away_during_write_is_one_line_and_undo_restores_every_file(tmp_path, pg_url):
    import subprocess
    import sys
    import time

    from conftest import run_cli
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    files = short_library(tmp_path / "music", 12, seconds=3.0)
    assert run_cli("scan", "-m", "musicnn-vgg-mtt", tmp_path / "music", "--db", pg_url, "--workers", "1").returncode == 0
    before = file_bytes(files)
    write = subprocess.Popen([sys.executable, "-m", "tagger", "write", tmp_path / "music", "--db", pg_url],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    engine = create_engine(db_url(pg_url))
    deadline = time.monotonic() + 120
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        while file_bytes(files) == before and write.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # until the first file is written
        while write.poll() is None and time.monotonic() < deadline:  # as a restart would: every session
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                              "datname = current_database() AND pid <> pg_backend_pid()"))
            time.sleep(0.05)
    engine.dispose()
    out, err = write.communicate(timeout=60)
    line = one_line(err)
    assert "lost" in line and ("writer lock" in line or "connection to the database server" in line), line
    undo = run_cli("write", "--undo", "--db", pg_url)
    assert undo.returncode == 0, undo.stderr
    assert file_bytes(files) == before  # the journal held every file the write changed


def test_prune_takes_the_writer_lock_like_write(db):
    """prune beside a scan: on SQLite it held the database's write lock for a minute (the scan
    and a learn beside it failed, the learn with a traceback), on PostgreSQL it could drop a
    track that the scan was moving. Now it waits for no one and refuses in one line."""
    from conftest import run_cli

    from tagger.store.catalog import Store
    from tagger.store.lock import writer_lock

    Store(db).sql_engine.dispose()
    with writer_lock(db, shared=True):  # as a running scan holds it
        line = one_line(run_cli("prune", "--db", db))
        assert "another tagger scan or write is writing to this database" in line, line
    assert run_cli("prune", "--db", db).returncode == 0
