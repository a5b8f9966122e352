"""Stage 4 on the CPU with OpenVINO: the model's exported graph (``tagger.model.export``) on
batches of chunks, with the runner interface of ``runner.ModelRunner`` (``submit(chunks)``
→ a batch whose ``result()`` is (probabilities, embeddings)), and no torch in the process.

The graph is compiled for one fixed batch shape (a partial last batch is padded with silence)
in fp32 (OpenVINO would otherwise pick bf16 on CPUs that have it, which is not the fp32 the
agreement figures are about) or int8 (FakeQuantize layers run as u8×i8 kernels).

``probe_int8`` checks on this machine, once, that the int8 graph still agrees with fp32: int8
kernels differ between processors (VNNI or not), so a calibration measured on one may not
hold on another.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import openvino as ov

from tagger.model.modelcard import CardModel, ModelCard

# the probe: one synthetic "track" of PROBE_CHUNKS chunks; int8 must keep ≥ PROBE_TOP5 of the
# fp32 top-5 tags of its mean and stay within PROBE_MAX_DP of each fp32 probability
PROBE_CHUNKS = 8
PROBE_TOP5 = 4
PROBE_MAX_DP = 0.05


class ReadyBatch:
    """A batch that ran when it was submitted; ``result()`` hands back its outputs."""

    def __init__(self, n: int, probs: np.ndarray, embs: np.ndarray) -> None:
        self.n, self._probs, self._embs = n, probs, embs

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return self._probs, self._embs


def compile_graph(xml: Path, batch_size: int, chunk_samples: int, threads: int) -> ov.CompiledModel:
    core = ov.Core()
    model = core.read_model(str(xml))
    model.reshape({model.inputs[0].get_any_name(): ov.PartialShape([batch_size, chunk_samples])})
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": 1}
    return core.compile_model(model, "CPU", config)


class OpenVINORunner:
    """chunks ``[n ≤ batch_size, T]`` float32 → probabilities and embeddings, on the CPU."""

    compiled = False  # torch.compile's flag, for the summary: never here
    compile_error: str | None = None

    def __init__(self, card: ModelCard, xml: Path, batch_size: int, threads: int, precision: str) -> None:
        self.model = CardModel(card)  # its card; the weights are in the graph, not in torch
        self.batch_size, self.precision, self.threads = batch_size, precision, threads
        self.host_s = 0.0
        self.device_s = 0.0  # on the CPU, the same as host_s
        self._compiled = compile_graph(xml, batch_size, card.chunk_samples, threads)
        self._request = self._compiled.create_infer_request()
        self._input = np.zeros((batch_size, card.chunk_samples), np.float32)

    def submit(self, chunks: np.ndarray) -> ReadyBatch:
        t0 = time.perf_counter()
        n = chunks.shape[0]
        if n > self.batch_size:
            raise ValueError(f"{n} chunks > batch size {self.batch_size}")
        self._input[:n] = chunks
        self._input[n:] = 0.0
        self._request.infer({0: self._input})
        probs = self._request.get_output_tensor(0).data[:n].copy()
        embs = self._request.get_output_tensor(1).data[:n].copy()
        spent = time.perf_counter() - t0
        self.host_s += spent
        self.device_s += spent
        return ReadyBatch(n, probs, embs)

    def __call__(self, chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.submit(chunks).result()


def probe_signal(sample_rate: int, chunk_samples: int, n: int = PROBE_CHUNKS) -> np.ndarray:
    """``[n, chunk_samples]``: a fixed, music-like signal (a bass line and chords of harmonic
    tones, noise-burst drums, a little hiss), loud and quiet passages, the same on every machine."""
    rng = np.random.default_rng(20261203)
    t = np.arange(n * chunk_samples) / sample_rate
    beat = 0.5  # 120 bpm
    step = (t // (4 * beat)).astype(int)
    roots = np.array([110.0, 146.8, 130.8, 98.0])[step % 4]
    x = np.zeros_like(t)
    for ratio, level in ((1.0, 0.5), (1.26, 0.3), (1.5, 0.3), (2.0, 0.2)):
        for h in range(1, 6):
            x += level / h * np.sin(2 * np.pi * roots * ratio * h * t + h)
    phase = (t % beat) / beat
    kick = np.sin(2 * np.pi * 55.0 * t) * np.exp(-phase * 12.0)
    hat = rng.standard_normal(len(t)) * np.exp(-((t + beat / 2) % beat) / beat * 30.0)
    x = 0.25 * x / 1.6 + 0.5 * kick + 0.15 * hat + 0.01 * rng.standard_normal(len(t))
    x *= np.repeat(np.linspace(1.0, 0.2, n), chunk_samples)  # quieter chunk by chunk
    return (0.8 * x / np.abs(x).max()).astype(np.float32).reshape(n, chunk_samples)


def compare_tracks(fp32: np.ndarray, other: np.ndarray) -> tuple[int, float]:
    """(top-5 tags shared, max |Δp|) of two tracks' mean probabilities ``[n_tags]``."""
    top = set(np.argsort(-fp32)[:5]) & set(np.argsort(-other)[:5])
    return len(top), float(np.abs(fp32 - other).max())


def cpu_id() -> str:
    """This processor's model and instruction set, hashed: what int8 kernels depend on."""
    text = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
        text += "".join(sorted(set(lines)))
    except OSError:
        text += platform.processor()
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def probe_int8(card: ModelCard, fp32_xml: Path, int8_xml: Path, threads: int) -> str | None:
    """None if int8 agrees with fp32 on the probe on this machine, else why not. The verdict is
    kept next to the int8 graph, per processor, so the probe runs once per machine."""
    verdict = int8_xml.with_name(f"{int8_xml.stem}.probe-{cpu_id()}.json")
    try:
        return json.loads(verdict.read_text())["disagrees"]
    except (OSError, ValueError, KeyError):
        pass
    x = probe_signal(card.sample_rate, card.chunk_samples)
    means = [compile_graph(xml, len(x), card.chunk_samples, threads)(x)[0].mean(axis=0)
             for xml in (fp32_xml, int8_xml)]
    shared, dp = compare_tracks(*means)
    disagrees = None
    if shared < PROBE_TOP5 or dp > PROBE_MAX_DP:
        disagrees = (f"int8 disagreed with fp32 on this processor (top-5 shared {shared}/5, max |Δp| {dp:.3f}); "
                     "running fp32")
    tmp = verdict.with_name(f".{verdict.name}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps({"disagrees": disagrees, "shared": shared, "max_dp": dp}))
        os.replace(tmp, verdict)
    except OSError:
        pass  # a read-only cache: the probe runs again next time
    return disagrees
