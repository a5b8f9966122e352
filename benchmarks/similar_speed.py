"""Speed of `tagger similar` and `tagger radio` at 100,000 tracks.

    python benchmarks/similar_speed.py [--tracks 100000] [--db /tmp/tagger-similar-bench.db] [--reuse]
    python benchmarks/similar_speed.py --postgres    # the same on a throw-away PostgreSQL server

Writes synthetic tracks through Store.save as benchmarks/store.py does (Beta-distributed
probabilities), with embeddings that have neighbourhoods: 500
artists of 200 tracks, each track its artist's centre plus its album's offset plus noise
(float16 as stored), and artist/album tags on 90 % of the tracks (the rest fall back to
their folder). Then times, through the code the commands run: reading the index (once per
process), a warm `similar -n 20` and `radio -n 50` (median over queries, the index read),
and whole processes (`python -m tagger …`, median of 5 after one warm-up: the index kept from
the warm-up, tagger.library.index_cache, and once more without it, as the first search after
a scan changed the library). --reuse keeps a database this script wrote before.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from library100k import add_arguments, build, database, exists, load, timed, where

from tagger.engine.results import ModelOutput, TrackResult
from tagger.library import index_cache
from tagger.library.similar import Neighbourhood
from tagger.model.modelcard import DEFAULT_MODEL
from tagger.store.catalog import Store

ARTIST_TRACKS, ALBUM_TRACKS = 200, 12


def _centres(n: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(54321)
    return (rng.standard_normal((n // ARTIST_TRACKS + 1, 256)).astype(np.float32),
            0.6 * rng.standard_normal((n // ALBUM_TRACKS + 1, 256)).astype(np.float32))


_CENTRES: dict = {}


def track(i: int, rng: np.random.Generator) -> TrackResult:
    if not _CENTRES:
        _CENTRES["artists"], _CENTRES["albums"] = _centres()
    a, b = i // ARTIST_TRACKS, i // ALBUM_TRACKS
    emb = _CENTRES["artists"][a] + _CENTRES["albums"][b] + 0.8 * rng.standard_normal(256).astype(np.float32)
    meta = {"artist": f"Artist {a}", "album": f"Album {b}", "title": f"Track {i}"} if i % 10 else None
    return TrackResult(f"/music/artist{a:04d}/album{b:05d}/track{i:06d}.mp3", 5_000_000 + i,
                       1_700_000_000_000_000_000 + i, f"{i:040x}", "mp3", 240.0, 16,
                       (ModelOutput(rng.beta(0.4, 4.0, 50).astype(np.float32), emb),), metadata=meta)


def median_ms(fn, rounds: int) -> float:
    times = []
    for i in range(rounds):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def process_s(args: list[str], rounds: int = 5, forget: Path | None = None) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``python -m tagger ARGS`` as a whole process; ``forget``:
    the kept index, removed before each run (the first search after the library changed)."""
    cmd = [sys.executable, "-m", "tagger", *args]
    subprocess.run(cmd, capture_output=True, check=True)  # warm-up (page cache)
    walls, cpus = [], []
    for _ in range(rounds):
        if forget is not None:
            forget.unlink(missing_ok=True)
        wall, cpu, result = timed(cmd)
        if result.returncode:
            sys.exit(result.stderr)
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser()
    add_arguments(ap, "/tmp/tagger-similar-bench.db")
    args = ap.parse_args()
    db = database(args)
    if not (args.reuse and exists(db)):
        build(db, args.tracks, track, DEFAULT_MODEL)
    lib = Store(db, create=False)
    paths = [r.path for r in lib.tracks_under()]
    rng = np.random.default_rng(1)
    queries = [paths[i] for i in rng.integers(0, len(paths), 50)]
    print(f"{where(db)}, {len(paths):,} tracks")

    t = time.perf_counter()
    near = Neighbourhood(lib)
    index = near.index(lib.model())
    load_s = time.perf_counter() - t
    print(f"read the index ({len(index):,} × {index.vectors.shape[1]}, {near.space}): {load_s * 1000:.0f} ms")
    vec = index.vectors[0]
    print(f"one brute-force pass (matrix @ vector + top 20): "
          f"{median_ms(lambda i: index.nearest(vec, 20), 50):.1f} ms")
    print(f"similar -n 20, warm: {median_ms(lambda i: near.similar(queries[i], 20), 50):.1f} ms (median of 50)")
    print(f"radio -n 50, warm: {median_ms(lambda i: near.radio([queries[i]], 50, random_seed=i), 10):.1f} ms (median of 10)")
    print(f"radio -n 50 --max-per-artist 2, warm: "
          f"{median_ms(lambda i: near.radio([queries[i]], 50, 2, random_seed=i), 10):.1f} ms")
    print(f"radio -n 50, 3 seeds, warm: "
          f"{median_ms(lambda i: near.radio(queries[i:i + 3], 50, random_seed=i), 10):.1f} ms")
    kept = index_cache.path_for(db, lib.model().sha256, near.space)
    db = ["--db", db]
    for label, cmd, forget in (
            ("similar -n 20 -f json", ["similar", queries[0], "-n", "20", "-f", "json"], None),
            ("radio -n 50 -f m3u", ["radio", queries[1], "-n", "50", "-f", "m3u", "--seed", "1"], None),
            ("radio -n 50 --max-per-artist 2", ["radio", queries[2], "-n", "50", "--max-per-artist", "2",
                                                "-f", "m3u", "--seed", "1"], None),
            ("similar -n 20, first after a change (index read from the store)",
             ["similar", queries[0], "-n", "20", "-f", "json"], kept),
            ("radio -n 50, first after a change", ["radio", queries[1], "-n", "50", "-f", "m3u", "--seed", "1"],
             kept),
            ("tagger stats (for scale)", ["stats"], None)):
        wall, cpu = process_s([*cmd, *db], forget=forget)
        print(f"process: {label}: {wall:.2f} s wall, {cpu:.2f} s CPU ({load()})")


if __name__ == "__main__":
    main()
