import pytest
import torch

from tagger.model.cnn import (
    CNNConfig,
    ShortChunkCNN,
    baseline_config,
    musicnn_frontend,
    musicnn_vgg_config,
    report_config,
    report_frontend,
)
from tagger.model.musicnn import MusiCNN, MusiCNNConfig


def test_report_model_matches_recipe_table():
    model = ShortChunkCNN(report_frontend(), report_config()).eval()
    x = model.input_bn(model.frontend(torch.randn(2, 48000)))
    assert x.shape == (2, 1, 96, 188)
    expected = [(128, 48, 94), (256, 24, 47), (256, 12, 23), (128, 6, 11), (128, 3, 5), (128, 1, 1)]
    for block, shape in zip(model.blocks, expected):
        x = block(x)
        assert tuple(x.shape[1:]) == shape
    assert isinstance(model.blocks[0].act, torch.nn.GELU)
    assert model.blocks[0].dropout.p == 0.1 and model.head_dropout.p == 0.1
    probs = model(torch.randn(3, 48000))
    assert probs.shape == (3, 50) and ((probs > 0) & (probs < 1)).all()
    assert model.embed(torch.randn(3, 48000)).shape == (3, 128)


def test_baseline_model_shapes():
    model = ShortChunkCNN(report_frontend(), baseline_config()).eval()
    assert isinstance(model.blocks[0].act, torch.nn.ReLU)
    assert model(torch.randn(2, 48000)).shape == (2, 50)
    assert model.embed(torch.randn(2, 48000)).shape == (2, 64)


def test_musicnn_vgg_shapes():
    model = ShortChunkCNN(musicnn_frontend(), musicnn_vgg_config()).eval()
    fmap = model.blocks(model.frontend(torch.randn(2, 48000)))
    assert tuple(fmap.shape[1:]) == (128, 1, 2), "pool5 leaves 2 frames × 1 band × 128 (musicnn-port.md)"
    assert model(torch.randn(2, 48000)).shape == (2, 50)
    assert model.embed(torch.randn(2, 48000)).shape == (2, 256)
    assert sum(p.numel() for p in model.parameters()) == 605_748
    assert model.blocks[0].bn.eps == 1e-3 and model.blocks[0].act_first


def test_musicnn_shapes():
    model = MusiCNN(musicnn_frontend(), MusiCNNConfig()).eval()
    assert model(torch.randn(2, 48000)).shape == (2, 50)
    assert model.embed(torch.randn(2, 48000)).shape == (2, 200)


@pytest.mark.parametrize("make", [report_config, baseline_config, musicnn_vgg_config])
def test_config_round_trip(make):
    cfg = make()
    assert CNNConfig.from_dict(cfg.to_dict()) == cfg


def test_widths_and_activation_are_options():
    cfg = report_config(n_tags=7, activation="elu", widths=(16, 32, 32, 16, 16, 16))
    model = ShortChunkCNN(report_frontend(), cfg).eval()
    assert isinstance(model.blocks[3].act, torch.nn.ELU)
    assert model.blocks[1].conv.out_channels == 32
    assert model(torch.randn(1, 48000)).shape == (1, 7)


def test_scores_agree_with_forward_and_embed():
    model = ShortChunkCNN(report_frontend(), report_config()).eval()
    x = torch.randn(2, 48000)
    probs, emb = model.scores(x)
    assert torch.allclose(probs, model(x), atol=1e-6)
    assert torch.allclose(emb, model.embed(x), atol=1e-6)
