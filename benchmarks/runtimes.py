"""The CPU runtimes side by side on real chunks: PyTorch eager, OpenVINO and ONNX Runtime, fp32
and int8, chunks/s per batch size, the process's RSS growth, and agreement with PyTorch fp32.

    pip install onnxruntime onnx     # only for this comparison: tagger itself needs neither
    python benchmarks/runtimes.py [--model NAME] [--batch-sizes 8,16,32,64] [--chunks 128]

The chunks are real music: the first tracks of the corpus's small set, 16 chunks each, read as
a scan reads them. Both runtimes run the same graph (tagger.model.graph.ScoresGraph; int8: the
same fake-quantized graph, from the model's shipped calibration ``NAME.int8.json``): OpenVINO
converted from torch, ONNX Runtime from torch.onnx's export (QDQ nodes for int8, which it runs
as int8 kernels). Each runtime gets every core (intra-op threads = cores). Speed: the best of
3 passes over ``--chunks`` chunks, warm. Agreement: max |Δp| per chunk against PyTorch fp32
eager (median and worst over the chunks).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CORPUS = Path.home() / ".cache" / "tagger-corpus" / "real-music"
SMALL = ("wesnoth-1.16-music", "hyperrogue-music", "asc-music")


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def real_chunks(n: int) -> np.ndarray:
    from tagger.audio.decode import RESTART, ChunkReader
    from tagger.audio.discover import discover

    out: list[np.ndarray] = []
    for f in discover([str(CORPUS / p) for p in SMALL]).files:
        out += [b for b in ChunkReader(f.path, 16000, 48000, 16) if b is not RESTART]
        if sum(len(b) for b in out) >= n:
            break
    return np.concatenate(out)[:n]


def speed(fn, chunks: np.ndarray, batch: int) -> float:
    x = np.ascontiguousarray(chunks[:batch])
    fn(x)
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(0, len(chunks), batch):
            fn(x)
        best = max(best, (len(chunks) // batch * batch) / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="musicnn-vgg-mtt")
    ap.add_argument("--batch-sizes", default="8,16,32,64")
    ap.add_argument("--chunks", type=int, default=128)
    args = ap.parse_args()
    import onnxruntime as ort
    import openvino as ov
    import torch

    from tagger.model.graph import ScoresGraph
    from tagger.model.int8spec import read_int8_spec
    from tagger.model.modelfile import load_model
    from tagger.model.quantize import quantize_model

    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    chunks = real_chunks(args.chunks)
    model = load_model(args.model)
    spec = read_int8_spec(model.card)
    load = os.getloadavg()
    print(f"{args.model}, {len(chunks)} real chunks, {cores} cores (load average {load[0]:.2f} at the start); "
          f"torch {torch.__version__}, openvino {ov.__version__}, onnxruntime {ort.__version__}")
    with torch.inference_mode():
        ref = np.concatenate([model.scores(torch.from_numpy(chunks[i:i + 16]))[0].numpy()
                              for i in range(0, len(chunks), 16)])
    def eager(x):
        with torch.inference_mode():
            return [t.numpy() for t in model.scores(torch.from_numpy(x))]

    runs = {"pytorch eager fp32": eager}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "int8"):
            if precision == "int8" and spec is None:
                print("no int8 calibration for this model: int8 left out")
                continue
            graph = ScoresGraph(load_model(args.model)).eval()
            if precision == "int8":
                quantize_model(graph.model, spec)
            example = torch.from_numpy(chunks[:2])
            ov_model = ov.convert_model(graph, example_input=example, input=[ov.PartialShape([-1, 48000])])
            compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_NUM_THREADS": cores,
                                                                 "INFERENCE_PRECISION_HINT": "f32",
                                                                 "PERFORMANCE_HINT": "LATENCY"})
            runs[f"openvino {precision}"] = lambda x, c=compiled: c(x)
            onnx_path = os.path.join(tmp, f"{precision}.onnx")
            torch.onnx.export(graph, (example,), onnx_path, dynamo=False, opset_version=17, input_names=["x"],
                              dynamic_axes={"x": {0: "b"}})
            options = ort.SessionOptions()
            options.intra_op_num_threads = cores
            session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
            runs[f"onnxruntime {precision}"] = lambda x, s=session: s.run(None, {"x": x})
    print(f"| runtime | {' | '.join(f'batch {b}' for b in sizes)} | RSS growth at batch {sizes[-1]} | "
          "max |Δp| per chunk vs PyTorch fp32: median, worst |")
    print("|---|" + "---|" * (len(sizes) + 2))
    for name, fn in runs.items():
        before = rss_mib()
        rates = [speed(fn, chunks, b) for b in sizes]
        grown = rss_mib() - before
        out = np.concatenate([np.asarray(fn(np.ascontiguousarray(chunks[i:i + 16]))[0])
                              for i in range(0, len(chunks) // 16 * 16, 16)])
        dp = np.abs(out - ref[:len(out)]).max(axis=1)
        print(f"| {name} | {' | '.join(f'{r:.0f}' for r in rates)} | {grown:+.0f} MiB | "
              f"{np.median(dp):.2g}, {dp.max():.2g} |")


if __name__ == "__main__":
    main()
