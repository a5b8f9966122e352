"""Every track's nearest tracks at once, for the map's "sounds most like" lists.

Rows are unit vectors in a similarity space (tagger.library.similar), so the nearest are the
largest cosines. Up to ``EXACT_LIMIT`` tracks the search is exact (blocks of rows against all);
above it, an inverted-file search: the rows are clustered (spherical k-means on a sample),
and each cluster's rows are compared with the rows of its ``PROBES`` nearest clusters only.
That misses a true neighbour only when it sits in a cluster further away;
benchmarks/map_speed.py measures how often (recall against the exact search) at 100,000.

As in ``EmbeddingIndex.nearest``: a track's own copies (same fingerprint) are not its
neighbours, and of several copies of another file only the nearest counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EXACT_LIMIT = 20_000
BLOCK = 1024  # rows compared with all at once in the exact search
PROBES = 4  # clusters searched for each cluster's rows (of ~√N): recall@10 ≥ 0.999 at 100,000 (RESULTS.md)
KMEANS_SAMPLE = 20_000
KMEANS_ROUNDS = 8
EXTRA = 4  # candidates kept beyond k, so copies can be dropped and still leave k


def nearest_all(vectors: np.ndarray, k: int, fingerprints: Sequence[str | None] | None = None,
                exact_limit: int = EXACT_LIMIT, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``vectors`` ``[N, D]`` (unit rows), its ``k`` nearest other rows.

    Returns ``(rows int32 [N, k], cosines float32 [N, k])``, best first; a slot is -1 (cosine
    NaN) where fewer than ``k`` other tracks exist."""
    n = len(vectors)
    codes = _fingerprint_codes(fingerprints, n)
    take = min(k + EXTRA, max(n - 1, 0))
    if n <= exact_limit:
        cand, sims = _exact(vectors, take)
    else:
        cand, sims = _clustered(vectors, take, np.random.default_rng(seed))
    return _without_copies(cand, sims, codes, k)


def _fingerprint_codes(fingerprints: Sequence[str | None] | None, n: int) -> np.ndarray:
    """Each row's fingerprint as a number (rows with none get a number of their own)."""
    if fingerprints is None:
        return np.arange(n)
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(fp, len(ids)) if fp else -1 - i for i, fp in enumerate(fingerprints)],
                    dtype=np.int64)


def _top(sims: np.ndarray, take: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's ``take`` largest, best first."""
    if take <= 0:
        return np.zeros((len(sims), 0), np.int64), np.zeros((len(sims), 0), np.float32)
    part = np.argpartition(sims, sims.shape[1] - take, axis=1)[:, -take:] if take < sims.shape[1] \
        else np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
    vals = np.take_along_axis(sims, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _exact(v: np.ndarray, take: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(v)
    cand = np.empty((n, take), np.int64)
    sims = np.empty((n, take), np.float32)
    for start in range(0, n, BLOCK):
        s = v[start:start + BLOCK] @ v.T
        rows = np.arange(start, min(start + BLOCK, n))
        s[rows - start, rows] = -np.inf  # not its own neighbour
        cand[rows], sims[rows] = _top(s, take)
    return cand, sims


def _clustered(v: np.ndarray, take: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = len(v)
    lists = int(np.sqrt(n))
    centres = _kmeans(v, lists, rng)
    assign = np.empty(n, np.int64)
    for start in range(0, n, 8192):
        assign[start:start + 8192] = np.argmax(v[start:start + 8192] @ centres.T, axis=1)
    # rows sorted by cluster, so that a cluster is a slice and a pool a few slices copied whole
    perm = np.argsort(assign, kind="stable")
    vs = v[perm]
    bounds = np.searchsorted(assign[perm], np.arange(lists + 1))
    near = centres @ centres.T
    np.fill_diagonal(near, np.inf)
    probes = np.argsort(-near, axis=1)[:, :PROBES]  # each cluster's nearest, itself first
    cand = np.full((n, take), -1, np.int64)
    sims = np.full((n, take), -np.inf, np.float32)
    for c in range(lists):
        lo, hi = bounds[c], bounds[c + 1]
        if lo == hi:
            continue
        pool = np.concatenate([np.arange(bounds[p], bounds[p + 1]) for p in probes[c]])
        s = vs[lo:hi] @ np.concatenate([vs[bounds[p]:bounds[p + 1]] for p in probes[c]]).T
        s[np.arange(hi - lo), np.arange(hi - lo)] = -np.inf  # itself (its cluster comes first in the pool)
        top, vals = _top(s, min(take, len(pool)))
        cand[perm[lo:hi], :top.shape[1]] = perm[pool[top]]
        sims[perm[lo:hi], :top.shape[1]] = vals
    return cand, sims


def _kmeans(v: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` unit centres of spherical k-means over a sample of the rows."""
    sample = v[rng.choice(len(v), min(len(v), KMEANS_SAMPLE), replace=False)]
    centres = sample[rng.choice(len(sample), k, replace=False)].copy()
    for _ in range(KMEANS_ROUNDS):
        assign = np.argmax(sample @ centres.T, axis=1)
        sums = np.zeros_like(centres)
        for c in np.unique(assign):  # per cluster: far faster than np.add.at
            sums[c] = sample[assign == c].sum(axis=0)
        empty = ~np.bincount(assign, minlength=k).astype(bool)
        sums[empty] = sample[rng.choice(len(sample), int(empty.sum()), replace=False)]  # reseed empty ones
        centres = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return centres


def _without_copies(cand: np.ndarray, sims: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each row's first ``k`` candidates that are neither a copy of the row nor of a
    better candidate."""
    n = len(cand)
    valid = (cand >= 0) & np.isfinite(sims)
    cc = np.where(valid, codes[np.maximum(cand, 0)], np.iinfo(np.int64).min)
    drop = ~valid | (cc == codes[:, None])
    # a repeat of a better candidate's fingerprint: rare, so only the rows that have one are walked
    srt = np.sort(np.where(drop, np.iinfo(np.int64).min + np.arange(cc.shape[1]), cc), axis=1)
    for r in np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1)):
        seen = set()
        for j, code in enumerate(cc[r]):
            if not drop[r, j]:
                drop[r, j] = code in seen
                seen.add(code)
    out = np.full((n, k), -1, np.int32)
    out_s = np.full((n, k), np.nan, np.float32)
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # kept ones first, in rank order
    width = order.shape[1]
    kept = ~np.take_along_axis(drop, order, axis=1)
    out[:, :width] = np.where(kept, np.take_along_axis(cand, order, axis=1), -1)
    out_s[:, :width] = np.where(kept, np.take_along_axis(sims, order, axis=1), np.nan)
    return out, out_s
