"""File names and tag values with control characters: nothing tagger prints to a terminal
carries them raw (a name cannot clear the screen or forge a line), CSV round-trips every
value through a standard reader, and m3u/paths lines survive ``str.splitlines()`` and are read
back by ``tagger learn --like``."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys

import mutagen
import pytest
from conftest import music_like, run_cli, write_audio

RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202e]")  # \t and \n are a table's and a line's own
ALL_CONTROLS = "".join(chr(i) for i in range(1, 32)) + "\x7f\x85\u2028\u2029"


@pytest.fixture(scope="module")
def untidy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("untidy")
    root = tmp / "music"
    root.mkdir()
    names = ["clear\x1b[2Jscreen.flac", "para\u2028graph.flac", "form\x0cfeed.flac", "plain.flac",
             "rtl\u202egnp.flac", "c1\x9b31m.flac"]
    for i, name in enumerate(names):
        write_audio(root / name, music_like(4.0, 22050, i), 22050)
    f = mutagen.File(root / "plain.flac")
    f["TITLE"] = ["Bare\rCR"]  # a CR alone: no LF in the value to make a writer quote it
    f["ALBUM"] = ["All " + ALL_CONTROLS + " end"]
    f["ARTIST"] = ["Some\u2028One"]
    f.save()
    (root / "fake\x1b]0;owned\x07.mp3").write_bytes(b"not audio at all" * 100)
    db = tmp / "lib.db"
    scan = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "0")
    assert scan.returncode == 0, scan.stdout + scan.stderr
    return root, db, scan, names


def test_scan_and_write_print_no_raw_control_character(untidy):
    root, db, scan, _ = untidy
    assert "failed 1" in scan.stdout
    for text in (scan.stdout, scan.stderr):
        assert not RAW.search(text), repr(text)
    assert "\\x1b" in scan.stdout  # the failed file is named, escaped
    for args in (["--dry-run", "--min", "0"], ["--min", "0"], ["--undo"]):
        out = run_cli("write", "--db", db, *args)
        assert out.returncode == 0, out.stdout + out.stderr
        for text in (out.stdout, out.stderr):
            assert not RAW.search(text), (args, repr(text))
    for cmd in (["stats"], ["query", "-t", "piano"], ["show", str(root / "plain.flac")]):
        out = run_cli(*cmd, "--db", db)
        assert out.returncode == 0 and not RAW.search(out.stdout + out.stderr), (cmd, repr(out.stdout))


def test_csv_round_trips_every_value(untidy):
    root, db, _, names = untidy
    out = subprocess.run([sys.executable, "-m", "tagger", "query", "-t", "piano", "--db", str(db), "-n", "0",
                          "-f", "csv"], capture_output=True)  # bytes: text mode would turn a CR into a LF
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout.decode("utf-8"), newline="")))
    assert len(rows) == len(names)
    assert {r["path"] for r in rows} == {str(root / n) for n in names}
    plain = next(r for r in rows if r["path"].endswith("plain.flac"))
    assert plain["title"] == "Bare\rCR" and plain["artist"] == "Some\u2028One"
    assert plain["album"] == "All " + ALL_CONTROLS + " end"


def test_m3u_and_paths_survive_splitlines_and_learn_reads_them_back(untidy, tmp_path):
    root, db, _, names = untidy
    for fmt in ("m3u", "paths"):
        out = run_cli("query", "-t", "piano", "--db", db, "-n", "0", "-f", fmt)
        assert out.returncode == 0, out.stderr
        entries = [line for line in out.stdout.splitlines() if line and not line.startswith("#")]
        assert all((root / e).relative_to(root) and (root / e).exists() for e in entries), entries
        assert len(entries) == len(names) - 2  # the U+2028 and form feed names cannot be one line
        assert "skipped 2 tracks whose path has a line break" in out.stderr
        if fmt == "m3u":
            assert len(out.stdout.splitlines()) == 1 + 2 * len(entries)
            playlist = tmp_path / "picked.m3u"
            playlist.write_text(out.stdout, encoding="utf-8")
    learned = run_cli("learn", "mine", "--like", playlist, "--db", db)
    assert learned.returncode == 0, learned.stdout + learned.stderr
    assert f"{len(names) - 2} liked" in learned.stdout, learned.stdout
