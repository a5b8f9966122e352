"""tagger train on the small CSV datasets a user starts with (20, 30 clips): splits that leave
no split empty, validation over the tags it can evaluate, a model exported every time, the
cache in the user cache folder (never the music folder), atomic writes that clean up after
killed runs."""

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli
from test_train import SR, TAGS, synth_clip

TINY = ["--widths", "8,8,8,8,8,8", "--batch-size", "8", "--workers", "0", "--augment", "none",
        "--device", "cpu", "--eval-chunks", "4"]


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
    from tagger.model.modelcard import read_card  # what `tagger models info` shows
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
    sizes = {s: len(data.split(s)) for s in ("train", "valid", "test")}
    assert 2 <= sizes["valid"] <= 6 and 2 <= sizes["test"] <= 6, sizes  # 10% of 30 each, on average
    chord = data.tags.index("chord")
    for split in ("train", "valid", "test"):
        assert sum(c.labels[chord] for c in data.split(split)) == 1, f"the rare tag in {split}"
        assert all(sum(c.labels[t] for c in data.split(split)) for t in range(len(TAGS))), f"every tag in {split}"
    for split in ("valid", "test"):  # most tags can be evaluated on a few clips
        evaluable = [t for t in range(len(TAGS)) if 0 < sum(c.labels[t] for c in data.split(split)) < sizes[split]]
        assert len(evaluable) >= 3, (split, [data.tags[t] for t in evaluable])
    again = load_csv(labels, tmp_path)
    assert [c.split for c in again.clips] == [c.split for c in data.clips], "the split is reproducible"


def test_small_csv_splits_are_never_empty(tmp_path):
    from training.data import load_csv

    for n in (3, 4, 5, 8, 14, 15, 20, 40):
        labels = write_labels(tmp_path / f"{n}.csv", [f"{i}.wav" for i in range(n)], label_rows(n, seed=n))
        sizes = {s: len(load_csv(labels, tmp_path).split(s)) for s in ("train", "valid", "test")}
        least = 2 if n >= 15 else 1  # from 15 clips, two: a tag can have both classes
        assert sizes["train"] >= 1 and sizes["valid"] >= least and sizes["test"] >= least, (n, sizes)


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


# --- one clip per audio file ---------------------------------------------------------------

def test_rows_naming_one_file_are_one_clip_with_all_its_labels(tmp_path):
    """A "long" CSV (one row per file and tag) and a path written two ways (a.wav, ./a.wav,
    sub/../a.wav) name one clip: its labels merged, so it is in one split only."""
    from training.data import load_csv

    rows = label_rows(30)
    names = [f"clip-{i:02d}.wav" for i in range(30)]
    labels = tmp_path / "long.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "tags"])
        for i, (name, lab) in enumerate(zip(names, rows)):
            spelled = [name, f"./{name}", f"sub/../{name}"]
            for j, tag in enumerate(t for t, v in zip(TAGS, lab) if v):
                w.writerow([spelled[(i + j) % 3], tag])  # one row per (file, tag)
    data = load_csv(labels, tmp_path)
    assert sorted(c.key for c in data.clips) == names, "one clip per file, keyed by its normalised path"
    for clip in data.clips:
        tagged = {t for t, v in zip(TAGS, rows[names.index(clip.key)]) if v}
        assert {t for t, v in zip(data.tags, clip.labels) if v} == tagged, clip.key
        assert clip.path == str((tmp_path / clip.key).resolve())


def test_a_file_given_two_splits_is_one_line_error(tmp_path):
    from tagger.errors import UsageError
    from training.data import load_csv

    labels = write_labels(tmp_path / "labels.csv", ["a.wav", "b.wav", "c.wav", "./a.wav"], label_rows(4),
                          ["train", "valid", "test", "test"])
    with pytest.raises(UsageError) as raised:
        load_csv(labels, tmp_path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{labels}: ")
    assert "a.wav" in message and "train" in message and "test" in message


# --- a split that stays put ----------------------------------------------------------------

def test_automatic_split_is_stable_when_rows_are_added(tmp_path):
    from training.data import load_csv

    rows = label_rows(120)
    names = [f"clip-{i:03d}.wav" for i in range(120)]
    before = {c.key: c.split for c in load_csv(write_labels(tmp_path / "a.csv", names[:100], rows[:100]),
                                               tmp_path).clips}
    for n in (101, 110, 120):
        after = {c.key: c.split for c in load_csv(write_labels(tmp_path / "b.csv", names[:n], rows[:n]),
                                                  tmp_path).clips}
        moved = {k: (before[k], after[k]) for k in before if after[k] != before[k]}
        assert not moved, f"adding {n - 100} row(s) moved {len(moved)} clips: {moved}"
    shuffled = load_csv(write_labels(tmp_path / "c.csv", names[:100][::-1], rows[:100][::-1]), tmp_path)
    assert {c.key: c.split for c in shuffled.clips} == before, "the row order does not matter"


def test_resume_and_evaluate_check_the_data_fingerprint(tmp_path):
    music, labels = tmp_path / "music", label_rows(13)
    labels_csv, names = music_folder(music, labels[:12])
    data = ["--dataset", "csv", "--labels", labels_csv, "--audio-root", music, "--cache", tmp_path / "cache"]
    run = tmp_path / "run"
    first = run_cli("train", *data, "--out", run, "--epochs", "1", *TINY)
    assert first.returncode == 0, first.stderr
    same = run_cli("evaluate", run / "model.safetensors", *data, "--split", "valid", "--out", tmp_path / "e1",
                   "--device", "cpu")
    assert same.returncode == 0 and "warning" not in same.stderr, same.stderr

    sf.write(music / "clip-12.wav", synth_clip(labels[12], 12, seconds=3.2), SR)  # one more labelled file
    write_labels(labels_csv, names + ["clip-12.wav"], labels)
    resumed = run_cli("train", *data, "--out", run, "--epochs", "2", "--resume", *TINY)
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr, resumed.stderr
    line = resumed.stderr.strip()
    assert "\n" not in line and "checkpoint.safetensors: was trained on other data" in line
    assert "12 → 13 clips" in line and "another --out" in line
    changed = run_cli("evaluate", run / "model.safetensors", *data, "--split", "valid", "--out", tmp_path / "e2",
                      "--device", "cpu")
    assert changed.returncode == 0, changed.stderr
    warnings = [w for w in changed.stderr.splitlines() if "warning" in w]
    assert len(warnings) == 1 and "was trained on other data" in warnings[0] and "12 → 13 clips" in warnings[0]


# --- label files as spreadsheets save them -------------------------------------------------

def test_a_latin1_label_file_is_one_line_saying_save_it_as_utf8(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_bytes("path,tags\nCafé del Mar.wav,chord\n".encode("cp1252"))
    result = run_cli("train", "--dataset", "csv", "--labels", labels, "--audio-root", tmp_path, *TINY)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"tagger: error: {labels}: ") and "save it as UTF-8" in line


def test_a_malformed_label_file_is_one_line(tmp_path):
    from tagger.errors import UsageError
    from training.data import load_csv

    labels = tmp_path / "labels.csv"
    labels.write_text('path,tags\n"a.wav,' + "x" * 200_000 + '"\n')  # past the csv module's field limit
    with pytest.raises(UsageError, match=r"labels\.csv: .*save it as UTF-8"):
        load_csv(labels, tmp_path)


def test_excel_utf8_with_bom_is_read(tmp_path):
    from training.data import load_csv

    labels = tmp_path / "labels.csv"
    labels.write_text("path,tags\nCafé.wav,chord\nb.wav,noise\nc.wav,chord;noise\n", encoding="utf-8-sig")
    data = load_csv(labels, tmp_path)
    assert sorted(c.key for c in data.clips) == ["Café.wav", "b.wav", "c.wav"] and data.tags == ["chord", "noise"]


# --- a shared cache ------------------------------------------------------------------------

def test_a_shared_cache_keeps_apart_roots_with_the_same_layout(tmp_path):
    """Two folders with the same file names, sizes and times, other audio: under one --cache,
    each is decoded from its own files."""
    from training.data import Cache, load_csv

    cache_dir, datasets, audio = tmp_path / "cache", [], []
    for i, name in enumerate(("one", "two")):
        folder = tmp_path / name
        labels, names = music_folder(folder, label_rows(3, seed=i))
        for j, clip in enumerate(names):  # other audio, same length: same size; then the same mtime
            sf.write(folder / clip, synth_clip(label_rows(3, seed=i)[j], 10 * i + j + 50, seconds=3.2), SR)
            os.utime(folder / clip, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
        datasets.append(load_csv(labels, folder))
        audio.append(sf.read(folder / names[0], dtype="float32")[0])
    assert (tmp_path / "one" / "clip-00.wav").stat().st_size == (tmp_path / "two" / "clip-00.wav").stat().st_size
    assert Cache(cache_dir).prepare(datasets[0].clips, workers=0).decoded == 3
    second = Cache(cache_dir).prepare(datasets[1].clips, workers=0)
    assert second.cached == 0 and second.decoded == 3, "another folder's entries are not trusted"
    cache = Cache(cache_dir)
    clip = next(c for c in datasets[1].clips if c.key == "clip-00.wav")
    assert np.allclose(np.asarray(cache.load(clip.key), np.float32), audio[1], atol=1e-3)


# --- option values: exit status 2 ----------------------------------------------------------

def test_bad_option_values_exit_2_and_data_problems_exit_1(tmp_path):
    labels = write_labels(tmp_path / "labels.csv", ["a.wav", "b.wav", "c.wav"], label_rows(3))
    data = ["--dataset", "csv", "--labels", labels, "--audio-root", tmp_path]
    for args, says in ((["evaluate", "musicnn-vgg-mtt", "--dataset", "csv", "--labels", labels], "--audio-root"),
                       (["train", "--dataset", "mtat"], "needs --data-dir"),
                       (["train", *data, "--augment", "polarity,wobble"], "unknown augmentation(s) wobble"),
                       (["train", *data, "--widths", "16,x"], "--widths"),
                       (["train", *data, "--widths", "16,16,0,16,16,16"], "--widths"),
                       (["train", *data, "--arch", "baseline", "--widths", "8,8"], "4")):
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.returncode, result.stderr)
        assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    missing = run_cli("train", "--dataset", "csv", "--labels", tmp_path / "nope.csv", "--audio-root", tmp_path)
    assert missing.returncode == 1 and "nope.csv: cannot read" in missing.stderr
