"""The CPU inference runtime (OpenVINO) against PyTorch: the exported graph scores what the
model scores, int8 stays within the probe's bounds or falls back to fp32, and the cache key
follows the model, the runtime version and the precision."""

import json
import shutil

import numpy as np
import pytest
from conftest import ROOT, music_like

from tagger.audio.decode import RESTART, ChunkReader
from tagger.engine.options import ScanOptions
from tagger.engine.ovrunner import PROBE_MAX_DP, OpenVINORunner, compare_tracks, probe_signal
from tagger.engine.results import EngineStats
from tagger.engine.runtime import open_runner
from tagger.model import export
from tagger.model.int8spec import Int8Spec, read_int8_spec, spec_path
from tagger.model.modelcard import read_card

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A graph cache of this module's own (the first export of each graph happens here)."""
    path = tmp_path_factory.mktemp("graph-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAGGER_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def chunks():
    """Real-looking audio: the example clips read as a scan reads them, and a generated one."""
    out = []
    for path in sorted(EXAMPLES.glob("*.*")):
        if path.suffix in (".ogg", ".flac", ".mp3"):
            out += [b for b in ChunkReader(path, 16000, 48000, 4) if b is not RESTART]
    out.append(music_like(6.0, 16000, 5).reshape(2, 48000))
    return np.concatenate(out)


def torch_scores(model, chunks):
    import torch

    with torch.inference_mode():
        probs, embs = model.scores(torch.from_numpy(chunks))
    return probs.numpy(), embs.numpy()


def test_scores_graph_is_the_model_in_torch(vgg, chunks):
    import torch

    from tagger.model.graph import ScoresGraph

    with torch.inference_mode():
        probs, embs = ScoresGraph(vgg)(torch.from_numpy(chunks))
    want_p, want_e = torch_scores(vgg, chunks)
    # a mel value on a float16 rounding boundary may round the other way: ~1e-5 in a probability
    np.testing.assert_allclose(probs.numpy(), want_p, atol=5e-5, rtol=0)
    np.testing.assert_allclose(embs.numpy(), want_e, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("name", ["musicnn-vgg-mtt", "musicnn-mtt"])
def test_openvino_fp32_scores_what_pytorch_scores(cache, chunks, name):
    from tagger.model.modelfile import load_model

    card = read_card(name)
    xml, exported = export.ensure_graph(card, "fp32")
    assert exported and xml.is_file() and xml.parent.parent == cache
    runner = OpenVINORunner(card, xml, 5, 2, "fp32")
    got = [runner(chunks[i:i + 5]) for i in range(0, len(chunks), 5)]  # the last batch is partial
    probs, embs = np.concatenate([p for p, _ in got]), np.concatenate([e for _, e in got])
    want_p, want_e = torch_scores(load_model(name), chunks)
    assert probs.shape == want_p.shape and embs.shape == want_e.shape
    # musicnn's front-end rounds the mel power to float16: where OpenVINO's sums differ from
    # torch's in the last bit, a value on a rounding boundary goes the other way (~4e-4 in a
    # probability, RESULTS.md); a wrong graph is off by orders of magnitude more
    np.testing.assert_allclose(probs, want_p, atol=1e-3, rtol=0)
    np.testing.assert_allclose(embs, want_e, atol=1e-2, rtol=1e-2)
    assert runner.host_s > 0


def test_cache_key_follows_model_runtime_and_precision(cache, tmp_path):
    card = read_card("musicnn-vgg-mtt")
    spec = read_int8_spec(card) or Int8Spec(card.sha256, {"classifier": [0.0, 1.0]})
    keys = {export.graph_key(card, "2026.4.1", "fp32"), export.graph_key(card, "2026.5.0", "fp32"),
            export.graph_key(card, "2026.4.1", "int8", spec)}
    other = Int8Spec(card.sha256, {"classifier": [0.0, 2.0]})
    keys.add(export.graph_key(card, "2026.4.1", "int8", other))
    retrained = read_card("musicnn-mtt")
    keys.add(export.graph_key(retrained, "2026.4.1", "fp32"))
    assert len(keys) == 5
    assert card.sha256[:16] in export.graph_key(card, "2026.4.1", "fp32")
    # exported once, then found: a second scan does not export again
    first, _ = export.ensure_graph(card, "fp32")
    again, exported = export.ensure_graph(card, "fp32")
    assert again == first and not exported
    # a model file changed in place (same name, other weights) gets a graph of its own
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(card.path), "numpy") as f:
        meta = {**f.metadata(), "note": "saved again"}
    copy = tmp_path / "musicnn-vgg-mtt.safetensors"
    save_file(load_file(str(card.path)), str(copy), metadata=meta)
    assert export.graph_path(read_card(copy), "fp32") != first


@pytest.fixture()
def model_copy(tmp_path):
    """The built-in VGG model as a user's model file, with its int8 calibration beside it."""
    card = read_card("musicnn-vgg-mtt")
    path = tmp_path / "my-vgg.safetensors"
    shutil.copy(card.path, path)
    spec = read_int8_spec(card)
    if spec is None:
        pytest.skip("musicnn-vgg-mtt has no int8 calibration (tools/calibrate_int8.py)")
    spec.save(spec_path(read_card(path)))
    return path, spec


def test_int8_keeps_the_tags_of_real_looking_audio(cache, model_copy, chunks, vgg):
    path, spec = model_copy
    card = read_card(path)
    assert spec.passes and spec.default
    stats = EngineStats()
    runner = open_runner(card, ScanOptions(models=(str(path),), device="cpu"), 1, stats)
    assert (stats.runtime, stats.precision, stats.notes[1:]) == ("openvino", "int8", [])
    for x in (chunks[:8], chunks[8:16], probe_signal(16000, 48000)):  # three "tracks"
        want = torch_scores(vgg, x)[0].mean(axis=0)
        got = np.concatenate([runner(x[i:i + 16])[0] for i in range(0, len(x), 16)]).mean(axis=0)
        shared, dp = compare_tracks(want, got)
        assert shared >= 4 and dp <= PROBE_MAX_DP, (shared, dp)


def test_int8_that_disagrees_on_this_machine_falls_back_to_fp32(cache, model_copy):
    path, spec = model_copy
    card = read_card(path)
    # a calibration made for other activations: every layer's range a tenth of what it should be
    bad = Int8Spec(card.sha256, {k: [lo / 10, hi / 10] for k, (lo, hi) in spec.ranges.items()},
                   top5=spec.top5, median_dp=spec.median_dp, speedup=spec.speedup)
    bad.save(spec_path(card))
    stats = EngineStats()
    runner = open_runner(card, ScanOptions(models=(str(path),), device="cpu"), 1, stats)
    assert stats.precision == runner.precision == "fp32"
    assert any(n.startswith("int8 disagreed with fp32 on this processor") for n in stats.notes), stats.notes
    verdicts = list(cache.glob("graphs/*.probe-*.json"))
    assert any(json.loads(v.read_text())["disagrees"] for v in verdicts)


def test_int8_calibration_of_other_weights_is_ignored(model_copy):
    path, spec = model_copy
    spec.model_sha256 = "0" * 64
    spec.save(spec_path(read_card(path)))
    assert read_int8_spec(read_card(path)) is None


def test_int8_is_the_default_only_where_it_keeps_the_tags_and_pays():
    card = read_card("musicnn-vgg-mtt")
    good = Int8Spec(card.sha256, {}, top5=4.8, median_dp=0.02, speedup=2.0)
    assert good.passes and good.default
    assert not Int8Spec(card.sha256, {}, top5=4.4, median_dp=0.02, speedup=2.0).default  # loses tags
    assert not Int8Spec(card.sha256, {}, top5=4.8, median_dp=0.031, speedup=2.0).default  # moves them
    slow = Int8Spec(card.sha256, {}, top5=4.8, median_dp=0.02, speedup=1.0)
    assert slow.passes and not slow.default  # keeps them, but fp32 is as fast
