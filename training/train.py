"""The training loop: the recipe of shared/docs/recipe.md, resumable, exporting the best
epoch as a tagger model file that `tagger scan --model FILE` uses directly."""

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
from torch.utils.data import DataLoader

from tagger.cnn import ShortChunkCNN, baseline_config, report_config, report_frontend
from tagger.errors import UsageError
from tagger.inference import resolve_device
from tagger.modelcard import read_card
from tagger.modelfile import ModelCard, load_model, save_model
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
    if resume:
        state = _resume(ckpt_path, model, optimizer, config, summary, best_path)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    result = TrainResult(model_path, [EpochLog(**h) for h in state["history"]])
    generator = torch.Generator(device=dev).manual_seed(config.seed)
    autocast = dev.type == "cuda" and config.mixed_precision
    card = ModelCard(name=name, architecture="", config={}, frontend=model.frontend_config, tags=data.tags,
                     groups=data.groups, aliases=data.aliases, license="as the training data allows")
    for index in range(state["epochs_done"], config.epochs):  # index from 0 seeds the crops and shuffles
        if state["bad_epochs"] >= config.patience:
            result.stopped_early = True
            break
        number = index + 1
        model.train()
        dataset.epoch = index
        loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=config.workers,
                            generator=torch.Generator().manual_seed(config.seed * 1000 + index),
                            pin_memory=dev.type == "cuda", drop_last=len(dataset) > config.batch_size)
        t_epoch = time.perf_counter()
        step_report = (lambda step, steps, value: on_step(number, step, steps, value)) if on_step else None
        train_loss, seen, wait = _fit_epoch(model, loader, augment, loss_fn, optimizer, generator, autocast,
                                            step_report)
        seconds = time.perf_counter() - t_epoch
        model.eval()
        valid = evaluate(model, cache, valid_clips, data.tags, config.eval_chunks)
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
        log = EpochLog(number, train_loss, _finite(valid["roc_auc"]), _finite(valid["pr_auc"]),
                       valid["tags_evaluated"], seen / seconds, wait / seconds, seconds, better)
        result.history.append(log)
        state.update(epochs_done=number, history=[vars(h) for h in result.history])
        save_checkpoint(ckpt_path, model, optimizer, dict(state, config=config.to_dict(), data=summary))
        _write_logs(out, result.history)
        if on_epoch:
            on_epoch(log)
    result.best_epoch = state["best_epoch"]
    if state["best_roc"] < 0:
        result.unranked = (f"no tag has both positive and negative clips among the {len(valid_clips)} "
                           f"valid clips")
    _export(result, data, cache, config, best_path, dev, out)
    return result


def _fit_epoch(model: ShortChunkCNN, loader: DataLoader, augment: torch.nn.Module, loss_fn: Callable,
               optimizer: torch.optim.Optimizer, generator: torch.Generator, autocast: bool,
               on_step: Callable[[int, int, float], None] | None) -> tuple[float, int, float]:
    """One pass over ``loader`` → (mean loss, clips seen, seconds spent waiting for batches)."""
    dev = next(model.parameters()).device
    wait, losses, seen = 0.0, [], 0
    t_wait = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        wait += time.perf_counter() - t_wait
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with torch.no_grad():
            x = augment(x, generator)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(model.logits(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        seen += x.shape[0]
        if on_step:
            on_step(step + 1, len(loader), losses[-1])
        t_wait = time.perf_counter()
    return float(np.mean(losses)), seen, wait


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
    state = load_checkpoint(ckpt_path, model, optimizer)
    if "epochs_done" not in state:
        raise UsageError(ckpt_path, "was written by an earlier tagger train (epochs numbered from 0)",
                         "start a new run with another --out")
    saved = TrainConfig.from_dict(state["config"])
    if replace(saved, epochs=config.epochs, patience=config.patience) != config:
        raise UsageError(ckpt_path, "was trained with another configuration",
                         "resume with the same options (only --epochs and --patience may change)")
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
        test = evaluate(best, cache, test_clips, data.tags, config.eval_chunks)
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
    return {"source": "tagger train", "dataset": data.name, "data_fingerprint": data.fingerprint(),
            "clips": {s: len(data.split(s)) for s in ("train", "valid", "test")},
            "training_config": config.to_dict(), "best_epoch": epoch, "selected_by": selected_by,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _write_logs(out: Path, history: list[EpochLog]) -> None:
    rows = [vars(h) for h in history]
    (out / "log.json").write_text(json.dumps(rows, indent=1))
    with (out / "log.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
