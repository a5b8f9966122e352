"""tagger train / prepare / evaluate on a tiny dataset in MagnaTagATune's layout (and as CSV),
with clips whose tags are audible: tones in given bands, noise bursts, clicks, chords."""

import csv
import json
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ROOT, run_cli

SR = 16000
TAGS = ["low tone", "high tone", "noise", "clicks", "chord"]


def synth_clip(labels, seed, seconds=3.5):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.01 * rng.standard_normal(len(t))
    if labels[0]:
        x += 0.3 * np.sin(2 * np.pi * rng.uniform(80, 200) * t)
    if labels[1]:
        x += 0.2 * np.sin(2 * np.pi * rng.uniform(2500, 4000) * t)
    if labels[2]:
        x += 0.3 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 2 * t) > 0)
    if labels[3]:
        x[(np.arange(len(t)) % (SR // 8)) < 40] += 0.8
    if labels[4]:
        f0 = rng.uniform(300, 500)
        x += sum(0.15 * np.sin(2 * np.pi * f0 * r * t) for r in (1, 1.25, 1.5))
    return (0.9 * x / np.max(np.abs(x))).astype(np.float32)


def make_dataset(root, n_train=72, n_valid=16, n_test=16):
    """MTAT layout: folders 0…f, annotations_final.csv (clip_id, tags…, mp3_path)."""
    rng = np.random.default_rng(0)
    rows = []
    folders = ["0123456789ab"] * n_train + ["c"] * n_valid + ["def"] * n_test
    for i, pool in enumerate(folders):
        labels = (rng.random(len(TAGS)) < 0.4).astype(int)
        if labels.sum() == 0:
            labels[i % len(TAGS)] = 1
        folder = pool[i % len(pool)]
        rel = f"{folder}/clip-{i:03d}.mp3"
        (root / folder).mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, synth_clip(labels, i), SR, format="MP3")
        rows.append((i, labels, rel))
    with open(root / "annotations_final.csv", "w") as f:
        f.write("\t".join(['"clip_id"', *[f'"{t}"' for t in TAGS], '"mp3_path"']) + "\n")
        for i, labels, rel in rows:
            f.write("\t".join([f'"{i}"', *[f'"{v}"' for v in labels], f'"{rel}"']) + "\n")
    return rows


FAST = ["--widths", "16,16,32,32,32,32", "--batch-size", "8", "--lr", "3e-3", "--workers", "0",
        "--augment", "none", "--device", "cpu", "--eval-chunks", "4"]


@pytest.fixture(scope="module", autouse=True)
def user_cache(tmp_path_factory):
    """The user cache folder of every command here (platformdirs honours XDG_CACHE_HOME), so no
    test writes into the real home's cache."""
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("xdg-cache")
        mp.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture(scope="module")
def mtat(tmp_path_factory):
    root = tmp_path_factory.mktemp("mtat")
    rows = make_dataset(root)
    return root, rows


def default_cache(user_cache, data_dir):
    folders = list((user_cache / "tagger" / "training").glob(f"{data_dir.name}-*"))
    assert len(folders) == 1, folders
    return folders[0]


def test_prepare_is_resumable_and_rebuilds_corrupt_entries(mtat, user_cache):
    root, rows = mtat
    first = run_cli("train", "--prepare-only", "--dataset", "mtat", "--data-dir", root)
    assert first.returncode == 0, first.stderr
    assert f"{len(rows)} clips, 0 already cached, {len(rows)} decoded" in first.stdout
    cache = default_cache(user_cache, root)
    assert not (root / ".tagger-cache").exists(), "the cache is not written into the data folder"
    manifest = json.loads((cache / "manifest.json").read_text())
    entry = next(iter(manifest["entries"].values()))
    path = cache / entry["file"]
    arr = np.load(path)
    arr[100:200] = 0.5
    np.save(path, arr)  # same length, other samples: only the checksum can tell
    again = run_cli("train", "--prepare-only", "--dataset", "mtat", "--data-dir", root)
    assert f"{len(rows) - 1} already cached, 1 decoded (1 rebuilt)" in again.stdout
    assert "model:" not in first.stdout and "epoch" not in first.stderr, "--prepare-only trains nothing"


def test_train_resume_evaluate_and_use(mtat, tmp_path):
    root, rows = mtat
    run = tmp_path / "run"
    result = run_cli("train", "--dataset", "mtat", "--data-dir", root, "--out", run, "--epochs", "3", *FAST)
    assert result.returncode == 0, result.stderr
    log = json.loads((run / "log.json").read_text())
    assert len(log) == 3
    assert log[-1]["train_loss"] < log[0]["train_loss"], "the loss must fall"
    best = max(e["valid_roc_auc"] for e in log)
    assert best > 0.75, f"validation ROC-AUC {best} is not clearly above chance"
    assert "test: ROC-AUC" in result.stdout
    assert [e["epoch"] for e in log] == [1, 2, 3]
    assert all(re.search(r"^epoch \d: .* over 5 of 5 tags", line) for line in result.stderr.splitlines()
               if line.startswith("epoch"))

    info = json.loads(run_cli("models", "info", run / "model.safetensors", "--json").stdout)
    printed = int(re.search(r"best epoch (\d+):", result.stdout).group(1))
    assert info["provenance"]["best_epoch"] == printed == max(e["epoch"] for e in log if e["best"])
    assert sorted(info["tags"]) == sorted(TAGS) and info["architecture"] == "ShortChunkCNN"
    assert info["metrics"]["valid"]["roc_auc"] == pytest.approx(best)
    assert "test" in info["metrics"] and len(info["provenance"]["data_fingerprint"]) == 64
    assert info["provenance"]["training_config"]["optimizer"] == "nadam"
    assert info["provenance"]["training_config"]["loss"] == "focal"
    assert info["provenance"]["training_config"]["eval_chunks"] == 4
    assert json.loads((run / "test_report.json").read_text())["chunks_per_clip"] == 4  # --eval-chunks used

    resumed = run_cli("train", "--dataset", "mtat", "--data-dir", root, "--out", run, "--epochs", "4",
                      "--resume", *FAST)
    assert resumed.returncode == 0, resumed.stderr
    log2 = json.loads((run / "log.json").read_text())
    assert len(log2) == 4 and log2[:3] == log
    mismatch = run_cli("train", "--dataset", "mtat", "--data-dir", root, "--out", run, "--epochs", "5",
                       "--resume", *FAST, "--activation", "relu")
    assert mismatch.returncode == 1 and "another configuration" in mismatch.stderr

    report = tmp_path / "eval"
    ev = run_cli("evaluate", run / "model.safetensors", "--dataset", "mtat", "--data-dir", root,
                 "--split", "test", "--out", report)
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads((report / "report.json").read_text())
    assert metrics["clips"] == 16 and set(metrics["per_tag"]) <= set(TAGS) and metrics["roc_auc"] > 0.6

    clip = root / rows[0][2]
    tagged = run_cli("tag", clip, "-m", run / "model.safetensors", "--json")
    assert tagged.returncode == 0, tagged.stderr
    assert set(json.loads(tagged.stdout)["tags"]) == set(TAGS)


def test_csv_dataset(mtat, tmp_path, user_cache):
    root, rows = mtat
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "tags", "split"])
        for _, lab, rel in rows:
            split = "train" if rel[0] in "0123456789ab" else "valid" if rel[0] == "c" else "test"
            w.writerow([rel, ";".join(t for t, v in zip(TAGS, lab) if v), split])
    run = tmp_path / "run"
    result = run_cli("train", "--dataset", "csv", "--labels", labels, "--audio-root", root,
                     "--out", run, "--epochs", "2", *FAST)
    assert result.returncode == 0, result.stderr
    log = json.loads((run / "log.json").read_text())
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    info = json.loads(run_cli("models", "info", run / "model.safetensors", "--json").stdout)
    assert sorted(info["tags"]) == sorted(TAGS) and info["provenance"]["dataset"] == "csv"
    assert not (root / ".tagger-cache").exists(), "nothing is written into the audio folder"
    assert (default_cache(user_cache, root) / "manifest.json").is_file()


def test_bad_training_input_is_one_line(tmp_path):
    result = run_cli("train", "--dataset", "mtat", "--data-dir", tmp_path)
    assert result.returncode == 1 and "annotations_final.csv: not found" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("train", "--dataset", "csv")  # an option combination: exit 2, like the parser's
    assert result.returncode == 2 and "needs --labels and --audio-root" in result.stderr


def test_train_is_a_plain_command_whose_help_lists_the_choices(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping inside the choice lists
    usage = run_cli("train", "--help").stdout
    assert "Usage: tagger train [OPTIONS]" in usage and "COMMAND" not in usage
    for choices in ("mtat|csv", "report|baseline", "relu|elu|gelu", "sgd|adam|nadam", "bce|focal",
                    "auto|cpu|cuda|cuda:N", "fp32|bf16", "--prepare-only"):
        assert choices in usage, choices
    evaluate = run_cli("evaluate", "--help").stdout
    assert "train|valid|test" in evaluate and "mtat|csv" in evaluate
    wrong = run_cli("train", "--dataset", "mp3")
    assert wrong.returncode != 0 and "mtat" in wrong.stderr and "csv" in wrong.stderr


def test_train_command_module_imports_no_torch():
    # tagger/cli/train_cmd.py is imported for every command's --help; its package __init__
    # imports the other commands (which may import torch), so load the module without it
    code = (f"import sys, types; pkg = types.ModuleType('tagger.cli'); pkg.__path__ = [{str(ROOT / 'tagger' / 'cli')!r}]; "
            "sys.modules['tagger.cli'] = pkg; import tagger.cli.train_cmd; "
            "sys.exit('torch imported' if 'torch' in sys.modules else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


# --- the recipe's defaults, exact resume, the loader's epochs --------------------------------

def test_default_config_is_the_recipe():
    from tagger.model.cnn import ACTIVATIONS
    from training.config import TrainConfig
    from training.train import build_model

    c = TrainConfig()
    assert (c.arch, c.optimizer, c.lr, c.loss, c.focal_gamma, c.batch_size, c.epochs) == \
        ("report", "nadam", 1e-3, "focal", 2.0, 16, 50)
    assert c.precision == "fp32" and c.activation == "gelu"
    assert c.augment == ("polarity", "gain", "pitch") and c.eval_chunks == 16
    model = build_model(c, 50)
    assert [b.channels for b in model.config.blocks] == [128, 256, 256, 128, 128, 128]
    assert all(isinstance(b.act, ACTIVATIONS["gelu"]) for b in model.blocks)
    # dropout 0.1 after each conv block: blocks 1-5 their own, block 6's is the head's — its
    # pool leaves 1×1, so the global max changes nothing and the head dropout follows block 6
    assert [b.dropout.p if isinstance(b.dropout, torch.nn.Dropout) else 0.0 for b in model.blocks] == \
        [0.1] * 5 + [0.0]
    assert model.head_dropout.p == 0.1
    assert model.blocks(torch.zeros(1, 1, 96, 188)).shape == (1, 128, 1, 1)


def test_baseline_trains_with_relu_unless_an_activation_is_given():
    from tagger.model.cnn import ACTIVATIONS
    from training.config import TrainConfig
    from training.train import build_model

    base = build_model(TrainConfig(arch="baseline"), 50)
    assert TrainConfig(arch="baseline").activation == "relu"
    assert all(isinstance(b.act, ACTIVATIONS["relu"]) for b in base.blocks) and len(base.blocks) == 4
    gelu = build_model(TrainConfig(arch="baseline", activation="gelu"), 50)
    assert all(isinstance(b.act, ACTIVATIONS["gelu"]) for b in gelu.blocks)
    assert TrainConfig(arch="report", activation="elu").activation == "elu"


def test_configs_written_with_mixed_precision_resume_as_they_trained():
    from training.config import TrainConfig

    old = TrainConfig().to_dict()
    del old["precision"]
    assert TrainConfig.from_dict(dict(old, mixed_precision=True)).precision == "bf16"
    assert TrainConfig.from_dict(dict(old, mixed_precision=False)).precision == "fp32"
    assert TrainConfig.from_dict(dict(old, activation="gelu", arch="baseline")).activation == "gelu"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from training.data import Cache, load_mtat

    root = tmp_path_factory.mktemp("tiny-mtat")
    make_dataset(root, n_train=16, n_valid=6, n_test=4)
    data = load_mtat(root)
    cache = Cache(root / "cache")
    cache.prepare(data.clips, workers=0)
    return data, cache


def test_resume_continues_bit_for_bit(tiny, tmp_path):
    """2 epochs in one go == 1 epoch, then --resume for the 2nd: same weights, optimizer state
    and losses (dropout, the augmentations' draws and the crops all continue)."""
    from safetensors.torch import load_file

    from training.config import TrainConfig
    from training.train import train

    data, cache = tiny
    config = TrainConfig(widths=(8,) * 6, batch_size=4, epochs=2, workers=0, eval_chunks=3)
    whole = train(data, cache, tmp_path / "whole", config, "t", "cpu")
    train(data, cache, tmp_path / "split", replace(config, epochs=1), "t", "cpu")
    resumed = train(data, cache, tmp_path / "split", config, "t", "cpu", resume=True)
    a = load_file(str(tmp_path / "whole" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoint.safetensors"))
    differ = [k for k in a if k.startswith(("model.", "opt.")) and not torch.equal(a[k], b[k])]
    assert not differ, f"resumed weights differ: {differ[:5]}"
    assert [h.train_loss for h in whole.history] == [h.train_loss for h in resumed.history]


def test_persistent_workers_crop_each_epoch_as_the_seed_says(tiny):
    from training.config import TrainConfig
    from training.data import CropDataset
    from training.train import train_loader

    data, cache = tiny
    clips = [c for c in data.split("train") if c.key in cache.entries]
    crops = CropDataset(cache, clips, seed=3)
    loader, sampler = train_loader(crops, TrainConfig(batch_size=4, workers=1, seed=3), torch.device("cpu"))
    expected = CropDataset(cache, clips, seed=3)
    seen = []
    for epoch in (0, 1):
        sampler.epoch = epoch
        order = [i for _, i in sampler]
        x = torch.cat([batch for batch, _ in loader])
        expected.epoch = epoch
        assert torch.equal(x, torch.stack([expected[i][0] for i in order[:len(x)]])), f"epoch {epoch}"
        seen.append(x)
    assert not torch.equal(seen[0], seen[1]), "a new epoch, new crops and order"


def test_cli_activation_overrides_the_baselines_relu(tmp_path):
    root = tmp_path / "mtat"
    make_dataset(root, n_train=12, n_valid=6, n_test=4)
    run = tmp_path / "run"
    result = run_cli("train", "--dataset", "mtat", "--data-dir", root, "--out", run, "--epochs", "1",
                     "--arch", "baseline", "--widths", "8,8,8,8", "--activation", "gelu", "--batch-size", "4",
                     "--workers", "0", "--augment", "none", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    config = json.loads((run / "config.json").read_text())
    assert (config["arch"], config["activation"], config["precision"]) == ("baseline", "gelu", "fp32")
    info = json.loads(run_cli("models", "info", run / "model.safetensors", "--json").stdout)
    assert info["config"]["activation"] == "gelu"
