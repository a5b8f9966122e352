"""Stage 4, run: the model on batches of chunks, as fast as the device allows.

CPU (measured on the built-in VGG model, 2 cores, benchmarks/RESULTS.md): eager NCHW fp32 18
chunks/s, channels_last fp32 48, torch.compile + channels_last 84, all within 7e-5 of eager
fp32; bf16 autocast is slower on CPUs without bf16 units. So: channels_last always, compile for
long scans, and each batch runs when it is submitted.

CUDA: a batch is copied into one of two pinned host buffers, sent with a non-blocking copy,
run, and its results are copied back into pinned memory without blocking; an event marks
when they are there. ``submit`` returns at once, so the caller packs the next batch (and the
decoders keep decoding) while the GPU works, and reads a result one batch later. fp32 by
default; ``precision="fp16"`` autocasts (RESULTS.md: the precision rule).

Batches are padded to one fixed size when compiled, so the graph is never rebuilt for the last.
"""

from __future__ import annotations

import contextlib
import time
import warnings

import numpy as np
import torch

from tagger.errors import TaggerError
from tagger.model.tagmodel import TagModel

BUFFERS = 2  # pinned staging buffers on CUDA: one being filled while the other is in flight


class PendingBatch:
    """A submitted batch; ``result()`` waits for it: (probabilities ``[n, n_tags]``,
    embeddings ``[n, E]``), float32 numpy arrays that the caller owns."""

    def __init__(self, n: int, probs: torch.Tensor, embs: torch.Tensor, done: torch.cuda.Event | None = None,
                 started: torch.cuda.Event | None = None, runner: ModelRunner | None = None,
                 buffer: tuple[int, int] | None = None) -> None:
        self.n, self._probs, self._embs, self._done, self._started = n, probs, embs, done, started
        self._runner, self._buffer = runner, buffer

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self._done is not None:
            k, generation = self._buffer
            if self._runner._generation[k] != generation:  # a caller kept > BUFFERS batches in flight
                raise RuntimeError("result() of a batch whose output buffer was already reused")
            t0 = time.perf_counter()
            self._done.synchronize()
            self._runner.host_s += time.perf_counter() - t0
            self._runner.device_s += self._started.elapsed_time(self._done) / 1000.0
        return self._probs[:self.n].numpy().copy(), self._embs[:self.n].numpy().copy()


class ModelRunner:
    """chunks ``[n ≤ batch_size, T]`` float32 → probabilities and embeddings. ``submit`` for
    the asynchronous path, calling the runner for the synchronous one."""

    def __init__(self, model: TagModel, batch_size: int, compile: bool = False, precision: str = "fp32") -> None:
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.device = next(model.parameters()).device
        self.cuda = self.device.type == "cuda"
        self.batch_size = batch_size
        self.precision = precision
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"unknown precision {precision!r}")
        if precision == "fp16" and not self.cuda:
            raise ValueError("fp16 runs on CUDA only")
        self.compiled = False
        self.compile_error: str | None = None
        self.host_s = 0.0  # time the caller spent in submit() and waiting in result()
        self.device_s = 0.0  # CUDA: time the GPU spent on batches; CPU: the same as host_s
        self._fn = self.model.scores
        chunk = model.card.chunk_samples if hasattr(model, "card") else 48000
        n_buffers = BUFFERS if self.cuda else 1
        self._staging = [torch.zeros(batch_size, chunk, pin_memory=self.cuda) for _ in range(n_buffers)]
        self._copied = [None] * n_buffers  # CUDA events: a buffer may be refilled once its copy is done
        self._generation = [0] * n_buffers  # which submit last used each output buffer
        self._next = 0
        if self.cuda:
            emb = model.embedding_size
            with torch.inference_mode():
                n_tags = model.head(torch.zeros(1, emb, device=self.device)).shape[1]
            self._out = [(torch.zeros(batch_size, n_tags, pin_memory=True),
                          torch.zeros(batch_size, emb, pin_memory=True)) for _ in range(n_buffers)]
        if compile:
            self._try_compile()

    def _try_compile(self) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn = torch.compile(self.model.scores, dynamic=False)
                with torch.inference_mode(), self._autocast(), self._on_device():
                    fn(self._staging[0].to(self.device))  # compile now, not inside the scan loop
            self._fn = fn
            self.compiled = True
        except Exception as e:  # no C++ compiler, unsupported platform…: eager still works
            self.compile_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]

    def _on_device(self):
        return torch.cuda.device(self.device) if self.cuda else contextlib.nullcontext()

    def _autocast(self):
        if self.precision == "fp16":
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast(self.device.type, enabled=False)

    @torch.inference_mode()
    def submit(self, chunks: np.ndarray) -> PendingBatch:
        t0 = time.perf_counter()
        n = chunks.shape[0]
        if n > self.batch_size:
            raise ValueError(f"{n} chunks > batch size {self.batch_size}")
        k = self._next
        self._next = (k + 1) % len(self._staging)
        if self._copied[k] is not None:
            self._copied[k].synchronize()  # its previous host→device copy must be finished
        staging = self._staging[k]
        staging[:n].copy_(torch.from_numpy(chunks))
        if self.compiled:  # one fixed shape, so the compiled graph is never rebuilt
            staging[n:].zero_()
            rows = staging
        else:
            rows = staging[:n]
        if not self.cuda:
            with self._autocast():
                probs, embs = self._fn(rows)
            pending = PendingBatch(n, probs.float(), embs.float())
            spent = time.perf_counter() - t0
            self.host_s += spent
            self.device_s += spent
            return pending
        # events and copies on this device's current stream: with cuda:1 the process's current
        # device is still cuda:0, and events recorded there would complete at once
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device)
            started, copied, done = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(),
                                     torch.cuda.Event(enable_timing=True))
            started.record(stream)
            x = rows.to(self.device, non_blocking=True)
            copied.record(stream)
            self._copied[k] = copied
            try:
                with self._autocast():
                    probs, embs = self._fn(x)
            except torch.cuda.OutOfMemoryError:
                raise TaggerError(None, f"the GPU ran out of memory for a batch of {self.batch_size} chunks",
                                  "use a smaller --batch-size") from None
            out_p, out_e = self._out[k]
            out_p[:n].copy_(probs[:n].float(), non_blocking=True)
            out_e[:n].copy_(embs[:n].float(), non_blocking=True)
            done.record(stream)
        self.host_s += time.perf_counter() - t0
        self._generation[k] += 1
        return PendingBatch(n, out_p, out_e, done, started, self, (k, self._generation[k]))

    def __call__(self, chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.submit(chunks).result()
