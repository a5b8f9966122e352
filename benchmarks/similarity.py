"""Which distance for `tagger similar`? Precision@k of "neighbour from the same package".

    python benchmarks/similarity.py [FOLDER] [--db FILE] [--k 5]

FOLDER defaults to the real-music corpus of ../shared/corpus/fetch-real-music.sh (one
subfolder per game soundtrack, each a coherent style). Scans it into a database (a fresh
temporary one, or --db, which a rerun reuses: the scan is incremental) with the default model
and 16 chunks, as `tagger scan` does, then for every track asks for its k nearest tracks the
way `tagger similar` does (tagger.library.similar: the query itself and its copies, same
fingerprint, left out) in each space, and counts the neighbours from the query's own
subfolder. Also: precision@1 and @10, the chance level, and the 50 tag probabilities as a
reference.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from tagger.library.similar import SPACES, EmbeddingIndex, Space, fit_space, load_index
from tagger.scan import ScanOptions, scan
from tagger.store.catalog import Store

CORPUS = Path.home() / ".cache" / "tagger-corpus" / "real-music"


def precision(index: EmbeddingIndex, labels: list[str], ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Per query, the share of its k nearest tracks with the query's label."""
    out = {k: [] for k in ks}
    for i in range(len(index)):
        hits = index.nearest(index.vectors[i], max(ks), [int(index.track_ids[i])], [index.fingerprints[i]])
        same = [labels[j] == labels[i] for j, _ in hits]
        for k in ks:
            out[k].append(np.mean(same[:k]))
    return {k: np.array(v) for k, v in out.items()}


def paired_ci(a: np.ndarray, b: np.ndarray, rounds: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval (queries resampled) of mean(a) − mean(b)."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(a), (rounds, len(a)))
    diffs = (a[idx] - b[idx]).mean(axis=1)
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def respace(index: EmbeddingIndex, space: Space, x: np.ndarray) -> EmbeddingIndex:
    return EmbeddingIndex(index.model, space, index.track_ids, index.fingerprints, space(x))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default=str(CORPUS))
    ap.add_argument("--db", default=None, help="database to scan into (default: a temporary one)")
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()
    root = Path(args.folder).expanduser().resolve()
    tmp = None
    if args.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="tagger-similarity-")
        args.db = os.path.join(tmp.name, "corpus.db")
    t0 = time.perf_counter()
    summary = scan([str(root)], args.db, ScanOptions())
    print(f"scan: {summary.scanned} scanned, {len(summary.failed)} failed, "
          f"{summary.plan.unchanged} unchanged, "
          f"{time.perf_counter() - t0:.0f} s ({summary.model_name}, 16 chunks)")
    library = Store(args.db, create=False)
    model = library.model()
    base = load_index(library, model, "cosine", keep_raw=True)
    paths = {r.id: r.path for r in library.tracks_under([str(root)])}
    keep = [i for i, t in enumerate(base.track_ids) if int(t) in paths]
    base = EmbeddingIndex(model, base.space, base.track_ids[keep], [base.fingerprints[i] for i in keep],
                          base.vectors[keep], base.raw[keep])
    labels = [Path(paths[int(t)]).relative_to(root).parts[0] for t in base.track_ids]
    counts = Counter(labels)
    dups = len(base.fingerprints) - len(set(base.fingerprints))
    n = len(labels)
    chance = sum(c * (c - 1) for c in counts.values()) / (n * (n - 1))
    print(f"{n} tracks in {len(counts)} packages: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
          + f"; {dups} duplicate fingerprints; chance level {chance:.3f}")
    ks = tuple(sorted({1, args.k, 10}))
    x = base.raw
    choices: list[tuple[str, EmbeddingIndex]] = []
    for name in SPACES:
        choices.append((f"embedding, {name}", respace(base, fit_space(name, x), x)))
    for eps in (1e-3, 1e-1):
        choices.append((f"embedding, whitened (eps {eps:g})", respace(base, fit_space("whitened", x, eps), x)))
    full = fit_space("whitened", x, 1e-9)  # columns: principal axes / their standard deviations
    sd = np.linalg.norm(full.proj, axis=0) ** -1
    for dims in (32, 64):  # the first principal components, whitened or not
        top = np.argsort(-sd)[:dims]
        choices.append((f"embedding, PCA {dims} whitened", respace(base, Space("pca", full.mean, full.proj[:, top]), x)))
        choices.append((f"embedding, PCA {dims} not whitened",
                        respace(base, Space("pca", full.mean, full.proj[:, top] * sd[top]), x)))
    probs = np.stack([[library.track_scores(int(t), model)[raw] for raw in model.vocabulary.tags] for t in base.track_ids])
    for name in ("cosine", "standardised"):
        sp = fit_space(name, probs.astype(np.float32))
        choices.append((f"50 tag probabilities, {name}", respace(base, sp, probs.astype(np.float32))))
    print(f"\n| space | P@1 | P@{args.k} | P@{args.k} − raw cosine, 95 % CI | P@10 |\n|---|---|---|---|---|")
    results = []
    for label, index in choices:
        p = precision(index, labels, ks)
        results.append((label, p))
        lo, hi = paired_ci(p[args.k], results[0][1][args.k])
        print(f"| {label} | {p[1].mean():.3f} | {p[args.k].mean():.3f} | {lo:+.3f} … {hi:+.3f} "
              f"| {p[10].mean():.3f} |", flush=True)
    best = max((r for r in results if r[0].split(", ")[1] in SPACES), key=lambda r: r[1][args.k].mean())
    print(f"\nbest of the spaces tagger offers, by P@{args.k}: {best[0]} ({best[1][args.k].mean():.3f})")
    per = {}
    index = dict(choices)[best[0]]
    for i in range(len(index)):
        hits = index.nearest(index.vectors[i], args.k, [int(index.track_ids[i])], [index.fingerprints[i]])
        per.setdefault(labels[i], []).append(np.mean([labels[j] == labels[i] for j, _ in hits]))
    print("per package: " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in sorted(per.items())))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
