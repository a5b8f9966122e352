"""How well does a tag learned from five tracks find the rest of its kind? The real-music corpus.

    python benchmarks/learn_quality.py --db FILE [FOLDER] [--repeats 10]

FOLDER defaults to the real-music corpus (../shared/corpus/fetch-real-music.sh: one subfolder
per game soundtrack, each a coherent style); it is scanned into --db first (incremental, as
`tagger scan`). Then, for each soundtrack and each repeat, five of its tracks are drawn as
--like and a tag is fitted the way `tagger learn` fits it (tagger.library.learned: embeddings
standardised over the library, a random sample of the rest standing in for negatives,
class-balanced logistic regression), for several values of C. Reported, over the tracks not
drawn: R-precision (of the top R tracks, R = the soundtrack's other tracks, the share from
the soundtrack), ROC-AUC (soundtrack's other tracks against the rest), and the median
probability of the soundtrack's other tracks and of the rest (what thresholds such as
`write --min 0.2` see). Nothing is stored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tagger.library import learned as L
from tagger.library import logistic
from tagger.library.standardise import Standardiser
from tagger.store.catalog import Store

CORPUS = Path.home() / ".cache" / "tagger-corpus" / "real-music"
LIKE = 5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default=str(CORPUS))
    ap.add_argument("--db", required=True)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--c", default="0.005,0.01,0.02,0.05,0.2,1.0")
    args = ap.parse_args()
    from tagger.scan import ScanOptions, scan

    root = str(Path(args.folder).resolve())
    scan([root], args.db, ScanOptions(workers=1))
    lib = Store(args.db, create=False)
    model = lib.model()
    stored = lib.embeddings_of(model)
    ids, x = stored.track_ids, stored.vectors
    paths = {r.id: r.path for r in lib.tracks_under([root])}
    keep = np.array([t in paths for t in ids])
    ids, x = ids[keep], x[keep]
    labels = np.array([Path(paths[int(t)]).relative_to(root).parts[0] for t in ids])
    standard = Standardiser.fit(x)
    mean, scale = standard.mean, standard.divisor()
    z = (x - mean) / scale
    groups = [g for g in sorted(set(labels)) if (labels == g).sum() >= LIKE + 3]
    print(f"{len(ids)} tracks, {len(groups)} soundtracks with ≥ {LIKE + 3} tracks, {args.repeats} draws each, "
          f"{LIKE} liked, random negatives (as tagger learn without --unlike)")
    print(f"{'C':>6} {'R-precision':>12} {'ROC-AUC':>8} {'p(same kind)':>13} {'p(rest)':>8}  chance R-prec")
    chance = np.mean([(labels == g).sum() / len(labels) for g in groups])
    for c in [float(v) for v in args.c.split(",")]:
        L.C = c
        rp, auc, p_same, p_rest = [], [], [], []
        for g in groups:
            for rep in range(args.repeats):
                r, a, ps, pr = trial(x, z, mean, scale, ids, labels, g, rep)
                rp.append(r)
                auc.append(a)
                p_same.append(ps)
                p_rest.append(pr)
        print(f"{c:>6} {np.mean(rp):>12.3f} {np.mean(auc):>8.3f} {np.mean(p_same):>13.3f} {np.mean(p_rest):>8.3f}"
              f"  {chance:.3f}")


def trial(x: np.ndarray, z: np.ndarray, mean: np.ndarray, scale: np.ndarray, ids: np.ndarray,
          labels: np.ndarray, group: str, rep: int) -> tuple[float, float, float, float]:
    """One draw: LIKE tracks of ``group`` liked (seed ``rep``), a tag fitted as tagger learn fits
    it on the standardised ``z``, the rest ranked by it. Returns (R-precision, ROC-AUC, median p
    of the group's other tracks, median p of the rest)."""
    rng = np.random.default_rng(rep)
    liked = rng.choice(np.flatnonzero(labels == group), LIKE, replace=False)
    neg = np.searchsorted(ids, L.sample_negatives(ids, ids[liked], rep))
    zz = np.concatenate([z[liked], z[neg]])
    y = np.r_[np.ones(LIKE), np.zeros(len(neg))]
    w, b = L.fit(zz, y, rep)
    p = L.Classifier(w, b, mean, scale).probabilities(x)
    rest = np.setdiff1d(np.arange(len(ids)), liked)
    same = labels[rest] == group
    top = rest[np.argsort(-p[rest], kind="stable")[:same.sum()]]
    return (float(np.mean(labels[top] == group)), float(logistic.roc_auc(same.astype(float), p[rest])),
            float(np.median(p[rest][same])), float(np.median(p[rest][~same])))


if __name__ == "__main__":
    main()
