"""The log-mel front-end's settings: stored in every model file, read without torch (so that
commands which only read model metadata start fast)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal


@dataclass(frozen=True)
class FrontEndConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    f_min: float = 0.0
    f_max: float = 8000.0
    mel_scale: Literal["slaney", "htk"] = "slaney"
    mel_norm: Literal["slaney", "none"] = "slaney"
    # "db": 10·log10(max(x, 1e-10)); "log10p": log10(10000·x + 1), as musicnn
    log: Literal["db", "log10p"] = "db"
    # musicnn cast the mel power to float16 before its log; its weights expect that rounding
    float16_power: bool = False
    # keep only the first N frames of each chunk (musicnn's models saw 187), None keeps all
    frames: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FrontEndConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown front-end settings: {sorted(unknown)}")
        return cls(**d)
