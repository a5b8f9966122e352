"""Several scanners on one PostgreSQL database: does each file get scored once, how do the
scanners share the work, and what does sharing cost?

Starts a throw-away PostgreSQL server (tests/pg_server.py: Debian's binaries), writes N short
tracks into two folders, then scans them (a) with one ``tagger scan`` and (b) with K scans
started together on overlapping folders (the first scans the whole library, the others the
first folder), each into a new database; prints wall time, tracks each scanner scored, and
the total (must equal N).

    python benchmarks/concurrent_scan.py --tracks 24 --scanners 2
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from conftest import music_like, write_audio  # noqa: E402
from pg_server import remove, start_server  # noqa: E402

SCANNED = re.compile(r"^(\d+) scanned · ", re.M)


def _scans(roots: list[list[Path]], url: str, threads: int) -> tuple[float, list[int]]:
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "tagger", "scan", *map(str, r), "--db", url, "--workers", "1",
                               "--threads", str(threads)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in roots]
    counts = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode:
            sys.exit(f"scan failed: {err.strip()}")
        counts.append(int(SCANNED.search(out).group(1)))
    return time.perf_counter() - t0, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each track")
    ap.add_argument("--scanners", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each scanner")
    args = ap.parse_args()
    server, why = start_server()
    if server is None:
        sys.exit(f"no PostgreSQL server: {why}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lib = Path(tmp) / "music"
            half = args.tracks // 2
            for i in range(args.tracks):
                folder = lib / ("a" if i < half else "b")
                folder.mkdir(parents=True, exist_ok=True)
                write_audio(folder / f"t{i:03d}.wav", music_like(args.seconds, 16000, i), 16000)
            alone, (n,) = _scans([[lib]], server.create_database(), args.threads)
            print(f"1 scanner : {alone:6.1f} s wall, scored {n} of {args.tracks}")
            roots = [[lib]] + [[lib / "a"]] * (args.scanners - 1)
            together, counts = _scans(roots, server.create_database(), args.threads)
            print(f"{args.scanners} scanners: {together:6.1f} s wall, scored {counts} = {sum(counts)} "
                  f"of {args.tracks} (first: whole library, others: folder a, {half} tracks)")
    finally:
        remove(server)


if __name__ == "__main__":
    main()
