"""The model as an inference graph: the same function as ``TagModel.scores``, written with
operators every inference runtime runs fast (OpenVINO, ONNX Runtime).

``ScoresGraph(model)`` maps waveforms ``[B, T]`` float32 → (probabilities ``[B, n_tags]``,
embeddings ``[B, E]``). Its front-end computes the short-time Fourier transform as a strided
1-D convolution with the Hann-windowed DFT basis (``torch.stft`` exports to neither runtime as
it is: complex tensors), then the same power, mel filters, float16 rounding and log as
``LogMel``. Everything after the front-end is the model's own modules. Against
``TagModel.scores``, in torch: |Δp| ≤ ~1e-5 (a mel value on a float16 rounding boundary may
round the other way), tested in tests/test_runtime.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tagger.model.frontend import LogMel
from tagger.model.tagmodel import TagModel


class ConvLogMel(nn.Module):
    """``LogMel`` with the STFT as a convolution: waveforms ``[B, T]`` → ``[B, 1, n_mels, frames]``."""

    def __init__(self, logmel: LogMel) -> None:
        super().__init__()
        cfg = self.cfg = logmel.cfg
        n = cfg.n_fft
        bins = n // 2 + 1
        t = torch.arange(n, dtype=torch.float64)
        k = torch.arange(bins, dtype=torch.float64)[:, None]
        window = logmel.window.double()
        angle = 2 * math.pi * k * t / n
        # rows 0..bins-1: real part, bins..2·bins-1: imaginary part (its sign does not matter: squared)
        basis = torch.cat([torch.cos(angle), torch.sin(angle)]) * window
        self.register_buffer("basis", basis.float()[:, None, :], persistent=False)
        self.register_buffer("filters", logmel.filters.clone(), persistent=False)
        self.bins = bins

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        pad = self.cfg.n_fft // 2  # centred frames, zero padding (torch.stft's pad_mode="constant")
        x = F.pad(waveforms[:, None, :], (pad, pad))
        spec = F.conv1d(x, self.basis, stride=self.cfg.hop_length)  # [B, 2·bins, frames]
        power = spec[:, :self.bins].square() + spec[:, self.bins:].square()
        mel = torch.matmul(self.filters, power)
        if self.cfg.float16_power:
            mel = mel.half().float()
        if self.cfg.log == "log10p":
            x = torch.log10(10000.0 * mel + 1.0)
        else:
            x = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        if self.cfg.frames is not None:
            x = x[..., : self.cfg.frames]
        return x.unsqueeze(1)


class ScoresGraph(nn.Module):
    """``model.scores`` for export: waveforms ``[B, T]`` → (probabilities, embeddings)."""

    def __init__(self, model: TagModel) -> None:
        super().__init__()
        self.model = model.eval()
        self.frontend = ConvLogMel(model.frontend)

    def forward(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.model.embed_logmel(self.frontend(waveforms))
        return torch.sigmoid(self.model.head(embedding)), embedding
