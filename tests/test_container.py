"""Files cut short are failed with the reason, not stored as short tracks; a file's format is
read from its content, not its extension."""

from __future__ import annotations

import shutil

import pytest
from conftest import music_like, run_cli, write_audio

from tagger.audio.container import content_format, truncation


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("whole")
    audio = music_like(20.0, 44100, 1)
    made = {"ogg": write_audio(d / "a.ogg", audio, 44100, subtype="VORBIS"),
            "opus": write_audio(d / "a.opus", music_like(20.0, 48000, 1), 48000, format="OGG", subtype="OPUS"),
            "flac": write_audio(d / "a.flac", audio, 44100),
            "wav": write_audio(d / "a.wav", audio, 44100),
            "mp3": write_audio(d / "a.mp3", audio, 44100, format="MP3")}
    return made


def cut(src, dst, keep: float):
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * keep)])
    return dst


def test_whole_files_are_whole_and_named_by_content(files, tmp_path):
    for fmt, path in files.items():
        assert truncation(path) is None, fmt
        assert content_format(path) == fmt
    renamed = shutil.copy(files["mp3"], tmp_path / "really-an-mp3.flac")
    assert content_format(renamed) == "mp3"
    assert content_format(shutil.copy(files["ogg"], tmp_path / "x.mp3")) == "ogg"


@pytest.mark.parametrize("fmt", ["ogg", "opus", "flac", "wav"])
def test_cut_files_are_found(files, tmp_path, fmt):
    short = cut(files[fmt], tmp_path / f"short.{fmt}", 0.3)
    assert truncation(short).startswith("truncated"), fmt


def test_scan_fails_a_cut_file_and_counts_formats_by_content(files, tmp_path):
    root = tmp_path / "music"
    root.mkdir()
    cut(files["ogg"], root / "cut.ogg", 0.25)
    shutil.copy(files["mp3"], root / "mislabelled.flac")
    shutil.copy(files["flac"], root / "ok.flac")
    db = tmp_path / "lib.db"
    out = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "failed 1" in out.stdout and "cut.ogg: truncated" in out.stdout, out.stdout
    stats = run_cli("stats", "--db", db, "--json")
    assert stats.returncode == 0, stats.stderr
    import json
    formats = json.loads(stats.stdout)["formats"]
    assert formats.get("mp3") == 1 and formats.get("flac") == 1, formats
