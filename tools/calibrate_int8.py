"""Calibrate a model's int8 graph on real music and measure whether it keeps the tags.

    python tools/calibrate_int8.py [--model NAME] [--corpus DIR] [--method mse|percentile|minmax]
                                   [--skip LAYER,...] [--write] [--cache FILE.npz]

The corpus is ../shared/corpus/fetch-real-music.sh's (by default ~/.cache/tagger-corpus/
real-music). Every track is read as a scan reads it (16 evenly spaced 3 s chunks). The
calibration set is 4 chunks of each track of the packages outside the benchmark's small set
(wesnoth-1.16-music, hyperrogue-music, asc-music), so the small set is never calibrated on.
The input of each convolution and dense layer is sampled over it, and its int8 range chosen:
``minmax`` (the extremes), ``percentile`` (99.99 %), or ``mse`` (the clipping range with the
least quantization error on the samples, the default).

Then every track is scored by PyTorch fp32 (the reference) and by the OpenVINO int8 graph,
and each track's mean probabilities are compared: top-5 tags shared and max |Δp|. The rule
(tagger.model.int8spec): mean top-5 ≥ 4.5 and median max |Δp| ≤ 0.03, on the whole corpus and
on the held-out small set. ``--write`` stores the ranges and figures next to the model file
(``NAME.int8.json``), where the scan finds them: when the rule passes, int8 becomes the
model's default on OpenVINO if it is also ≥ 1.2× as fast as fp32 there (measured on the same
chunks right after).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CORPUS = Path.home() / ".cache" / "tagger-corpus" / "real-music"
SMALL = ("wesnoth-1.16-music", "hyperrogue-music", "asc-music")  # fetch-real-music.sh --small
CHUNKS = 16
CALIBRATION_CHUNKS = 4  # per calibration track
SAMPLES_PER_BATCH = 200_000  # activation values kept per layer and batch


def _read(path: str) -> np.ndarray | None:
    from tagger.audio.decode import RESTART, ChunkReader

    blocks: list[np.ndarray] = []
    try:
        for block in ChunkReader(path, 16000, 48000, CHUNKS):
            blocks = [] if block is RESTART else blocks + [block]
    except Exception:
        return None
    return np.concatenate(blocks) if blocks else None


def read_corpus(corpus: Path, cache: Path | None) -> dict[str, np.ndarray]:
    """relative path → its 16 chunks ``[n, 48000]``, as a scan reads them."""
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    from tagger.audio.discover import discover

    files = [f.path for f in discover([str(corpus)]).files]
    with ProcessPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        chunks = dict(zip(files, pool.map(_read, files, chunksize=4)))
    tracks = {os.path.relpath(p, corpus): c for p, c in chunks.items() if c is not None}
    if cache is not None:
        np.savez(cache, **tracks)
    return tracks


def collect_samples(model, chunks: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    """A random sample of each quantizable layer's input values over ``chunks``."""
    import torch

    from tagger.model.graph import ScoresGraph
    from tagger.model.quantize import quantizable

    graph = ScoresGraph(model).eval()
    rng = np.random.default_rng(0)
    samples: dict[str, list[np.ndarray]] = {}

    def hook(name):
        def keep(module, inputs):
            x = inputs[0].detach().reshape(-1).numpy()
            pick = rng.integers(0, len(x), min(len(x), SAMPLES_PER_BATCH))
            # the extremes too: minmax needs them, and a sample may miss them
            samples.setdefault(name, []).append(np.concatenate([x[pick], [x.min(), x.max()]]))
        return keep

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in quantizable(graph.model).items()]
    with torch.inference_mode():
        for i in range(0, len(chunks), batch):
            graph(torch.from_numpy(chunks[i:i + batch]))
    for h in handles:
        h.remove()
    return {n: np.concatenate(v) for n, v in samples.items()}


def _qdq_error(x: np.ndarray, low: float, high: float) -> float:
    low, high = min(low, 0.0), max(high, 1e-6)
    scale = (high - low) / 255.0
    zero = np.round(-low / scale)
    q = np.clip(np.round(x / scale) + zero, 0, 255)
    return float(np.mean(((q - zero) * scale - x) ** 2))


def choose_range(x: np.ndarray, method: str) -> list[float]:
    low, high = float(x.min()), float(x.max())
    if method == "minmax":
        return [low, high]
    if method == "percentile":
        return [float(np.percentile(x, 0.01)) if low < 0 else low, float(np.percentile(x, 99.99))]
    best = None
    for a in np.linspace(0.05, 1.0, 40):  # clip the high end (activations' long tail) …
        for b in (1.0, 0.75, 0.5, 0.25):  # … and the negative end (after a batch norm)
            err = _qdq_error(x, low * b, high * a)
            if best is None or err < best[0]:
                best = (err, [low * b, high * a])
    return best[1]


def track_means(scores: np.ndarray, tracks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for name, c in tracks.items():
        out[name] = scores[start:start + len(c)].mean(axis=0)
        start += len(c)
    return out


def agreement(ref: dict[str, np.ndarray], other: dict[str, np.ndarray], names) -> dict[str, float]:
    from tagger.engine.ovrunner import compare_tracks

    shared, dps = zip(*(compare_tracks(ref[n], other[n]) for n in names))
    return {"tracks": len(shared), "top5": float(np.mean(shared)), "median_dp": float(np.median(dps)),
            "p95_dp": float(np.percentile(dps, 95)), "max_dp": float(np.max(dps)),
            "min_top5": int(np.min(shared))}


def run_torch(model, chunks: np.ndarray, batch: int = 32) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return np.concatenate([model.scores(torch.from_numpy(chunks[i:i + batch]))[0].numpy()
                               for i in range(0, len(chunks), batch)])


def run_openvino(xml: Path, chunks: np.ndarray, threads: int, batch: int = 16) -> np.ndarray:
    from tagger.engine.ovrunner import compile_graph

    compiled = compile_graph(xml, batch, chunks.shape[1], threads)
    out = []
    for i in range(0, len(chunks), batch):
        x = np.zeros((batch, chunks.shape[1]), np.float32)
        part = chunks[i:i + batch]
        x[:len(part)] = part
        out.append(compiled(x)[0][:len(part)])
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="musicnn-vgg-mtt")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--method", default="mse", choices=("mse", "percentile", "minmax"))
    ap.add_argument("--skip", default="", help="layers to leave in fp32, comma-separated (module names)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep the decoded chunks in this .npz (and PyTorch's scores of them beside it)")
    ap.add_argument("--write", action="store_true", help="write NAME.int8.json next to the model file")
    args = ap.parse_args()

    import torch

    from tagger.model.export import export_openvino
    from tagger.model.int8spec import MIN_SPEEDUP, Int8Spec, spec_path
    from tagger.model.modelfile import load_model

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    tracks = read_corpus(args.corpus, args.cache)
    names = sorted(tracks)
    small = [n for n in names if n.split(os.sep)[0] in SMALL]
    calib_names = [n for n in names if n not in small]
    print(f"{len(names)} tracks ({len(small)} in the small set), {sum(len(tracks[n]) for n in names)} chunks, "
          f"read in {time.perf_counter() - t0:.0f} s")
    model = load_model(args.model)
    card = model.card
    step = CHUNKS // CALIBRATION_CHUNKS
    calib = np.concatenate([tracks[n][::step][:CALIBRATION_CHUNKS] for n in calib_names])
    samples = collect_samples(model, calib)
    skip = {s for s in args.skip.split(",") if s}
    ranges = {n: choose_range(x, args.method) for n, x in samples.items() if n not in skip}
    for n, (lo, hi) in ranges.items():
        print(f"  {n}: [{lo:.3f}, {hi:.3f}] of [{samples[n].min():.3f}, {samples[n].max():.3f}]")
    spec = Int8Spec(card.sha256, ranges, calibration={
        "method": args.method, "tracks": len(calib_names), "chunks": len(calib), "fp32_layers": sorted(skip),
        "corpus": "fetch-real-music.sh packages outside --small"})
    everything = np.concatenate([tracks[n] for n in names])
    t1 = time.perf_counter()
    ref_cache = args.cache.with_suffix(f".fp32-{card.sha256[:12]}.npy") if args.cache else None
    t_ref = None
    if ref_cache is not None and ref_cache.is_file():
        ref_scores = np.load(ref_cache)
    else:
        ref_scores = run_torch(model, everything)
        if ref_cache is not None:
            np.save(ref_cache, ref_scores)
        t_ref = time.perf_counter() - t1
    ref = track_means(ref_scores, {n: tracks[n] for n in names})
    with tempfile.TemporaryDirectory() as tmp:
        xml, fp32_xml = Path(tmp) / "int8.xml", Path(tmp) / "fp32.xml"
        export_openvino(card, "int8", spec, xml)
        export_openvino(card, "fp32", None, fp32_xml)
        t1 = time.perf_counter()
        got = track_means(run_openvino(xml, everything, threads), {n: tracks[n] for n in names})
        t_int8 = time.perf_counter() - t1
        t1 = time.perf_counter()
        run_openvino(fp32_xml, everything, threads)  # right after int8: the same load on the cores
        t_fp32 = time.perf_counter() - t1
    spec.speedup = t_fp32 / t_int8
    whole, held_out = agreement(ref, got, names), agreement(ref, got, small)
    print(f"torch fp32 {f'{len(everything) / t_ref:.0f} chunks/s' if t_ref else '(scores from the cache)'}, "
          f"OpenVINO int8 {len(everything) / t_int8:.0f} chunks/s, fp32 {len(everything) / t_fp32:.0f} "
          f"(int8 {spec.speedup:.2f}×), load average {os.getloadavg()[0]:.1f}")
    for label, a in (("whole corpus", whole), ("small set (held out)", held_out)):
        print(f"{label}: {a['tracks']} tracks, top-5 shared {a['top5']:.2f}/5 (worst {a['min_top5']}), "
              f"max |Δp| median {a['median_dp']:.4f}, 95th pct {a['p95_dp']:.4f}, worst {a['max_dp']:.4f}")
    spec.top5, spec.median_dp = min(whole["top5"], held_out["top5"]), max(whole["median_dp"], held_out["median_dp"])
    spec.evaluation = {"whole": whole, "small_held_out": held_out, "chunks_per_track": CHUNKS,
                       "reference": "PyTorch fp32 eager", "runtime": "OpenVINO"}
    print(f"rule (top-5 ≥ 4.5, median max |Δp| ≤ 0.03): {'passes' if spec.passes else 'fails'}; "
          f"int8 the default on OpenVINO (passes and ≥ {MIN_SPEEDUP}× fp32): {'yes' if spec.default else 'no'}")
    if args.write:
        spec.save(spec_path(card))
        print(f"wrote {spec_path(card)}")


if __name__ == "__main__":
    main()
