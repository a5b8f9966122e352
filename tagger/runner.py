"""Running a model on batches of chunks as fast as the device allows.

Measured on the built-in VGG model, 2 CPU cores (benchmarks/RESULTS.md): eager NCHW fp32
18 chunks/s, channels_last fp32 48, torch.compile + channels_last 84 (after a 25 s first
compile, ~4 s from inductor's cache), all within 7e-5 of eager fp32; bf16 autocast is slower
on CPUs without bf16 units. So: channels_last always, compile for long scans. Batches are
padded to one fixed size so that a compiled model never recompiles for the last one.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from tagger.tagmodel import TagModel


class ModelRunner:
    """chunks ``[n ≤ batch_size, T]`` float32 → (probabilities ``[n, n_tags]``,
    embeddings ``[n, E]``) as float32 numpy arrays."""

    def __init__(self, model: TagModel, batch_size: int, compile: bool = False) -> None:
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.device = next(model.parameters()).device
        self.batch_size = batch_size
        self.compiled = False
        self.compile_error: str | None = None
        self._fn = self.model.scores
        chunk = model.card.chunk_samples if hasattr(model, "card") else 48000
        pin = self.device.type == "cuda"
        self._staging = torch.zeros(batch_size, chunk, pin_memory=pin)
        if compile:
            self._try_compile()

    def _try_compile(self) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn = torch.compile(self.model.scores, dynamic=False)
                with torch.inference_mode():
                    fn(self._staging.to(self.device))  # compile now, not inside the scan loop
            self._fn = fn
            self.compiled = True
        except Exception as e:  # no C++ compiler, unsupported platform…: eager still works
            self.compile_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]

    @torch.inference_mode()
    def __call__(self, chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = chunks.shape[0]
        if n > self.batch_size:
            raise ValueError(f"{n} chunks > batch size {self.batch_size}")
        staging = self._staging
        staging[:n].copy_(torch.from_numpy(chunks))
        if self.compiled:  # one fixed shape, so the compiled graph is never rebuilt
            staging[n:].zero_()
            x = staging.to(self.device, non_blocking=True)
        else:
            x = staging[:n].to(self.device, non_blocking=True)
        probs, emb = self._fn(x)
        return probs[:n].float().cpu().numpy(), emb[:n].float().cpu().numpy()
