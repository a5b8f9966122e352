"""Waveform augmentations on device batches (the report kept polarity inversion, gain and pitch
shift). Each draws its parameters per example, applies with probability ``p``, and does
nothing in eval mode; ``last`` holds the parameters drawn by the latest call, for tests and
logging."""

from __future__ import annotations

import math

import torch
from torch import nn


class _Augmentation(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.last: dict[str, torch.Tensor] = {}

    def _chosen(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.rand(x.shape[0], device=x.device, generator=generator) < self.p


class PolarityInversion(_Augmentation):
    """x → −x."""

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return x
        chosen = self._chosen(x, generator)
        self.last = {"applied": chosen}
        return torch.where(chosen[:, None], -x, x)


class Gain(_Augmentation):
    """Scale by a gain drawn uniformly in [min_db, max_db] decibels."""

    def __init__(self, p: float, min_db: float = -20.0, max_db: float = -1.0) -> None:
        super().__init__(p)
        self.min_db, self.max_db = min_db, max_db

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return x
        chosen = self._chosen(x, generator)
        db = self.min_db + (self.max_db - self.min_db) * torch.rand(x.shape[0], device=x.device, generator=generator)
        db = torch.where(chosen, db, torch.zeros_like(db))
        self.last = {"applied": chosen, "db": db}
        return x * (10.0 ** (db / 20.0))[:, None]


def _phase_vocoder(spec: torch.Tensor, rate: float, hop: int) -> torch.Tensor:
    """Time-stretch a complex STFT ``[B, F, T]`` by ``rate`` (> 1 faster, < 1 slower).

    Output frame k takes its magnitude from input position 1 + k·rate and its phase from
    frame 1's, advanced by each bin's measured per-hop advance. Frame 0 (mostly edge padding,
    its phases are not those of a steady signal) is kept as it is and never used as an anchor
    or an advance: anything taken from it would shift every bin by a different amount and
    make neighbouring bins cancel.
    """
    n_freq, n_frames = spec.shape[-2], spec.shape[-1]
    steps = 1 + torch.arange(0, n_frames - 2, rate, device=spec.device, dtype=torch.float64)
    expected = torch.linspace(0, math.pi * hop, n_freq, device=spec.device, dtype=spec.real.dtype)[:, None]
    angle = spec.angle()
    advance = angle[..., 1:] - angle[..., :-1] - expected  # advance[m]: frame m → m + 1
    advance = advance - 2 * math.pi * torch.round(advance / (2 * math.pi)) + expected
    idx = steps.floor().long()
    frac = (steps - idx).to(spec.real.dtype)
    mag = (1 - frac) * spec[..., idx].abs() + frac * spec[..., idx + 1].abs()
    phase = angle[..., 1:2] + torch.cumsum(advance[..., idx], dim=-1)
    phase = torch.cat([angle[..., 1:2], phase[..., :-1]], dim=-1)
    return torch.cat([spec[..., :1], torch.polar(mag, phase)], dim=-1)


def _resample_to(x: torch.Tensor, length: int) -> torch.Tensor:
    """Band-limited resampling of ``[B, T]`` to ``length`` samples through the spectrum."""
    n = x.shape[-1]
    spec = torch.fft.rfft(x, dim=-1)
    bins = length // 2 + 1
    if bins <= spec.shape[-1]:
        spec = spec[..., :bins]
    else:
        spec = torch.nn.functional.pad(spec, (0, bins - spec.shape[-1]))
    return torch.fft.irfft(spec, n=length, dim=-1) * (length / n)


def _istft(spec: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, length: int) -> torch.Tensor:
    """``torch.istft`` (centred frames) without its host sync: torch.istft reads its window
    envelope's minimum back to the host to check the overlap-add condition, which a Hann window
    at hop n_fft/4 always meets. Overlap-add through ``fold``, divided by the window² envelope."""
    n_frames = spec.shape[-1]
    frames = torch.fft.irfft(spec, n=n_fft, dim=-2) * window[:, None]  # [B, n_fft, frames]
    total = n_fft + hop * (n_frames - 1)
    fold = dict(output_size=(1, total), kernel_size=(1, n_fft), stride=(1, hop))
    y = torch.nn.functional.fold(frames, **fold).reshape(spec.shape[0], total)
    squares = (window ** 2)[None, :, None].expand(1, n_fft, n_frames)
    envelope = torch.nn.functional.fold(squares, **fold).reshape(total)
    start = n_fft // 2
    y = (y / envelope.clamp_min(1e-11))[:, start:start + length]
    return torch.nn.functional.pad(y, (0, length - y.shape[-1])) if y.shape[-1] < length else y


def pitch_shift(x: torch.Tensor, semitones: float, n_fft: int = 512, hop: int = 128) -> torch.Tensor:
    """Shift ``[B, T]`` by ``semitones`` keeping the duration: phase-vocoder time stretch by
    2^(s/12), then resample back to T samples. No host sync on CUDA."""
    if semitones == 0:
        return x
    ratio = 2.0 ** (semitones / 12.0)
    n = x.shape[-1]
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)
    stretched = _phase_vocoder(spec, 1.0 / ratio, hop)  # ratio× longer, same pitch
    longer = _istft(stretched, n_fft, hop, window, int(round(n * ratio)))
    return _resample_to(longer, n)  # squeeze back to T: pitch × ratio


class PitchShift(_Augmentation):
    """Shift by a whole number of semitones drawn uniformly from ±``max_semitones`` (0 excluded),
    keeping the duration.

    Two ways to the same result: on the CPU the examples sharing a shift are processed together
    (reading the drawn shifts on the host costs nothing there, and only the chosen rows are
    shifted); on a GPU every shift is computed for the whole batch and the drawn one picked by
    ``where``, so that nothing waits for the host (4 shifts of a batch of 3 s clips are
    a few milliseconds of device time, a host round trip per step stalls the queue)."""

    def __init__(self, p: float, max_semitones: int = 2) -> None:
        super().__init__(p)
        self.choices = [s for s in range(-max_semitones, max_semitones + 1) if s != 0]
        # a buffer, so it moves with .to(device): building it per call is a host→device copy
        self.register_buffer("options", torch.tensor(self.choices or [0]), persistent=False)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                grouped: bool | None = None) -> torch.Tensor:
        """``grouped``: None picks by device (grouped on CPU), True/False forces one way (tests)."""
        if not self.training or not self.choices:
            return x
        chosen = self._chosen(x, generator)
        pick = torch.randint(len(self.choices), (x.shape[0],), device=x.device, generator=generator)
        shifts = torch.where(chosen, self.options[pick], torch.zeros_like(pick))
        self.last = {"applied": chosen, "semitones": shifts}
        if grouped if grouped is not None else x.device.type == "cpu":
            out = x.clone()
            for s in shifts.unique().tolist():
                if s != 0:
                    rows = shifts == s
                    out[rows] = pitch_shift(x[rows], float(s)).to(x.dtype)
            return out
        out = x
        for s in self.choices:
            out = torch.where((shifts == s)[:, None], pitch_shift(x, float(s)).to(x.dtype), out)
        return out


class Augment(nn.Sequential):
    """The augmentations in order; ``forward(x, generator)`` passes the generator on."""

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for module in self:
            x = module(x, generator)
        return x


def build_augment(names: list[str], p: float = 0.5, gain_db: tuple[float, float] = (-20.0, -1.0),
                  semitones: int = 2) -> Augment:
    made = {"polarity": lambda: PolarityInversion(p), "gain": lambda: Gain(p, *gain_db),
            "pitch": lambda: PitchShift(p, semitones)}
    return Augment(*[made[n]() for n in names])
