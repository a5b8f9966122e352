"""What a model file says about itself (its ``ModelCard``), read without torch.

A model file is one ``.safetensors`` file: weights plus JSON metadata under the key ``tagger``
(architecture name and config, front-end config, raw tag list and groups, sample rate, chunk
length, provenance, license, reported metrics). Reading the card needs only safetensors'
header parser, so listing models, querying the library and printing help never import torch;
``tagger.model.modelfile`` builds and loads the networks.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from tagger.errors import ModelFileError
from tagger.model.frontendconfig import FrontEndConfig
from tagger.model.vocab import Vocabulary

FORMAT = "tagger-model/1"
METADATA_KEY = "tagger"
DEFAULT_MODEL = "musicnn-vgg-mtt"
ARCHITECTURE_NAMES = ("ShortChunkCNN", "MusiCNN")  # the classes live in tagger.model.modelfile
HEAD_WEIGHT = "classifier.weight"
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
    embedding_size: int = 0  # the head's input width, read from the weights' shapes

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
    return Path(str(resources.files("tagger.model") / "builtin"))


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
        head = f.read(9)
    # safetensors: a little-endian u64 header length, then the JSON header's '{'. Its first
    # byte is that length's low byte, so it is 0x80 (pickle's protocol marker) for 1 file in 256
    safetensors = len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 32
    if path.suffix.lower() in _PICKLE_SUFFIXES or (not safetensors and (head[:2] == b"PK" or head[:1] == b"\x80")):
        raise ModelFileError(path, "looks like a pickle-based PyTorch file; tagger never unpickles "
                             "model files because unpickling can run arbitrary code",
                             "convert it to a tagger .safetensors model file")


def read_card(name_or_path: str | os.PathLike[str]) -> ModelCard:
    """Read a model file's metadata without loading its weights."""
    path = resolve_model_path(name_or_path)
    _refuse_pickles(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
            parameters = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys()
                             if not k.endswith("num_batches_tracked"))
            # every architecture's head is a Linear named "classifier": [n_tags, embedding_size]
            head = f.get_slice(HEAD_WEIGHT).get_shape() if HEAD_WEIGHT in f.keys() else [0, 0]
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(path, f"not a readable safetensors file ({e})") from None
    if raw is None:
        raise ModelFileError(path, "is a safetensors file without tagger metadata",
                             "only files written by tagger (train, models convert-musicnn) load")
    try:
        meta = json.loads(raw)
        if meta.get("format") != FORMAT:
            raise ValueError(f"unsupported format {meta.get('format')!r}, expected {FORMAT!r}")
        if meta["architecture"] not in ARCHITECTURE_NAMES:
            raise ValueError(f"unknown architecture {meta['architecture']!r}")
        card = ModelCard.from_metadata(meta, path)
        Vocabulary(card.tags, card.groups, card.aliases)  # raises if a group names an unknown tag
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(path, f"invalid tagger metadata: {e}") from None
    card.parameters = card.parameters or parameters
    card.embedding_size = int(head[-1])
    card.size_bytes = path.stat().st_size
    card.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return card


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


@dataclass
class CardModel:
    """A model known by its card alone, without its weights in torch: what the scan engine's
    bookkeeping needs before (or without) loading it, and what an OpenVINO runner holds."""
    card: ModelCard

    @property
    def embedding_size(self) -> int:
        return self.card.embedding_size
