"""Teacher labels: any folder of audio becomes training data whose targets are the mean
probabilities of teacher models over the same chunks.

A decoded file is cut into clips of ``clip_seconds`` (as many as fit, at most ``max_clips``
evenly spaced over the file; a shorter file is one clip): a several-minute track as one
clip with one target vector would average away its intro, its chorus and its bridge, and
MTAT's clips, which the built-ins were trained on, are ~29 s. Each clip's target is the mean
over the teachers of the mean over its ``chunks`` evenly spaced 3 s chunks of the sigmoid
outputs — the chunks evaluation scores a clip by (``data.evenly_spaced_chunks``). The targets
are computed once and kept in the training cache beside the decoded audio, in one file per
set of teachers (keyed by their sha256) and clip layout, so a second run reuses them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from tagger.engine.inference import resolve_device
from tagger.errors import UsageError
from tagger.files.atomic import replace_atomically
from tagger.model.modelcard import read_card
from tagger.model.modelfile import load_model
from tagger.model.tagmodel import TagModel
from training.data import CHUNK, SAMPLE_RATE, Cache, Clip, TagDataset, evenly_spaced_chunks

POSITIVE = 0.5  # a teacher probability at or above this is a positive label for validation/test AUCs


@dataclass
class TeacherReport:
    clips: int = 0  # clips the targets cover
    computed: int = 0  # of which scored by the teachers in this run
    reused: int = 0  # of which read from the cache
    skipped: dict[str, str] = field(default_factory=dict)  # file key → why it has no clips


def load_teachers(names: list[str], device: str | torch.device = "cpu") -> list[TagModel]:
    """The teacher models (built-in names or files), checked to fit the training data: the
    cache's sample rate and chunk length, and one tag list in one order (a mean over models
    is a mean per tag position; two vocabularies would need a mapping nobody asked for)."""
    if not names:
        raise UsageError(None, "--dataset folder needs --teacher MODEL[,MODEL…]", "e.g. --teacher musicnn-vgg-mtt,musicnn-mtt")
    for name in names:  # from the cards, before any weights are loaded
        card = read_card(name)
        if card.sample_rate != SAMPLE_RATE or card.chunk_samples != CHUNK:
            raise UsageError(card.path, f"teacher {card.name} takes chunks of {card.chunk_samples} samples "
                             f"at {card.sample_rate} Hz; training uses {CHUNK} ({CHUNK / SAMPLE_RATE:g} s) at "
                             f"{SAMPLE_RATE} Hz", "use teachers made for 3 s chunks of 16 kHz audio")
    dev = resolve_device(device) if isinstance(device, str) else device
    models = [load_model(n, dev) for n in names]
    first = models[0].card
    for name, m in zip(names[1:], models[1:]):
        if m.card.tags != first.tags:
            what = "other tags" if set(m.card.tags) != set(first.tags) else "the same tags in another order"
            raise UsageError(m.card.path, f"teacher {m.card.name} predicts {what} than {first.name}",
                             "teachers must share one tag list (train from each alone, or from one)")
    return models


def teacher_record(models: list[TagModel]) -> list[dict]:
    """What a student's provenance says of its teachers."""
    return [{"name": m.card.name, "sha256": m.card.sha256} for m in models]


def segments(n_samples: int, clip_samples: int, max_clips: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the clips cut from a file of ``n_samples``: as many whole clips as
    fit (at most ``max_clips``, then evenly spaced over the file), or the whole file when it
    is shorter than one clip."""
    if n_samples <= clip_samples:
        return [(0, n_samples)]
    fit = n_samples // clip_samples
    if fit <= max_clips:
        starts = [i * clip_samples for i in range(fit)]  # back to back; a tail under one clip is left out
    else:
        starts = np.linspace(0, n_samples - clip_samples, max_clips).round().astype(int).tolist()
    return [(int(s), int(s) + clip_samples) for s in starts]


def _targets_path(cache: Cache, models: list[TagModel], clip_samples: int, max_clips: int, chunks: int):
    # the order of the teachers does not change their mean: sorted, so a,b and b,a share a file
    ident = "\n".join(sorted(m.card.sha256 for m in models)) + f"\n{clip_samples}\n{max_clips}\n{chunks}"
    return cache.root / "teachers" / f"{hashlib.sha256(ident.encode()).hexdigest()[:24]}.json"


@torch.inference_mode()
def score_clip(models: list[TagModel], audio: np.ndarray, chunks: int, batch_size: int = 64) -> np.ndarray:
    """The teachers' mean over models of the mean over ``chunks`` evenly spaced 3 s chunks of
    ``audio`` (``[T]`` at 16 kHz) → ``[n_tags]`` float32."""
    x = torch.from_numpy(evenly_spaced_chunks(audio, chunks))
    per_model = []
    for m in models:
        device = next(m.parameters()).device
        probs = [m(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
        per_model.append(torch.cat(probs).double().mean(dim=0))
    return torch.stack(per_model).mean(dim=0).float().numpy()


def label_with_teachers(data: TagDataset, cache: Cache, models: list[TagModel], clip_seconds: float = 30.0,
                        max_clips: int = 8, chunks: int = 16,
                        on_progress: Callable[[int, int], None] | None = None) -> tuple[TagDataset, TeacherReport]:
    """``data`` (one clip per file, decoded into ``cache``) → the dataset to train on: each
    file's clips (keys ``FILE#k``, in the file's split) with the teachers' mean probabilities
    as targets, 0/1 labels (≥ 0.5) for the validation/test AUCs, and the teachers' tag list,
    groups and aliases. Files the cache could not decode have no clips (listed in the
    report). Targets already in the cache for the same teachers, layout and samples are
    reused; the rest are computed and saved. ``on_progress(done, total)`` per file."""
    clip_samples = int(round(clip_seconds * SAMPLE_RATE))
    if clip_samples < CHUNK:
        raise UsageError(None, f"clips of {clip_seconds:g} s are shorter than one 3 s chunk", "use 3 s or more")
    path = _targets_path(cache, models, clip_samples, max_clips, chunks)
    stored = _read_targets(path)
    card = models[0].card
    report, clips, fresh = TeacherReport(), [], {}
    files = list(data.clips)
    for done, f in enumerate(files, 1):
        entry = cache.entries.get(f.key)
        if entry is None or "of" in entry:
            report.skipped[f.key] = cache.failed.get(f.key, "not decoded")
        else:
            spans = segments(entry["samples"], clip_samples, max_clips)
            keys = [f"{f.key}#{k}" for k in range(len(spans))]
            cache.add_segments(f.key, [(k, a, b) for k, (a, b) in zip(keys, spans)])
            for key, (a, b) in zip(keys, spans):
                known = stored.get(key)
                if known and known["crc32"] == entry["crc32"] and known["span"] == [a, b]:
                    targets = np.asarray(known["targets"], np.float32)
                    report.reused += 1
                else:
                    targets = score_clip(models, cache.load(key), chunks)
                    report.computed += 1
                fresh[key] = {"crc32": entry["crc32"], "span": [a, b], "targets": targets.tolist()}
                clips.append(Clip(key, f.path, (targets >= POSITIVE).astype(np.uint8), f.split, targets))
        if on_progress:
            on_progress(done, len(files))
    report.clips = len(clips)
    if not clips:
        raise UsageError(data.root, "none of its audio files could be decoded", "see the files the prepare step skipped")
    if report.computed or fresh.keys() != stored.keys():
        _write_targets(path, models, fresh)
    labelled = TagDataset(data.name, list(card.tags), clips, dict(card.groups), dict(card.aliases), data.root,
                          teacher_record(models))
    return labelled, report


def _read_targets(path) -> dict:
    try:
        return json.loads(path.read_text())["clips"]
    except (OSError, ValueError, KeyError):
        return {}  # none yet, or damaged: computed again


def _write_targets(path, models: list[TagModel], clips: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replace_atomically(path) as tmp, open(tmp, "w") as f:
        json.dump({"version": 1, "teachers": teacher_record(models), "clips": clips}, f)


def describe(report: TeacherReport) -> str:
    """One line for the CLI."""
    return (f"teacher targets: {report.clips} clips, {report.reused} from the cache, {report.computed} computed"
            + (f", {len(report.skipped)} files without audio" if report.skipped else ""))


__all__ = ["POSITIVE", "TeacherReport", "describe", "label_with_teachers", "load_teachers", "score_clip",
           "segments", "teacher_record"]
