"""MusiCNN (Pons & Serra 2019), as in the musicnn 0.1.0 package: a musically motivated
front-end (timbral filters spanning mel bands, temporal filters spanning frames), a dense
residual mid-end of 1-D convolutions, and max+mean temporal pooling into two dense layers.

Input and output as ShortChunkCNN: waveforms ``[B, T]`` → probabilities ``[B, n_tags]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tagger.model.frontend import FrontEndConfig
from tagger.model.tagmodel import TagModel

EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with


@dataclass(frozen=True)
class MusiCNNConfig:
    n_tags: int = 50
    n_mels: int = 96
    timbral_filters: int = 204  # int(1.6 * 128)
    temporal_filters: int = 51  # int(1.6 * 32)
    midend_filters: int = 64
    backend_units: int = 200

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ConvReluBN(nn.Module):
    """conv → ReLU → BN, then max over mel bands: ``[B, 1, F, T]`` → ``[B, C, T]``."""

    def __init__(self, channels: int, kernel: tuple[int, int], time_pad: tuple[int, int]) -> None:
        super().__init__()
        self.time_pad = time_pad
        self.conv = nn.Conv2d(1, channels, kernel)
        self.bn = nn.BatchNorm2d(channels, eps=EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(F.relu(self.conv(F.pad(x, (*self.time_pad, 0, 0)))))
        return torch.amax(x, dim=2)


class _Conv1dReluBN(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 7, padding=3)
        self.bn = nn.BatchNorm1d(c_out, eps=EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class MusiCNN(TagModel):
    architecture = "MusiCNN"

    def __init__(self, frontend: FrontEndConfig, config: MusiCNNConfig) -> None:
        super().__init__(frontend)
        self.config = config
        c = config
        self.input_bn = nn.BatchNorm2d(1, eps=EPS)
        # timbral: (7 frames × 40% / 70% of the bands), time padded by 3 each side
        self.timbral = nn.ModuleList(
            _ConvReluBN(c.timbral_filters, (int(frac * c.n_mels), 7), (3, 3)) for frac in (0.4, 0.7))
        # temporal: (1 band × 128 / 64 / 32 frames), TF 'same' (the odd pad goes right)
        self.temporal = nn.ModuleList(
            _ConvReluBN(c.temporal_filters, (1, k), ((k - 1) // 2, k - 1 - (k - 1) // 2))
            for k in (128, 64, 32))
        front = 2 * c.timbral_filters + 3 * c.temporal_filters
        self.mid1 = _Conv1dReluBN(front, c.midend_filters)
        self.mid2 = _Conv1dReluBN(c.midend_filters, c.midend_filters)
        self.mid3 = _Conv1dReluBN(c.midend_filters, c.midend_filters)
        pooled = 2 * (front + 3 * c.midend_filters)
        self.pool_bn = nn.BatchNorm1d(pooled, eps=EPS)
        self.dense = nn.Linear(pooled, c.backend_units)
        self.dense_bn = nn.BatchNorm1d(c.backend_units, eps=EPS)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(c.backend_units, c.n_tags)
        self.embedding_size = c.backend_units

    def embed_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        """log-mel ``[B, 1, n_mels, frames]`` → the penultimate layer ``[B, backend_units]``."""
        x = self.input_bn(logmel)
        front = torch.cat([m(x) for m in (*self.timbral, *self.temporal)], dim=1)
        m1 = self.mid1(front)
        m2 = self.mid2(m1) + m1
        m3 = self.mid3(m2) + m2
        feats = torch.cat([front, m1, m2, m3], dim=1)  # [B, 753, T]
        # TF flattened [max, mean] pairs per feature: interleave them the same way
        pooled = torch.stack([feats.amax(dim=2), feats.mean(dim=2)], dim=2).flatten(1)
        h = F.relu(self.dense(self.dropout(self.pool_bn(pooled))))
        return self.dense_bn(h)

    def head(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(embedding))

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def from_config_dict(cls, frontend: FrontEndConfig, config: dict[str, Any]) -> "MusiCNN":
        return cls(frontend, MusiCNNConfig(**config))
