"""A model's int8 calibration: the input range of each quantized layer, and whether the int8
model keeps the tags (read without torch: the scan decides its precision before loading).

The file sits next to the model file, ``NAME.int8.json`` (for the built-ins, in
``tagger/model/builtin/``), and is written by ``tools/calibrate_int8.py`` from real music. It
holds the model's sha256, so a retrained or replaced model never runs with another model's
ranges, and the figures of the rule that decides whether int8 may be the default:

    per track (its mean over 16 chunks), top-5 tags shared with fp32 ≥ 4.5 of 5 on average,
    and the median over tracks of max |Δp| ≤ 0.03.

int8 becomes the default only where it also pays: the tool measures int8 against fp32 in
OpenVINO on the same chunks, and a speed-up under MIN_SPEEDUP keeps fp32 (measured:
musicnn-vgg-mtt 2.2×, musicnn-mtt 1.4×, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tagger.model.modelcard import ModelCard

MIN_TOP5 = 4.5  # tags of 5 shared with fp32, mean over tracks
MAX_MEDIAN_DP = 0.03  # median over tracks of the largest |Δp| of a track's 50 tags
MIN_SPEEDUP = 1.2  # int8 chunks/s over fp32 chunks/s, for int8 to be the default
SUFFIX = ".int8.json"


@dataclass
class Int8Spec:
    model_sha256: str
    ranges: dict[str, list[float]]  # quantized layer (module name in the model) → its input [low, high]
    top5: float = 0.0  # measured: mean over tracks of the top-5 tags shared with fp32
    median_dp: float = 1.0  # measured: median over tracks of max |Δp|
    speedup: float = 0.0  # measured: int8 chunks/s ÷ fp32 chunks/s in OpenVINO, same chunks and machine
    calibration: dict[str, Any] = field(default_factory=dict)  # how and on what it was calibrated
    evaluation: dict[str, Any] = field(default_factory=dict)  # on what the figures were measured

    @property
    def passes(self) -> bool:
        """Whether int8 keeps this model's tags by the rule above."""
        return self.top5 >= MIN_TOP5 and self.median_dp <= MAX_MEDIAN_DP

    @property
    def default(self) -> bool:
        """Whether int8 is the model's default precision on OpenVINO: it keeps the tags and pays."""
        return self.passes and self.speedup >= MIN_SPEEDUP

    @property
    def digest(self) -> str:
        """A short hash of the ranges: part of the cached graph's key, so recalibrating re-exports."""
        text = json.dumps(self.ranges, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")


def spec_path(card: ModelCard) -> Path | None:
    return card.path.with_name(card.path.stem + SUFFIX) if card.path is not None else None


def read_int8_spec(card: ModelCard) -> Int8Spec | None:
    """The calibration next to ``card``'s file, or None: none there, unreadable, or made for
    other weights (its sha256 differs)."""
    path = spec_path(card)
    if path is None or not path.is_file():
        return None
    try:
        spec = Int8Spec(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return spec if spec.model_sha256 == card.sha256 else None
