"""Training throughput (clips/s) and the share of time the loop waits for the data loader.

    python benchmarks/train.py [--clips 256] [--epochs 2] [--device auto] [--workers 2] [--widths ...]

Builds a synthetic MTAT-layout dataset of 29 s MP3 clips (as tests/test_train.py does, but
full-length), prepares the cache, then trains the recipe's default model (6-block short-chunk
CNN, NAdam, focal loss, augmentation) and prints per epoch clips/s and loader-wait share. On
CUDA the loader must keep the GPU busy: a wait share near 0 % means it does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_train import TAGS, synth_clip  # noqa: E402

from training.config import TrainConfig  # noqa: E402
from training.data import Cache, load_mtat  # noqa: E402
from training.train import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--widths", default=None)
    ap.add_argument("--augment", default="polarity,gain,pitch")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        lines = ["\t".join(['"clip_id"', *[f'"{t}"' for t in TAGS], '"mp3_path"'])]
        for i in range(args.clips):
            labels = (rng.random(len(TAGS)) < 0.4).astype(int)
            labels[i % len(TAGS)] = 1
            folder = "0123456789ab"[i % 12] if i % 8 else "c"
            (root / folder).mkdir(exist_ok=True)
            sf.write(root / folder / f"{i}.mp3", synth_clip(labels, i, seconds=29.0), 16000, format="MP3")
            lines.append("\t".join([f'"{i}"', *[f'"{v}"' for v in labels], f'"{folder}/{i}.mp3"']))
        (root / "annotations_final.csv").write_text("\n".join(lines) + "\n")
        data = load_mtat(root)
        cache = Cache(root / "cache")
        t0 = time.perf_counter()
        cache.prepare(data.clips, workers=args.workers)
        print(f"prepare: {len(data.clips)} clips of 29 s in {time.perf_counter() - t0:.1f} s")
        widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else None
        config = TrainConfig(epochs=args.epochs, workers=args.workers, batch_size=args.batch_size, widths=widths,
                             augment=tuple(a for a in args.augment.split(",") if a and a != "none"))
        dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else "CPU"
        print(f"device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"widths {widths or 'recipe'}, augment {config.augment}, batch {config.batch_size}")

        def on_epoch(log):
            roc = "—" if log.valid_roc_auc is None else f"{log.valid_roc_auc:.3f}"
            print(f"epoch {log.epoch}: {log.clips_per_s:.1f} clips/s (training steps incl. augmentation), "
                  f"loader wait {100 * log.loader_wait_share:.1f}% of the epoch, loss {log.train_loss:.4f}, "
                  f"valid ROC-AUC {roc}")

        train(data, cache, root / "run", config, "bench", args.device, on_epoch=on_epoch)


if __name__ == "__main__":
    main()
