"""The Ray engine's overhead: the same files through the local engine and the Ray engine, on the
same cores, each into a fresh database.

    python benchmarks/ray_scan.py [FOLDER] [--tracks 30] [--chunks 16|all] [--batch-size 64]
                                  [--ray-address ADDR]

FOLDER defaults to the real-music corpus (see benchmarks/scan.py). The first --tracks audio
files (sorted by path) are linked into a temporary folder. Both engines run eager (--compile
no: a Ray actor compiles only when asked). Ray's start-up (``ray.init`` of a local Ray, or the
join of ADDR) is timed apart and the scan then uses that Ray, so the figures show the
pipeline's own cost; prints tracks/s of each, the ratio and the start-up seconds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from tagger.audio.discover import discover
from tagger.cli.common import parse_chunks
from tagger.scan import ScanOptions, scan

CORPUS = Path.home() / ".cache" / "tagger-corpus" / "real-music"


def _timed_scan(folder: str, db: str, options: ScanOptions) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    summary = scan([folder], db, options)
    return time.perf_counter() - t0, summary.scanned, len(summary.failed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default=str(CORPUS))
    ap.add_argument("--tracks", type=int, default=30)
    ap.add_argument("--chunks", default="16")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ray-address", default=None)
    args = ap.parse_args()
    files = sorted(discover([args.folder]).files, key=lambda f: f.path)[:args.tracks]
    cores = len(os.sched_getaffinity(0))
    base = dict(chunks=parse_chunks(args.chunks), batch_size=args.batch_size, compile="no")
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "lib"
        lib.mkdir()
        for k, f in enumerate(files):
            (lib / f"{k:04d}{Path(f.path).suffix}").symlink_to(f.path)
        print(f"{len(files)} tracks, --chunks {args.chunks}, batch {args.batch_size}, {cores} cores")
        local_s, ok, bad = _timed_scan(str(lib), f"{tmp}/local.db", ScanOptions(**base))
        print(f"local engine: {local_s:.1f} s, {ok} scanned, {bad} failed, {len(files) / local_s:.2f} tracks/s")

        from tagger.engine.ray_engine import _connect, _import_ray

        ray = _import_ray()
        t0 = time.perf_counter()
        _connect(ray, args.ray_address)
        start_s = time.perf_counter() - t0
        ray_s, ok, bad = _timed_scan(str(lib), f"{tmp}/ray.db",
                                     ScanOptions(**base, scan_engine="ray", ray_address=args.ray_address))
        ray.shutdown()
        print(f"ray engine:   {ray_s:.1f} s, {ok} scanned, {bad} failed, {len(files) / ray_s:.2f} tracks/s "
              f"(+ {start_s:.1f} s Ray start-up, not counted)")
        print(f"ray / local throughput: {local_s / ray_s:.3f} (overhead {100 * (ray_s / local_s - 1):+.1f} %); "
              f"with start-up: {local_s / (ray_s + start_s):.3f}")


if __name__ == "__main__":
    main()
