"""Where each track goes on the map: its embedding projected to two dimensions.

``pca`` (the default, numpy only): the two principal axes of the tracks' unit vectors in the
similarity space, the directions along which the library varies most. ``tsne`` (needs the
optional openTSNE): a layout that keeps neighbourhoods better (about 0.55 of each track's 10
nearest stay among its 10 nearest on the map of the real-music corpus, against 0.30 for PCA:
benchmarks/map_projection.py, RESULTS.md) but takes minutes past ~20,000 tracks.

Positions come back centred and scaled into [-1, 1], the same factor on both axes (distances
along x and y mean the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tagger.errors import UsageError

PROJECTIONS = ("pca", "tsne")
KEPT_SAMPLE = 300  # tracks the neighbourhood-kept figure is measured on (±0.02)
PCA_SAMPLE = 20_000  # tracks the principal axes are estimated from, at most


@dataclass
class Layout:
    xy: np.ndarray  # float32 [N, 2] in [-1, 1]
    projection: str
    explained: tuple[float, ...] = ()  # pca: the share of the variance along each axis


def project(vectors: np.ndarray, projection: str = "pca", seed: int = 0) -> Layout:
    """Positions for unit rows ``vectors`` ``[N, D]``."""
    if projection not in PROJECTIONS:
        raise UsageError(None, f"unknown projection {projection!r}", f"one of {', '.join(PROJECTIONS)}")
    n = len(vectors)
    if n < 3:  # nothing to project: one or two tracks sit side by side
        return Layout(np.array([[-0.5, 0.0], [0.5, 0.0]][:n], np.float32).reshape(n, 2), projection)
    if projection == "tsne":
        return Layout(_fit(_tsne(vectors, seed)), projection)
    x = vectors[::max(1, n // PCA_SAMPLE)].astype(np.float64)  # evenly spaced rows: the axes, not the positions
    mean = x.mean(axis=0)
    cov = (x.T @ x) / len(x) - np.outer(mean, mean)  # [D, D]: no centred copy of an [N, D] matrix
    vals, vecs = np.linalg.eigh(cov)
    axes = vecs[:, ::-1][:, :2]
    axes *= np.where(axes[np.argmax(np.abs(axes), axis=0), [0, 1]] < 0, -1, 1)  # a fixed sign per axis
    xy = (vectors @ axes.astype(np.float32)) - (mean @ axes).astype(np.float32)
    total = max(float(vals.sum()), 1e-12)
    return Layout(_fit(xy), projection, tuple(float(v) / total for v in vals[::-1][:2]))


def _tsne(vectors: np.ndarray, seed: int) -> np.ndarray:
    try:
        from openTSNE import TSNE
    except ImportError:
        raise UsageError(None, "--projection tsne needs openTSNE, which is not installed",
                         "pip install openTSNE, or use --projection pca") from None
    return np.asarray(TSNE(perplexity=min(30.0, (len(vectors) - 1) / 3), metric="cosine",
                           random_state=seed, n_jobs=1, verbose=False).fit(vectors))  # threads: 8× slower on 2 busy cores


def _fit(xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, np.float64)
    xy -= (xy.max(axis=0) + xy.min(axis=0)) / 2
    scale = np.abs(xy).max()
    return (xy / scale if scale > 0 else xy).astype(np.float32)


def neighbours_kept(xy: np.ndarray, neighbours: np.ndarray, seed: int = 0) -> float | None:
    """How many of a track's true nearest tracks (``neighbours`` ``[N, k]`` rows, -1 none) are
    among its ``k`` nearest points on the map, as a share, averaged over a sample of tracks."""
    n, k = neighbours.shape
    if n <= k + 1 or k == 0:
        return None
    rows = np.random.default_rng(seed).choice(n, min(n, KEPT_SAMPLE), replace=False)
    kept = []
    for start in range(0, len(rows), 64):  # 64 × N distances at a time
        r = rows[start:start + 64]
        d = ((xy[r, None, :] - xy[None, :, :]) ** 2).sum(axis=2)
        d[np.arange(len(r)), r] = np.inf
        near = np.argpartition(d, k, axis=1)[:, :k]
        for i, row in enumerate(r):
            true = neighbours[row][neighbours[row] >= 0]
            if len(true):
                kept.append(len(np.intersect1d(true, near[i])) / len(true))
    return float(np.mean(kept)) if kept else None
