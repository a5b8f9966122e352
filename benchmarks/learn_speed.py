"""`tagger learn` at 100,000 tracks: learning a tag from 200 examples, scoring the whole library.

    python benchmarks/learn_speed.py [--tracks 100000] [--db /tmp/tagger-learn-bench.db] [--reuse]
    python benchmarks/learn_speed.py --postgres      # the same on a throw-away PostgreSQL server

Builds a library as benchmarks/store.py does (synthetic results written through Store.save),
except that the float16 embeddings come from 50 clusters (centre + noise) so that a tag has
something to learn. 200 tracks of one cluster go into an .m3u; then the real command line
runs, as a whole process, five times:

    tagger learn bench --like 200.m3u            (first: a new tag; then re-learning it)

and the phases are timed once more in-process. ``--reuse`` keeps a database built before.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from library100k import add_arguments, build, database, exists, load, timed, where

from tagger.engine.results import ModelOutput, TrackResult
from tagger.store.catalog import Store

CLUSTERS = 50


def path_of(i: int) -> str:
    return f"/music/artist{i // 200:04d}/album{i // 12:05d}/track{i:06d}.mp3"


def cluster_of(i: int) -> int:
    return (i * 7919) % CLUSTERS


def _centres() -> np.ndarray:
    return np.random.default_rng(12345).standard_normal((CLUSTERS, 256)).astype(np.float32)


def track(i: int, rng: np.random.Generator, centres: np.ndarray = _centres()) -> TrackResult:
    return TrackResult(path_of(i), 5_000_000 + i, 1_700_000_000_000_000_000 + i, f"{i:040x}", "mp3", 240.0, 16,
                       (ModelOutput(rng.beta(0.4, 4.0, 50).astype(np.float32),
                       centres[cluster_of(i)] + 1.5 * rng.standard_normal(256).astype(np.float32)),))


def main() -> None:
    ap = argparse.ArgumentParser()
    add_arguments(ap, "/tmp/tagger-learn-bench.db")
    ap.add_argument("--examples", type=int, default=200)
    args = ap.parse_args()
    db = database(args)
    if not (args.reuse and exists(db)):
        build(db, args.tracks, track, "musicnn-vgg-mtt")
    print(f"{where(db)}, {args.tracks:,} tracks")
    lib = Store(db, create=False)
    lib.remove_learned("bench")
    liked = [i for i in range(args.tracks) if cluster_of(i) == 0][:args.examples]
    folder = os.path.dirname(args.db) if "://" not in args.db else tempfile.gettempdir()
    m3u = os.path.join(folder or ".", "tagger-learn-bench.m3u")
    with open(m3u, "w") as f:
        f.write("#EXTM3U\n" + "".join(path_of(i) + "\n" for i in liked))
    # the library's paths are not on this disk: an m3u entry is found by its stored path
    times, cpus = [], []
    for run in range(5):
        wall, cpu, result = timed([sys.executable, "-m", "tagger", "learn", "bench", "--like", m3u, "--db", db])
        times.append(wall)
        cpus.append(cpu)
        if result.returncode != 0:
            sys.exit(result.stderr)
        print(f"run {run + 1} ({'new tag' if run == 0 else 're-learn'}): {wall:.2f} s whole process, "
              f"{cpu:.2f} s CPU ({load()})")
        if run == 0:
            print("  " + result.stdout.strip().replace("\n", "\n  "))
    print(f"whole process, new tag {times[0]:.2f} s; re-learn median {statistics.median(times[1:]):.2f} s "
          f"(CPU {cpus[0]:.2f} s; {statistics.median(cpus[1:]):.2f} s)")
    phases(lib, m3u)
    check_ranking(lib, set(liked), args.tracks)


def phases(lib: Store, m3u: str) -> None:
    from tagger.library import examples
    from tagger.library import learned as L
    from tagger.library.standardise import Standardiser

    out = {}
    t = time.perf_counter()
    model = lib.model()
    ex = examples.resolve(lib, model, [m3u], "--like")
    out[f"resolve the .m3u ({len(ex.ids)} tracks)"] = time.perf_counter() - t
    t = time.perf_counter()
    stored = lib.embeddings_of(model)
    ids, x = stored.track_ids, stored.vectors
    out[f"read {len(ids):,} embeddings"] = time.perf_counter() - t
    t = time.perf_counter()
    row = {int(v): i for i, v in enumerate(ids)}
    liked = np.array(sorted(ex.ids))
    neg = L.sample_negatives(ids, liked, 0)
    standard = Standardiser.fit(x)
    mean, scale = standard.mean, standard.divisor()
    z = (x[[row[int(i)] for i in np.concatenate([liked, neg])]] - mean) / scale
    y = np.r_[np.ones(len(liked)), np.zeros(len(neg))]
    out["standardise, sample"] = time.perf_counter() - t
    t = time.perf_counter()
    w, b = L.fit(z, y, 0)
    out[f"fit ({len(y)} examples)"] = time.perf_counter() - t
    t = time.perf_counter()
    folds, auc = L.cross_validate(z, y, 0, (w, b))
    out[f"cross-validate ({folds}-fold)"] = time.perf_counter() - t
    t = time.perf_counter()
    probs = L.Classifier(w, b, mean, scale).probabilities(x)
    out["score every track"] = time.perf_counter() - t
    t = time.perf_counter()
    lib.store_learned(model, "bench", L.Classifier(w, b, mean, scale).blobs(), {}, ids, probs)
    out[f"store (replace {len(ids):,} score rows)"] = time.perf_counter() - t
    for k, v in out.items():
        print(f"  {k:<62} {v:6.2f} s")


def check_ranking(lib: Store, liked: set[int], n: int) -> None:
    from tagger.library.query import model_terms
    from tagger.store.query import TrackQuery, run_query

    model = lib.model()
    t = time.perf_counter()
    rows = run_query(lib, TrackQuery(model_terms(lib, model, ["bench"]), None, 500), model)
    took = time.perf_counter() - t
    same = sum(cluster_of(int(r.path[-10:-4])) == 0 for r in rows)
    print(f"query --tag bench --top 500: {took * 1000:.0f} ms; {same}/500 from the liked cluster "
          f"({n // CLUSTERS} tracks in it)")


if __name__ == "__main__":
    main()
