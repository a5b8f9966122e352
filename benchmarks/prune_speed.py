"""`tagger prune` at 100,000 tracks, 50,000 of them missing: the whole process, on a copy each time.

    python benchmarks/prune_speed.py [--tracks 100000] [--db /tmp/tagger-prune-bench.db] [--reuse]
    python benchmarks/prune_speed.py --postgres      # the same on a throw-away PostgreSQL server

Builds the library of benchmarks/learn_speed.py (synthetic results written through
Store.save: 50 scores and a float16 embedding a track) with one learned tag, marks every other
track missing (as a scan of a library whose half was moved away would), then runs

    tagger prune

as a whole process, three times, each on a fresh copy of the library (a SQLite file copied, a
PostgreSQL database created from the first as its template).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys

from learn_speed import cluster_of, track
from library100k import add_arguments, build, database, exists, is_sqlite, load, settle, timed, where
from sqlalchemy import create_engine, text

from tagger.store.catalog import Store
from tagger.store.db import db_url


def prepare(db: str, n: int, reuse: bool) -> None:
    """The library (built, unless ``reuse``), with one learned tag (as a library that uses
    tagger learn has) and every other track marked missing."""
    if not (reuse and exists(db)):
        build(db, n, track, "musicnn-vgg-mtt")
    lib = Store(db)
    if not lib.learned_tag_rows("bench"):
        liked = [i + 1 for i in range(n) if cluster_of(i) == 0][:200]
        run = subprocess.run([sys.executable, "-c", LEARN, db, *map(str, liked)], capture_output=True, text=True)
        if run.returncode:
            sys.exit(run.stderr)
    with lib.sql_engine.begin() as conn:
        conn.execute(text("UPDATE tracks SET status = 'missing' WHERE id % 2 = 0"))
    settle(lib)
    lib.sql_engine.dispose()


LEARN = """
import sys
from tagger.library.learned import learn
from tagger.store.catalog import Store
lib = Store(sys.argv[1])
learn(lib, lib.model(), "bench", [int(a) for a in sys.argv[2:]], None)
"""


def copies(db: str, k: int) -> list[str]:
    """``k`` fresh copies of the library."""
    if is_sqlite(db):
        out = []
        for i in range(k):
            shutil.copy(db, f"{db}.copy{i}")
            out.append(f"{db}.copy{i}")
        return out
    base, name = db.rsplit("/", 1)
    engine = create_engine(db_url(db).rsplit("/", 1)[0] + "/postgres")
    out = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for i in range(k):
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}_c{i}"'))
            conn.execute(text(f'CREATE DATABASE "{name}_c{i}" TEMPLATE "{name}"'))
            out.append(f"{base}/{name}_c{i}")
    engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    add_arguments(ap, "/tmp/tagger-prune-bench.db")
    args = ap.parse_args()
    db = database(args)
    prepare(db, args.tracks, args.reuse)
    print(f"{where(db)}, {args.tracks:,} tracks, {args.tracks // 2:,} of them missing")
    Store(db).sql_engine.dispose()  # (closes what the build left open, so the copies are whole)
    times, cpus = [], []
    for copy in copies(db, 3):
        wall, cpu, result = timed([sys.executable, "-m", "tagger", "prune", "--db", copy])
        times.append(wall)
        cpus.append(cpu)
        if result.returncode:
            sys.exit(result.stderr)
        print(f"  {result.stdout.strip()}: {wall:.2f} s whole process, {cpu:.2f} s CPU ({load()})")
    print(f"prune, whole process: median {statistics.median(times):.2f} s, CPU {statistics.median(cpus):.2f} s "
          f"(of {len(times)})")


if __name__ == "__main__":
    main()
