"""What every tagger architecture is: a log-mel front-end, a body that embeds a log-mel
spectrogram, and a head that maps the embedding to tag logits."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tagger.model.frontend import FrontEndConfig, LogMel


class TagModel(nn.Module):
    """waveforms ``[B, T]`` float32 mono at ``frontend_config.sample_rate`` → probabilities
    ``[B, n_tags]``. Subclasses define ``embed_logmel``, ``head`` and ``config_dict``."""

    architecture = ""
    embedding_size: int

    def __init__(self, frontend: FrontEndConfig) -> None:
        super().__init__()
        self.frontend_config = frontend
        self.frontend = LogMel(frontend)

    def embed_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        """log-mel ``[B, 1, n_mels, frames]`` → penultimate features ``[B, embedding_size]``."""
        raise NotImplementedError

    def head(self, embedding: torch.Tensor) -> torch.Tensor:
        """penultimate features ``[B, embedding_size]`` → logits ``[B, n_tags]``."""
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def logits_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed_logmel(logmel))

    def logits(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.logits_logmel(self.frontend(waveforms))

    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        """waveforms ``[B, T]`` → penultimate features ``[B, embedding_size]``."""
        return self.embed_logmel(self.frontend(waveforms))

    def scores(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities ``[B, n_tags]``, embeddings ``[B, embedding_size]``) in one pass."""
        embedding = self.embed(waveforms)
        return torch.sigmoid(self.head(embedding)), embedding

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(waveforms))
