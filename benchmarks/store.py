"""Store figures: insert rate, database size per 10,000 tracks, query times at 100,000 tracks.

    python benchmarks/store.py [--tracks 100000] [--db /tmp/tagger-store-bench.db]

Writes synthetic results (random Beta-distributed probabilities, random float16 embeddings)
through Library.save — the path a scan uses, in flushes of 256 tracks — then times queries
through the same code as `tagger query`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from tagger.engine.results import ModelOutput, TrackResult
from tagger.library.query import parse_terms
from tagger.model.modelfile import read_card
from tagger.store.catalog import Store
from tagger.store.query import TrackQuery, run_query


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--db", default="/tmp/tagger-store-bench.db")
    args = ap.parse_args()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(args.db + suffix):
            os.remove(args.db + suffix)
    card = read_card("musicnn-vgg-mtt")
    lib = Store(args.db)
    model = lib.ensure_model(card, 256)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    size_at_10k = None
    for start in range(0, args.tracks, 256):
        batch = []
        for i in range(start, min(start + 256, args.tracks)):
            batch.append(TrackResult(f"/music/artist{i // 200:04d}/album{i // 12:05d}/track{i:06d}.mp3",
                                     5_000_000 + i, 1_700_000_000_000_000_000 + i, f"{i:040x}", "mp3", 240.0,
                                     16, (ModelOutput(rng.beta(0.4, 4.0, 50).astype(np.float32),
                                     rng.standard_normal(256).astype(np.float32)),)))
        lib.save(batch, model)
        if size_at_10k is None and start + 256 >= 10_000:
            with lib.sql_engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            size_at_10k = os.path.getsize(args.db)
    elapsed = time.perf_counter() - t0
    with lib.sql_engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(args.db)
    print(f"inserted {args.tracks:,} tracks ({args.tracks * 50:,} score rows) in {elapsed:.1f} s: "
          f"{args.tracks / elapsed:,.0f} tracks/s, {args.tracks * 50 / elapsed:,.0f} score rows/s")
    print(f"database size: {size / 1e6:.0f} MB at {args.tracks:,} tracks = {size / args.tracks * 1e4 / 1e6:.1f} MB "
          f"per 10,000 tracks (first 10,240 tracks: {size_at_10k / 1e6:.1f} MB)")
    vocab = model.vocabulary
    cases = [("--tag techno --top 100", ["techno"], [], None, 100),
             ("--tag female_vocals --top 100 (group of 4)", ["female_vocals"], [], None, 100),
             ("--tag techno --min 0.5 --top 0", ["techno"], [], 0.5, None),
             ("--tag piano --tag slow --not drums --top 100", ["piano", "slow"], ["drums"], None, 100),
             ("--tag female_vocals --tag piano --min 0.3", ["female_vocals", "piano"], [], 0.3, None)]
    for label, tags, nots, min_score, top in cases:
        q = TrackQuery(parse_terms(vocab, tags, nots), min_score, top)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            rows = run_query(lib, q, model)
            times.append(time.perf_counter() - t)
        print(f"query {label:<48} {statistics.median(times) * 1000:8.1f} ms  ({len(rows)} rows)")


if __name__ == "__main__":
    main()
