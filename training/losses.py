"""Focal loss (Lin et al. 2017) for multi-label tagging, and the loss factory."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0,
               alpha: float = -1.0) -> torch.Tensor:
    """Mean over tags and examples of −α_t (1 − p_t)^γ log p_t; γ = 0, α < 0 is plain BCE."""
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.mean()


def make_loss(name: str, gamma: float, alpha: float):
    if name == "bce":
        return lambda logits, y: F.binary_cross_entropy_with_logits(logits, y)
    if name == "focal":
        return lambda logits, y: focal_loss(logits, y, gamma, alpha)
    raise ValueError(f"unknown loss {name!r}")
