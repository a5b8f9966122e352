"""Per-file tagging time of tagger's single-file path next to musicnn's own tagger.

    python benchmarks/tag_file.py [--threads N]

Uses the deterministic 31 s signals of tools/parity_signals.py (written as 16-bit WAVs) and the
musicnn timings recorded by tools/musicnn_reference.py in tests/fixtures/musicnn_reference.json
(musicnn's extractor, warm process, median of 3, batch of 1 patch, which rebuilds its graph and
restores its checkpoint on every call). Prints, per model: tagger's median seconds per file
(decode + mel + model, warm process), musicnn's, and the ratio; then how far tagger's own
per-chunk framing moves track-level scores from musicnn's framing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from tagger.engine.inference import tag_file, tag_waveform
from tagger.model.modelfile import load_model

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("parity_signals", ROOT / "tools" / "parity_signals.py")
signals = importlib.util.module_from_spec(spec)
spec.loader.exec_module(signals)
MODELS = {"MTT_vgg": "musicnn-vgg-mtt", "MTT_musicnn": "musicnn-mtt"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ref = json.loads((ROOT / "tests" / "fixtures" / "musicnn_reference.json").read_text())
    print(f"torch {torch.__version__}, {args.threads} threads, CPU")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name in signals.SIGNALS:
            paths[name] = Path(tmp) / f"{name}.wav"
            sf.write(paths[name], signals.pcm16(signals.SIGNALS[name]()), signals.SR, subtype="PCM_16")
        print(f"{'model':<16}{'signal':<8}{'tagger s/file':>14}{'musicnn s/file':>16}{'speed-up':>10}")
        for source, name in MODELS.items():
            model = load_model(name)
            tag_file(model, paths["tones"])  # warm-up
            for sig, path in paths.items():
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    tag_file(model, path)
                    times.append(time.perf_counter() - t0)
                ours, theirs = statistics.median(times), ref["timing_s"][source][sig]
                print(f"{name:<16}{sig:<8}{ours:>14.3f}{theirs:>16.3f}{theirs / ours:>9.1f}×")
        print("\ntrack-level shift of tagger's own framing vs musicnn framing (max |Δp| over 50 tags)")
        for source, name in MODELS.items():
            model = load_model(name)
            for sig in signals.SIGNALS:
                ours = tag_waveform(model, signals.signal_float32(sig)).probabilities
                theirs = np.array(ref["signals"][sig][source]).mean(axis=0)
                top_ours = set(np.argsort(-ours)[:5])
                top_theirs = set(np.argsort(-theirs)[:5])
                print(f"{name:<16}{sig:<8} max |Δp| {np.abs(ours - theirs).max():.4f}  "
                      f"mean |Δp| {np.abs(ours - theirs).mean():.4f}  top-5 shared {len(top_ours & top_theirs)}/5")


if __name__ == "__main__":
    main()
