"""Write the example clips in examples/: synthesised here, from closed formulas, so they carry
no third-party rights (CC0, see examples/README.md). Deterministic: re-running rewrites the
same audio.

    python tools/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050
OUT = Path(__file__).resolve().parent.parent / "examples"


def _adsr(n: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / SR
    return np.minimum(1.0, t / attack) * np.exp(-t / decay)


def _note(freq: float, seconds: float, harmonics: int, decay: float, bright: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    tone = sum(np.sin(2 * np.pi * freq * h * t) * (bright ** (h - 1)) / h
               for h in range(1, harmonics + 1) if freq * h < SR / 2)
    return tone * _adsr(len(t), 0.005, decay)


def electronic(seconds: float = 12.0) -> np.ndarray:
    """128 BPM: four-on-the-floor kick, off-beat hats, a saw bass and a square lead."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    beat = 60 / 128
    tb = t % beat
    kick = np.sin(2 * np.pi * np.cumsum(45 + 110 * np.exp(-tb * 35)) / SR) * np.exp(-tb * 9)
    rng = np.random.default_rng(1)
    hat_env = np.exp(-((t + beat / 2) % beat) * 70)
    hats = np.diff(rng.standard_normal(n + 1)) * hat_env * 0.15
    bass_f = np.array([55.0, 55.0, 65.41, 49.0])[(t // (4 * beat)).astype(int) % 4]
    saw = 2 * ((np.cumsum(bass_f) / SR) % 1.0) - 1
    bass = 0.35 * saw * np.exp(-(t % (beat / 2)) * 6)
    lead_f = np.array([440.0, 523.25, 659.25, 523.25, 587.33, 659.25, 783.99, 659.25])[
        (t // (beat / 2)).astype(int) % 8]
    lead = 0.12 * np.sign(np.sin(2 * np.pi * np.cumsum(lead_f) / SR)) * np.exp(-(t % (beat / 2)) * 5)
    return kick + hats + bass + lead


def piano(seconds: float = 12.0) -> np.ndarray:
    """A slow arpeggio of decaying harmonic tones (a plucked-string/piano-like timbre)."""
    out = np.zeros(int(seconds * SR))
    notes = [261.63, 329.63, 392.0, 523.25, 392.0, 329.63, 220.0, 261.63, 329.63, 440.0, 329.63, 261.63]
    step = seconds / len(notes)
    for i, f in enumerate(notes):
        start = int(i * step * SR)
        tone = _note(f, min(2.5, seconds - i * step), 10, 0.8, bright=0.55)
        out[start:start + len(tone)] += tone
    return out


def strings(seconds: float = 12.0) -> np.ndarray:
    """Slow bowed-string-like chords: sawtooth-rich tones with vibrato and soft swells."""
    t = np.arange(int(seconds * SR)) / SR
    chords = [(196.0, 246.94, 293.66), (220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (196.0, 246.94, 293.66)]
    out = np.zeros_like(t)
    length = seconds / len(chords)
    for k, chord in enumerate(chords):
        mask = (t >= k * length) & (t < (k + 1) * length)
        local = t[mask] - k * length
        swell = np.sin(np.pi * local / length) ** 0.5
        for f in chord:
            vib = f * (1 + 0.006 * np.sin(2 * np.pi * 5.5 * t[mask]))
            phase = 2 * np.pi * np.cumsum(vib) / SR
            out[mask] += swell * sum(np.sin(h * phase) / h for h in range(1, 12))
    return out


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, fn, fmt, subtype in [("electronic-128bpm.ogg", electronic, "OGG", "VORBIS"),
                                   ("piano-arpeggio.flac", piano, "FLAC", "PCM_16"),
                                   ("string-chords.mp3", strings, "MP3", "MPEG_LAYER_III")]:
        audio = fn()
        audio = 0.8 * audio / np.max(np.abs(audio))
        sf.write(OUT / name, audio.astype(np.float32), SR, format=fmt, subtype=subtype)
        print(f"wrote {OUT / name} ({(OUT / name).stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
