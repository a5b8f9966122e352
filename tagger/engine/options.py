"""What a scan is asked to do (no torch here: the command line imports it to parse options)."""

from __future__ import annotations

from dataclasses import dataclass

from tagger.model.modelcard import DEFAULT_MODEL

__all__ = ["DEFAULT_CHUNKS", "DEFAULT_MODEL", "DEFAULT_MODELS", "PRECISIONS", "RUNTIMES", "SCAN_ENGINES",
           "ScanOptions"]

DEFAULT_CHUNKS = 16
# what `tagger scan` runs without --model, on the CPU and on CUDA alike: the MagnaTagATune and the
# Million Song Dataset VGG models, each file decoded once (README, "Which models a scan runs":
# on 2 CPU cores both take 1.5× the time of one, and adding the second later costs a second
# decode of every file; the genres and moods people ask for are MSD's)
DEFAULT_MODELS: tuple[str, ...] = (DEFAULT_MODEL, "musicnn-vgg-msd")
PRECISIONS = ("auto", "fp32", "int8", "fp16")  # int8: OpenVINO on the CPU; fp16: CUDA
RUNTIMES = ("auto", "openvino", "torch")  # auto: OpenVINO on the CPU, torch on CUDA (engine.runtime)
SCAN_ENGINES = ("local", "ray")  # which scan engine runs the stages: this machine's, or Ray Data's


@dataclass
class ScanOptions:
    models: tuple[str, ...] = DEFAULT_MODELS  # built-in names or model files; each file is decoded once for all
    device: str = "auto"
    batch_size: int | None = None  # chunks per model batch; None: chosen for the runtime (engine.runtime)
    workers: int | None = None  # decode processes; None: chosen from the CPU count and device
    threads: int | None = None  # torch threads in this process; None: chosen for the device
    chunks: int | None = DEFAULT_CHUNKS  # None: every chunk
    force: bool = False
    dry_run: bool = False
    include_hidden: bool = False
    compile: str = "auto"  # auto | yes | no
    precision: str = "auto"  # auto | fp32 | int8 (OpenVINO) | fp16 (CUDA); RESULTS.md has the rules
    runtime: str = "auto"  # auto | openvino | torch
    scan_engine: str = "local"  # local (this machine's decode processes) | ray (a Ray Data pipeline)
    ray_address: str | None = None  # None: start a local Ray; "auto" or host:port: join a cluster
    ray_actors: int | None = None  # model actors; None: one per GPU on a GPU cluster, else one
    ray_gpus: float | None = None  # GPUs per model actor; None: 1 where the cluster has GPUs, else 0
    verbose: bool = False  # the engines' own logs (Ray's) on the terminal too
