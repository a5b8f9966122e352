"""Speed of `tagger similar` and `tagger radio` at 100,000 tracks.

    python benchmarks/similar_speed.py [--tracks 100000] [--db /tmp/tagger-similar-bench.db] [--reuse]

Writes synthetic tracks through Library.save as benchmarks/store.py does (256 per
transaction; Beta-distributed probabilities), with embeddings that have neighbourhoods: 500
artists of 200 tracks, each track its artist's centre plus its album's offset plus noise
(float16 as stored), and artist/album tags on 90 % of the tracks (the rest fall back to
their folder). Then times, through the code the commands run: reading the index (once per
process), a warm `similar -n 20` and `radio -n 50` (median over queries, the index read),
and whole processes (`python -m tagger …`, median of 5 after one warm-up). --reuse keeps a
database this script wrote before.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from tagger.engine.results import TrackResult
from tagger.library.similar import Neighbourhood
from tagger.model.modelcard import DEFAULT_MODEL
from tagger.model.modelfile import read_card
from tagger.store.catalog import Store

ARTIST_TRACKS, ALBUM_TRACKS = 200, 12


def build(db: str, n: int) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    lib = Store(db)
    model = lib.ensure_model(read_card(DEFAULT_MODEL), 256)
    rng = np.random.default_rng(0)
    artists = rng.standard_normal((n // ARTIST_TRACKS + 1, 256)).astype(np.float32)
    albums = 0.6 * rng.standard_normal((n // ALBUM_TRACKS + 1, 256)).astype(np.float32)
    t0 = time.perf_counter()
    for start in range(0, n, 256):
        batch = []
        for i in range(start, min(start + 256, n)):
            a, b = i // ARTIST_TRACKS, i // ALBUM_TRACKS
            emb = artists[a] + albums[b] + 0.8 * rng.standard_normal(256).astype(np.float32)
            meta = {"artist": f"Artist {a}", "album": f"Album {b}", "title": f"Track {i}"} if i % 10 else None
            batch.append(TrackResult(f"/music/artist{a:04d}/album{b:05d}/track{i:06d}.mp3", 5_000_000 + i,
                                     1_700_000_000_000_000_000 + i, f"{i:040x}", "mp3", 240.0, 16,
                                     rng.beta(0.4, 4.0, 50).astype(np.float32), emb, metadata=meta))
        lib.save(batch, model)
    with lib.sql_engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"wrote {n:,} tracks in {time.perf_counter() - t0:.0f} s ({os.path.getsize(db) / 1e6:.0f} MB)")


def median_ms(fn, rounds: int) -> float:
    times = []
    for i in range(rounds):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def process_s(args: list[str], rounds: int = 5) -> float:
    cmd = [sys.executable, "-m", "tagger", *args]
    subprocess.run(cmd, capture_output=True, check=True)  # warm-up (page cache)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--db", default="/tmp/tagger-similar-bench.db")
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args()
    if not (args.reuse and os.path.exists(args.db)):
        build(args.db, args.tracks)
    lib = Store(args.db, create=False)
    paths = [r.path for r in lib.tracks_under()]
    rng = np.random.default_rng(1)
    queries = [paths[i] for i in rng.integers(0, len(paths), 50)]
    print(f"{len(paths):,} tracks")

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
    db = ["--db", args.db]
    for label, cmd in (("similar -n 20 -f json", ["similar", queries[0], "-n", "20", "-f", "json"]),
                       ("radio -n 50 -f m3u", ["radio", queries[1], "-n", "50", "-f", "m3u", "--seed", "1"]),
                       ("radio -n 50 --max-per-artist 2", ["radio", queries[2], "-n", "50", "--max-per-artist", "2",
                                                           "-f", "m3u", "--seed", "1"]),
                       ("tagger stats (for scale)", ["stats"])):
        print(f"process: {label}: {process_s([*cmd, *db]):.2f} s")


if __name__ == "__main__":
    main()
