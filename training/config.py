"""The training configuration: the founding report's recipe as defaults (shared/docs/recipe.md),
every ablation of the report one option away."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum

# The choices of the options that have a fixed set (the CLI's --help lists them). torch-free:
# the CLI imports this module for every command's --help.

AUGMENTATIONS = ("polarity", "gain", "pitch")  # training/augment.py builds them
AUGMENT_PRESETS = {"none": [], "report": list(AUGMENTATIONS), **{name: [name] for name in AUGMENTATIONS}}


class DatasetKind(str, Enum):
    mtat = "mtat"
    csv = "csv"
    folder = "folder"  # any folder of audio, targets from --teacher models


class Arch(str, Enum):
    report = "report"
    baseline = "baseline"


class Activation(str, Enum):
    relu = "relu"
    elu = "elu"
    gelu = "gelu"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"


# the activation each architecture was published with: --activation only overrides it
ARCH_ACTIVATION = {"report": "gelu", "baseline": "relu"}


class Optimizer(str, Enum):
    sgd = "sgd"
    adam = "adam"
    nadam = "nadam"


class Loss(str, Enum):
    bce = "bce"
    focal = "focal"


class Split(str, Enum):
    train = "train"
    valid = "valid"
    test = "test"


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "report"  # report (6-block short-chunk CNN) | baseline (table 1: 4 blocks)
    widths: tuple[int, ...] | None = None  # conv widths; None: the arch's own
    activation: str | None = None  # relu | elu | gelu; None: the arch's own (report GELU, baseline ReLU)
    optimizer: str = "nadam"  # sgd | adam | nadam
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    loss: str = "focal"  # bce | focal
    focal_gamma: float = 2.0
    focal_alpha: float = -1.0  # < 0: no class weighting (the report gives none)
    batch_size: int = 16
    epochs: int = 50
    patience: int = 10  # epochs without a better validation ROC-AUC before stopping
    augment: tuple[str, ...] = AUGMENTATIONS  # the report's kept three
    augment_p: float = 0.5
    gain_db: tuple[float, float] = (-20.0, -1.0)
    pitch_semitones: int = 2
    eval_chunks: int = 16  # evenly spaced 3 s chunks per validation/test clip
    seed: int = 0
    workers: int = 2
    # fp32 (TF32 convolutions, PyTorch's cuDNN default) | bf16 (autocast on CUDA; on CPU the
    # run stays fp32, as runs before this option did)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        # the resolved activation is what config.json, checkpoints and model files record, so a
        # run says what it trained with; frozen: set through object.__setattr__
        if self.activation is None:
            object.__setattr__(self, "activation", ARCH_ACTIVATION.get(self.arch, "gelu"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        for key in ("widths", "augment", "gain_db"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        if "mixed_precision" in d:
            # runs before --precision: bf16 autocast on CUDA when True (fp32 on CPU either way);
            # "bf16" keeps a resumed run behaving as it was trained on either device
            mixed = d.pop("mixed_precision")
            d.setdefault("precision", "bf16" if mixed else "fp32")
        return cls(**d)
