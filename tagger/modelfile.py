"""Model files: one ``.safetensors`` file per model, weights plus JSON metadata.

The metadata key ``tagger`` holds the architecture name and config, the front-end config, the
raw tag list and groups, sample rate, chunk length, provenance, license and reported metrics.
safetensors holds only tensors, so loading a file a user hands us can never run code; pickle
based PyTorch files are refused outright.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from tagger.cnn import ShortChunkCNN
from tagger.errors import ModelFileError
from tagger.frontend import FrontEndConfig
from tagger.musicnn import MusiCNN
from tagger.tagmodel import TagModel
from tagger.vocab import Vocabulary

FORMAT = "tagger-model/1"
METADATA_KEY = "tagger"
DEFAULT_MODEL = "musicnn-vgg-mtt"
ARCHITECTURES: dict[str, type[TagModel]] = {"ShortChunkCNN": ShortChunkCNN, "MusiCNN": MusiCNN}
_PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".tar"}


@dataclass
class ModelCard:
    """Everything about a model file except its weights."""
    name: str
    architecture: str
    config: dict[str, Any]
    frontend: FrontEndConfig
    tags: list[str]
    groups: dict[str, list[str]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    chunk_samples: int = 48000
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    license: str = ""
    path: Path | None = None
    sha256: str = ""
    size_bytes: int = 0
    parameters: int = 0

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(self.tags, self.groups, self.aliases)

    def to_metadata(self) -> dict[str, Any]:
        return {"format": FORMAT, "name": self.name, "architecture": self.architecture,
                "config": self.config, "frontend": self.frontend.to_dict(), "tags": self.tags,
                "groups": self.groups, "aliases": self.aliases, "sample_rate": self.sample_rate,
                "chunk_samples": self.chunk_samples, "provenance": self.provenance,
                "metrics": self.metrics, "license": self.license, "parameters": self.parameters}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], path: Path | None = None) -> "ModelCard":
        return cls(name=meta["name"], architecture=meta["architecture"], config=meta["config"],
                   frontend=FrontEndConfig.from_dict(meta["frontend"]), tags=list(meta["tags"]),
                   groups=meta.get("groups", {}), aliases=meta.get("aliases", {}),
                   chunk_samples=int(meta["chunk_samples"]), provenance=meta.get("provenance", {}),
                   metrics=meta.get("metrics", {}), license=meta.get("license", ""), path=path,
                   parameters=int(meta.get("parameters", 0)))


def builtin_dir() -> Path:
    return Path(str(resources.files("tagger") / "models"))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.safetensors"))


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A built-in model's name, or a path to a model file."""
    text = str(name_or_path)
    builtin = builtin_dir() / f"{text}.safetensors"
    if "/" not in text and os.sep not in text and builtin.is_file():
        return builtin
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelFileError(path, "no such model file or built-in model",
                             f"built-in models: {', '.join(builtin_names())}")
    if path.is_dir():
        raise ModelFileError(path, "is a directory, not a model file")
    return path


def _refuse_pickles(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(4)
    if path.suffix.lower() in _PICKLE_SUFFIXES or head[:2] == b"PK" or head[:1] == b"\x80":
        raise ModelFileError(path, "looks like a pickle-based PyTorch file; tagger never unpickles "
                             "model files because unpickling can run arbitrary code",
                             "convert it to a tagger .safetensors model file")


def read_card(name_or_path: str | os.PathLike[str]) -> ModelCard:
    """Read a model file's metadata without loading its weights."""
    path = resolve_model_path(name_or_path)
    _refuse_pickles(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
            parameters = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys()
                             if not k.endswith("num_batches_tracked"))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(path, f"not a readable safetensors file ({e})") from None
    if raw is None:
        raise ModelFileError(path, "is a safetensors file without tagger metadata",
                             "only files written by tagger (train, models convert-musicnn) load")
    try:
        meta = json.loads(raw)
        if meta.get("format") != FORMAT:
            raise ValueError(f"unsupported format {meta.get('format')!r}, expected {FORMAT!r}")
        if meta["architecture"] not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {meta['architecture']!r}")
        card = ModelCard.from_metadata(meta, path)
        Vocabulary(card.tags, card.groups, card.aliases)  # raises if a group names an unknown tag
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(path, f"invalid tagger metadata: {e}") from None
    card.parameters = card.parameters or parameters
    card.size_bytes = path.stat().st_size
    card.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return card


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


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
    return model.eval().to(device)


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return read_card(path)
