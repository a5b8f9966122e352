"""Training throughput at MTAT scale: clips/s, the share of time the loop waits for the loader,
the share of time the GPU is busy, and the projected time of a 50-epoch MTAT run.

    python benchmarks/train.py [--device auto] [--clips 4000] [--unique 200] [--steps 40]
                               [--warmup 10] [--batch-sizes 16,64] [--workers 4] [--augment report]

Builds an MTAT-sized training set fast: ``--unique`` synthetic 29 s clips (tests/test_train.py's
audible tags) are generated in parallel, decoded into a real training cache, and listed under
``--clips`` distinct keys (each cache file serves several keys), so the loader, its persistent
workers, the random crops and the sampler see a dataset of that size. Then, per batch size, it
runs the real training loop (training/train.py's ``train_loader`` and ``fit_epoch``, the
recipe's model, NAdam, focal loss, augmentations) for ``--warmup`` steps, left out of the
figures, and ``--steps`` measured steps. Validation is measured on ``--valid-clips`` clips
(16 chunks each, loaded in workers).

Wait share: time blocked waiting for the next batch / wall time of the measured steps. GPU busy
share (CUDA only): device time between CUDA events around each step / wall time. Projection:
50 × (15,250 training clips at the measured clips/s + 1,529 validation clips at the measured
validation rate). On CPU a whole epoch of 2,000 clips takes minutes: keep ``--steps`` small.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_train import TAGS, synth_clip  # noqa: E402

from tagger.engine.inference import resolve_device  # noqa: E402
from training.augment import build_augment  # noqa: E402
from training.config import AUGMENT_PRESETS, TrainConfig  # noqa: E402
from training.data import Cache, Clip, CropDataset  # noqa: E402
from training.evaluate import predict  # noqa: E402
from training.losses import make_loss  # noqa: E402
from training.train import _optimizer, build_model, fit_epoch, train_loader  # noqa: E402

MTAT_TRAIN, MTAT_VALID, EPOCHS = 15250, 1529, 50


def _write_clip(args: tuple[str, int]) -> tuple[str, list[int]]:
    path, i = args
    labels = (np.random.default_rng(i).random(len(TAGS)) < 0.4).astype(int)
    labels[i % len(TAGS)] = 1
    sf.write(path, synth_clip(labels, i, seconds=29.0), 16000, subtype="PCM_16")
    return path, labels.tolist()


def build_cache(root: Path, unique: int, clips: int, workers: int) -> tuple[Cache, list[Clip]]:
    """``unique`` clips generated in parallel and cached, listed as ``clips`` distinct keys."""
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(str(root / f"{i}.wav"), i) for i in range(unique)]
    with ProcessPoolExecutor(workers) as pool:
        made = list(pool.map(_write_clip, jobs, chunksize=8))
    sources = [Clip(Path(p).name, p, np.array(lab, np.uint8), "train") for p, lab in made]
    cache = Cache(root / "cache")
    cache.prepare(sources, workers=workers, full_check=False)
    listed = []
    for k in range(clips):  # the same cached samples under distinct keys: an MTAT-sized list
        src = sources[k % unique]
        key = f"{src.key}#{k}"
        cache.entries[key] = cache.entries[src.key]
        listed.append(Clip(key, src.path, src.labels, "train"))
    return cache, listed


def measure(config: TrainConfig, cache: Cache, clips: list[Clip], dev: torch.device, steps: int,
            warmup: int, check_syncs: bool = False) -> dict:
    torch.manual_seed(config.seed)
    model = build_model(config, len(TAGS)).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(config, model.parameters())
    augment = build_augment(list(config.augment), config.augment_p, config.gain_db,
                            config.pitch_semitones).to(dev).train()
    loader, sampler = train_loader(CropDataset(cache, clips, config.seed), config, dev)
    generator = torch.Generator(device=dev).manual_seed(config.seed)
    model.train()
    check = check_syncs and dev.type == "cuda"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if check:  # every host sync inside the loop becomes a warning, counted below
            torch.cuda.set_sync_debug_mode("warn")
        try:
            stats = fit_epoch(model, loader, augment, make_loss(config.loss, config.focal_gamma, config.focal_alpha),
                              optimizer, generator, dev.type == "cuda" and config.precision == "bf16",
                              max_steps=warmup + steps, skip=warmup)
        finally:
            if check:
                torch.cuda.set_sync_debug_mode("default")
    if check:
        syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
        print(f"  host syncs in {warmup + steps} steps: {len(syncs)} (the loop's own few at the warm-up's "
              f"and the epoch's end; about one per step means a sync inside the step){'; first: ' + syncs[0] if syncs else ''}")
    del loader  # ends the persistent workers before the next configuration starts its own
    return {"clips_per_s": stats.seen / stats.seconds, "wait": stats.wait / stats.seconds,
            "busy": stats.busy_share, "model": model}


def measure_valid(model, cache: Cache, clips: list[Clip], workers: int) -> float:
    """Validation chunks per second (16 chunks per clip, loaded in ``workers``)."""
    model.eval()
    predict(model, cache, clips[:4], 16, workers)  # warm-up
    t = time.perf_counter()
    predict(model, cache, clips, 16, workers)
    return len(clips) * 16 / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--clips", type=int, default=4000, help="training clips listed (≥ 2,000: MTAT-sized loading)")
    ap.add_argument("--unique", type=int, default=200, help="distinct 29 s clips generated")
    ap.add_argument("--steps", type=int, default=40, help="measured steps per batch size")
    ap.add_argument("--warmup", type=int, default=10, help="steps before measuring")
    ap.add_argument("--batch-sizes", default="16,64")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 2))
    ap.add_argument("--valid-clips", type=int, default=64)
    ap.add_argument("--augment", default="report", help="none, report or a comma list")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--widths", default=None)
    ap.add_argument("--check-syncs", action="store_true", help="CUDA: count host syncs in the loop")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    augment = tuple(AUGMENT_PRESETS.get(args.augment, [a for a in args.augment.split(",") if a]))
    widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else None
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cache, clips = build_cache(Path(tmp), args.unique, args.clips, args.workers)
        print(f"data: {args.unique} clips of 29 s generated and cached, listed as {len(clips)} training "
              f"clips, in {time.perf_counter() - t0:.1f} s")
        print(f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.workers} "
              f"loader workers, widths {widths or 'recipe'}, augment {augment or 'none'}, {args.precision}, "
              f"{args.warmup} warm-up + {args.steps} measured steps per batch size")
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            config = TrainConfig(batch_size=batch, workers=args.workers, augment=augment, widths=widths,
                                 precision=args.precision)
            m = measure(config, cache, clips, dev, args.steps, args.warmup, args.check_syncs)
            valid = measure_valid(m["model"], cache, clips[:args.valid_clips], args.workers)
            epoch = MTAT_TRAIN / m["clips_per_s"] + MTAT_VALID * 16 / valid
            busy = "n/a (CPU)" if m["busy"] is None else f"{100 * m['busy']:.1f}%"
            print(f"batch {batch}: {m['clips_per_s']:.1f} clips/s, loader wait {100 * m['wait']:.1f}%, GPU busy "
                  f"{busy}; validation {valid:.0f} chunks/s; projected MTAT epoch {epoch / 60:.1f} min, "
                  f"{EPOCHS} epochs {EPOCHS * epoch / 3600:.1f} h")


if __name__ == "__main__":
    main()
