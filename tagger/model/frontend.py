"""Log-mel front-end in torch, run on the model's device as its first layer.

``LogMel`` turns waveforms ``[B, T]`` (float32, mono, at ``sample_rate``) into log-mel
spectrograms ``[B, 1, n_mels, frames]``. Its configuration is stored in every model file,
because a model is only valid with the exact front-end it was trained with.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tagger.model.frontendconfig import FrontEndConfig

__all__ = ["FrontEndConfig", "LogMel", "mel_filterbank"]


def hz_to_mel(f: np.ndarray | float, scale: str) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    # Slaney's Auditory Toolbox: linear below 1 kHz, logarithmic above
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz,
                    min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep,
                    f / f_sp)


def mel_to_hz(m: np.ndarray | float, scale: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(cfg: FrontEndConfig) -> np.ndarray:
    """Triangular mel filters ``[n_mels, n_fft // 2 + 1]`` in float64 (librosa's definition)."""
    fft_freqs = np.linspace(0.0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    mel_pts = np.linspace(hz_to_mel(cfg.f_min, cfg.mel_scale), hz_to_mel(cfg.f_max, cfg.mel_scale),
                          cfg.n_mels + 2)
    hz_pts = mel_to_hz(mel_pts, cfg.mel_scale)
    widths = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if cfg.mel_norm == "slaney":  # equal area per filter
        weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    return weights


class LogMel(nn.Module):
    """waveforms ``[B, T]`` float32 at ``cfg.sample_rate`` → log-mel ``[B, 1, n_mels, frames]``.

    Frames are centred (the signal is zero-padded by ``n_fft // 2`` on both sides), so a 3 s
    chunk at 16 kHz with hop 256 gives 188 frames.
    """

    def __init__(self, cfg: FrontEndConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        self.register_buffer("filters", torch.from_numpy(mel_filterbank(cfg)).float(), persistent=False)

    def power_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Mel power ``[B, n_mels, frames]`` before the log, always in float32: under fp16
        autocast a loud low bin's power (> 65504) would overflow and poison its frame with NaN."""
        with torch.autocast(waveforms.device.type, enabled=False):
            return self._power_mel(waveforms)

    def _power_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waveforms.float(), self.cfg.n_fft, self.cfg.hop_length, window=self.window,
                          center=True, pad_mode="constant", return_complex=True)
        power = spec.real.square() + spec.imag.square()
        return torch.matmul(self.filters, power)

    def compress(self, mel: torch.Tensor) -> torch.Tensor:
        if self.cfg.float16_power:
            mel = mel.half().float()
        if self.cfg.log == "log10p":
            return torch.log10(10000.0 * mel + 1.0)
        return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        x = self.compress(self.power_mel(waveforms))
        if self.cfg.frames is not None:
            x = x[..., : self.cfg.frames]
        return x.unsqueeze(1)

    def patches(self, waveform: torch.Tensor, frames: int) -> torch.Tensor:
        """musicnn's framing: log-mel of one whole signal ``[T]``, then non-overlapping
        ``frames``-long patches (a trailing partial patch is dropped) → ``[N, 1, n_mels, frames]``."""
        x = self.compress(self.power_mel(waveform.unsqueeze(0)))[0]
        n = x.shape[-1] // frames
        return x[:, : n * frames].reshape(x.shape[0], n, frames).permute(1, 0, 2).unsqueeze(1)
