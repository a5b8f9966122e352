"""How many chunks per track? Effect of --chunks N on per-track scores and on time.

    python benchmarks/chunks.py [FOLDER] [--model NAME] [--limit K]

FOLDER defaults to the real-music corpus of ../shared/corpus/fetch-real-music.sh. For every
track: scores from every chunk ("all", the reference), then from N evenly spaced chunks for
N = 4, 8, 16, 32, both cut from the whole decoded track and read with seeks
(audio.decode.ChunkReader). Prints per N the median and 95th percentile over tracks of max |Δp| against
"all", the mean top-5 overlap, and chunks (≈ model time) per track.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from tagger.audio.chunks import cut_chunks
from tagger.audio.decode import RESTART, ChunkReader, decode
from tagger.audio.discover import discover
from tagger.engine.runner import ModelRunner
from tagger.model.modelfile import load_model

CORPUS = Path.home() / ".cache" / "tagger-corpus" / "real-music"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default=str(CORPUS))
    ap.add_argument("--model", default="musicnn-vgg-mtt")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    model = load_model(args.model)
    runner = ModelRunner(model, 64)
    files = discover([args.folder]).files
    files = files[: args.limit] if args.limit else files

    def mean_scores(chunks):
        return np.concatenate([runner(chunks[i:i + 64])[0] for i in range(0, len(chunks), 64)]).mean(axis=0)

    ns = [4, 8, 16, 32]
    rows = {n: [] for n in ns}
    seek_rows, t_whole, t_seek, n_all, hours = [], 0.0, 0.0, [], 0.0
    for k, f in enumerate(files, 1):
        print(f"\r{k}/{len(files)}", end="", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        samples = decode(f.path, 16000)
        t_whole += time.perf_counter() - t0
        hours += len(samples) / 16000 / 3600
        all_chunks = cut_chunks(samples, 48000, None)
        n_all.append(len(all_chunks))
        ref = mean_scores(all_chunks)
        top_ref = set(np.argsort(-ref)[:5])
        for n in ns:
            p = mean_scores(cut_chunks(samples, 48000, n))
            rows[n].append((np.abs(p - ref).max(), len(top_ref & set(np.argsort(-p)[:5])), min(n, len(all_chunks))))
        t0 = time.perf_counter()
        blocks = []  # the scan's own reader: seeks where libsndfile can
        for block in ChunkReader(f.path, 16000, 48000, 16):
            blocks = [] if block is RESTART else blocks + [block]
        seeked = np.concatenate(blocks)
        t_seek += time.perf_counter() - t0
        whole16 = mean_scores(cut_chunks(samples, 48000, 16))
        seek_rows.append(np.abs(mean_scores(seeked) - whole16).max())
    print(f"{len(files)} tracks, {hours:.2f} h, median {np.median(n_all):.0f} chunks per track (all), model {args.model}")
    print(f"{'chunks':>8}{'median max|Δp|':>16}{'p95 max|Δp|':>13}{'top-5 shared':>14}{'chunks/track':>14}")
    for n in ns:
        d = np.array([r[0] for r in rows[n]])
        print(f"{n:>8}{np.median(d):>16.4f}{np.percentile(d, 95):>13.4f}"
              f"{np.mean([r[1] for r in rows[n]]):>12.2f}/5{np.mean([r[2] for r in rows[n]]):>14.1f}")
    print(f"{'all':>8}{0:>16.4f}{0:>13.4f}{5:>12.2f}/5{np.mean(n_all):>14.1f}")
    print(f"\nN=16 chunks read with seeks vs cut from the whole decode: max |Δp| median "
          f"{np.median(seek_rows):.4f}, max {np.max(seek_rows):.4f}")
    print(f"decode time for all tracks: whole {t_whole:.2f} s, 16 chunks with seeks {t_seek:.2f} s")


if __name__ == "__main__":
    main()
