"""What tagger write chooses to write, and what it leaves: learned tags from their own 0.5,
no write for a track with nothing to say, no empty tag block left by --remove."""

from __future__ import annotations

import hashlib

import mutagen
import pytest
from conftest import music_like, run_cli, write_audio

from tagger.library.writer import choose_tags
from tagger.model.vocab import Vocabulary
from tagger.store.catalog import StoredModel


def model_with_learned() -> StoredModel:
    vocab = Vocabulary(["piano", "slow", "female", "woman"], {"female_vocals": ["female", "woman"]})
    return StoredModel(1, "m", "0" * 64, (1, 2, 3, 4), vocab, learned={"calm_keys": 5})


@pytest.mark.parametrize("p, min_prob, written", [(0.3, 0.2, False), (0.49, 0.2, False), (0.5, 0.2, True),
                                                  (0.6, 0.2, True), (0.6, 0.7, False), (0.8, 0.7, True)])
def test_a_learned_tag_is_written_from_its_own_threshold(p, min_prob, written):
    scores = {"piano": 0.9, "slow": 0.25, "female": 0.1, "woman": 0.05, "calm_keys": p}
    chosen = dict(choose_tags(scores, model_with_learned(), 5, min_prob))
    assert ("calm keys" in chosen) == written
    assert ("slow" in chosen) == (0.25 >= min_prob)  # the model's own tags keep --min


def test_tags_of_equal_probability_are_written_in_name_order():
    """The same scores give the same tags in the same order in every file and every run (a tie
    broken by dict order would depend on how the scores were read)."""
    for scores in ({"slow": 0.4, "piano": 0.4, "female": 0.4, "woman": 0.1, "calm_keys": 0.0},
                   {"female": 0.4, "calm_keys": 0.0, "piano": 0.4, "woman": 0.1, "slow": 0.4}):
        assert [n for n, _ in choose_tags(scores, model_with_learned(), 5, 0.05)] == \
            ["female vocals", "piano", "slow"]


def test_write_help_says_so():
    out = run_cli("write", "--help").stdout
    assert "0.5" in out and "earned" in out


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_nothing_above_min_writes_nothing_and_remove_leaves_no_empty_tag(tmp_path):
    root = tmp_path / "music"
    root.mkdir()
    mp3 = write_audio(root / "a.mp3", music_like(5.0, 44100, 1), 44100, format="MP3")
    wav = write_audio(root / "b.wav", music_like(5.0, 44100, 2), 44100)
    assert mutagen.File(mp3).tags is None and mutagen.File(wav).tags is None
    original = {p: sha(p) for p in (mp3, wav)}
    db = tmp_path / "lib.db"
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "0")
    assert result.returncode == 0, result.stdout + result.stderr

    # no tag reaches --min: no TAGGER_MODEL-only write, and the summary says why
    result = run_cli("write", "--db", db, "--min", "0.999")
    assert result.returncode == 0, result.stderr
    assert "written" not in result.stdout.split("\n")[0], result.stdout
    assert "no tag at or above --min" in result.stdout
    assert {p: sha(p) for p in original} == original

    result = run_cli("write", "--db", db)
    assert result.returncode == 0 and "written 2" in result.stdout, result.stdout + result.stderr
    written = {p: sha(p) for p in original}
    # --remove takes tagger's fields out, and the tag block tagger made with them
    result = run_cli("write", "--db", db, "--remove")
    assert result.returncode == 0 and "written 2" in result.stdout, result.stdout + result.stderr
    for p in original:
        assert mutagen.File(p).tags is None, p
        assert sha(p) == original[p], p
    # and undoing the remove gives the written files back
    result = run_cli("write", "--db", db, "--undo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p: sha(p) for p in original} == written
