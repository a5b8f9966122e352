"""Start-up time of the commands that need no model, next to Python importing typer alone.

    python benchmarks/startup.py [--runs 5]

Each figure is the median wall time of ``--runs`` whole processes (``python -m tagger …``, as
the ``tagger`` script runs it), after one untimed warm-up run (the OS file cache). The library
they read is two generated clips, scanned once beforehand (that scan is not timed).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def wall_time(argv: list[str], runs: int) -> float:
    """Median wall time of ``runs`` runs of ``argv`` (after one warm-up), in seconds."""
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.strip()[-500:]}")
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def scanned_library(folder: Path) -> tuple[Path, Path]:
    for i, freq in enumerate((440.0, 660.0)):
        t = np.arange(int(3.5 * 16000)) / 16000
        sf.write(folder / f"clip{i}.wav", (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
    db = folder / "library.db"
    subprocess.run([sys.executable, "-m", "tagger", "scan", str(folder), "--db", str(db), "--workers", "0"],
                   check=True, capture_output=True)
    return folder / "clip0.wav", db


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip, db = scanned_library(Path(tmp))
        d = ["--db", str(db)]
        commands = [["--help"], ["query", "--help"], ["show", "--help"], ["tags", "--help"], ["stats", "--help"],
                    ["prune", "--help"], ["write", "--help"], ["models", "--help"], ["models", "info", "--help"],
                    ["scan", "--help"], ["tag", "--help"], ["train", "--help"], ["evaluate", "--help"],
                    ["query", "-t", "piano", *d], ["query", "-t", "piano", "-f", "json", *d], ["show", str(clip), *d],
                    ["tags", *d], ["stats", *d], ["prune", *d], ["write", "--dry-run", *d],
                    ["models"], ["models", "info", "musicnn-mtt"]]
        base = wall_time([sys.executable, "-c", "import typer"], args.runs)
        torch_s = wall_time([sys.executable, "-c", "import torch"], args.runs)
        print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"median of {args.runs} whole processes")
        print(f"python -c 'import typer': {base:.3f} s; python -c 'import torch': {torch_s:.3f} s")
        print("| command | s | − import typer |")
        print("|---|---|---|")
        for c in commands:
            shown = " ".join("CLIP" if a == str(clip) else "DB" if a == str(db) else a for a in c)
            t = wall_time([sys.executable, "-m", "tagger", *c], args.runs)
            print(f"| `tagger {shown}` | {t:.3f} | {t - base:+.3f} |", flush=True)


if __name__ == "__main__":
    main()
