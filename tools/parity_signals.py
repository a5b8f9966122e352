"""Deterministic test signals for the musicnn parity check.

Used twice: by tools/musicnn_reference.py inside a throwaway TensorFlow environment (numpy 1.x)
and by tests/test_parity.py here (numpy 2.x). So nothing here may depend on a numpy version's
random streams: noise comes from an integer hash of the sample index, everything else from
closed formulas in float64, and the result is quantised to 16-bit PCM, which hides last-ulp
differences between numpy's sin implementations.
"""

from __future__ import annotations

import numpy as np

SR = 16000
SECONDS = 31.0  # 10 non-overlapping musicnn patches of 187 frames


def _hash_noise(n: int, seed: int) -> np.ndarray:
    """White noise in [-1, 1) from a murmur3-style finaliser of (index, seed)."""
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xFF51AFD7ED558CCD)
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xC4CEB93FE53E4A1B)
        x ^= x >> np.uint64(33)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53) * 2.0 - 1.0


def _t(seconds: float = SECONDS) -> np.ndarray:
    return np.arange(int(seconds * SR), dtype=np.float64) / SR


def tones() -> np.ndarray:
    """A slow melody of pure sine tones, one per second, with soft attacks."""
    t = _t()
    notes = [440.0, 523.25, 659.25, 587.33, 392.0, 349.23, 440.0, 880.0]
    idx = (t.astype(int)) % len(notes)
    freq = np.asarray(notes)[idx]
    phase = 2 * np.pi * np.cumsum(freq) / SR
    env = np.minimum(1.0, (t % 1.0) / 0.05) * np.exp(-1.5 * (t % 1.0))
    return 0.5 * env * np.sin(phase)


def chords() -> np.ndarray:
    """Sustained triads of harmonic-rich (sawtooth-like) tones, changing every 2 s."""
    t = _t()
    progression = [(261.63, 329.63, 392.0), (220.0, 261.63, 329.63),
                   (174.61, 220.0, 261.63), (196.0, 246.94, 293.66)]
    out = np.zeros_like(t)
    which = (t // 2.0).astype(int) % len(progression)
    for k in range(len(progression)):
        mask = which == k
        for f0 in progression[k]:
            for h in range(1, 9):
                out[mask] += np.sin(2 * np.pi * f0 * h * t[mask]) / h
    return 0.5 * out / np.max(np.abs(out))


def noise() -> np.ndarray:
    """Band-coloured noise: white noise through a slowly sweeping two-pole resonator."""
    white = _hash_noise(int(SECONDS * SR), seed=7)
    t = _t()
    centre = 300.0 + 2700.0 * (0.5 + 0.5 * np.sin(2 * np.pi * t / 10.0))
    r = 0.98
    out = np.zeros_like(white)
    theta = 2 * np.pi * centre / SR
    a1, a2 = 2 * r * np.cos(theta), -r * r
    y1 = y2 = 0.0
    for i in range(len(white)):  # the filter is recursive; 500k steps take about a second
        y = white[i] + a1[i] * y1 + a2 * y2
        out[i] = y
        y2, y1 = y1, y
    return 0.5 * out / np.max(np.abs(out))


def clicks() -> np.ndarray:
    """A 128 BPM electronic pattern: kick (decaying pitched sine), hats (noise bursts), bass."""
    t = _t()
    beat = 60.0 / 128.0
    tb = t % beat
    kick_freq = 50.0 + 100.0 * np.exp(-tb * 30.0)
    kick_phase = 2 * np.pi * np.cumsum(kick_freq) / SR
    kick = np.sin(kick_phase) * np.exp(-tb * 12.0)
    th = (t + beat / 2) % beat
    hats = _hash_noise(len(t), seed=11) * np.exp(-th * 60.0) * 0.4
    bass_notes = np.asarray([55.0, 55.0, 65.41, 49.0])
    bass_f = bass_notes[(t // (4 * beat)).astype(int) % 4]
    bass = 0.3 * np.sign(np.sin(2 * np.pi * np.cumsum(bass_f) / SR)) * np.exp(-tb * 4.0)
    out = kick + hats + bass
    return 0.5 * out / np.max(np.abs(out))


SIGNALS = {"tones": tones, "chords": chords, "noise": noise, "clicks": clicks}


def pcm16(signal: np.ndarray) -> np.ndarray:
    """Quantise to int16 the way a 16-bit WAV stores it."""
    return np.clip(np.round(signal * 32767.0), -32768, 32767).astype(np.int16)


def signal_float32(name: str) -> np.ndarray:
    """The signal as a reader of its 16-bit WAV sees it (int16 / 32768, float32)."""
    return (pcm16(SIGNALS[name]()).astype(np.float32) / 32768.0)
