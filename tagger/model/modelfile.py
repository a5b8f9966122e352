"""Model files: one ``.safetensors`` file per model, weights plus JSON metadata.

The metadata key ``tagger`` holds the architecture name and config, the front-end config, the
raw tag list and groups, sample rate, chunk length, provenance, license and reported metrics.
safetensors holds only tensors, so loading a file a user hands us can never run code; pickle
based PyTorch files are refused outright.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tagger.errors import ModelFileError
from tagger.files.atomic import replace_atomically
from tagger.model.cnn import ShortChunkCNN
from tagger.model.modelcard import (
    ARCHITECTURE_NAMES,
    DEFAULT_MODEL,
    FORMAT,
    METADATA_KEY,
    ModelCard,
    builtin_dir,
    builtin_names,
    read_card,
    resolve_model_path,
)
from tagger.model.musicnn import MusiCNN
from tagger.model.tagmodel import TagModel

__all__ = ["ARCHITECTURES", "DEFAULT_MODEL", "FORMAT", "METADATA_KEY", "ModelCard", "build_model", "builtin_dir",
           "builtin_names", "load_model", "read_card", "resolve_model_path", "save_model"]

ARCHITECTURES: dict[str, type[TagModel]] = {"ShortChunkCNN": ShortChunkCNN, "MusiCNN": MusiCNN}
assert set(ARCHITECTURES) == set(ARCHITECTURE_NAMES)


def build_model(card: ModelCard) -> TagModel:
    arch = ARCHITECTURES[card.architecture]
    return arch.from_config_dict(card.frontend, card.config)


def load_model(name_or_path: str | os.PathLike[str] = DEFAULT_MODEL,
               device: str | torch.device = "cpu") -> TagModel:
    """Load a built-in model by name or a model file by path, in eval mode on ``device``.

    The returned module maps waveforms ``[B, T]`` (float32, mono, ``model.card.sample_rate``)
    to probabilities ``[B, len(model.card.tags)]``; ``model.card`` is its ``ModelCard``.
    """
    card = read_card(name_or_path)
    try:
        model = build_model(card)
        state = load_file(str(card.path))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise ModelFileError(card.path, f"weights do not fit the architecture in its metadata: {first}") from None
    model.card = card
    model = model.eval()
    _probe(model, card)
    return model.to(device)


def _probe(model: TagModel, card: ModelCard) -> None:
    """Refuse a model whose outputs are not finite on silence and on noise (NaN weights, a
    broken export): otherwise every track it scores would fail, or worse, be stored."""
    noise = torch.Generator().manual_seed(0)
    x = torch.stack([torch.zeros(card.chunk_samples),
                     0.1 * torch.randn(card.chunk_samples, generator=noise)])
    try:
        with torch.inference_mode():
            probs, emb = model.scores(x)
    except RuntimeError as e:  # e.g. a chunk length the architecture's layers do not fit
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(card.path, f"does not run on its own {card.chunk_samples}-sample chunks ({first})",
                             "its metadata and weights do not match: re-export or retrain it") from None
    if not (torch.isfinite(probs).all() and torch.isfinite(emb).all()):
        raise ModelFileError(card.path, "gives non-finite scores (NaN or infinity) on a test input; "
                             "its weights are damaged", "re-export or retrain it")


def save_model(model: TagModel, path: str | os.PathLike[str], card: ModelCard) -> ModelCard:
    """Write ``model``'s weights and ``card`` atomically (a temporary file, then a rename)."""
    path = Path(path)
    card.architecture = model.architecture
    card.config = model.config_dict()
    card.frontend = model.frontend_config
    card.parameters = sum(p.numel() for p in model.parameters())
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {METADATA_KEY: json.dumps(card.to_metadata(), sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with replace_atomically(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return read_card(path)
