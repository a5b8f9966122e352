"""Library-scan throughput next to its limit, the pure decode throughput of the same files.

    python benchmarks/scan.py [FOLDER...] [--small] [--chunks 16|all] [--workers N] [--model NAME]...
                              [--device auto] [--runtime auto|openvino|torch]
                              [--precision auto|fp32|int8|fp16] [--batch-size N]
                              [--compile auto|yes|no] [--vs-torch] [--skip-decode]

FOLDER defaults to the real-music corpus of ../shared/corpus/fetch-real-music.sh; ``--small``
takes its three ``--small`` packages (62 tracks). ``--model`` repeated scans with several models
at once, each file decoded once (as ``tagger scan -m A -m B``). Each run scans into a fresh temporary
database. Prints tracks/s, audio hours per second, the runtime and precision that ran, the
share of time spent in the model and waiting for decoded audio, the device's busy share (CUDA
events; on CPU the model share), the scanning process's peak RSS (this process: it imports
what ``tagger scan`` imports, and no torch unless the scan does), the largest peak RSS of a
decode worker, and then the decode-only throughput — the limit: the same ChunkReader over the
same files in one process per core, no model, no database.

``--vs-torch`` then scans the same files again with PyTorch fp32 (``--runtime torch
--precision fp32``, the reference) and compares each track's stored probabilities: top-5
tags shared and max |Δp|.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from tagger.audio.decode import RESTART, ChunkReader
from tagger.audio.discover import discover
from tagger.cli.common import parse_chunks
from tagger.engine.decode import peak_rss
from tagger.scan import DEFAULT_CHUNKS, ScanOptions, scan

CORPUS = Path.home() / ".cache" / "tagger-corpus" / "real-music"
SMALL = ("wesnoth-1.16-music", "hyperrogue-music", "asc-music")  # fetch-real-music.sh --small


def _decode(args: tuple[str, int | None]) -> tuple[float, int]:
    path, n = args
    try:
        reader = ChunkReader(path, 16000, 48000, n)
        for block in reader:
            assert block is RESTART or block.shape[1] == 48000
        return reader.duration_s, peak_rss()
    except Exception:
        return 0.0, peak_rss()


def _agreement(db: str, reference_db: str) -> None:
    """Per track: top-5 tags shared with the reference scan and max |Δp| over the tags."""
    from tagger.store.catalog import Store

    def probabilities(path: str) -> dict[str, np.ndarray]:
        store = Store(path, create=False)
        out = {}
        model = store.model()
        for row in store.tracks_under(None):
            scores = store.track_scores(row.id, model)
            out[row.path] = np.array([scores[k] for k in sorted(scores)])
        return out

    got, ref = probabilities(db), probabilities(reference_db)
    shared, dps = [], []
    for path, want in ref.items():
        have = got[path]
        shared.append(len(set(np.argsort(-want)[:5]) & set(np.argsort(-have)[:5])))
        dps.append(float(np.abs(want - have).max()))
    print(f"  against PyTorch fp32, {len(ref)} tracks: top-5 shared {np.mean(shared):.2f}/5 (worst {min(shared)}), "
          f"max |Δp| median {np.median(dps):.4f}, 95th pct {np.percentile(dps, 95):.4f}, worst {max(dps):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="*")
    ap.add_argument("--small", action="store_true", help="the corpus's three --small packages (62 tracks)")
    ap.add_argument("--chunks", default=str(DEFAULT_CHUNKS))
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", action="append", help="repeat for several models (default: musicnn-vgg-mtt)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", default="auto")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--vs-torch", action="store_true", help="compare each track with PyTorch fp32")
    ap.add_argument("--skip-decode", action="store_true")
    args = ap.parse_args()
    n_chunks = parse_chunks(args.chunks)
    models = tuple(args.model or ["musicnn-vgg-mtt"])
    folders = args.folders or ([str(CORPUS / p) for p in SMALL] if args.small else [str(CORPUS)])
    files = discover(folders).files
    size = sum(f.size for f in files)
    load = os.getloadavg()
    print(f"{len(files)} files, {size / 1e6:.0f} MB, in {', '.join(folders)}; {os.cpu_count()} cores, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start")
    options = ScanOptions(models=models, device=args.device, workers=args.workers, threads=args.threads,
                          chunks=n_chunks, compile=args.compile, batch_size=args.batch_size,
                          precision=args.precision, runtime=args.runtime)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "bench.db")
        s = scan(folders, db, options)
        main_rss = peak_rss()
        if args.vs_torch:
            torch_db = os.path.join(tmp, "torch.db")
            ref = scan(folders, torch_db, ScanOptions(models=models[:1], device="cpu", workers=args.workers,
                                                      chunks=n_chunks, compile="no", runtime="torch",
                                                      precision="fp32"))
            print(f"PyTorch fp32 (eager, batch 64): {ref.scanned / ref.elapsed_s:.2f} tracks/s")
            _agreement(db, torch_db)
    t, e = s.elapsed_s, s.engine_stats
    how = ", ".join(f"{name} {ran}" for name, ran in e.per_model.items()) or f"{e.runtime} {e.precision}"
    print(f"scan ({', '.join(models)}, chunks={args.chunks}, batch {args.batch_size or 'default'}, {e.workers} workers, "
          f"{e.threads} threads, {e.device}, {how}{', compiled' if e.compiled else ''}): "
          f"{s.scanned} tracks, {len(s.failed)} failed, {s.audio_s / 3600:.2f} h in {t:.1f} s")
    for note in e.notes:
        print(f"  note: {note}")
    print(f"  {s.scanned / t:.2f} tracks/s ({s.audio_s / t:.0f}× real time), {e.chunks / t:.1f} chunks/s")
    print(f"  time in the model {100 * e.model_s / t:.0f}%, waiting for decoding {100 * e.wait_s / t:.0f}%, "
          f"rest (plan, compile, database, averaging) {100 * max(0.0, t - e.model_s - e.wait_s) / t:.0f}%")
    print(f"  device busy {100 * e.device_busy_s / t:.0f}% of the scan; scanning process peak RSS "
          f"{main_rss / 2**20:.0f} MiB; largest decode-worker peak RSS {e.worker_peak_rss / 2**20:.0f} MiB; "
          f"workers replaced {e.workers_replaced}")
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
