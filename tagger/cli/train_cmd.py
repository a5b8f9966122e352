"""``tagger train`` (and ``train prepare``) and ``tagger evaluate``. The training module is
imported only when one of them runs: scanning needs none of it."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tagger.cli.common import stderr_console, stdout_console
from tagger.errors import UsageError

app = typer.Typer(help="Train a model (the founding report's recipe by default).",
                  invoke_without_command=True, no_args_is_help=False)

DATASET = typer.Option("mtat", "--dataset", help="mtat (MagnaTagATune) or csv (your own labels).")
DATA_DIR = typer.Option(None, "--data-dir", help="MTAT: the folder with annotations_final.csv and 0…f/.",
                        show_default=False)
SPLIT_DIR = typer.Option(None, "--split-dir", show_default=False,
                         help="MTAT: folder with train/valid/test lists (row<TAB>dir/file.mp3).")
LABELS = typer.Option(None, "--labels", help="csv: the labels file.", show_default=False)
AUDIO_ROOT = typer.Option(None, "--audio-root", help="csv: folder the label paths are relative to.",
                          show_default=False)
CACHE = typer.Option(None, "--cache", show_default=False,
                     help="Decoded-audio cache (default: .tagger-cache in the data folder).")
WORKERS = typer.Option(2, "--workers", min=0, help="Decoding / loading processes.")


def _dataset(dataset: str, data_dir, split_dir, labels, audio_root, seed: int = 0):
    from training.data import load_csv, load_mtat

    if dataset == "mtat":
        if data_dir is None:
            raise UsageError(None, "--dataset mtat needs --data-dir")
        return load_mtat(data_dir, split_dir), Path(data_dir)
    if dataset == "csv":
        if labels is None or audio_root is None:
            raise UsageError(None, "--dataset csv needs --labels and --audio-root")
        return load_csv(labels, audio_root, seed), Path(audio_root)
    raise UsageError(None, f"unknown dataset {dataset!r}", "use mtat or csv")


def _prepare(data, cache_dir: Path, workers: int, full_check: bool):
    from training.data import Cache

    cache = Cache(cache_dir)
    err = stderr_console()
    with Progress(TextColumn("decoding clips"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("prepare", total=len(data.clips))
        report = cache.prepare(data.clips, workers, full_check,
                               lambda done, total: progress.update(task, completed=done))
    out = stdout_console()
    out.print(f"cache {cache_dir}: {report.total} clips, {report.cached} already cached, "
              f"{report.decoded} decoded ({report.rebuilt} rebuilt), {len(report.failed)} failed")
    for key, reason in list(report.failed.items())[:10]:
        out.print(f"  skipped {key}: {reason}", style="yellow", soft_wrap=True)
    return cache


@app.command("prepare")
def prepare_command(dataset: str = DATASET, data_dir: Path = DATA_DIR, split_dir: Path = SPLIT_DIR,
                    labels: Path = LABELS, audio_root: Path = AUDIO_ROOT, cache: Path = CACHE,
                    workers: int = WORKERS) -> None:
    """Decode every clip once to 16 kHz mono float16 (resumable; corrupt entries are rebuilt)."""
    data, root = _dataset(dataset, data_dir, split_dir, labels, audio_root)
    _prepare(data, cache or root / ".tagger-cache", workers, full_check=True)


@app.callback()
def train_command(
    ctx: typer.Context,
    dataset: str = DATASET, data_dir: Path = DATA_DIR, split_dir: Path = SPLIT_DIR, labels: Path = LABELS,
    audio_root: Path = AUDIO_ROOT, cache: Path = CACHE, workers: int = WORKERS,
    out: Path = typer.Option(None, "--out", help="Run folder (default: runs/NAME-TIME).", show_default=False),
    name: str = typer.Option(None, "--name", help="Model name (default: trained-DATASET).", show_default=False),
    arch: str = typer.Option("report", "--arch", help="report (6-block short-chunk CNN) or baseline (4 blocks)."),
    widths: str = typer.Option(None, "--widths", show_default=False, help="Conv widths, e.g. 128,256,256,128,128,128."),
    activation: str = typer.Option("gelu", "--activation", help="relu, elu or gelu."),
    optimizer: str = typer.Option("nadam", "--optimizer", help="sgd, adam or nadam."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate."),
    loss: str = typer.Option("focal", "--loss", help="bce or focal."),
    focal_gamma: float = typer.Option(2.0, "--focal-gamma"),
    focal_alpha: float = typer.Option(-1.0, "--focal-alpha", help="Negative: no class weighting."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    epochs: int = typer.Option(50, "--epochs", min=1),
    patience: int = typer.Option(10, "--patience", min=1, help="Stop after this many epochs without a better validation ROC-AUC."),
    augment: str = typer.Option("report", "--augment", help="none, report (polarity,gain,pitch) or a comma list."),
    augment_p: float = typer.Option(0.5, "--augment-p", min=0.0, max=1.0, help="Probability of each augmentation."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last epoch."),
) -> None:
    """Train on MTAT or your own labels; the best epoch becomes RUN/model.safetensors."""
    if ctx.invoked_subcommand is not None:
        return
    from training.augment import AUGMENT_PRESETS
    from training.config import TrainConfig
    from training.train import train

    data, root = _dataset(dataset, data_dir, split_dir, labels, audio_root, seed)
    names = AUGMENT_PRESETS.get(augment, [a.strip() for a in augment.split(",") if a.strip()])
    unknown = [a for a in names if a not in ("polarity", "gain", "pitch")]
    if unknown:
        raise UsageError(None, f"unknown augmentation(s) {', '.join(unknown)}", "use none, report or polarity,gain,pitch")
    try:
        width_list = tuple(int(w) for w in widths.split(",")) if widths else None
    except ValueError:
        raise UsageError(None, f"--widths must be comma-separated numbers, not {widths!r}") from None
    config = TrainConfig(arch=arch, widths=width_list, activation=activation, optimizer=optimizer, lr=lr,
                         loss=loss, focal_gamma=focal_gamma, focal_alpha=focal_alpha, batch_size=batch_size,
                         epochs=epochs, patience=patience, augment=tuple(names), augment_p=augment_p,
                         seed=seed, workers=workers)
    name = name or f"trained-{data.name}"
    out = out or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    cache_obj = _prepare(data, cache or root / ".tagger-cache", workers, full_check=False)
    console, err = stdout_console(), stderr_console()
    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}"), console=err, transient=True,
                        disable=not err.is_terminal)
    task = progress.add_task("train", total=1, epoch=0, loss=0.0)

    def on_step(epoch, step, steps, loss_value):
        progress.update(task, completed=step, total=steps, epoch=epoch + 1, loss=loss_value)

    def on_epoch(log):
        progress.console.print(f"epoch {log.epoch + 1}: loss {log.train_loss:.4f}, valid ROC-AUC "
                               f"{log.valid_roc_auc:.4f} PR-AUC {log.valid_pr_auc:.4f}, {log.clips_per_s:.1f} "
                               f"clips/s, loader wait {100 * log.loader_wait_share:.0f}%{'  (best)' if log.best else ''}")

    with progress:
        result = train(data, cache_obj, out, config, name, device, resume, on_step, on_epoch)
    console.print(f"best epoch {result.best_epoch + 1}: valid ROC-AUC {result.best_valid.get('roc_auc', float('nan')):.4f}"
                  f", PR-AUC {result.best_valid.get('pr_auc', float('nan')):.4f}"
                  + (" (stopped early)" if result.stopped_early else ""))
    if result.test:
        console.print(f"test: ROC-AUC {result.test['roc_auc']:.4f}, PR-AUC {result.test['pr_auc']:.4f} "
                      f"({result.test['clips']} clips)")
    console.print(f"model: {result.model_path}  (use it with: tagger scan --model {result.model_path})")


def evaluate_command(
    model: str = typer.Argument(..., help="Built-in model name or model file."),
    dataset: str = DATASET, data_dir: Path = DATA_DIR, split_dir: Path = SPLIT_DIR, labels: Path = LABELS,
    audio_root: Path = AUDIO_ROOT, cache: Path = CACHE, workers: int = WORKERS,
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    chunks: int = typer.Option(16, "--chunks", min=1, help="Evenly spaced 3 s chunks per clip."),
    out: Path = typer.Option(None, "--out", help="Report folder (default: eval-MODEL-SPLIT).", show_default=False),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Macro and per-tag ROC-AUC / PR-AUC of any model on a dataset split; writes report.json
    (and per-tag bar charts when matplotlib is installed)."""
    from tagger.inference import resolve_device
    from tagger.modelfile import load_model
    from training.evaluate import evaluate, write_report

    if split not in ("train", "valid", "test"):
        raise UsageError(None, f"unknown split {split!r}", "use train, valid or test")
    data, root = _dataset(dataset, data_dir, split_dir, labels, audio_root)
    net = load_model(model, resolve_device(device))
    cache_obj = _prepare(data, cache or root / ".tagger-cache", workers, full_check=False)
    metrics = evaluate(net, cache_obj, data.split(split), data.tags, chunks)
    out = out or Path(f"eval-{net.card.name}-{split}")
    files = write_report(metrics, out, f"{net.card.name} on {data.name} {split}")
    console = stdout_console()
    console.print(f"{net.card.name} on {data.name} {split} ({metrics['clips']} clips, "
                  f"{metrics['tags_evaluated']} tags): ROC-AUC {metrics['roc_auc']:.4f}, PR-AUC {metrics['pr_auc']:.4f}")
    console.print("wrote " + ", ".join(str(f) for f in files))
