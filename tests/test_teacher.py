"""Teacher labels (training/teacher.py, ``tagger train --dataset folder --teacher …``): targets
are the teachers' chunk-mean probabilities, reused from the cache, a student exports, loads
and tags; bad inputs are one line or recorded and skipped. Real audio files, real models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import music_like, run_cli, write_audio

from tagger.audio.decode import decode
from tagger.errors import UsageError
from tagger.model.modelcard import read_card
from tagger.model.modelfile import load_model, save_model
from training.data import Cache, load_folder
from training.losses import focal_loss
from training.teacher import label_with_teachers, load_teachers

TEACHERS = ["musicnn-vgg-mtt", "musicnn-mtt"]


def make_folder(root, n=6, seconds=8.0):
    """n generated tracks in two album folders (FLAC and WAV at other rates than 16 kHz)."""
    for i in range(n):
        album = root / ("album-a" if i % 2 else "album-b")
        album.mkdir(parents=True, exist_ok=True)
        sr = 44100 if i % 2 else 22050
        write_audio(album / f"t{i}.{'flac' if i % 2 else 'wav'}", music_like(seconds, sr, i), sr)
    return root


@pytest.fixture(scope="module")
def teachers():
    return load_teachers(TEACHERS)


def test_targets_are_the_teachers_chunk_mean_and_are_reused(tmp_path, teachers):
    root = make_folder(tmp_path / "music", n=3, seconds=8.0)
    data = load_folder(root)
    cache = Cache(tmp_path / "cache")
    assert cache.prepare(data.clips, workers=0).decoded == 3
    labelled, report = label_with_teachers(data, cache, teachers, clip_seconds=3.5, max_clips=2, chunks=2)
    assert report.computed == len(labelled.clips) == 6 and report.reused == 0  # 8 s: two 3.5 s clips each
    assert labelled.tags == teachers[0].card.tags and labelled.groups == teachers[0].card.groups
    assert [t["sha256"] for t in labelled.teachers] == [m.card.sha256 for m in teachers]
    for clip in labelled.clips:
        k = int(clip.key.rsplit("#", 1)[1])
        # the samples the student trains on: the cache's float16, back to back 3.5 s clips
        audio = decode(clip.path, 16000).astype(np.float16).astype(np.float32)[k * 56000:(k + 1) * 56000]
        # two evenly spaced 3 s chunks of a 3.5 s clip: its first and its last 3 s
        chunks = torch.from_numpy(np.stack([audio[:48000], audio[-48000:]]))
        with torch.inference_mode():
            expected = torch.stack([m(chunks).mean(dim=0) for m in teachers]).mean(dim=0).numpy()
        np.testing.assert_allclose(clip.targets, expected, atol=1e-5)
        assert clip.split == next(c.split for c in data.clips if c.key == clip.key.rsplit("#", 1)[0])
    again, second = label_with_teachers(load_folder(root), Cache(tmp_path / "cache"), teachers, 3.5, 2, 2)
    assert second.reused == 6 and second.computed == 0
    assert all(np.array_equal(a.targets, b.targets) for a, b in zip(labelled.clips, again.clips))


def test_student_trains_exports_and_tags(tmp_path):
    root = make_folder(tmp_path / "music", n=6, seconds=7.0)
    (root / "album-a" / "broken.mp3").write_bytes(b"ID3" + b"\x00" * 64 + b"not mpeg audio" * 50)
    run = tmp_path / "run"
    result = run_cli("train", "--dataset", "folder", "--data-dir", root, "--teacher", "musicnn-vgg-mtt",
                     "--test-folders", "album-a", "--clip-seconds", "3", "--clips-per-file", "2",
                     "--cache", tmp_path / "cache", "--out", run, "--epochs", "1", "--widths", "8,8,8,8,8,8",
                     "--batch-size", "4", "--workers", "0", "--augment", "none", "--device", "cpu",
                     "--eval-chunks", "4")
    assert result.returncode == 0, result.stderr
    assert "skipped album-a/broken.mp3" in result.stdout  # recorded, and the run went on
    assert "teacher targets: 12 clips" in result.stdout  # 6 files × two 3 s clips
    card = read_card(run / "model.safetensors")
    teacher = read_card("musicnn-vgg-mtt")
    assert card.tags == teacher.tags and card.groups == teacher.groups and card.aliases == teacher.aliases
    assert card.provenance["teachers"] == [{"name": "musicnn-vgg-mtt", "sha256": teacher.sha256}]
    assert card.provenance["clips"] == {"train": 4, "valid": 2, "test": 6}  # album-a held out whole
    tagged = run_cli("tag", root / "album-b" / "t0.wav", "--model", run / "model.safetensors", "--top", "3")
    assert tagged.returncode == 0, tagged.stderr
    assert any(t in tagged.stdout for t in teacher.tags)


def test_bad_inputs_are_one_line(tmp_path):
    root = make_folder(tmp_path / "music", n=3, seconds=4.0)
    # a teacher for 22.05 kHz audio: its probabilities over 16 kHz chunks would mean nothing
    model = load_model("musicnn-vgg-mtt")
    card = model.card
    card.frontend = type(card.frontend).from_dict(dict(card.frontend.to_dict(), sample_rate=22050))
    model.frontend_config = card.frontend
    other = tmp_path / "other-rate.safetensors"
    save_model(model, other, card)
    assert read_card(other).sample_rate == 22050
    model = load_model("musicnn-vgg-mtt")  # and one for 2 s chunks at 16 kHz
    model.card.chunk_samples = 32000
    short = tmp_path / "short-chunks.safetensors"
    save_model(model, short, model.card)
    empty = tmp_path / "empty"
    (empty / "covers").mkdir(parents=True)
    (empty / "covers" / "front.jpg").write_bytes(b"\xff\xd8\xff")
    common = ["--cache", tmp_path / "cache", "--out", tmp_path / "run", "--epochs", "1", "--workers", "0", "--eval-chunks", "4"]
    cases = {
        "takes chunks of 48000 samples at 22050 Hz": ["--data-dir", root, "--teacher", other],
        "takes chunks of 32000 samples at 16000 Hz": ["--data-dir", root, "--teacher", f"musicnn-mtt,{short}"],
        "holds no audio files": ["--data-dir", empty, "--teacher", "musicnn-vgg-mtt"],
        "has no folder nope": ["--data-dir", root, "--teacher", "musicnn-vgg-mtt", "--test-folders", "nope"],
        "needs --teacher": ["--data-dir", root],
    }
    for expected, args in cases.items():
        result = run_cli("train", "--dataset", "folder", *args, *common)
        assert result.returncode != 0 and expected in result.stderr, (expected, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert not (tmp_path / "run" / "model.safetensors").exists()


def test_teachers_with_other_tag_orders_are_refused(tmp_path):
    model = load_model("musicnn-vgg-mtt")
    card = model.card
    card.tags = card.tags[1:] + card.tags[:1]
    shuffled = tmp_path / "shuffled.safetensors"
    save_model(model, shuffled, card)
    with pytest.raises(UsageError, match="the same tags in another order"):
        load_teachers(["musicnn-vgg-mtt", str(shuffled)])


def test_focal_loss_with_soft_targets_is_smallest_at_the_target():
    y = torch.tensor([[0.0, 0.3, 0.5, 0.9, 1.0]])
    logits = torch.logit(y.clamp(1e-4, 1 - 1e-4)).requires_grad_()
    focal_loss(logits, y, gamma=2.0).backward()
    assert logits.grad.abs().max() < 1e-3  # p = y is a stationary point for soft targets too
    # and for 0/1 targets it is still Lin et al.'s (1 − p_t)^γ · BCE
    hard, z = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.4, -1.2]])
    p = torch.sigmoid(z)
    p_t = p * hard + (1 - p) * (1 - hard)
    lin = (-(1 - p_t) ** 2 * torch.log(p_t)).mean()
    assert torch.allclose(focal_loss(z, hard, 2.0), lin, atol=1e-6)
