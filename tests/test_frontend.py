import numpy as np
import pytest
import torch

from tagger.model.frontend import FrontEndConfig, LogMel, mel_filterbank


def reference_filterbank(sr, n_fft, n_mels, f_min, f_max, scale, norm):
    """Written from the formulas, in float64 and plain loops, independently of tagger.model.frontend."""
    import math

    def to_mel(f):
        if scale == "htk":
            return 2595.0 * math.log10(1.0 + f / 700.0)
        return f / (200.0 / 3) if f < 1000.0 else 15.0 + math.log(f / 1000.0) * 27.0 / math.log(6.4)

    def to_hz(m):
        if scale == "htk":
            return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
        return m * 200.0 / 3 if m < 15.0 else 1000.0 * math.exp((m - 15.0) * math.log(6.4) / 27.0)

    lo, hi = to_mel(f_min), to_mel(f_max)
    edges = [to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    bins = [k * sr / n_fft for k in range(n_fft // 2 + 1)]
    out = np.zeros((n_mels, len(bins)))
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for k, f in enumerate(bins):
            if left < f < right:
                out[m, k] = (f - left) / (centre - left) if f <= centre else (right - f) / (right - centre)
        if norm == "slaney":
            out[m] *= 2.0 / (right - left)
    return out


@pytest.mark.parametrize("scale", ["slaney", "htk"])
@pytest.mark.parametrize("norm", ["slaney", "none"])
def test_filterbank_matches_independent_reference(scale, norm):
    cfg = FrontEndConfig(n_mels=96, f_max=8000.0, mel_scale=scale, mel_norm=norm)
    ours = mel_filterbank(cfg)
    ref = reference_filterbank(16000, 512, 96, 0.0, 8000.0, scale, norm)
    assert ours.shape == (96, 257)
    assert np.abs(ours - ref).max() < 1e-6 * max(1.0, np.abs(ref).max())
    assert (ours.sum(axis=1) > 0).all(), "every band must catch some FFT bin"


def test_filterbank_other_range_matches_reference():
    cfg = FrontEndConfig(sample_rate=22050, n_fft=1024, n_mels=128, f_min=30.0, f_max=11025.0)
    ref = reference_filterbank(22050, 1024, 128, 30.0, 11025.0, "slaney", "slaney")
    assert np.abs(mel_filterbank(cfg) - ref).max() < 1e-6 * np.abs(ref).max()


def test_three_seconds_give_188_centred_frames():
    fe = LogMel(FrontEndConfig())
    out = fe(torch.zeros(2, 48000))
    assert out.shape == (2, 1, 96, 188)
    assert torch.allclose(out, torch.full_like(out, -100.0)), "silence is floored at 1e-10 → -100 dB"


def test_frames_crop_and_musicnn_compression():
    fe = LogMel(FrontEndConfig(log="log10p", float16_power=True, frames=187))
    out = fe(torch.zeros(1, 48000))
    assert out.shape == (1, 1, 96, 187)
    assert torch.count_nonzero(out) == 0  # log10(10000·0 + 1) = 0


def test_sine_energy_lands_in_the_right_band():
    cfg = FrontEndConfig()
    fe = LogMel(cfg)
    t = torch.arange(48000) / 16000
    mel = fe.power_mel(torch.sin(2 * np.pi * 1000.0 * t)[None])[0]
    band = int(mel[:, 10:-10].mean(dim=1).argmax())
    centres = np.argmax(mel_filterbank(cfg), axis=1) * 16000 / 512
    assert abs(centres[band] - 1000.0) < 80.0


def test_float16_power_rounds_like_numpy():
    fe = LogMel(FrontEndConfig(log="log10p", float16_power=True))
    x = torch.tensor([0.1234567, 3.0001, 1e-4])
    expected = np.log10(10000 * np.float32(np.float16(x.numpy())) + 1)
    assert np.allclose(fe.compress(x).numpy(), expected, atol=1e-6)


def test_patches_are_musicnn_framing():
    fe = LogMel(FrontEndConfig(frames=187))
    x = torch.randn(16000 * 10)
    patches = fe.patches(x, 187)
    whole = fe.compress(fe.power_mel(x[None]))[0]
    assert patches.shape == (whole.shape[-1] // 187, 1, 96, 187)
    assert torch.equal(patches[2, 0], whole[:, 374:561])
