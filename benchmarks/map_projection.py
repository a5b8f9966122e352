"""Which projection for `tagger map`: how well 2-D positions keep the embeddings' neighbourhoods
on the real-music corpus.

    tagger scan ~/.cache/tagger-corpus/real-music --db /tmp/map-corpus.db   # once (15–40 min)
    python benchmarks/map_projection.py --db /tmp/map-corpus.db [--root ~/.cache/tagger-corpus/real-music]

For each projection of the tracks' unit vectors in the similarity space (the one `tagger
similar` ranks in): *10-NN kept*, the share of each track's 10 nearest tracks by embedding
that are among its 10 nearest points on the map; *same-package p@5*, the share of its 5
nearest points on the map from the same package (the first folder under --root: one game's
soundtrack). UMAP (umap-learn) and openTSNE are tried when they are installed.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from tagger.library.layout import project
from tagger.library.similar import DEFAULT_SPACE, fit_space
from tagger.store.catalog import Store


def knn(x: np.ndarray, k: int) -> np.ndarray:
    d = ((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1)[:, :k]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="/tmp/map-corpus.db")
    ap.add_argument("--root", default=os.path.expanduser("~/.cache/tagger-corpus/real-music"))
    args = ap.parse_args()
    store = Store(args.db, create=False)
    stored = store.embeddings_of(store.model())
    rows = store.tracks_by_id([int(i) for i in stored.track_ids])
    package = np.array([os.path.relpath(rows[int(i)].path, args.root).split(os.sep)[0] for i in stored.track_ids])
    v = fit_space(DEFAULT_SPACE, stored.vectors)(stored.vectors)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    true10 = np.argsort(-sims, axis=1)[:, :10]
    print(f"{len(v)} tracks, {len(set(package))} packages; space: {DEFAULT_SPACE}")
    print("| projection | 10-NN kept | same-package p@5 | time |")
    print("|---|---|---|---|")
    p5 = np.mean(package[np.argsort(-sims, axis=1)[:, :5]] == package[:, None])
    print(f"| (the embedding itself, cosine) | 1.000 | {p5:.3f} | |")

    def report(name: str, fn) -> None:
        t = time.perf_counter()
        xy = np.asarray(fn(), dtype=np.float64)
        took = time.perf_counter() - t
        m10 = knn(xy, 10)
        kept = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(true10, m10)])
        same = np.mean(package[knn(xy, 5)] == package[:, None])
        print(f"| {name} | {kept:.3f} | {same:.3f} | {took:.1f} s |", flush=True)

    report("random positions (the floor)", lambda: np.random.default_rng(0).standard_normal((len(v), 2)))
    report("PCA of the unit vectors (tagger map's default)", lambda: project(v).xy)
    raw = stored.vectors - stored.vectors.mean(0)
    report("PCA of the raw embeddings", lambda: raw @ np.linalg.svd(raw, full_matrices=False)[2][:2].T)
    try:
        import umap
    except ImportError:
        print("(umap-learn not installed: UMAP not tried)")
    else:
        for nn in (10, 15, 30):
            report(f"UMAP, cosine, n_neighbors={nn}",
                   lambda nn=nn: umap.UMAP(n_neighbors=nn, metric="cosine", random_state=0).fit_transform(v))
    try:
        import openTSNE
    except ImportError:
        print("(openTSNE not installed: t-SNE not tried)")
    else:
        for perp in (10, 30):
            report(f"openTSNE, cosine, perplexity={perp}",
                   lambda perp=perp: openTSNE.TSNE(perplexity=perp, metric="cosine", random_state=0).fit(v))
        report("tagger map --projection tsne", lambda: project(v, "tsne").xy)


if __name__ == "__main__":
    main()
