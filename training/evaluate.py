"""Evaluating any tagger model on a dataset split: the recipe's protocol (16 evenly spaced
3 s chunks per clip, mean of the sigmoid outputs), macro and per-tag ROC-AUC and PR-AUC."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from tagger.errors import UsageError
from tagger.model.tagmodel import TagModel
from training.data import SAMPLE_RATE, Cache, ChunksDataset, Clip
from training.metrics import tag_metrics


@torch.inference_mode()
def predict(model: TagModel, cache: Cache, clips: list[Clip], chunks: int = 16, workers: int = 0,
            batch_clips: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(labels ``[N, T]``, clip probabilities ``[N, n_model_tags]``). The chunks are read in
    ``workers`` processes (0: in this one) and, on CUDA, pinned and copied without blocking; the
    probabilities stay on the device until the end, so no batch waits for the host."""
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    loader = DataLoader(ChunksDataset(cache, clips, chunks), batch_size=batch_clips, num_workers=workers,
                        pin_memory=cuda, prefetch_factor=4 if workers > 0 else None,
                        # its own generator: the workers' seeds must not draw from torch's global RNG
                        generator=torch.Generator().manual_seed(0))
    ys, ps = [], []
    for x, y in loader:
        b = x.shape[0]
        x = x.reshape(b * chunks, -1).to(device, non_blocking=True)
        ps.append(model(x).float().reshape(b, chunks, -1).mean(dim=1))
        ys.append(y)
    return torch.cat(ys).numpy(), torch.cat(ps).cpu().numpy()


def evaluate(model: TagModel, cache: Cache, clips: list[Clip], tags: list[str], chunks: int = 16,
             workers: int = 0) -> dict:
    """Metrics of ``model`` on ``clips`` labelled with ``tags``; tags the model does not
    predict are left out (and listed)."""
    card_tags = model.card.tags if hasattr(model, "card") else tags
    if hasattr(model, "card") and model.card.sample_rate != SAMPLE_RATE:
        raise UsageError(None, f"model expects {model.card.sample_rate} Hz audio; the training cache holds {SAMPLE_RATE} Hz")
    common = [t for t in tags if t in card_tags]
    if not common:
        raise UsageError(None, "the model predicts none of the dataset's tags")
    usable = [c for c in clips if c.key in cache.entries]
    if not usable:
        raise UsageError(None, "no clip of this split is in the cache", "run 'tagger train --prepare-only' first")
    y, p = predict(model, cache, usable, chunks, workers)
    cols_y = [tags.index(t) for t in common]
    cols_p = [card_tags.index(t) for t in common]
    metrics = tag_metrics(y[:, cols_y], p[:, cols_p], common)
    metrics["tags_not_in_model"] = [t for t in tags if t not in card_tags]
    metrics["chunks_per_clip"] = chunks
    return metrics


def write_report(metrics: dict, out_dir: Path, title: str) -> list[Path]:
    """``report.json``, and per-tag ROC-AUC / PR-AUC bar charts when matplotlib is installed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.json"]
    written[0].write_text(json.dumps(dict(metrics, title=title), indent=1))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    per_tag = metrics["per_tag"]
    for key, label in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC")):
        items = sorted(per_tag.items(), key=lambda kv: -kv[1][key])
        fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(items)), 4))
        ax.bar(range(len(items)), [m[key] for _, m in items], color="#4477aa")
        ax.set_xticks(range(len(items)), [t for t, _ in items], rotation=90, fontsize=7)
        macro = metrics[key]
        if not math.isnan(macro):
            ax.axhline(macro, color="#cc6677", lw=1, label=f"macro {macro:.4f}")
            ax.legend(loc="lower left")
        ax.set_ylabel(label)
        ax.set_title(f"{title}: per-tag {label}")
        fig.tight_layout()
        path = out_dir / f"per_tag_{key}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
