"""tagger train on the small CSV datasets a user starts with (20, 30 clips): splits that leave
no split empty, validation over the tags it can evaluate, a model exported every time, the
cache in the user cache folder (never the music folder), atomic writes that clean up after
killed runs."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import run_cli
from test_train import SR, TAGS, synth_clip

TINY = ["--widths", "8,8,8,8,8,8", "--batch-size", "8", "--workers", "0", "--augment", "none",
        "--device", "cpu"]


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """The user cache folder of every command these tests run (platformdirs honours
    XDG_CACHE_HOME), so no test writes into the real home's cache."""
    folder = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


def label_rows(n, seed=0):
    """``n`` label vectors over TAGS, each with at least one tag."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        labels = (rng.random(len(TAGS)) < 0.4).astype(int)
        if labels.sum() == 0:
            labels[i % len(TAGS)] = 1
        rows.append(labels)
    return rows


def write_labels(path, names, labels, splits=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "tags"] + (["split"] if splits else []))
        for i, (name, lab) in enumerate(zip(names, labels)):
            w.writerow([name, ";".join(t for t, v in zip(TAGS, lab) if v)] + ([splits[i]] if splits else []))
    return path


def music_folder(root, labels, splits=None):
    """A folder of short WAV clips whose tags are audible, and its labels.csv."""
    root.mkdir(parents=True, exist_ok=True)
    names = [f"clip-{i:02d}.wav" for i in range(len(labels))]
    for i, (name, lab) in enumerate(zip(names, labels)):
        sf.write(root / name, synth_clip(lab, i, seconds=3.2), SR)
    return write_labels(root / "labels.csv", names, labels, splits), names


def assert_model_tags_a_file(model, clip):
    tagged = run_cli("tag", "-m", model, clip, "--json")
    assert tagged.returncode == 0, tagged.stderr
    assert set(json.loads(tagged.stdout)["tags"]) == set(TAGS)


def provenance(model):
    from tagger.modelcard import read_card  # what `tagger models info` shows
    return read_card(model).provenance


@pytest.mark.parametrize("n_clips", [20, 30])
def test_readme_csv_command_on_a_small_folder_exports_a_model(tmp_path, user_cache, n_clips):
    music = tmp_path / "Music"
    labels, names = music_folder(music, label_rows(n_clips))
    run = tmp_path / "run"
    # the README's command, made fast
    result = run_cli("train", "--dataset", "csv", "--labels", labels, "--audio-root", music, "--name", "my-tags",
                     "--out", run, "--epochs", "2", *TINY)
    assert result.returncode == 0, result.stderr
    assert "nan" not in (result.stdout + result.stderr).lower()
    epoch_lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all(re.search(r"over [1-5] of 5 tags", line) for line in epoch_lines)
    log = json.loads((run / "log.json").read_text())
    assert [e["epoch"] for e in log] == [1, 2] and all(e["valid_tags_evaluated"] >= 1 for e in log)

    printed = int(re.search(r"best epoch (\d+):", result.stdout).group(1))
    flagged = max(e["epoch"] for e in log if e["best"])
    assert provenance(run / "model.safetensors")["best_epoch"] == printed == flagged
    assert_model_tags_a_file(run / "model.safetensors", music / names[0])

    assert not any(p.name.startswith(".tagger") for p in music.iterdir()), "nothing is written beside the music"
    manifests = list((user_cache / "tagger" / "training").glob("Music-*/manifest.json"))
    assert len(manifests) == 1 and len(json.loads(manifests[0].read_text())["entries"]) == n_clips


def test_validation_that_cannot_rank_exports_the_last_epoch(tmp_path):
    labels = label_rows(12)
    splits = ["train"] * 8 + ["valid", "valid", "test", "test"]
    labels[8] = labels[9] = np.array([1, 0, 1, 0, 0])  # every tag one class only in valid
    labels_csv, names = music_folder(tmp_path / "music", labels, splits)
    run = tmp_path / "run"
    result = run_cli("train", "--dataset", "csv", "--labels", labels_csv, "--audio-root", tmp_path / "music",
                     "--cache", tmp_path / "cache", "--out", run, "--epochs", "2", *TINY)
    assert result.returncode == 0, result.stderr
    assert "valid: no tag has both classes, not ranked" in result.stderr
    assert ("validation could not rank the epochs (no tag has both positive and negative clips among the 2 "
            "valid clips): exported the last epoch, 2") in result.stdout
    assert provenance(run / "model.safetensors")["best_epoch"] == 2
    assert_model_tags_a_file(run / "model.safetensors", tmp_path / "music" / names[0])


def test_too_few_clips_for_three_splits_says_what_is_needed(tmp_path):
    labels_csv, _ = music_folder(tmp_path / "music", label_rows(2))
    result = run_cli("train", "--dataset", "csv", "--labels", labels_csv, "--audio-root", tmp_path / "music",
                     "--cache", tmp_path / "cache", *TINY)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (f"{labels_csv}: 2 clip(s) without a split cannot fill the train, valid, test split(s), one clip each "
            "at least (needs at least 3 clips, or a 'split' column naming each row's split)") in result.stderr


def test_a_split_column_without_valid_rows_is_refused(tmp_path):
    from tagger.errors import UsageError
    from training.data import load_csv

    labels = write_labels(tmp_path / "labels.csv", ["a.wav", "b.wav", "c.wav"], label_rows(3),
                          ["train", "train", "test"])
    with pytest.raises(UsageError, match="the 'split' column names no valid clips"):
        load_csv(labels, tmp_path)


def test_csv_split_is_stratified_and_leaves_no_split_empty(tmp_path):
    from training.data import load_csv

    rows = label_rows(30)
    rare = [np.array([0, 0, 0, 0, 1]) for _ in range(3)]  # the only three clips with "chord"
    rows = [np.concatenate([r[:4], [0]]) for r in rows[:27]] + rare
    labels = write_labels(tmp_path / "labels.csv", [f"{i}.wav" for i in range(30)], rows)
    data = load_csv(labels, tmp_path)
    assert {s: len(data.split(s)) for s in ("train", "valid", "test")} == {"train": 24, "valid": 3, "test": 3}
    chord = data.tags.index("chord")
    for split in ("train", "valid", "test"):
        assert sum(c.labels[chord] for c in data.split(split)) == 1, f"the rare tag in {split}"
    for split in ("valid", "test"):  # most tags can be evaluated on three clips
        evaluable = [t for t in range(len(TAGS)) if 0 < sum(c.labels[t] for c in data.split(split)) < 3]
        assert len(evaluable) >= 3, (split, [data.tags[t] for t in evaluable])
    again = load_csv(labels, tmp_path)
    assert [c.split for c in again.clips] == [c.split for c in data.clips], "the split is reproducible"


def test_default_cache_is_per_dataset_in_the_user_cache_folder(tmp_path, user_cache):
    from training.data import default_cache_dir, load_csv

    caches = []
    for name in ("one", "two"):
        folder = tmp_path / name / "Music"
        labels, _ = music_folder(folder, label_rows(3))
        caches.append(default_cache_dir(load_csv(labels, folder)))
    assert caches[0] != caches[1]
    assert all(c.parent == user_cache / "tagger" / "training" and c.name.startswith("Music-") for c in caches)


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_cache_and_checkpoint_writes_remove_temporaries_of_killed_runs(tmp_path):
    import torch

    from training.checkpoint import save_checkpoint
    from training.data import Cache, load_csv

    labels_csv, _ = music_folder(tmp_path / "music", label_rows(3))
    data, cache_dir, run = load_csv(labels_csv, tmp_path / "music"), tmp_path / "cache", tmp_path / "run"
    Cache(cache_dir).prepare(data.clips, workers=0)
    entry = cache_dir / json.loads((cache_dir / "manifest.json").read_text())["entries"][data.clips[0].key]["file"]
    np.save(entry, np.zeros(len(np.load(entry)), np.float16))  # a damaged entry: the next prepare rewrites it
    run.mkdir()
    pid = dead_pid()
    stale = [cache_dir / f".manifest.json.{pid}-x1.tagger-tmp", entry.parent / f".{entry.name}.{pid}-x2.tagger-tmp",
             run / f".checkpoint.safetensors.{pid}-x3.tagger-tmp"]
    for path in stale:
        path.write_bytes(b"half a file, left by a killed run")

    assert Cache(cache_dir).prepare(data.clips, workers=0).rebuilt == 1
    model = torch.nn.Linear(2, 2)
    save_checkpoint(run / "checkpoint.safetensors", model, torch.optim.SGD(model.parameters(), lr=0.1), {"epochs_done": 1})
    assert not [p for p in stale if p.exists()]
    assert not list(cache_dir.rglob(".*")) and [p.name for p in run.iterdir()] == ["checkpoint.safetensors"]
