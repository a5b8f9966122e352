"""The OpenVINO graph of a model file, exported from its safetensors weights at first use into
the user's cache, and found there without torch afterwards.

    ~/.cache/tagger/graphs/<sha256[:16]>-openvino<version>-g<GRAPH_VERSION>-<precision>.xml/.bin

The key holds the model's hash (a changed model file is exported again), the runtime's version
(a newer OpenVINO re-exports rather than trusting an older IR), this module's graph version
(bumped when the export changes) and the precision (int8 also the calibration's digest). No
graph is ever downloaded. Exporting imports torch and takes seconds; it is atomic (written
under a temporary name, then renamed), so scanners sharing a cache never read half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tagger.errors import ModelFileError
from tagger.model.int8spec import Int8Spec
from tagger.model.modelcard import ModelCard

GRAPH_VERSION = 1  # bump when ScoresGraph, quantize or this export change what a graph computes


def cache_dir() -> Path:
    """Where exported graphs live: $TAGGER_CACHE_DIR, else the platform's user cache."""
    if os.environ.get("TAGGER_CACHE_DIR"):
        return Path(os.environ["TAGGER_CACHE_DIR"]) / "graphs"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tagger")) / "graphs"


def graph_key(card: ModelCard, runtime_version: str, precision: str, spec: Int8Spec | None = None) -> str:
    """The cache key of ``card``'s graph in one runtime version and precision."""
    if precision == "int8" and spec is None:
        raise ValueError("an int8 graph needs the model's int8 calibration")
    tail = f"int8-{spec.digest}" if precision == "int8" else precision
    return f"{card.sha256[:16]}-openvino{runtime_version}-g{GRAPH_VERSION}-{tail}"


def openvino_version() -> str:
    from importlib.metadata import version

    return version("openvino")  # without importing openvino itself


def graph_path(card: ModelCard, precision: str, spec: Int8Spec | None = None) -> Path:
    return cache_dir() / f"{graph_key(card, openvino_version(), precision, spec)}.xml"


def ensure_graph(card: ModelCard, precision: str, spec: Int8Spec | None = None) -> tuple[Path, bool]:
    """(the cached graph's .xml, whether it was exported now): exported if not there yet."""
    path = graph_path(card, precision, spec)
    if path.is_file() and path.with_suffix(".bin").is_file():
        return path, False
    export_openvino(card, precision, spec, path)
    return path, True


def export_openvino(card: ModelCard, precision: str, spec: Int8Spec | None, path: Path) -> None:
    """Build ``card``'s model from its file, as a ScoresGraph (int8: fake-quantized by
    ``spec``), convert it to OpenVINO and save it at ``path`` (.xml + .bin) atomically."""
    import openvino as ov
    import torch

    from tagger.model.graph import ScoresGraph
    from tagger.model.modelfile import load_model
    from tagger.model.quantize import quantize_model

    graph = ScoresGraph(load_model(card.path, "cpu")).eval()
    if precision == "int8":
        quantize_model(graph.model, spec)
    example = torch.zeros(2, card.chunk_samples)
    try:
        with torch.inference_mode():
            model = ov.convert_model(graph, example_input=example,
                                     input=[ov.PartialShape([-1, card.chunk_samples])])
    except Exception as e:  # the converter's own errors are many and undocumented
        raise ModelFileError(card.path, f"could not be converted to an OpenVINO graph ({type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})",
                             "use --runtime torch") from None
    model.outputs[0].get_tensor().set_names({"probabilities"})
    model.outputs[1].get_tensor().set_names({"embeddings"})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        tmp_xml = Path(tmp) / path.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)  # fp16 weights would change fp32's scores
        os.replace(tmp_xml.with_suffix(".bin"), path.with_suffix(".bin"))  # the .bin first: the .xml says "ready"
        os.replace(tmp_xml, path)
