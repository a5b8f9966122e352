"""Peak memory of a decode worker against the length of the track it decodes.

    python benchmarks/long_file.py [--minutes 10,120] [--format flac,ogg,mp3,m4a] [--chunks all]

Writes one generated file per length and format (44.1 kHz stereo tones and noise bursts),
scans each alone with one decode worker and every chunk, and prints the worker's peak RSS,
which should not depend on the length. Files go to a temporary folder and are deleted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import write_m4a  # noqa: E402  (the tests' AAC writer)

from tagger.cli.common import parse_chunks  # noqa: E402
from tagger.engine.options import ScanOptions  # noqa: E402
from tagger.scan import scan  # noqa: E402

SR = 44100


def _write(path: Path, minutes: float) -> None:
    """Minute by minute, so writing a 2-hour file needs no 2-hour array."""
    rng = np.random.default_rng(0)
    kw = {"ogg": dict(format="OGG", subtype="VORBIS"), "mp3": dict(format="MP3"), "flac": {}}
    if path.suffix == ".m4a":
        x = np.concatenate([_minute(rng, i)[:, 0] for i in range(int(minutes))])
        write_m4a(path, x, SR)
        return
    with sf.SoundFile(path, "w", SR, 2, **kw[path.suffix[1:]]) as f:
        for i in range(int(minutes)):
            x = _minute(rng, i)
            for j in range(0, len(x), SR):  # libsndfile's Vorbis encoder crashes on one-minute writes
                f.write(x[j:j + SR])


def _minute(rng, i: int) -> np.ndarray:
    t = np.arange(60 * SR) / SR
    tone = 0.2 * np.sin(2 * np.pi * (110 + 10 * (i % 12)) * t)
    noise = 0.05 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 2 * t) > 0.5)
    x = (tone + noise).astype(np.float32)
    return np.stack([x, x[::-1]], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", default="10,120")
    ap.add_argument("--format", default="flac,ogg,mp3")
    ap.add_argument("--chunks", default="all")
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores; chunks={args.chunks}; one decode worker; model musicnn-vgg-mtt on CPU")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.format.split(","):
            for minutes in (float(m) for m in args.minutes.split(",")):
                path = Path(tmp) / f"long-{int(minutes)}min.{fmt}"
                _write(path, minutes)
                t0 = time.perf_counter()
                s = scan([str(path)], str(Path(tmp) / f"{fmt}-{minutes}.db"),
                         ScanOptions(workers=1, chunks=parse_chunks(args.chunks), compile="no", device="cpu"))
                e = s.engine_stats
                status = "ok" if s.scanned == 1 else f"FAILED {s.failed}"
                print(f"{fmt:5s} {minutes:6.0f} min  {path.stat().st_size / 2**20:7.1f} MiB  {status}  "
                      f"{e.chunks:5d} chunks  worker peak RSS {e.worker_peak_rss / 2**20:6.1f} MiB  "
                      f"{time.perf_counter() - t0:6.1f} s")
                path.unlink()


if __name__ == "__main__":
    main()
