"""tagger train / prepare / evaluate on a tiny dataset in MagnaTagATune's layout (and as CSV),
with clips whose tags are audible: tones in given bands, noise bursts, clicks, chords."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

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
        "--augment", "none", "--device", "cpu"]


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

    resumed = run_cli("train", "--dataset", "mtat", "--data-dir", root, "--out", run, "--epochs", "4",
                      "--resume", *FAST)
    assert resumed.returncode == 0, resumed.stderr
    log2 = json.loads((run / "log.json").read_text())
    assert len(log2) == 4 and log2[:3] == log
    mismatch = run_cli("train", "--dataset", "mtat", "--data-dir", root, "--out", run, "--epochs", "5",
                       "--resume", *FAST[:-2], "--activation", "relu")
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
                    "auto|cpu|cuda|cuda:N", "--prepare-only"):
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
