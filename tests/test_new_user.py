"""What a new user meets: help that reads whole, numbers that agree between commands, hints
that say what to do next, and nothing done behind their back."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import types

import mutagen
import pytest
from conftest import music_like, run_cli, write_audio

from tagger.cli import scan_cmd, train_cmd


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("newuser")
    root = tmp / "music"
    root.mkdir()
    for i in range(3):
        write_audio(root / f"track{i}.flac", music_like(5.0, 22050, i), 22050)
    f = mutagen.File(root / "track0.flac")
    f["ARTIST"], f["TITLE"] = ["Someone"], ["A Song"]
    f.save()
    db = tmp / "lib.db"
    out = run_cli("scan", root, "--db", db, "--workers", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    return root, db


def help_of(*args, **env) -> str:
    return subprocess.run([sys.executable, "-m", "tagger", *args, "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "300", **env}).stdout


def test_rate_and_eta_wait_for_a_real_average():
    task = types.SimpleNamespace(elapsed=0.4, completed=64, total=1000, finished=False, fields={"hours": 0.1})
    assert "–" in scan_cmd._Rate().render(task).plain  # 160 tracks/s from one batch: not shown
    assert scan_cmd._Eta().render(task).plain == "-:--:--"
    task.elapsed = 20.0
    assert "3.2 tracks/s" in scan_cmd._Rate().render(task).plain
    assert scan_cmd._Eta().render(task).plain == "0:04:52"


def test_help_reads_whole():
    assert "tagger[ray]" in help_of("scan")
    top = help_of()
    rows = [line for line in top.splitlines() if line.startswith("│ ") and line.strip("│ ")]
    commands = [r for r in rows if r[2:3] != " "]  # a command's row (not a continued one)
    assert len(commands) >= 12 and all(r.rstrip(" │").endswith((".", ")")) for r in commands), commands
    assert "Now: /some/where/lib.db (from TAGGER_DB)" in help_of("write", TAGGER_DB="/some/where/lib.db")
    assert "Learned tags" in help_of("write") and "0.5" in help_of("write")


def test_counts_agree_with_query_and_write(lib):
    _, db = lib
    out = run_cli("tags", "--db", db, "--json")
    assert json.loads(out.stdout)["min"] == 0.2


def test_weak_match_hint_does_not_blame_the_library(lib):
    _, db = lib
    out = run_cli("query", "-t", "raw:choral", "--db", db)
    assert "no track scores above 0.2" in out.stderr
    assert "may hold no such tracks" not in out.stderr and "still ranked" in out.stderr


def test_where_without_match_names_the_condition(lib):
    _, db = lib
    out = run_cli("query", "-t", "piano", "--db", db, "--where", "artist=Nobody At All")
    assert "--where artist=Nobody At All" in out.stderr, out.stderr


def test_table_names_tracks_without_metadata_by_file(lib):
    _, db = lib
    out = run_cli("query", "-t", "piano", "--db", db)
    lines = [line for line in out.stdout.splitlines() if "track1.flac" in line]
    assert lines and "track1 " in lines[0].replace("track1.flac", ""), out.stdout
    assert "Someone - A Song" in out.stdout


def test_show_top(lib):
    root, db = lib
    out = run_cli("show", root / "track0.flac", "--db", db, "--top", "3", "--json")
    data = json.loads(out.stdout)
    assert len(data["tags"]) + len(data["learned"]) == 3


def test_tag_takes_a_folder(lib):
    root, _ = lib
    out = run_cli("tag", root, "--json", "--top", "1", "--chunks", "1")
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(line)["path"] for line in out.stdout.splitlines()) == \
        sorted(str(p) for p in root.glob("*.flac"))


def test_models_info_piped_is_plain():
    out = run_cli("models", "info")
    assert all(line == line.rstrip() for line in out.stdout.splitlines())
    assert "…" not in out.stdout and "license: ISC" in out.stdout


def test_a_mistyped_db_is_refused_and_creates_nothing(lib, tmp_path):
    root, _ = lib
    missing = tmp_path / "no" / "such" / "folder" / "lib.db"
    out = run_cli("scan", root, "--db", missing)
    assert out.returncode == 1 and "no folder" in out.stderr, out.stdout + out.stderr
    assert not (tmp_path / "no").exists()


def test_prune_and_write_tags_say_what_to_do(lib, tmp_path):
    root, db = lib
    import shutil

    mine = tmp_path / "music"
    shutil.copytree(root, mine)
    db2 = tmp_path / "lib.db"
    assert run_cli("scan", mine, "--db", db2, "--workers", "0").returncode == 0
    out = run_cli("scan", mine, "--db", db2, "--workers", "0", "--write-tags")
    assert "'tagger write'" in out.stdout, out.stdout
    (mine / "track2.flac").unlink()
    out = run_cli("prune", "--db", db2)
    assert "removed 0" in out.stdout and "run 'tagger scan'" in out.stderr, out.stdout + out.stderr


def test_sigterm_ends_a_scan_with_its_summary(tmp_path):
    root = tmp_path / "music"
    root.mkdir()
    for i in range(30):
        write_audio(root / f"t{i:02d}.wav", music_like(30.0, 16000, i), 16000)
    db = tmp_path / "lib.db"
    proc = subprocess.Popen([sys.executable, "-m", "tagger", "scan", str(root), "--db", str(db), "--workers", "1",
                             "--chunks", "all"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, out + err
    assert "to scan were scanned before the interruption" in out and "terminated" in err, out + err


def test_training_warns_when_validation_cannot_judge(capsys):
    result = types.SimpleNamespace(unranked=None, best_epoch=1, stopped_early=False, test=None,
                                   best_valid={"roc_auc": 1.0, "pr_auc": 1.0, "tags_evaluated": 1},
                                   model_path="run/model.safetensors")
    train_cmd._print_result(result, 50)
    assert "1 of 50 tags: too few" in capsys.readouterr().err
