"""``tagger train`` (``--prepare-only`` to only decode the clips) and ``tagger evaluate``.

The training module's torch parts are imported only when one of them runs: this module is
imported for every command's --help, and scanning needs none of it.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tagger.cli.common import stderr_console, stdout_console, warn
from tagger.errors import CommandLineError
from training.config import Activation, Arch, DatasetKind, Loss, Optimizer, Precision, Split

DATASET = typer.Option(DatasetKind.mtat, "--dataset",
                       help="mtat (MagnaTagATune), csv (your own labels) or folder (any audio, targets from --teacher).")
DATA_DIR = typer.Option(None, "--data-dir", show_default=False,
                        help="MTAT: the folder with annotations_final.csv and 0…f/; folder: the audio folder.")
TEACHER = typer.Option(None, "--teacher", show_default=False,
                       help="folder: teacher model(s), built-in names or files, comma-separated; each clip's "
                            "targets are their mean probabilities.")
TEST_FOLDERS = typer.Option(None, "--test-folders", show_default=False,
                            help="folder: subfolders (relative to --data-dir, comma-separated) held out as the "
                                 "test split; default: a 10 % hash split.")
CLIP_SECONDS = typer.Option(30.0, "--clip-seconds", min=3.0, help="folder: files are cut into clips this long.")
CLIPS_PER_FILE = typer.Option(8, "--clips-per-file", min=1,
                              help="folder: at most this many clips per file, evenly spaced over it.")
SPLIT_DIR = typer.Option(None, "--split-dir", show_default=False,
                         help="MTAT: folder with train/valid/test lists (row<TAB>dir/file.mp3).")
LABELS = typer.Option(None, "--labels", help="csv: the labels file.", show_default=False)
AUDIO_ROOT = typer.Option(None, "--audio-root", help="csv: folder the label paths are relative to.",
                          show_default=False)
CACHE = typer.Option(None, "--cache", show_default=False,
                     help="Decoded-audio cache folder (default: one per audio folder in the user cache "
                          "folder, ~/.cache/tagger/training/ on Linux; never in the music folder).")
WORKERS = typer.Option(2, "--workers", min=0, help="Decoding / loading processes.")
# not a fixed choice (cuda:N), so the metavar lists the forms; resolve_device checks it
DEVICE = typer.Option("auto", "--device", metavar="[auto|cpu|cuda|cuda:N]", help="Where to run.")


def _dataset(dataset: DatasetKind, data_dir, split_dir, labels, audio_root, test_folders: str | None = None):
    # options missing for the dataset are a command-line error (exit 2), checked before the
    # torch import; what is wrong with the data itself is a UsageError of the loader (exit 1)
    if dataset in (DatasetKind.mtat, DatasetKind.folder) and data_dir is None:
        raise CommandLineError(None, f"--dataset {dataset.value} needs --data-dir")
    if dataset is DatasetKind.csv and (labels is None or audio_root is None):
        raise CommandLineError(None, "--dataset csv needs --labels and --audio-root")
    from training.data import load_csv, load_folder, load_mtat

    if dataset is DatasetKind.folder:
        return load_folder(data_dir, (test_folders or "").split(","))
    if dataset is DatasetKind.mtat:
        return load_mtat(data_dir, split_dir)
    # the CSV split does not follow --seed: evaluate must see the same test clips as train did
    return load_csv(labels, audio_root)


def _augmentations(augment: str) -> list[str]:
    from training.augment import AUGMENT_PRESETS

    names = AUGMENT_PRESETS.get(augment, [a.strip() for a in augment.split(",") if a.strip()])
    unknown = [a for a in names if a not in ("polarity", "gain", "pitch")]
    if unknown:
        raise CommandLineError(None, f"unknown augmentation(s) {', '.join(unknown)}",
                               "use none, report or polarity,gain,pitch")
    return names


BLOCKS = {Arch.report: 6, Arch.baseline: 4}  # conv blocks per architecture: one width each


def _widths(widths: str | None, arch: Arch) -> tuple[int, ...] | None:
    if not widths:
        return None
    try:
        values = tuple(int(w) for w in widths.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise CommandLineError(None, f"--widths must be comma-separated positive numbers, not {widths!r}")
    if len(values) != BLOCKS[arch]:
        raise CommandLineError(None, f"--widths for --arch {arch.value} needs {BLOCKS[arch]} numbers, one per "
                               f"block, not {len(values)}")
    return values


def _prepare(data, cache_dir: Path | None, workers: int, full_check: bool):
    from training.data import Cache, default_cache_dir

    cache_dir = cache_dir or default_cache_dir(data)
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


def train_command(
    dataset: DatasetKind = DATASET, data_dir: Path = DATA_DIR, split_dir: Path = SPLIT_DIR,
    labels: Path = LABELS, audio_root: Path = AUDIO_ROOT, cache: Path = CACHE, workers: int = WORKERS,
    teacher: str = TEACHER, test_folders: str = TEST_FOLDERS, clip_seconds: float = CLIP_SECONDS,
    clips_per_file: int = CLIPS_PER_FILE,
    prepare_only: bool = typer.Option(False, "--prepare-only",
                                      help="Only decode the clips into the cache, checking every entry "
                                           "(resumable; corrupt entries are rebuilt), then stop."),
    out: Path = typer.Option(None, "--out", help="Run folder (default: runs/NAME-TIME).", show_default=False),
    name: str = typer.Option(None, "--name", help="Model name (default: trained-DATASET).", show_default=False),
    arch: Arch = typer.Option(Arch.report, "--arch", help="report (6-block short-chunk CNN) or baseline (4 blocks)."),
    widths: str = typer.Option(None, "--widths", show_default=False, help="Conv widths, e.g. 128,256,256,128,128,128."),
    activation: Activation = typer.Option(None, "--activation", show_default=False,
                                          help="Default: the arch's own (report GELU, baseline ReLU)."),
    precision: Precision = typer.Option(Precision.fp32, "--precision",
                                        help="fp32 (TF32 convolutions on CUDA) or bf16 autocast (CUDA only)."),
    optimizer: Optimizer = typer.Option(Optimizer.nadam, "--optimizer"),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate."),
    loss: Loss = typer.Option(Loss.focal, "--loss"),
    focal_gamma: float = typer.Option(2.0, "--focal-gamma"),
    focal_alpha: float = typer.Option(-1.0, "--focal-alpha", help="Negative: no class weighting."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    epochs: int = typer.Option(50, "--epochs", min=1),
    patience: int = typer.Option(10, "--patience", min=1, help="Stop after this many epochs without a better validation ROC-AUC."),
    augment: str = typer.Option("report", "--augment", help="none, report (polarity,gain,pitch) or a comma list."),
    augment_p: float = typer.Option(0.5, "--augment-p", min=0.0, max=1.0, help="Probability of each augmentation."),
    seed: int = typer.Option(0, "--seed"),
    device: str = DEVICE,
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last epoch."),
) -> None:
    """Train on MTAT or your own labels; the best epoch becomes RUN/model.safetensors."""
    # the options first: a bad value exits 2 before any data is read
    names, width_list = _augmentations(augment), _widths(widths, arch)
    teachers = [t.strip() for t in (teacher or "").split(",") if t.strip()]
    if dataset is DatasetKind.folder and not teachers:
        raise CommandLineError(None, "--dataset folder needs --teacher MODEL[,MODEL…]",
                               "e.g. --teacher musicnn-vgg-mtt,musicnn-mtt")
    if teachers and dataset is not DatasetKind.folder:
        raise CommandLineError(None, "--teacher goes with --dataset folder")
    data = _dataset(dataset, data_dir, split_dir, labels, audio_root, test_folders)
    if prepare_only:
        _prepare(data, cache, workers, full_check=True)
        return
    from training.config import TrainConfig
    from training.train import train

    config = TrainConfig(arch=arch.value, widths=width_list, activation=activation.value if activation else None,
                         optimizer=optimizer.value, lr=lr, loss=loss.value, focal_gamma=focal_gamma,
                         focal_alpha=focal_alpha, batch_size=batch_size, epochs=epochs, patience=patience,
                         augment=tuple(names), augment_p=augment_p, seed=seed, workers=workers,
                         precision=precision.value)
    name = name or f"trained-{data.name}"
    out = out or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    cache_obj = _prepare(data, cache, workers, full_check=False)
    if teachers:
        data = _teacher_targets(data, cache_obj, teachers, clip_seconds, clips_per_file, config.eval_chunks, device)
    err = stderr_console()
    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}"), console=err, transient=True,
                        disable=not err.is_terminal)
    task = progress.add_task("train", total=1, epoch=0, loss=0.0)

    def on_step(epoch, step, steps, loss_value):
        progress.update(task, completed=step, total=steps, epoch=epoch, loss=loss_value)

    def on_epoch(log):
        progress.console.print(_epoch_line(log, len(data.tags)), soft_wrap=True)  # one line per epoch

    with progress:
        result = train(data, cache_obj, out, config, name, device, resume, on_step, on_epoch)
    _print_result(result, len(data.tags))


def _teacher_targets(data, cache, teachers: list[str], clip_seconds: float, clips_per_file: int, chunks: int,
                     device: str):
    """The folder's files cut into clips with the teachers' mean probabilities as targets."""
    from training.teacher import describe, label_with_teachers, load_teachers

    models = load_teachers(teachers, device)
    err = stderr_console()
    with Progress(TextColumn("teacher targets"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("teacher", total=len(data.clips))
        labelled, report = label_with_teachers(data, cache, models, clip_seconds, clips_per_file, chunks,
                                               lambda done, total: progress.update(task, completed=done))
    stdout_console().print(describe(report))
    return labelled


def _epoch_line(log, n_tags: int) -> str:
    if log.valid_tags_evaluated:
        valid = (f"valid ROC-AUC {log.valid_roc_auc:.4f} PR-AUC {log.valid_pr_auc:.4f} over "
                 f"{log.valid_tags_evaluated} of {n_tags} tags")
    else:
        valid = "valid: no tag has both classes, not ranked"
    return (f"epoch {log.epoch}: loss {log.train_loss:.4f}, {valid}, {log.clips_per_s:.1f} clips/s, "
            f"loader wait {100 * log.loader_wait_share:.0f}%"
            + (f", GPU busy {100 * log.gpu_busy_share:.0f}%" if log.gpu_busy_share is not None else "")
            + ("  (best)" if log.best else ""))


MIN_RANKING_TAGS = 10  # a validation over fewer tags than this (or a fifth of them) cannot rank epochs well


def _print_result(result, n_tags: int) -> None:
    console = stdout_console()
    if result.unranked:
        console.print(f"validation could not rank the epochs ({result.unranked}): exported the last "
                      f"epoch, {result.best_epoch}" + (" (stopped early)" if result.stopped_early else ""))
    else:
        v = result.best_valid
        console.print(f"best epoch {result.best_epoch}: valid ROC-AUC {v['roc_auc']:.4f}, PR-AUC "
                      f"{v['pr_auc']:.4f} over {v['tags_evaluated']} of {n_tags} tags"
                      + (" (stopped early)" if result.stopped_early else ""))
        if v["tags_evaluated"] < max(MIN_RANKING_TAGS, n_tags // 5):
            warn(f"the epoch was chosen by a validation over {v['tags_evaluated']} of {n_tags} tags: too few "
                 "to tell a model that learned the tags from one that gives every tag the same score. "
                 "Train on more clips (or a larger valid split) before trusting this model")
    test = result.test
    if test and test["roc_auc"] is not None:
        console.print(f"test: ROC-AUC {test['roc_auc']:.4f}, PR-AUC {test['pr_auc']:.4f} ({test['clips']} clips, "
                      f"{test['tags_evaluated']} of {n_tags} tags)")
    elif test:
        console.print(f"test: no tag has both positive and negative clips among the {test['clips']} test "
                      f"clips, so no test metrics")
    console.print(f"model: {result.model_path}  (use it with: tagger scan --model {result.model_path})")


def evaluate_command(
    model: str = typer.Argument(..., help="Built-in model name or model file."),
    dataset: DatasetKind = DATASET, data_dir: Path = DATA_DIR, split_dir: Path = SPLIT_DIR,
    labels: Path = LABELS, audio_root: Path = AUDIO_ROOT, cache: Path = CACHE, workers: int = WORKERS,
    split: Split = typer.Option(Split.test, "--split", help="Which split to evaluate on."),
    chunks: int = typer.Option(16, "--chunks", min=1, help="Evenly spaced 3 s chunks per clip."),
    out: Path = typer.Option(None, "--out", help="Report folder (default: eval-MODEL-SPLIT).", show_default=False),
    device: str = DEVICE,
) -> None:
    """Macro and per-tag ROC-AUC / PR-AUC of any model on a dataset split.

    Writes report.json (and per-tag bar charts when matplotlib is installed)."""
    from tagger.engine.inference import resolve_device
    from tagger.model.modelfile import load_model
    from training.evaluate import evaluate, write_report

    if dataset is DatasetKind.folder:
        raise CommandLineError(None, "tagger evaluate needs labels: --dataset mtat or csv",
                               "a student of teachers is compared with them by benchmarks/distill.py")
    data = _dataset(dataset, data_dir, split_dir, labels, audio_root)
    net = load_model(model, resolve_device(device))
    _warn_if_other_data(model, net.card, data, split.value)
    cache_obj = _prepare(data, cache, workers, full_check=False)
    metrics = evaluate(net, cache_obj, data.split(split.value), data.tags, chunks)
    out = out or Path(f"eval-{net.card.name}-{split.value}")
    files = write_report(metrics, out, f"{net.card.name} on {data.name} {split.value}")
    console = stdout_console()
    console.print(f"{net.card.name} on {data.name} {split.value} ({metrics['clips']} clips, "
                  f"{metrics['tags_evaluated']} tags): ROC-AUC {metrics['roc_auc']:.4f}, PR-AUC {metrics['pr_auc']:.4f}")
    console.print("wrote " + ", ".join(str(f) for f in files))


def _warn_if_other_data(model: str, card, data, split: str) -> None:
    """A model tagger train wrote records its data: when this dataset is another one (more
    rows, other labels, other splits), its split may hold clips the model was trained on."""
    from training.data import describe_change, recorded_data

    recorded = recorded_data(card.provenance, card.tags)
    change = describe_change(recorded, data.summary()) if recorded else None
    if change:
        warn(f"warning: {model} was trained on other data than this ({change}): its {split} split may "
             f"hold clips the model was trained on, and the metrics be too high")
