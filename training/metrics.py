"""Macro ROC-AUC and PR-AUC (average precision) over tags, with per-tag values."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def tag_metrics(y_true: np.ndarray, y_score: np.ndarray, tags: list[str]) -> dict:
    """``y_true`` ``[N, T]`` 0/1 and ``y_score`` ``[N, T]`` → macro and per-tag metrics. Tags
    with only positives or only negatives in ``y_true`` have no AUC and are left out of the
    macro averages (and counted)."""
    per_tag = {}
    for i, tag in enumerate(tags):
        positives = int(y_true[:, i].sum())
        if 0 < positives < len(y_true):
            per_tag[tag] = {"roc_auc": float(roc_auc_score(y_true[:, i], y_score[:, i])),
                            "pr_auc": float(average_precision_score(y_true[:, i], y_score[:, i])),
                            "positives": positives}
    roc = [m["roc_auc"] for m in per_tag.values()]
    pr = [m["pr_auc"] for m in per_tag.values()]
    return {"roc_auc": float(np.mean(roc)) if roc else float("nan"),
            "pr_auc": float(np.mean(pr)) if pr else float("nan"),
            "tags_evaluated": len(per_tag), "tags_skipped": len(tags) - len(per_tag),
            "clips": int(len(y_true)), "per_tag": per_tag}
