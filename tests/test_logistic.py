"""tagger.library.logistic against scikit-learn: the same regression (its objective's minimum)
and the same ROC-AUC, ties included."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from tagger.library import logistic


@pytest.mark.parametrize("n_pos,n_neg,dims,shift", [(200, 1000, 256, 0.3), (5, 500, 64, 1.0), (3, 2, 4, 2.0),
                                                    (40, 40, 32, 0.0)])
def test_fit_is_scikit_learns_balanced_l2_regression(n_pos, n_neg, dims, shift):
    rng = np.random.default_rng(n_pos)
    x = np.r_[rng.standard_normal((n_pos, dims)) + shift, rng.standard_normal((n_neg, dims))]
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    weights, bias = logistic.fit(x, y, 0.02)
    ref = LogisticRegression(C=0.02, class_weight="balanced", max_iter=20000, tol=1e-12).fit(x, y)
    assert weights == pytest.approx(ref.coef_[0], abs=1e-6)
    assert bias == pytest.approx(ref.intercept_[0], abs=1e-6)
    warm = logistic.fit(x[1:], y[1:], 0.02, (weights, bias))  # a warm start finds the same minimum
    cold = logistic.fit(x[1:], y[1:], 0.02)
    assert warm[0] == pytest.approx(cold[0], abs=1e-8) and warm[1] == pytest.approx(cold[1], abs=1e-8)


def test_roc_auc_is_scikit_learns_with_ties():
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.2
    score = np.round(rng.standard_normal(300) + y, 1)  # many ties
    assert logistic.roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
