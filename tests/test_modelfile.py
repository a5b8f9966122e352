import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from tagger.errors import ModelFileError
from tagger.model.cnn import ShortChunkCNN, report_config, report_frontend
from tagger.model.modelfile import DEFAULT_MODEL, ModelCard, builtin_names, load_model, read_card, save_model
from tagger.model.vocab import MTAT_GROUPS, MTAT_TAGS


def _card(**kw):
    fields = dict(name="test-model", architecture="", config={}, frontend=report_frontend(),
                  tags=list(MTAT_TAGS), groups=MTAT_GROUPS, provenance={"source": "test"},
                  metrics={"roc_auc": 0.5}, license="MIT")
    return ModelCard(**(fields | kw))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ShortChunkCNN(report_frontend(), report_config()).eval()
    with torch.no_grad():  # make running stats non-trivial so that they must be saved
        model.blocks[0].bn.running_mean.uniform_(-1, 1)
    card = save_model(model, tmp_path / "m.safetensors", _card())
    assert card.architecture == "ShortChunkCNN" and card.parameters == 1_485_236
    assert len(card.sha256) == 64 and card.size_bytes > 5_000_000
    loaded = load_model(tmp_path / "m.safetensors")
    x = torch.randn(2, 48000)
    assert torch.allclose(loaded(x), model(x), atol=1e-6)
    assert loaded.card.tags == list(MTAT_TAGS) and loaded.card.groups == MTAT_GROUPS
    assert loaded.card.frontend == report_frontend()
    assert not any(p.name.startswith(".m.safetensors") for p in tmp_path.iterdir()), "no temp file left"


def test_builtins_load_by_name():
    assert DEFAULT_MODEL in builtin_names() and "musicnn-mtt" in builtin_names()
    model = load_model(DEFAULT_MODEL)
    assert model.card.name == DEFAULT_MODEL and model.card.sample_rate == 16000
    assert model.card.metrics["roc_auc"] == pytest.approx(0.9030)
    assert "ISC" in model.card.license and not model.training


def test_unknown_name_lists_builtins():
    with pytest.raises(ModelFileError, match="built-in models: .*musicnn-vgg-mtt"):
        load_model("no-such-model")


class _Evil:
    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickles_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = str(marker)
    for name in ("model.pt", "model.safetensors"):  # by suffix, and by content under any name
        path = tmp_path / name
        path.write_bytes(pickle.dumps(evil))
        with pytest.raises(ModelFileError, match="never unpickles"):
            load_model(path)
    torch.save({"w": torch.zeros(1)}, tmp_path / "zip.pth")
    with pytest.raises(ModelFileError, match="never unpickles"):
        load_model(tmp_path / "zip.pth")
    assert not marker.exists()


def test_garbage_and_foreign_safetensors_are_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_model(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, foreign)
    with pytest.raises(ModelFileError, match="without tagger metadata"):
        load_model(foreign)
    with pytest.raises(ModelFileError, match="is a directory"):
        load_model(tmp_path)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    model = ShortChunkCNN(report_frontend(), report_config())
    path = tmp_path / "m.safetensors"
    save_model(model, path, _card())
    meta = read_card(path).to_metadata()
    meta["config"]["blocks"][0][0] = 64  # claims a narrower first block than the weights hold
    state = {k: v for k, v in model.state_dict().items()}
    save_file(state, tmp_path / "bad.safetensors", metadata={"tagger": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="weights do not fit"):
        load_model(tmp_path / "bad.safetensors")


def test_a_safetensors_file_whose_first_byte_looks_like_pickle_loads(tmp_path, vgg):
    # the first byte is the low byte of the JSON header's length: 0x80, pickle's marker, for
    # one model file in 256 (it happened to trained models)
    from dataclasses import replace

    from tagger.model.modelfile import save_model

    path = tmp_path / "m.safetensors"
    for n in range(300):
        save_model(vgg, path, replace(vgg.card, name="x" * n))
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80"
    assert load_model(path).card.name == "x" * n


def test_a_model_whose_chunk_length_its_layers_do_not_fit_is_one_error(tmp_path):
    from tagger.model.modelfile import save_model

    model = load_model("musicnn-vgg-mtt")
    model.card.chunk_samples = 32000  # 2 s: the VGG's dense layer expects 3 s of frames
    path = tmp_path / "short-chunks.safetensors"
    save_model(model, path, model.card)
    with pytest.raises(ModelFileError, match="does not run on its own 32000-sample chunks"):
        load_model(path)
