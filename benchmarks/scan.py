"""Library-scan throughput next to its limit, the pure decode throughput of the same files.

    python benchmarks/scan.py [FOLDER] [--chunks 16|all] [--workers N] [--model NAME]
                              [--device auto] [--compile auto|yes|no]

FOLDER defaults to the real-music corpus of ../shared/corpus/fetch-real-music.sh. Each run
scans into a fresh temporary database. Prints tracks/s, audio hours per second, the share of
time spent in the model and waiting for decoded audio, the device's busy share (CUDA events;
on CPU the model share), the largest peak RSS of a decode worker, and then the decode-only
throughput — the limit: the same ChunkReader over the same files in one process per core, no
model, no database.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from tagger.audio.decode import RESTART, ChunkReader
from tagger.audio.discover import discover
from tagger.cli.common import parse_chunks
from tagger.engine.decode import peak_rss
from tagger.scan import DEFAULT_CHUNKS, ScanOptions, scan

CORPUS = Path.home() / ".cache" / "tagger-corpus" / "real-music"


def _decode(args: tuple[str, int | None]) -> tuple[float, int]:
    path, n = args
    try:
        reader = ChunkReader(path, 16000, 48000, n)
        for block in reader:
            assert block is RESTART or block.shape[1] == 48000
        return reader.duration_s, peak_rss()
    except Exception:
        return 0.0, peak_rss()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default=str(CORPUS))
    ap.add_argument("--chunks", default=str(DEFAULT_CHUNKS))
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default="musicnn-vgg-mtt")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", default="auto")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--skip-decode", action="store_true")
    args = ap.parse_args()
    n_chunks = parse_chunks(args.chunks)
    files = discover([args.folder]).files
    size = sum(f.size for f in files)
    print(f"{len(files)} files, {size / 1e6:.0f} MB, in {args.folder}; {os.cpu_count()} cores; "
          f"torch {torch.__version__}; cuda: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")
    with tempfile.TemporaryDirectory() as tmp:
        options = ScanOptions(model=args.model, device=args.device, workers=args.workers, threads=args.threads,
                              chunks=n_chunks, compile=args.compile, batch_size=args.batch_size,
                              precision=args.precision)
        s = scan([args.folder], os.path.join(tmp, "bench.db"), options)
    t, e = s.elapsed_s, s.engine_stats
    print(f"scan ({args.model}, chunks={args.chunks}, batch {args.batch_size}, {e.workers} workers, "
          f"{e.threads} threads, {e.device}, {e.precision}{', compiled' if e.compiled else ''}): "
          f"{s.scanned} tracks, {len(s.failed)} failed, {s.audio_s / 3600:.2f} h in {t:.1f} s")
    print(f"  {s.scanned / t:.2f} tracks/s ({s.audio_s / t:.0f}× real time), {e.chunks / t:.1f} chunks/s")
    print(f"  time in the model {100 * e.model_s / t:.0f}%, waiting for decoding {100 * e.wait_s / t:.0f}%, "
          f"rest (plan, compile, database, averaging) {100 * max(0.0, t - e.model_s - e.wait_s) / t:.0f}%")
    print(f"  device busy {100 * e.device_busy_s / t:.0f}% of the scan; largest decode-worker peak RSS "
          f"{e.worker_peak_rss / 2**20:.0f} MiB; workers replaced {e.workers_replaced}")
    if args.skip_decode:
        return
    t0 = time.perf_counter()
    cores = len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(cores) as pool:
        done = list(pool.map(_decode, [(f.path, n_chunks) for f in files], chunksize=2))
    td = time.perf_counter() - t0
    audio = sum(d for d, _ in done)
    print(f"decode only (ChunkReader, chunks={args.chunks}, {cores} processes): "
          f"{len(files) / td:.2f} tracks/s, {audio / td:.0f}× real time, peak RSS per process "
          f"{max(r for _, r in done) / 2**20:.0f} MiB  → scan is at "
          f"{100 * (s.scanned / t) / (len(files) / td):.0f}% of the decode limit")


if __name__ == "__main__":
    main()
