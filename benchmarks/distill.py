"""Teacher labels on real music: students trained on the teachers' probabilities, compared with
the teacher on whole held-out soundtracks, and their CPU speed next to the built-ins'.

    python benchmarks/distill.py [--corpus DIR] [--cache DIR] [--out DIR]
        [--clip-seconds 30] [--max-clips 3] [--chunks 8] [--epochs 2]
        [--students report,small] [--small-widths 32,64,64,64,64,64] [--threads N]

The corpus is ../shared/corpus/fetch-real-music.sh's (238 tracks of 9 game soundtracks):
every package but the held-out ones (wesnoth-1.16-music, nexuiz-music) is training data (a
10 % hash split of those files validates), the teacher is the mean of the two built-ins.
Per held-out track, the student's and the teacher's track-level probabilities are the mean
over the same 16 evenly spaced 3 s chunks of the whole track; printed: the top-5 overlap per
track (and its mean), the Spearman correlation of each tag across held-out tracks (mean over
tags), and each model's CPU chunks/s (batch 64, eager fp32, one model at a time on the same
threads, median of timed batches after a warm-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from tagger.model.modelfile import load_model
from training.config import TrainConfig
from training.data import Cache, load_folder
from training.teacher import describe, label_with_teachers, load_teachers, score_clip
from training.train import train

CORPUS = Path.home() / ".cache" / "tagger-corpus" / "real-music"
HELD_OUT = ("wesnoth-1.16-music", "nexuiz-music")
TEACHERS = ("musicnn-vgg-mtt", "musicnn-mtt")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two vectors (average ranks for ties); NaN when one is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def chunks_per_s(model, batches: int, batch: int = 64) -> float:
    """Eager fp32 inference on random 3 s chunks: median over ``batches`` timed batches after
    one warm-up batch."""
    x = 0.1 * torch.randn(batch, model.card.chunk_samples, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(batches):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def held_out_scores(models, cache: Cache, keys: list[str], n: int = 16) -> np.ndarray:
    """[tracks, tags]: the mean over ``models`` of each track's mean over n evenly spaced chunks."""
    return np.stack([score_clip(models, cache.load(k), n) for k in keys])


def compare(student: np.ndarray, teacher: np.ndarray) -> tuple[list[int], float, int]:
    overlap = [len(set(np.argsort(-s)[:5]) & set(np.argsort(-t)[:5])) for s, t in zip(student, teacher)]
    rhos = [spearman(student[:, j], teacher[:, j]) for j in range(teacher.shape[1])]
    rhos = [r for r in rhos if not np.isnan(r)]
    return overlap, float(np.mean(rhos)), len(rhos)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/distill-cache"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/distill-runs"))
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--max-clips", type=int, default=3, help="clips per training track")
    parser.add_argument("--chunks", type=int, default=8, help="chunks per clip for the teacher targets and validation")
    parser.add_argument("--test-chunks", type=int, default=16, help="evenly spaced chunks per held-out track")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--students", default="report,small")
    parser.add_argument("--small-widths", default="32,64,64,64,64,64")
    parser.add_argument("--limit", type=int, default=0, help="only this many files per package (a quick try)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--speed-batches", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, torch {torch.__version__}, {args.threads} threads, CPU")

    data = load_folder(args.corpus, test_folders=list(HELD_OUT))
    if args.limit:
        by_package: dict[str, list] = {}
        for c in data.clips:
            by_package.setdefault(c.key.split("/")[0], []).append(c)
        data.clips = [c for group in by_package.values() for c in group[:args.limit]]
    print("files: " + ", ".join(f"{s} {len(data.split(s))}" for s in ("train", "valid", "test")))
    cache = Cache(args.cache)
    t0 = time.perf_counter()
    prep = cache.prepare(data.clips, workers=2, full_check=False)
    print(f"decode: {prep.decoded} decoded, {prep.cached} cached, {len(prep.failed)} failed, "
          f"{time.perf_counter() - t0:.0f} s")

    teachers = load_teachers(list(TEACHERS))
    t0 = time.perf_counter()
    labelled, report = label_with_teachers(data, cache, teachers, args.clip_seconds, args.max_clips, args.chunks)
    print(f"{describe(report)}, {time.perf_counter() - t0:.0f} s; clips: "
          + ", ".join(f"{s} {len(labelled.split(s))}" for s in ("train", "valid", "test")))

    test_keys = [c.key for c in data.split("test") if c.key in cache.entries]
    t0 = time.perf_counter()
    teacher_tracks = held_out_scores(teachers, cache, test_keys, args.test_chunks)
    print(f"teacher on {len(test_keys)} held-out tracks ({args.test_chunks} chunks each): {time.perf_counter() - t0:.0f} s")

    widths = {"report": None, "small": tuple(int(w) for w in args.small_widths.split(","))}
    results = {}
    for student in args.students.split(","):
        config = TrainConfig(widths=widths[student], epochs=args.epochs, patience=args.epochs,
                             eval_chunks=args.chunks, workers=2)
        t0 = time.perf_counter()
        run = train(labelled, cache, args.out / student, config, f"distilled-{student}", device="cpu",
                    on_epoch=lambda log: print(f"  {student} epoch {log.epoch}: loss {log.train_loss:.4f}, "
                                               f"valid ROC-AUC {log.valid_roc_auc} over {log.valid_tags_evaluated} "
                                               f"tags, {log.clips_per_s:.1f} clips/s", flush=True))
        seconds = time.perf_counter() - t0
        model = load_model(run.model_path)
        t1 = time.perf_counter()
        scores = held_out_scores([model], cache, test_keys, args.test_chunks)
        overlap, rho, n_tags = compare(scores, teacher_tracks)
        results[student] = {"widths": list(widths[student] or (128, 256, 256, 128, 128, 128)),
                            "parameters": model.card.parameters, "train_s": round(seconds),
                            "epochs": args.epochs, "best_epoch": run.best_epoch,
                            "top5_overlap_mean": float(np.mean(overlap)),
                            "top5_overlap_hist": {k: overlap.count(k) for k in range(6)},
                            "spearman_mean": rho, "spearman_tags": n_tags, "per_track": dict(zip(test_keys, overlap)),
                            "model": str(run.model_path)}
        print(f"{student}: trained {seconds:.0f} s ({args.epochs} epochs, best {run.best_epoch}); held-out "
              f"scoring {time.perf_counter() - t1:.0f} s")
        for key, k in zip(test_keys, overlap):
            print(f"  {k}/5  {key}")
        print(f"{student}: top-5 overlap mean {np.mean(overlap):.2f}/5 over {len(overlap)} tracks "
              f"(hist {results[student]['top5_overlap_hist']}), Spearman per tag mean {rho:.3f} over {n_tags} tags",
              flush=True)

    print(f"\nCPU speed, batch 64, {args.threads} threads, eager fp32 (median of {args.speed_batches} batches)")
    speeds = {}
    for name in TEACHERS:
        speeds[name] = chunks_per_s(load_model(name), args.speed_batches)
    for student, r in results.items():
        speeds[f"distilled-{student}"] = chunks_per_s(load_model(r["model"]), args.speed_batches)
    base = speeds["musicnn-vgg-mtt"]
    for name, v in speeds.items():
        print(f"  {name:<20} {v:8.1f} chunks/s  {v / base:5.2f}× musicnn-vgg-mtt")
    for student, r in results.items():
        r["chunks_per_s"] = speeds[f"distilled-{student}"]
        r["speed_vs_vgg"] = speeds[f"distilled-{student}"] / base
        if r["top5_overlap_mean"] >= 4 and r["speed_vs_vgg"] >= 3:
            print(f"{student} keeps top-5 overlap ≥ 4/5 at ≥ 3× the default model's CPU speed")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distill.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "speeds": speeds, "students": results}, indent=1))
    print(f"total {time.perf_counter() - t_start:.0f} s; wrote {args.out / 'distill.json'}")


if __name__ == "__main__":
    main()
