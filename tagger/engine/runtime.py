"""Which inference runtime, precision, batch size and thread count run a model, and the one
place that loads a model for a scan (``open_runner``). Importing this module imports neither
torch nor OpenVINO: a scan with nothing to do never pays for them.

    runtime auto   CUDA: torch (the asynchronous runner); CPU: OpenVINO
    precision auto torch: fp32; OpenVINO: int8 where the model's calibration passes the rule
                   and int8 was measured faster (tagger.model.int8spec) and the probe agrees on
                   this processor, else fp32

Measured on 2 cores (benchmarks/RESULTS.md, "CPU runtime"): OpenVINO beat ONNX Runtime in
fp32 and in int8, and its int8 VGG model is ~5× PyTorch eager. The batch size on OpenVINO is
the smallest at which it runs at full speed: activations grow with the batch (at 64, the
scanning process peaked above 2 GB), the speed does not.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tagger.engine.options import ScanOptions
from tagger.errors import UsageError
from tagger.model.modelcard import CardModel, ModelCard

if TYPE_CHECKING:
    from tagger.engine.results import EngineStats

RUNTIMES = ("auto", "openvino", "torch")
DEFAULT_BATCH = {"openvino": 16, "torch": 64}
COMPILE_MIN_CHUNKS = 4000  # torch on CPU: below this a 5–25 s compile costs more than it saves


class Pending(Protocol):
    n: int

    def result(self) -> tuple[np.ndarray, np.ndarray]: ...


class Runner(Protocol):
    """What the engine needs of a runner (``runner.ModelRunner``, ``ovrunner.OpenVINORunner``):
    ``model.card``, ``model.embedding_size``, ``batch_size``, ``submit``, and the seconds spent."""
    model: CardModel  # or a TagModel: anything with .card and .embedding_size
    batch_size: int
    host_s: float
    device_s: float

    def submit(self, chunks: np.ndarray) -> Pending: ...


def check_options(options: ScanOptions) -> None:
    """The option mistakes that need no torch to see, raised before anything is opened."""
    if options.runtime not in RUNTIMES:
        raise UsageError(None, f"unknown runtime {options.runtime!r}", f"use {', '.join(RUNTIMES)}")
    device = options.device
    if options.runtime == "openvino" and device not in ("auto", "cpu"):
        raise UsageError(None, "--runtime openvino runs the model on the CPU", "use --device cpu or --runtime torch")
    if options.precision == "fp16" and (device == "cpu" or options.runtime == "openvino"):
        raise UsageError(None, "--precision fp16 needs a CUDA device", "use --precision fp32 on the CPU")
    if options.precision == "int8" and options.runtime == "torch":
        raise UsageError(None, "--precision int8 runs on OpenVINO", "use --runtime openvino (or auto) on the CPU")


def _cuda_possible() -> bool:
    """False where there is certainly no NVIDIA driver (so 'auto' is the CPU without importing
    torch); True where torch has to be asked."""
    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version")
    return sys.platform != "darwin"


def resolve_device_name(device: str) -> str:
    """``auto`` → ``cuda`` or ``cpu``; other names checked (imports torch unless it is the CPU)."""
    if device == "cpu" or (device == "auto" and not _cuda_possible()):
        return "cpu"
    from tagger.engine.inference import resolve_device

    return str(resolve_device(device))


def open_runner(card: ModelCard, options: ScanOptions, n_files: int, stats: EngineStats) -> Runner:
    """A runner for ``card``'s model as ``options`` ask, for a scan of ``n_files`` files;
    ``stats`` learns the device, runtime, precision, threads and any note for the summary."""
    check_options(options)
    device = resolve_device_name(options.device)
    cpu = device == "cpu"
    if options.precision == "fp16" and cpu:
        raise UsageError(None, "--precision fp16 needs a CUDA device", "use --precision fp32 on the CPU")
    runtime = options.runtime if options.runtime != "auto" else "openvino" if cpu else "torch"
    if runtime == "openvino" and not cpu:
        raise UsageError(None, "--runtime openvino runs the model on the CPU", "use --device cpu or --runtime torch")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # CPU: the model is the bottleneck and decoding needs a fraction of a core per track, so the
    # model gets every core. CUDA: the main process only feeds the GPU; its threads would fight
    # the decode workers for the cores (RESULTS.md), so it keeps one.
    threads = options.threads or (cores if cpu else 1)
    batch_size = options.batch_size or DEFAULT_BATCH[runtime]
    stats.device, stats.runtime, stats.threads = device, runtime, threads
    if runtime == "openvino":
        return _openvino_runner(card, options, batch_size, threads, stats)
    return _torch_runner(card, options, device, batch_size, threads, n_files, stats)


def _torch_runner(card: ModelCard, options: ScanOptions, device: str, batch_size: int, threads: int,
                  n_files: int, stats: EngineStats) -> Runner:
    import torch

    from tagger.engine.runner import ModelRunner
    from tagger.model.modelfile import load_model

    precision = "fp32" if options.precision == "auto" else options.precision
    per_track = options.chunks or 80  # a 4-minute track when every chunk is used
    compile_ = options.compile == "yes" or (
        options.compile == "auto" and device == "cpu" and n_files * per_track >= COMPILE_MIN_CHUNKS)
    torch.set_num_threads(threads)
    runner = ModelRunner(load_model(card.path, device), batch_size, compile=compile_, precision=precision)
    stats.precision, stats.compiled, stats.compile_error = precision, runner.compiled, runner.compile_error
    return runner


def _openvino_runner(card: ModelCard, options: ScanOptions, batch_size: int, threads: int,
                     stats: EngineStats) -> Runner:
    from tagger.engine.ovrunner import OpenVINORunner, probe_int8
    from tagger.model.export import ensure_graph
    from tagger.model.int8spec import read_int8_spec

    t0 = time.perf_counter()
    spec = read_int8_spec(card)
    precision = options.precision
    if precision == "int8" and spec is None:
        raise UsageError(None, f"{card.name} has no int8 calibration",
                         "run tools/calibrate_int8.py for it, or use --precision fp32")
    if precision == "auto":
        precision = "int8" if spec is not None and spec.default else "fp32"
    fp32_xml, exported = ensure_graph(card, "fp32")
    xml = fp32_xml
    if precision == "int8":
        int8_xml, exported_int8 = ensure_graph(card, "int8", spec)
        exported = exported or exported_int8
        disagrees = probe_int8(card, fp32_xml, int8_xml, threads)
        if disagrees:
            stats.notes.append(disagrees)
            precision = "fp32"
        else:
            xml = int8_xml
    if exported:
        stats.notes.append(f"exported {card.name} to OpenVINO once, into the cache "
                           f"({time.perf_counter() - t0:.0f} s; later scans start at once)")
    stats.precision = precision
    return OpenVINORunner(card, xml, batch_size, threads, precision)
