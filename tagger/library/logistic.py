"""L2-regularised logistic regression with balanced class weights, and ROC-AUC, in numpy.

The fit is the one scikit-learn's ``LogisticRegression(C=C, class_weight="balanced")`` makes
(its lbfgs solver minimises the same objective; tests/test_learn.py checks the two agree):

    minimise  C · Σᵢ sᵢ · log(1 + exp(−yᵢ (w·xᵢ + b)))  +  ½ ‖w‖²

with yᵢ ∈ {−1, +1}, sᵢ = n / (2 · nᵢ) (nᵢ: the examples of i's class) and the bias b not
penalised, solved by Newton's method with a backtracking line search: a few iterations of a
(d + 1)² system, milliseconds for the ~1,000 examples × 256 dimensions of a learned tag.
Why not scikit-learn itself: importing it (with SciPy) took more of ``tagger learn``'s time at
100,000 tracks than everything else together (benchmarks/learn_speed.py, RESULTS.md).
"""

from __future__ import annotations

import numpy as np

MAX_ITER = 100
TOL = 1e-16  # on the Newton decrement (relative): the weights are then within ~1e-8 of the minimum


def _log1pexp(m: np.ndarray) -> np.ndarray:
    """log(1 + exp(−m)), without overflow."""
    return np.logaddexp(0.0, -m)


def fit(x: np.ndarray, y: np.ndarray, c: float,
        start: tuple[np.ndarray, float] | None = None) -> tuple[np.ndarray, float]:
    """Weights ``[d]`` (float64) and bias of the regression of labels ``y`` (0/1, ``[n]``) on
    ``x`` ``[n, d]``, classes weighted to balance, L2 strength 1/``c``. ``start``: weights and
    bias to start from (a fit of similar data: cross-validation's folds start from the fit of
    all the examples and converge in a few steps). One BLAS thread: on matrices this small
    more threads only wait for each other (3.4 s against 0.13 s on 2 busy cores)."""
    with _one_thread():
        return _fit(np.asarray(x, dtype=np.float64), y, c, start)


def _one_thread():
    try:
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency, so here
    except ImportError:  # pragma: no cover
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def _fit(x: np.ndarray, y: np.ndarray, c: float, start: tuple[np.ndarray, float] | None) -> tuple[np.ndarray, float]:
    labels = np.asarray(y) > 0.5
    n, d = x.shape
    n_pos = int(labels.sum())
    weight = np.where(labels, n / (2.0 * max(n_pos, 1)), n / (2.0 * max(n - n_pos, 1))) * c
    sign = np.where(labels, 1.0, -1.0)
    xb = np.hstack([x, np.ones((n, 1))])  # the bias as a last, unpenalised weight
    penalty = np.ones(d + 1)
    penalty[-1] = 0.0
    theta = np.zeros(d + 1) if start is None else np.r_[np.asarray(start[0], dtype=np.float64), start[1]]

    def objective(t: np.ndarray) -> float:
        return float(weight @ _log1pexp(sign * (xb @ t)) + 0.5 * (penalty * t) @ t)

    value = objective(theta)
    for _ in range(MAX_ITER):
        z = xb @ theta
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid
        grad = xb.T @ (weight * (p - labels)) + penalty * theta
        hess = (xb.T * (weight * p * (1.0 - p))) @ xb
        hess[np.diag_indices_from(hess)] += penalty + 1e-12
        step = np.linalg.solve(hess, grad)
        decrement = float(grad @ step)
        if decrement / 2 <= TOL * max(1.0, abs(value)):
            break
        t = 1.0
        while True:  # backtracking (Armijo): Newton's full step is taken near the minimum
            candidate = theta - t * step
            new = objective(candidate)
            if new <= value - 0.25 * t * decrement or t < 1e-10:
                break
            t *= 0.5
        theta, value = candidate, new
        if t < 1e-10:  # rounding: no step lowers the objective any more
            break
    return theta[:-1], float(theta[-1])


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for labels ``y`` (0/1): the chance that a positive
    scores above a negative, ties counting half (the Mann–Whitney U statistic)."""
    y = np.asarray(y) > 0.5
    score = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    # average ranks (1-based) over runs of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(score)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
