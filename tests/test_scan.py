"""The library scan, end to end: real files, the real CLI, a real SQLite file."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import build_library, music_like, run_cli, write_audio


def db_rows(db, sql, *args):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def statuses(db):
    return dict(db_rows(db, "SELECT path, status FROM tracks"))


def scanned_at(db):
    return dict(db_rows(db, "SELECT path, scanned_at FROM tracks"))


def scan(root, db, *extra):
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "1", *extra)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("music")
    files = build_library(root)
    db = root.parent / "library.db"
    result = scan(root, db)
    return root, db, files, result


def test_every_good_file_has_50_probabilities(library):
    root, db, files, result = library
    st = statuses(db)
    for path in files["good"]:
        assert st[str(path)] == "ok", path
        (n,) = db_rows(db, "SELECT count(*) FROM scores JOIN tracks ON tracks.id = scores.track_id "
                           "WHERE tracks.path = ?", str(path))[0]
        assert n == 50
        (blob,) = db_rows(db, "SELECT vector FROM embeddings JOIN tracks ON tracks.id = embeddings.track_id "
                              "WHERE tracks.path = ?", str(path))[0]
        assert len(blob) == 256 * 2  # float16 embedding of the VGG model
    probs = [p for (p,) in db_rows(db, "SELECT prob FROM scores")]
    assert all(0.0 < p < 1.0 for p in probs)
    formats = dict(db_rows(db, "SELECT path, format FROM tracks"))
    assert formats[str(root / "sub" / "f.m4a")] == "m4a" and formats[str(root / "sub" / "d.opus")] == "opus"


def test_bad_files_are_recorded_with_a_reason(library):
    root, db, files, result = library
    errors = dict(db_rows(db, "SELECT path, error FROM tracks WHERE status = 'failed'"))
    assert set(errors) == {str(p) for p in files["bad"]}
    assert "empty file" in errors[str(root / "bad" / "empty.mp3")]
    assert "cannot decode" in errors[str(root / "bad" / "random.mp3")]
    assert errors[str(root / "bad" / "truncated.flac")]
    assert "failed 3" in result.stdout.replace("\n", " ")


def test_walk_skips_hidden_loops_duplicates_and_non_audio(library):
    root, db, files, result = library
    paths = set(statuses(db))
    assert len(paths) == len(files["good"]) + len(files["bad"])
    assert not any("/.hidden/" in p or p.endswith("cover.jpg") or "/loop/" in p for p in paths)
    assert str(root / "b.flac") in paths and str(root / "zz-alias.flac") not in paths


def test_rescan_touch_move_delete_prune(tmp_path):
    root = tmp_path / "music"
    root.mkdir()
    files = build_library(root, seconds=4.0)
    db = tmp_path / "lib.db"
    scan(root, db)
    before = scanned_at(db)

    result = scan(root, db)  # nothing changed: nothing is touched
    assert scanned_at(db) == before
    assert "0 scanned" in result.stdout and f"unchanged {len(before)}" in result.stdout

    touched = files["good"][0]
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))
    result = scan(root, db)  # touched, content as it was: its new time is stored, not scored again
    assert scanned_at(db) == before and "0 scanned" in result.stdout
    assert db_rows(db, "SELECT mtime_ns FROM tracks WHERE path = ?", str(touched)) == [(touched.stat().st_mtime_ns,)]
    data = bytearray(touched.read_bytes())  # changed content of the same size: scored again
    data[-2000:] = bytes(2000)
    touched.write_bytes(bytes(data))
    scan(root, db)
    after = scanned_at(db)
    assert after[str(touched)] > before[str(touched)]
    assert {p: t for p, t in after.items() if p != str(touched)} == \
           {p: t for p, t in before.items() if p != str(touched)}

    old = files["good"][1]
    score_before = db_rows(db, "SELECT s.tag_id, s.prob FROM scores s JOIN tracks t ON t.id = s.track_id "
                               "WHERE t.path = ? ORDER BY s.tag_id", str(old))
    new = root / "renamed" / "moved here.flac"
    new.parent.mkdir()
    shutil.move(old, new)
    result = scan(root, db)
    assert "moved 1" in result.stdout and "0 scanned" in result.stdout
    st = statuses(db)
    assert str(old) not in st and st[str(new)] == "ok"
    assert db_rows(db, "SELECT s.tag_id, s.prob FROM scores s JOIN tracks t ON t.id = s.track_id "
                       "WHERE t.path = ? ORDER BY s.tag_id", str(new)) == score_before

    gone = files["good"][2]
    gone.unlink()
    result = scan(root, db)
    assert "missing 1" in result.stdout and statuses(db)[str(gone)] == "missing"
    nothing = run_cli("query", "-t", "techno", "--db", db, "--min", "0.999")
    assert "no track" in nothing.stdout + nothing.stderr
    pruned = run_cli("prune", "--db", db)
    assert pruned.returncode == 0 and "removed 1 missing track" in pruned.stdout
    assert str(gone) not in statuses(db)
    assert db_rows(db, "SELECT count(*) FROM scores WHERE track_id NOT IN (SELECT id FROM tracks)") == [(0,)]

    other = run_cli("scan", root, "--db", db, "--model", "musicnn-mtt", "--dry-run")
    assert other.returncode == 0 and f"{len(statuses(db)) - 3} would scan" in other.stdout
    assert scanned_at(db).keys() == statuses(db).keys()  # dry run wrote nothing
    assert db_rows(db, "SELECT count(*) FROM models") == [(1,)], "a dry run adds no model row"
    fresh = tmp_path / "never.db"
    assert run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", fresh, "--dry-run").returncode == 0
    assert not fresh.exists(), "a dry run creates no database"


def _consistent(db):
    assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]
    counts = db_rows(db, "SELECT t.status, count(s.tag_id) FROM tracks t LEFT JOIN scores s "
                         "ON s.track_id = t.id GROUP BY t.id")
    assert all((status == "ok") == (n == 50) for status, n in counts), counts
    assert all(n in (0, 50) for _, n in counts)


@pytest.fixture(scope="module")
def fifty_tracks(tmp_path_factory):
    """Fifty 12 s tracks (200 chunks): a scan long enough to be stopped mid-way."""
    root = tmp_path_factory.mktemp("fifty")
    for i in range(50):
        write_audio(root / f"t{i:02d}.flac", music_like(12.0, 16000, i))
    return root


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_scan_is_consistent_and_resumes(fifty_tracks, tmp_path, sig):
    from tagger.store.db import StoreError
    from tagger.store.lock import writer_lock

    root = fifty_tracks
    db = tmp_path / "lib.db"
    proc = subprocess.Popen([sys.executable, "-m", "tagger", "scan", "-m", "musicnn-vgg-mtt", str(root), "--db", str(db),
                             "--workers", "0", "--chunks", "all", "--compile", "no"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.05)
        try:
            if db.exists() and db_rows(db, "SELECT count(*) FROM tracks")[0][0] >= 3:
                break
        except sqlite3.OperationalError:
            pass
    with pytest.raises(StoreError, match="another tagger scan or write is writing"):
        with writer_lock(str(db)):  # a second writer is turned away while the scan runs
            pass
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    done = db_rows(db, "SELECT count(*) FROM tracks WHERE status = 'ok'")[0][0]
    assert 3 <= done < 50, "the scan must have been stopped mid-way"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Run the same command again" in err
        assert "of 50 to scan were scanned before the interruption" in out  # not "35 scanned · new 50"
        assert "Traceback" not in err
    _consistent(db)
    result = scan(root, db, "--workers", "0")
    assert f"{50 - done} scanned" in result.stdout and f"unchanged {done}" in result.stdout
    _consistent(db)
    assert db_rows(db, "SELECT count(*) FROM tracks WHERE status = 'ok'") == [(50,)]


def test_missing_root_is_an_error_and_marks_nothing(tmp_path):
    root = tmp_path / "drive"
    root.mkdir()
    write_audio(root / "a.wav", music_like(3.0, 16000, 1))
    db = tmp_path / "lib.db"
    scan(root, db)
    unmounted = tmp_path / "drive-moved"
    root.rename(unmounted)
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db)
    assert result.returncode == 1 and "no such file or folder" in result.stderr
    assert statuses(db) == {str(root / "a.wav"): "ok"}


def test_undecodable_file_names_are_recorded_as_failures(tmp_path):
    root = tmp_path / "music"
    root.mkdir()
    write_audio(root / "fine.wav", music_like(3.0, 16000, 1))
    bad = os.path.join(os.fsencode(root), b"caf\xe9.wav")  # Latin-1 bytes, not UTF-8
    os.rename(write_audio(root / "other.wav", music_like(3.0, 16000, 2)), bad)
    db = tmp_path / "lib.db"
    result = scan(root, db)
    assert "failed 1" in result.stdout
    errors = dict(db_rows(db, "SELECT path, error FROM tracks WHERE status = 'failed'"))
    assert list(errors) == [str(root / "caf\\xe9.wav")] and "not valid UTF-8" in errors[str(root / "caf\\xe9.wav")]
    stats = run_cli("stats", "--db", db)
    assert "1 failed" in stats.stdout and "not valid UTF-8" in stats.stdout
    again = scan(root, db)  # recorded once: the next scan neither redoes it nor marks it missing
    assert "failed 0" in again.stdout and "missing 0" in again.stdout
    assert statuses(db)[str(root / "caf\\xe9.wav")] == "failed"
