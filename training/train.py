"""The training loop: the recipe of shared/docs/recipe.md, resumable, exporting the best
epoch as a tagger model file that `tagger scan --model FILE` uses directly."""

from __future__ import annotations

import csv
import json
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
from tagger.modelfile import ModelCard, load_model, save_model
from training.augment import build_augment
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import Cache, CropDataset, TagDataset
from training.evaluate import evaluate
from training.losses import make_loss


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    valid_roc_auc: float
    valid_pr_auc: float
    clips_per_s: float
    loader_wait_share: float
    seconds: float
    best: bool


@dataclass
class TrainResult:
    model_path: Path
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = -1
    best_valid: dict = field(default_factory=dict)
    test: dict | None = None
    stopped_early: bool = False


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
    """Train on ``data``'s train split, select on its valid split (ROC-AUC), test on its test
    split, write ``out_dir``/model.safetensors and the logs. ``on_step(epoch, step, steps,
    loss)`` and ``on_epoch(log)`` report progress."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    train_clips = [c for c in data.split("train") if c.key in cache.entries]
    valid_clips = [c for c in data.split("valid") if c.key in cache.entries]
    if not train_clips or not valid_clips:
        raise UsageError(out, "needs prepared train and valid clips",
                         f"cached: {len(train_clips)} train, {len(valid_clips)} valid")
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
    state = {"epoch": -1, "best_roc": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": []}
    if resume:
        if not ckpt_path.is_file():
            raise UsageError(ckpt_path, "no checkpoint to resume from")
        state = load_checkpoint(ckpt_path, model, optimizer)
        saved = TrainConfig.from_dict(state["config"])
        if replace(saved, epochs=config.epochs, patience=config.patience) != config:
            raise UsageError(ckpt_path, "was trained with another configuration",
                             "resume with the same options (only --epochs and --patience may change)")
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    result = TrainResult(model_path, [EpochLog(**h) for h in state["history"]])
    generator = torch.Generator(device=dev).manual_seed(config.seed)
    autocast = dev.type == "cuda" and config.mixed_precision
    card = ModelCard(name=name, architecture="", config={}, frontend=model.frontend_config, tags=data.tags,
                     groups=data.groups, aliases=data.aliases, license="as the training data allows")
    for epoch in range(state["epoch"] + 1, config.epochs):
        if state["bad_epochs"] >= config.patience:
            result.stopped_early = True
            break
        model.train()
        dataset.epoch = epoch
        loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=config.workers,
                            generator=torch.Generator().manual_seed(config.seed * 1000 + epoch),
                            pin_memory=dev.type == "cuda", drop_last=len(dataset) > config.batch_size)
        t_epoch, wait, losses, seen = time.perf_counter(), 0.0, [], 0
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
                on_step(epoch, step + 1, len(loader), losses[-1])
            t_wait = time.perf_counter()
        seconds = time.perf_counter() - t_epoch
        model.eval()
        valid = evaluate(model, cache, valid_clips, data.tags, config.eval_chunks)
        better = valid["roc_auc"] > state["best_roc"]
        if better:
            state.update(best_roc=valid["roc_auc"], best_epoch=epoch, bad_epochs=0)
            card.metrics = {"valid": {k: valid[k] for k in ("roc_auc", "pr_auc", "clips", "tags_evaluated")}}
            card.provenance = _provenance(data, config, epoch)
            save_model(model, best_path, card)
        else:
            state["bad_epochs"] += 1
        log = EpochLog(epoch, float(np.mean(losses)), valid["roc_auc"], valid["pr_auc"], seen / seconds,
                       wait / seconds, seconds, better)
        result.history.append(log)
        state["history"] = [vars(h) for h in result.history]
        state["epoch"] = epoch
        save_checkpoint(ckpt_path, model, optimizer, dict(state, config=config.to_dict()))
        _write_logs(out, result.history)
        if on_epoch:
            on_epoch(log)
    result.best_epoch = state["best_epoch"]
    best = load_model(best_path, dev)
    result.best_valid = best.card.metrics.get("valid", {})
    test_clips = [c for c in data.split("test") if c.key in cache.entries]
    metrics = dict(best.card.metrics)
    if test_clips:
        result.test = evaluate(best, cache, test_clips, data.tags, config.eval_chunks)
        (out / "test_report.json").write_text(json.dumps(result.test, indent=1))
        metrics["test"] = {k: result.test[k] for k in ("roc_auc", "pr_auc", "clips", "tags_evaluated")}
    headline = metrics.get("test") or metrics.get("valid", {})
    metrics.update(roc_auc=headline.get("roc_auc"), pr_auc=headline.get("pr_auc"),
                   dataset=f"{data.name} {'test' if 'test' in metrics else 'valid'} split")
    best.card.metrics = metrics
    save_model(best, model_path, best.card)
    return result


def _provenance(data: TagDataset, config: TrainConfig, epoch: int) -> dict:
    return {"source": "tagger train", "dataset": data.name, "data_fingerprint": data.fingerprint(),
            "clips": {s: len(data.split(s)) for s in ("train", "valid", "test")},
            "training_config": config.to_dict(), "best_epoch": epoch,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _write_logs(out: Path, history: list[EpochLog]) -> None:
    rows = [vars(h) for h in history]
    (out / "log.json").write_text(json.dumps(rows, indent=1))
    with (out / "log.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
