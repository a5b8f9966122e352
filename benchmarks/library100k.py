"""Synthetic 100,000-track libraries for the speed benchmarks, on SQLite or PostgreSQL.

    from library100k import database, build

``database(args)`` gives the database a benchmark runs on: ``--db PATH`` (SQLite, the
default), ``--db postgresql://…``, or ``--postgres``: a throw-away PostgreSQL server started
from Debian's binaries as the tests start theirs (tests/pg_server.py: 127.0.0.1, fsync off,
synchronous_commit off), removed at exit. ``build`` writes tracks through ``Store.save`` (the
path a scan's commits take) in transactions of ``batch`` tracks.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def add_arguments(ap, default_db: str) -> None:
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--db", default=default_db, help="a SQLite file or a postgresql:// URL")
    ap.add_argument("--postgres", action="store_true", help="a throw-away PostgreSQL server (as the tests')")
    ap.add_argument("--reuse", action="store_true", help="keep a database built before (SQLite)")


def database(args) -> str:
    if not args.postgres:
        return args.db
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_server import remove, start_server

    server, why = start_server()
    if server is None:
        sys.exit(f"no PostgreSQL server: {why}")
    atexit.register(remove, server)
    args.reuse = False
    return server.create_database()


def is_sqlite(db: str) -> bool:
    return "://" not in db


def fresh(db: str) -> None:
    """Start from nothing (a SQLite file and its WAL; a server database is new already)."""
    if is_sqlite(db):
        for suffix in ("", "-wal", "-shm", ".lock"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)


def exists(db: str) -> bool:
    return not is_sqlite(db) or os.path.exists(db)


def build(db: str, n: int, result: Callable[[int, np.random.Generator], object], model: str,
          batch: int = 2000) -> None:
    """``n`` tracks, ``result(i, rng)`` → the i-th TrackResult, stored through Store.save."""
    from tagger.model.modelfile import read_card
    from tagger.store.catalog import Store

    fresh(db)
    lib = Store(db)
    stored = lib.ensure_model(read_card(model), 256)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        lib.save([result(i, rng) for i in range(start, min(start + batch, n))], stored)
    settle(lib)
    print(f"built {n:,} tracks in {time.perf_counter() - t0:.0f} s")
    lib.sql_engine.dispose()


def settle(lib) -> None:
    """After bulk writes: SQLite's WAL folded into the file; PostgreSQL's statistics and
    visibility map up to date (VACUUM ANALYZE, as autovacuum would do soon after)."""
    if lib.sql_engine.dialect.name == "sqlite":
        with lib.sql_engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with lib.sql_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


def where(db: str) -> str:
    return "SQLite" if is_sqlite(db) else "PostgreSQL 15 (local, fsync off)"


def timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run ``cmd``: (wall seconds, CPU seconds of the process and its children, the result).
    CPU time is what a busy shared machine changes least: say which one a figure is."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), result


def load() -> str:
    """The machine's load average now (1, 5 min), for the figures' conditions."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} cores"
