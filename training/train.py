"""The training loop: the recipe of shared/docs/recipe.md, resumable bit for bit, exporting the
best epoch as a tagger model file that `tagger scan --model FILE` uses directly.

The loop keeps a GPU fed: the loader's workers live for the whole run (the epoch reaches them
through the sampler's indices), batches are pinned and copied without blocking, the losses are
summed on the device and read once per epoch (the progress callback reads them every
``CUDA_READ_EVERY`` steps on CUDA), and the augmentations draw from a device generator without
host round trips."""

from __future__ import annotations

import csv
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tagger.engine.inference import resolve_device
from tagger.errors import UsageError
from tagger.model.cnn import ShortChunkCNN, baseline_config, report_config, report_frontend
from tagger.model.modelcard import read_card
from tagger.model.modelfile import ModelCard, load_model, save_model
from training.augment import build_augment
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import Cache, Clip, CropDataset, TagDataset, describe_change, recorded_data
from training.evaluate import evaluate
from training.losses import make_loss


@dataclass
class EpochLog:
    epoch: int  # numbered from 1 everywhere: printed lines, log.json, the model's best_epoch
    train_loss: float
    valid_roc_auc: float | None  # macro over the tags evaluated; None when there were none
    valid_pr_auc: float | None
    valid_tags_evaluated: int  # tags with positive and negative clips in the valid split
    clips_per_s: float
    loader_wait_share: float
    seconds: float
    best: bool  # a better validation ROC-AUC than every earlier epoch
    gpu_busy_share: float | None = None  # CUDA: device time of the steps / epoch time; None on CPU


@dataclass
class TrainResult:
    model_path: Path
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0  # the exported epoch, numbered from 1
    best_valid: dict = field(default_factory=dict)
    test: dict | None = None
    stopped_early: bool = False
    unranked: str | None = None  # why validation could not pick an epoch; then the last one is exported


def build_model(config: TrainConfig, n_tags: int) -> ShortChunkCNN:
    if config.arch == "report":
        cnn = report_config(n_tags, config.activation, config.widths or (128, 256, 256, 128, 128, 128))
    elif config.arch == "baseline":
        cnn = baseline_config(n_tags)
        if config.widths:
            cnn = replace(cnn, blocks=tuple(replace(b, channels=w) for b, w in zip(cnn.blocks, config.widths)))
        if config.activation:  # TrainConfig resolves None to the arch's own (ReLU here)
            cnn = replace(cnn, activation=config.activation)
    else:
        raise UsageError(None, f"unknown --arch {config.arch!r}", "use report or baseline")
    return ShortChunkCNN(report_frontend(), cnn)


def _optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "nadam":
        return torch.optim.NAdam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    raise UsageError(None, f"unknown --optimizer {config.optimizer!r}", "use sgd, adam or nadam")


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


CUDA_READ_EVERY = 50  # steps between loss reads for the progress callback on CUDA (each read syncs)


class EpochSampler(Sampler):
    """A shuffled order per epoch, reproducible from (seed, epoch), yielding ``(epoch, index)``:
    the epoch travels with each index to the loader's persistent workers, whose copies of the
    dataset would otherwise keep the epoch they started with. Set ``epoch`` before iterating."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
        epoch = self.epoch
        return ((epoch, i) for i in order.tolist())


class EpochItems(Dataset):
    """``dataset[(epoch, i)]`` → ``dataset.epoch = epoch; dataset[i]``, in the worker that loads it."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        self.dataset.epoch, i = key
        return self.dataset[i]


def train_loader(dataset: Dataset, config: TrainConfig, device: torch.device) -> tuple[DataLoader, EpochSampler]:
    """The training loader (persistent workers, pinned on CUDA) and its sampler, whose ``epoch``
    picks each epoch's order and crops."""
    sampler = EpochSampler(len(dataset), config.seed)
    workers = config.workers
    loader = DataLoader(EpochItems(dataset), batch_size=config.batch_size, sampler=sampler, num_workers=workers,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                        pin_memory=device.type == "cuda", drop_last=len(dataset) > config.batch_size,
                        # its own generator: the workers' seeds must not draw from torch's global
                        # RNG, whose stream a resumed run restores
                        generator=torch.Generator().manual_seed(config.seed))
    return loader, sampler


def rng_states(device: torch.device, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The random streams a run draws from besides torch's CPU one (dropout on CUDA, the
    augmentations). numpy's and Python's global RNGs are not drawn from after the seeding
    (the crops use their own seeded generators), so they are not saved."""
    states = {"augment": generator.get_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def train(data: TagDataset, cache: Cache, out_dir: str | Path, config: TrainConfig, name: str,
          device: str = "auto", resume: bool = False,
          on_step: Callable[[int, int, int, float], None] | None = None,
          on_epoch: Callable[[EpochLog], None] | None = None) -> TrainResult:
    """Train on ``data``'s train split, select on its valid split (macro ROC-AUC over the tags
    that have both classes there), test on its test split, write ``out_dir``/model.safetensors
    and the logs. When no valid tag has both classes, validation cannot rank the epochs and the
    last one is exported (``TrainResult.unranked`` says why). Epochs are numbered from 1.
    ``on_step(epoch, step, steps, loss)`` and ``on_epoch(log)`` report progress."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    if config.precision not in ("fp32", "bf16"):
        raise UsageError(None, f"unknown --precision {config.precision!r}", "use fp32 or bf16")
    train_clips, valid_clips = _cached_split(data, cache, "train"), _cached_split(data, cache, "valid")
    _seed(config.seed)
    model = build_model(config, len(data.tags)).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(config, model.parameters())
    loss_fn = make_loss(config.loss, config.focal_gamma, config.focal_alpha)
    augment = build_augment(list(config.augment), config.augment_p, config.gain_db,
                            config.pitch_semitones).to(dev).train()
    dataset = CropDataset(cache, train_clips, config.seed)
    ckpt_path, best_path, model_path = out / "checkpoint.safetensors", out / "best.safetensors", out / "model.safetensors"
    # best_epoch 0: none yet; best_roc < 0: no epoch ranked by validation yet
    state = {"epochs_done": 0, "best_roc": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": []}
    summary = data.summary()  # saved with every checkpoint: a resumed run must see the same data
    generator = torch.Generator(device=dev).manual_seed(config.seed)  # the augmentations' stream
    if resume:
        state = _resume(ckpt_path, model, optimizer, config, summary, best_path)
        _restore_rng(state.pop("rng"), dev, generator)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    result = TrainResult(model_path, [EpochLog(**h) for h in state["history"]])
    autocast = dev.type == "cuda" and config.precision == "bf16"  # bf16 on CPU: fp32, as documented
    loader, sampler = train_loader(dataset, config, dev)
    card = ModelCard(name=name, architecture="", config={}, frontend=model.frontend_config, tags=data.tags,
                     groups=data.groups, aliases=data.aliases, license="as the training data allows")
    for index in range(state["epochs_done"], config.epochs):  # index from 0 seeds the crops and shuffles
        if state["bad_epochs"] >= config.patience:
            result.stopped_early = True
            break
        number = index + 1
        model.train()
        sampler.epoch = index
        step_report = (lambda step, steps, value: on_step(number, step, steps, value)) if on_step else None
        stats = fit_epoch(model, loader, augment, loss_fn, optimizer, generator, autocast, step_report)
        model.eval()
        valid = evaluate(model, cache, valid_clips, data.tags, config.eval_chunks, config.workers)
        ranked = valid["tags_evaluated"] > 0
        better = ranked and valid["roc_auc"] > state["best_roc"]
        if ranked:
            state["bad_epochs"] = 0 if better else state["bad_epochs"] + 1
        # until validation ranks an epoch, the latest one stands in, so a model is always exported
        if better or state["best_roc"] < 0:
            state.update(best_roc=valid["roc_auc"] if ranked else -1.0, best_epoch=number)
            card.metrics = {"valid": _summary(valid)}
            card.provenance = _provenance(data, config, number, "valid ROC-AUC" if ranked else "last epoch")
            save_model(model, best_path, card)
        log = EpochLog(number, stats.loss, _finite(valid["roc_auc"]), _finite(valid["pr_auc"]),
                       valid["tags_evaluated"], stats.seen / stats.seconds, stats.wait / stats.seconds,
                       stats.seconds, better, stats.busy_share)
        result.history.append(log)
        state.update(epochs_done=number, history=[vars(h) for h in result.history])
        save_checkpoint(ckpt_path, model, optimizer, dict(state, config=config.to_dict(), data=summary),
                        rng_states(dev, generator))
        _write_logs(out, result.history)
        if on_epoch:
            on_epoch(log)
    del loader  # its persistent workers end here, not when the garbage collector gets to them
    result.best_epoch = state["best_epoch"]
    if state["best_roc"] < 0:
        result.unranked = (f"no tag has both positive and negative clips among the {len(valid_clips)} "
                           f"valid clips")
    _export(result, data, cache, config, best_path, dev, out)
    return result


@dataclass
class EpochStats:
    loss: float  # mean training loss over the measured steps
    seen: int  # clips in the measured steps
    seconds: float  # wall time of the measured steps, the device's work included
    wait: float  # of which blocked waiting for the next batch
    busy_share: float | None  # CUDA: device time of the steps / seconds; None on CPU


def fit_epoch(model: ShortChunkCNN, loader: DataLoader, augment: torch.nn.Module, loss_fn: Callable,
              optimizer: torch.optim.Optimizer, generator: torch.Generator, autocast: bool,
              on_step: Callable[[int, int, float], None] | None = None,
              max_steps: int | None = None, skip: int = 0) -> EpochStats:
    """One pass over ``loader`` (or its first ``max_steps`` batches). ``skip``: the first steps
    run but are left out of the figures (a benchmark's warm-up; one device sync at its end).
    ``on_step(step, steps, mean loss so far)`` is called every step; the loss it gets is read
    from the device every step on CPU, every ``CUDA_READ_EVERY`` steps on CUDA."""
    dev = next(model.parameters()).device
    cuda = dev.type == "cuda"
    steps = len(loader) if max_steps is None else min(max_steps, len(loader))
    total = torch.zeros((), device=dev)  # summed on the device: .item() per step would sync per step
    events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    wait, seen, shown = 0.0, 0, float("nan")
    t_start = t_wait = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if step >= steps:
            break
        if step == skip and skip:
            if cuda:
                torch.cuda.synchronize(dev)
            total.zero_()
            wait, seen, events = 0.0, 0, []
            t_start = t_wait = time.perf_counter()
        wait += time.perf_counter() - t_wait
        if cuda:
            events.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
            events[-1][0].record()
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with torch.no_grad():
            x = augment(x, generator)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(model.logits(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        if cuda:
            events[-1][1].record()
        seen += x.shape[0]
        if on_step:
            done = step + 1 - skip
            if not cuda or done % CUDA_READ_EVERY == 0 or step + 1 == steps:
                shown = total.item() / max(done, 1)
            on_step(step + 1, steps, shown)
        t_wait = time.perf_counter()
    if cuda:
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t_start
    measured = max(steps - skip, 1)
    busy = sum(a.elapsed_time(b) for a, b in events) / 1000 / seconds if cuda else None
    return EpochStats(total.item() / measured, seen, seconds, wait, busy)


def _cached_split(data: TagDataset, cache: Cache, split: str) -> list[Clip]:
    """The split's clips that are in the cache; raises when there are none."""
    listed = data.split(split)
    cached = [c for c in listed if c.key in cache.entries]
    if not cached:
        reason = (f"none of its {len(listed)} {split} clips could be decoded" if listed
                  else f"has no {split} clips")
        raise UsageError(data.root, reason, "see the clips the prepare step skipped" if listed else
                         "MTAT: folder c is the valid split; CSV: mark rows split=valid or leave split empty")
    return cached


def _resume(ckpt_path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            config: TrainConfig, data: dict, best_path: Path) -> dict:
    if not ckpt_path.is_file():
        raise UsageError(ckpt_path, "no checkpoint to resume from")
    state = load_checkpoint(ckpt_path, model, optimizer)  # torch's CPU RNG restored; the others in state["rng"]
    if "epochs_done" not in state:
        raise UsageError(ckpt_path, "was written by an earlier tagger train (epochs numbered from 0)",
                         "start a new run with another --out")
    saved = TrainConfig.from_dict(state["config"])
    # how long and in what arithmetic may change; what the model and its data are may not.
    # (precision: runs from before --precision recorded mixed_precision, bf16 on CUDA, and
    # their plain resume command now says fp32; a changed precision is the one thing that
    # makes the resumed epochs differ from an uninterrupted run)
    free = ("epochs", "patience", "precision")
    if replace(saved, epochs=config.epochs, patience=config.patience, precision=config.precision) != config:
        was, now = saved.to_dict(), config.to_dict()
        differ = ", ".join(f"{k} {was[k]} (now {now[k]})" for k in was if k not in free and was[k] != now[k])
        raise UsageError(ckpt_path, f"was trained with another configuration: {differ}",
                         "resume with the same options (only --epochs, --patience and --precision may change)")
    # other clips, labels or splits would mix two datasets in one run, and could put clips it
    # has trained on into its test split
    recorded = _recorded(state, best_path)
    if recorded is None:
        raise UsageError(ckpt_path, "does not record the data it was trained on", "start a new run with another --out")
    change = describe_change(recorded, data)
    if change:
        raise UsageError(ckpt_path, f"was trained on other data: {change}",
                         "resume on the same data, or start a new run with another --out")
    return state


def _restore_rng(saved: dict[str, torch.Tensor], dev: torch.device, generator: torch.Generator) -> None:
    """The streams of ``rng_states`` as the checkpoint left them. Checkpoints from before they
    were saved resume with the augmentations re-seeded (as such runs always did)."""
    if "augment" in saved:
        try:
            generator.set_state(saved["augment"])
        except RuntimeError:  # saved on another kind of device (CUDA ↔ CPU): its stream cannot go on here
            pass  # re-seeded, as runs before these states were saved; the run goes on, not bit for bit
    if dev.type == "cuda" and "cuda" in saved:
        torch.cuda.set_rng_state(saved["cuda"], dev)


def _recorded(state: dict, best_path: Path) -> dict | None:
    """The summary of the data the checkpoint's run was trained on (None: unknown). Checkpoints
    from before it was saved in them have it in the best epoch's model file."""
    if "data" in state:
        return state["data"]
    card = read_card(best_path) if best_path.is_file() else None
    return recorded_data(card.provenance, card.tags) if card else None


def _export(result: TrainResult, data: TagDataset, cache: Cache, config: TrainConfig, best_path: Path,
            dev: torch.device, out: Path) -> None:
    """The kept epoch, tested on the test split, becomes ``result.model_path``."""
    best = load_model(best_path, dev)
    result.best_valid = best.card.metrics.get("valid", {})
    test_clips = [c for c in data.split("test") if c.key in cache.entries]
    metrics = dict(best.card.metrics)
    if test_clips:
        test = evaluate(best, cache, test_clips, data.tags, config.eval_chunks, config.workers)
        result.test = dict(test, roc_auc=_finite(test["roc_auc"]), pr_auc=_finite(test["pr_auc"]))
        (out / "test_report.json").write_text(json.dumps(result.test, indent=1))
        metrics["test"] = _summary(test)
    headline = metrics.get("test") or metrics.get("valid", {})
    metrics.update(roc_auc=headline.get("roc_auc"), pr_auc=headline.get("pr_auc"),
                   dataset=f"{data.name} {'test' if 'test' in metrics else 'valid'} split")
    best.card.metrics = metrics
    save_model(best, result.model_path, best.card)


def _finite(value: float) -> float | None:
    # NaN (no tag evaluated) is not JSON: the logs and model metadata say None instead
    return None if math.isnan(value) else float(value)


def _summary(metrics: dict) -> dict:
    return {"roc_auc": _finite(metrics["roc_auc"]), "pr_auc": _finite(metrics["pr_auc"]),
            "clips": metrics["clips"], "tags_evaluated": metrics["tags_evaluated"]}


def _provenance(data: TagDataset, config: TrainConfig, epoch: int, selected_by: str) -> dict:
    # a student of teacher models (--dataset folder) names them: its tag list, groups and
    # aliases are theirs (the card takes data.tags/groups/aliases) and its targets their outputs
    teachers = {"teachers": list(data.teachers)} if data.teachers else {}
    return {"source": "tagger train", "dataset": data.name, "data_fingerprint": data.fingerprint(),
            "clips": {s: len(data.split(s)) for s in ("train", "valid", "test")},
            "training_config": config.to_dict(), "best_epoch": epoch, "selected_by": selected_by,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **teachers}


def _write_logs(out: Path, history: list[EpochLog]) -> None:
    rows = [vars(h) for h in history]
    (out / "log.json").write_text(json.dumps(rows, indent=1))
    with (out / "log.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
