"""Library-scan throughput next to its limit, the pure decode throughput of the same files.

    python benchmarks/scan.py [FOLDER] [--chunks 16|all] [--workers N] [--model NAME]
                              [--device auto] [--compile auto|yes|no]

FOLDER defaults to the real-music corpus of ../shared/corpus/fetch-real-music.sh. Each run
scans into a fresh temporary database. Prints tracks/s, audio hours per second, the share of
time spent in the model and waiting for decoded audio, and then the decode-only throughput
(decode_chunks over the same files in a pool of one process per core: no model, no database).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from tagger.audio import decode_chunks
from tagger.cli.common import parse_chunks
from tagger.discover import discover
from tagger.scan import DEFAULT_CHUNKS, ScanOptions, scan

CORPUS = Path.home() / ".cache" / "tagger-corpus" / "real-music"


def _decode(args: tuple[str, int | None]) -> float:
    path, n = args
    try:
        return decode_chunks(path, 16000, 48000, n).duration_s
    except Exception:
        return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default=str(CORPUS))
    ap.add_argument("--chunks", default=str(DEFAULT_CHUNKS))
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default="musicnn-vgg-mtt")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", default="auto")
    ap.add_argument("--skip-decode", action="store_true")
    args = ap.parse_args()
    n_chunks = parse_chunks(args.chunks)
    files = discover([args.folder]).files
    size = sum(f.size for f in files)
    print(f"{len(files)} files, {size / 1e6:.0f} MB, in {args.folder}; {os.cpu_count()} cores; "
          f"torch {torch.__version__}; cuda: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")
    with tempfile.TemporaryDirectory() as tmp:
        options = ScanOptions(model=args.model, device=args.device, workers=args.workers, threads=args.threads,
                              chunks=n_chunks, compile=args.compile)
        s = scan([args.folder], os.path.join(tmp, "bench.db"), options)
    t = s.elapsed_s
    print(f"scan ({args.model}, chunks={args.chunks}, {s.workers} workers, "
          f"{args.threads or os.cpu_count()} threads, {s.device}"
          f"{', compiled' if s.compiled else ''}): {s.scanned} tracks, {len(s.failed)} failed, "
          f"{s.audio_s / 3600:.2f} h in {t:.1f} s")
    print(f"  {s.scanned / t:.2f} tracks/s, {s.audio_s / 3600 / t * 3600:.2f} audio-h per hour "
          f"({s.audio_s / t:.0f}× real time), {s.chunks / t:.1f} chunks/s")
    print(f"  time in the model {100 * s.model_s / t:.0f}%, waiting for decoding {100 * s.wait_s / t:.0f}%, "
          f"rest (plan, compile, database, averaging) {100 * (t - s.model_s - s.wait_s) / t:.0f}%")
    if args.skip_decode:
        return
    t0 = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        audio = sum(pool.map(_decode, [(f.path, n_chunks) for f in files], chunksize=2))
    td = time.perf_counter() - t0
    print(f"decode only (decode_chunks, chunks={args.chunks}, {os.cpu_count()} processes): "
          f"{len(files) / td:.2f} tracks/s, {audio / td:.0f}× real time  → scan is at "
          f"{100 * (s.scanned / t) / (len(files) / td):.0f}% of the decode limit")


if __name__ == "__main__":
    main()
