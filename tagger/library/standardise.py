"""Standardising embeddings over a library: each dimension's mean and spread, and the one rule
for a dimension that carries nothing (a dead unit of the network). Similarity search and
learned tags both standardise this way."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 8192  # rows at a time: 8 MiB of a 256-wide float32 matrix
DEAD = 1e-6  # a dimension whose spread is below this share of the largest one is dead


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and standard deviation (float64 ``[E]``), in one pass of blocks:
    float64 sums of the values less a first estimate of the mean, so that nothing cancels."""
    x = np.asarray(x, dtype=np.float32)
    if not len(x):
        return np.zeros(x.shape[1]), np.zeros(x.shape[1])
    shift = x[:BLOCK].mean(axis=0, dtype=np.float64).astype(np.float32)
    total, squares = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for i in range(0, len(x), BLOCK):
        block = (x[i:i + BLOCK] - shift).astype(np.float64)
        total += block.sum(axis=0)
        squares += np.einsum("ij,ij->j", block, block)
    mean = total / len(x)
    return shift + mean, np.sqrt(np.maximum(squares / len(x) - mean ** 2, 0.0))


@dataclass(frozen=True)
class Standardiser:
    """``(x − mean) / std`` per dimension, fitted over a library's embeddings."""
    mean: np.ndarray  # float32 [E]
    std: np.ndarray  # float32 [E]
    live: np.ndarray  # bool [E]: False for a dead dimension

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardiser:
        mean, std = moments(x)
        live = std > DEAD * max(float(std.max(initial=0.0)), 1e-12)
        return cls(mean.astype(np.float32), std.astype(np.float32), live)

    def inverse_scale(self) -> np.ndarray:
        """float32 ``[E]`` to multiply by: ``1/std``, and 0 for a dead dimension (dropped)."""
        return np.where(self.live, 1.0 / np.maximum(self.std, 1e-30), 0.0).astype(np.float32)

    def divisor(self) -> np.ndarray:
        """float32 ``[E]`` to divide by: ``std``, and 1 for a dead dimension (left as it is:
        a constant minus its mean, zero up to float16 rounding)."""
        return np.where(self.live, self.std, 1.0).astype(np.float32)
