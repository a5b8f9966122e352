"""Converter round trips: TensorFlow's own outputs must come back out of our torch model."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, load_tool, run_cli
from safetensors.torch import load_file

from tagger.errors import ModelFileError
from tagger.model.convert.musicnn import convert_musicnn
from tagger.model.modelfile import builtin_dir, load_model, read_card

TINY = FIXTURES / "tiny_vgg"


def test_tiny_vgg_round_trip_matches_tensorflow(tmp_path):
    card = convert_musicnn(TINY, tmp_path / "tiny.safetensors", "MTT_vgg")
    assert card.parameters > 0 and card.tags[0] == "guitar" and "ISC" in card.license
    model = load_model(tmp_path / "tiny.safetensors")
    x = load_tool("make_tf_fixtures").fixed_input()  # [n, time, mel] as TensorFlow saw it
    logmel = torch.from_numpy(x).transpose(1, 2).unsqueeze(1)  # → [n, 1, mel, time]
    with torch.inference_mode():
        probs = torch.sigmoid(model.logits_logmel(logmel)).numpy()
    expected = np.array(json.loads((TINY / "expected.json").read_text())["probabilities"])
    assert np.abs(probs - expected).max() < 1e-5


def test_convert_via_cli_and_bad_sources(tmp_path):
    out = tmp_path / "m.safetensors"
    result = run_cli("models", "convert-musicnn", TINY, "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and "wrote" in result.stdout
    result = run_cli("models", "convert-musicnn", tmp_path / "nope")
    assert result.returncode == 1 and "no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr
    (tmp_path / "junk.whl").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="neither a folder nor a wheel"):
        convert_musicnn(tmp_path / "junk.whl", tmp_path / "x.safetensors")
    with pytest.raises(ModelFileError, match="holds no MTT_musicnn checkpoint"):
        convert_musicnn(TINY, tmp_path / "x.safetensors", "MTT_musicnn")
    assert not (tmp_path / "x.safetensors").exists()


WHEEL = os.environ.get("TAGGER_MUSICNN_WHEEL")


@pytest.mark.skipif(not WHEEL or not Path(WHEEL).is_file(),
                    reason="set TAGGER_MUSICNN_WHEEL to musicnn-0.1.0-py3-none-any.whl (.ci/run does)")
@pytest.mark.parametrize("source,name", [("MTT_vgg", "musicnn-vgg-mtt"), ("MTT_musicnn", "musicnn-mtt"),
                                         ("MSD_vgg", "musicnn-vgg-msd"), ("MSD_musicnn", "musicnn-msd")])
def test_real_wheel_converts_to_the_shipped_builtin(tmp_path, source, name):
    """The built-in files are exactly what the converter makes of the wheel: weights, tags,
    groups and card (so the file hashes, which the library database keys models by, agree)."""
    out = tmp_path / f"{name}.safetensors"
    card = convert_musicnn(WHEEL, out, source)
    ours, shipped = load_file(str(out)), load_file(str(builtin_dir() / f"{name}.safetensors"))
    assert ours.keys() == shipped.keys()
    for key in ours:
        assert torch.equal(ours[key], shipped[key]), key
    assert card.sha256 == read_card(name).sha256


def test_the_msd_built_ins_speak_the_million_song_datasets_tags():
    from tagger.model.vocab import MSD_TAGS, MTAT_TAGS

    for name, tags, data in (("musicnn-vgg-msd", MSD_TAGS, "Million Song Dataset"),
                             ("musicnn-msd", MSD_TAGS, "Million Song Dataset"),
                             ("musicnn-vgg-mtt", MTAT_TAGS, "MagnaTagATune")):
        card = read_card(name)
        assert tuple(card.tags) == tags and data in card.metrics["dataset"]
        assert "ISC" in card.license and card.provenance["source"].startswith("musicnn 0.1.0")
    msd = read_card("musicnn-vgg-msd").vocabulary
    assert msd.resolve("hip_hop") == ["Hip-Hop"] and msd.resolve("female_vocals") == ["female vocalists",
                                                                                       "female vocalist"]
    assert read_card("musicnn-msd").metrics["roc_auc"] == 0.8802
