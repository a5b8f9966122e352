import numpy as np
import pytest
import torch

from training.augment import Gain, PitchShift, PolarityInversion, build_augment, pitch_shift

SR = 16000


def sine(freq, n=48000):
    t = torch.arange(n) / SR
    return torch.sin(2 * np.pi * freq * t)


def peak_hz(x):
    spec = torch.fft.rfft(x * torch.hann_window(len(x)))
    return float(spec.abs().argmax()) * SR / len(x)


def test_polarity_exactly_negates_the_chosen():
    aug = PolarityInversion(p=0.5).train()
    x = torch.randn(64, 1000)
    y = aug(x, torch.Generator().manual_seed(0))
    chosen = aug.last["applied"]
    assert 0 < chosen.sum() < 64
    assert torch.equal(y[chosen], -x[chosen]) and torch.equal(y[~chosen], x[~chosen])


def test_gain_scales_rms_by_the_drawn_db():
    aug = Gain(p=1.0, min_db=-20, max_db=-1).train()
    x = torch.randn(32, 8000)
    y = aug(x, torch.Generator().manual_seed(1))
    db = aug.last["db"]
    measured = 20 * torch.log10(y.pow(2).mean(1).sqrt() / x.pow(2).mean(1).sqrt())
    assert torch.allclose(measured, db, atol=1e-4)
    assert (db <= -1).all() and (db >= -20).all() and db.std() > 1


@pytest.mark.parametrize("semitones", [-2, -1, 1, 2, 3])
@pytest.mark.parametrize("freq", [440.0, 1000.0])
def test_pitch_shift_moves_a_sine_by_the_ratio_and_keeps_length(semitones, freq):
    x = sine(freq)[None].repeat(2, 1)
    y = pitch_shift(x, semitones)
    assert y.shape == x.shape
    expected = freq * 2 ** (semitones / 12)
    got = peak_hz(y[0, 4000:-4000])
    assert abs(got - expected) / expected < 0.01, (got, expected)
    assert 0.5 < y[0].pow(2).mean() / x[0].pow(2).mean() < 1.5  # energy roughly kept


def test_pitch_shift_module_draws_per_example():
    aug = PitchShift(p=1.0, max_semitones=2).train()
    x = sine(500.0)[None].repeat(8, 1)
    y = aug(x, torch.Generator().manual_seed(3))
    for row, s in zip(y, aug.last["semitones"].tolist()):
        assert s != 0
        expected = 500.0 * 2 ** (s / 12)
        assert abs(peak_hz(row[4000:-4000]) - expected) / expected < 0.01


def test_eval_mode_and_none_preset_change_nothing():
    x = torch.randn(4, 4800)
    aug = build_augment(["polarity", "gain", "pitch"], p=1.0).eval()
    assert torch.equal(aug(x), x)
    assert torch.equal(build_augment([]).train()(x), x)


def test_the_gpu_way_of_pitch_shifting_gives_the_cpu_ways_result():
    """Every shift for the whole batch picked by ``where`` (no host sync, for CUDA) == the
    examples grouped by shift (the CPU's way): same draws, same output."""
    aug = PitchShift(p=0.7, max_semitones=2).train()
    x = torch.randn(12, 16000)
    grouped = aug(x, torch.Generator().manual_seed(5), grouped=True)
    drawn = aug.last["semitones"].clone()
    picked = aug(x, torch.Generator().manual_seed(5), grouped=False)
    assert torch.equal(aug.last["semitones"], drawn) and (drawn == 0).any() and (drawn != 0).any()
    assert torch.allclose(grouped, picked, atol=1e-5)
    assert torch.equal(picked[drawn == 0], x[drawn == 0])


def test_overlap_add_inverse_matches_torch_istft():
    from training.augment import _istft

    x = torch.randn(3, 16000)
    window = torch.hann_window(512)
    spec = torch.stft(x, 512, 128, window=window, return_complex=True)
    for length in (16000, 15000):
        expected = torch.istft(spec, 512, 128, window=window, length=length)
        assert torch.allclose(_istft(spec, 512, 128, window, length), expected, atol=1e-5)
