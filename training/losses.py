"""Focal loss (Lin et al. 2017; its soft-target form, Li et al. 2020) for multi-label tagging,
and the loss factory. Both losses take 0/1 labels or soft targets in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0,
               alpha: float = -1.0) -> torch.Tensor:
    """Mean over tags and examples of α_t |y − p|^γ BCE(p, y); γ = 0, α < 0 is plain BCE.

    For 0/1 targets |y − p| = 1 − p_t, so this is Lin et al.'s −α_t (1 − p_t)^γ log p_t. For
    soft targets (a teacher's probabilities) it is the quality focal loss of Li et al. 2020
    (Generalized Focal Loss): the usual ``(1 − p_t)^γ`` with ``p_t = p·y + (1 − p)(1 − y)``
    would not be smallest at p = y (at y = 0.5 it pushes p away from 0.5), whereas BCE is
    smallest at p = y and |y − p|^γ vanishes there, so the minimum stays where the target is."""
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    loss = ce * (targets - p).abs() ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.mean()


def make_loss(name: str, gamma: float, alpha: float):
    if name == "bce":
        return lambda logits, y: F.binary_cross_entropy_with_logits(logits, y)
    if name == "focal":
        return lambda logits, y: focal_loss(logits, y, gamma, alpha)
    raise ValueError(f"unknown loss {name!r}")
