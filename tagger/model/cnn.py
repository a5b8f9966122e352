"""The short-chunk CNN family: one configurable class for the report's 6-block model, its
table-1 baseline, and the VGG-style CNN of the musicnn package.

Tensors are ``[B, C, F, T]`` (channels, mel bands, frames) throughout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from tagger.model.frontend import FrontEndConfig
from tagger.model.tagmodel import TagModel

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}


@dataclass(frozen=True)
class Block:
    """One 3×3 conv block: ``channels`` outputs, then max-pooling ``pool`` (F, T) with
    ``stride`` (defaults to ``pool``); pools floor their output size, as TF's 'valid'."""
    channels: int
    pool: tuple[int, int]
    stride: tuple[int, int] | None = None


@dataclass(frozen=True)
class CNNConfig:
    blocks: tuple[Block, ...]
    n_tags: int = 50
    kernel: int = 3
    activation: Literal["relu", "elu", "gelu"] = "gelu"
    # "bn-act": conv → BN → act (the report); "act-bn": conv → act → BN (musicnn)
    order: Literal["bn-act", "act-bn"] = "bn-act"
    bn_eps: float = 1e-5
    input_bn: bool = True
    block_dropout: float = 0.1  # after every block but the last
    # "max": global max over (F, T) → C features; "flatten": C·F·T features
    head: Literal["max", "flatten"] = "max"
    head_dropout: float = 0.1
    flat_features: int | None = None  # for head="flatten": C·F·T, fixed by the input size

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["blocks"] = [[b.channels, list(b.pool), list(b.stride) if b.stride else None]
                       for b in self.blocks]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CNNConfig":
        d = dict(d)
        d["blocks"] = tuple(Block(c, tuple(p), tuple(s) if s else None) for c, p, s in d["blocks"])
        return cls(**d)


def report_config(n_tags: int = 50, activation: str = "gelu",
                  widths: tuple[int, ...] = (128, 256, 256, 128, 128, 128)) -> CNNConfig:
    """The founding report's 6-block short-chunk CNN (shared/docs/recipe.md)."""
    pools = [(2, 2)] * 5 + [(2, 3)]
    return CNNConfig(blocks=tuple(Block(w, p) for w, p in zip(widths, pools)), n_tags=n_tags,
                     activation=activation, block_dropout=0.1, head_dropout=0.1)


def baseline_config(n_tags: int = 50) -> CNNConfig:
    """The report's table-1 baseline: 4 blocks, ReLU."""
    blocks = ((64, (4, 4)), (128, (3, 3)), (128, (3, 3)), (64, (2, 5)))
    return CNNConfig(blocks=tuple(Block(c, p) for c, p in blocks), n_tags=n_tags,
                     activation="relu", block_dropout=0.0, head_dropout=0.0)


def musicnn_vgg_config(n_tags: int = 50, filters: int = 128) -> CNNConfig:
    """musicnn's ``vgg()``: conv → ReLU → BN, BN eps 1e-3 (TF), pool1 4×1 window (time × mel
    in TF; (1, 4) here as F × T) with 2×2 stride, pool5 4×4, flatten, dense."""
    pools = [((1, 4), (2, 2)), ((2, 2), None), ((2, 2), None), ((2, 2), None), ((4, 4), None)]
    return CNNConfig(blocks=tuple(Block(filters, p, s) for p, s in pools), n_tags=n_tags,
                     activation="relu", order="act-bn", bn_eps=1e-3, block_dropout=0.25,
                     head="flatten", head_dropout=0.5, flat_features=filters * 1 * 2)


def report_frontend() -> FrontEndConfig:
    """recipe.md: 96 mel bands to 8 kHz, dB compression, all 188 frames of a 3 s chunk."""
    return FrontEndConfig(mel_scale="slaney", mel_norm="slaney", log="db")


def musicnn_frontend() -> FrontEndConfig:
    """musicnn's librosa preprocessing: Slaney mel, float16 power, log10(10000·x + 1), 187 frames."""
    return FrontEndConfig(mel_scale="slaney", mel_norm="slaney", log="log10p",
                          float16_power=True, frames=187)


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, block: Block, cfg: CNNConfig, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, block.channels, cfg.kernel, padding=cfg.kernel // 2)
        self.bn = nn.BatchNorm2d(block.channels, eps=cfg.bn_eps)
        self.act = ACTIVATIONS[cfg.activation]()
        self.act_first = cfg.order == "act-bn"
        self.pool = nn.MaxPool2d(block.pool, block.stride or block.pool)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.bn(self.act(x)) if self.act_first else self.act(self.bn(x))
        return self.dropout(self.pool(x))


class ShortChunkCNN(TagModel):
    """waveforms ``[B, T]`` float32 mono at the front-end's rate → tag probabilities ``[B, n_tags]``."""

    architecture = "ShortChunkCNN"

    def __init__(self, frontend: FrontEndConfig, config: CNNConfig) -> None:
        super().__init__(frontend)
        self.config = config
        self.input_bn = nn.BatchNorm2d(1, eps=config.bn_eps) if config.input_bn else nn.Identity()
        blocks, c_in = [], 1
        for i, block in enumerate(config.blocks):
            last = i == len(config.blocks) - 1
            blocks.append(ConvBlock(c_in, block, config, 0.0 if last else config.block_dropout))
            c_in = block.channels
        self.blocks = nn.Sequential(*blocks)
        features = config.flat_features if config.head == "flatten" else c_in
        if features is None:
            raise ValueError("head='flatten' needs flat_features")
        self.embedding_size = features
        self.head_dropout = nn.Dropout(config.head_dropout) if config.head_dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(features, config.n_tags)

    def embed_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        """log-mel ``[B, 1, n_mels, frames]`` → penultimate features ``[B, embedding_size]``."""
        x = self.blocks(self.input_bn(logmel))
        if self.config.head == "max":
            return torch.amax(x, dim=(2, 3))
        return torch.flatten(x, 1)

    def head(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head_dropout(embedding))

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def from_config_dict(cls, frontend: FrontEndConfig, config: dict[str, Any]) -> "ShortChunkCNN":
        return cls(frontend, CNNConfig.from_dict(config))
