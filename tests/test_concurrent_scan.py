"""Several scanners on one PostgreSQL database (tests/pg_server.py): each file is scored once,
a scanner that dies gives its files back, rescans still see moves and deletions, and write,
undo and learn keep their one-at-a-time rule against scans."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import music_like, run_cli, write_audio
from sqlalchemy import create_engine, text

from tagger.store.db import db_url

SCANNED = re.compile(r"^(\d+) scanned · ", re.M)


def _library(root: Path, folders: dict[str, int], seconds: float = 4.0) -> list[Path]:
    files = []
    for folder, n in folders.items():
        (root / folder).mkdir(parents=True)
        for i in range(n):
            files.append(write_audio(root / folder / f"t{i:02d}.wav", music_like(seconds, 16000, len(files)), 16000))
    return files


def _scan(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tagger", "scan", "-m", "musicnn-vgg-mtt", *map(str, args), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _scanned(proc: subprocess.Popen) -> int:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return int(SCANNED.search(out).group(1))


def _tracks(url: str) -> dict[str, tuple]:
    engine = create_engine(db_url(url).replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        rows = conn.execute(text("select t.path, t.id, t.status, count(s.tag_id) from tracks t "
                                 "left join scores s on s.track_id = t.id group by t.id")).all()
    engine.dispose()
    return {path: (track_id, status, n) for path, track_id, status, n in rows}


def test_two_scanners_on_overlapping_folders_score_each_file_once_and_rescan_moves(tmp_path, pg_url):
    root = tmp_path / "music"
    files = _library(root, {"a": 8, "b": 2})
    # started together, on the same files by different roots: both begin with a/t00.wav
    first, second = _scan(root, "--db", pg_url), _scan(root / "a", "--db", pg_url)
    counts = [_scanned(first), _scanned(second)]
    assert sum(counts) == len(files), counts  # no file scored twice, none left out
    stored = _tracks(pg_url)
    assert sorted(stored) == sorted(map(str, files))
    assert all(status == "ok" and n == 50 for _, status, n in stored.values())

    # a move out of the folder one scanner sees into a folder only the other sees, a deletion
    moved_from, deleted = root / "a" / "t03.wav", root / "a" / "t05.wav"
    (root / "c").mkdir()
    moved_to = root / "c" / "t03.wav"
    os.rename(moved_from, moved_to)
    deleted.unlink()
    first, second = _scan(root, "--db", pg_url), _scan(root / "a", "--db", pg_url)
    assert [_scanned(first), _scanned(second)] == [0, 0]  # a move keeps its scores: nothing to score
    after = _tracks(pg_url)
    assert after[str(moved_to)] == (stored[str(moved_from)][0], "ok", 50)  # the same track, not missing
    assert str(moved_from) not in after
    assert after[str(deleted)][1] == "missing"
    assert sum(status == "ok" for _, status, _ in after.values()) == len(files) - 1


HOLD = """
import sys, time
from tagger.store.catalog import Store
from tagger.store.claims import Claims
claims = Claims(Store(sys.argv[1]).sql_engine)
assert claims.try_claim(sys.argv[2:]) == sys.argv[2:]
print("claimed", flush=True)
time.sleep(600)
"""


def test_a_file_another_scanner_holds_is_left_to_it_and_taken_after_that_scanner_is_killed(tmp_path, pg_url):
    files = _library(tmp_path / "music", {"a": 3})
    held = str(files[1])
    holder = subprocess.Popen([sys.executable, "-c", HOLD, pg_url, held], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        scan = _scan(tmp_path / "music", "--db", pg_url)
        out, err = scan.communicate(timeout=300)
        assert scan.returncode == 0, err
        assert int(SCANNED.search(out).group(1)) == 2
        assert "0 of the files planned here were stored by them, 1 were still theirs" in out
        assert held not in _tracks(pg_url)  # skipped, not waited for
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the claim: the server ends its session
        holder.wait()
    assert _scanned(_scan(tmp_path / "music", "--db", pg_url)) == 1
    assert _tracks(pg_url)[held][1:] == ("ok", 50)


def _advisory_locks(url: str) -> int:
    engine = create_engine(db_url(url).replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        n = conn.execute(text("select count(*) from pg_locks where locktype = 'advisory' and "
                              "database = (select oid from pg_database where datname = current_database())")).scalar()
    engine.dispose()
    return n


def test_a_scanner_killed_mid_scan_leaves_its_files_to_the_next(tmp_path, pg_url):
    from tagger.store.catalog import Store

    files = _library(tmp_path / "music", {"a": 12})
    Store(pg_url).sql_engine.dispose()  # the tables, to watch from the start
    proc = _scan(tmp_path / "music", "--db", pg_url, start_new_session=True)
    deadline = time.monotonic() + 120
    while not _tracks(pg_url) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the scanner and its decoding processes, mid-scan
    proc.communicate()
    before = _tracks(pg_url)
    assert 0 < len(before) < len(files), "the scan was not caught mid-way; make the files longer"
    deadline = time.monotonic() + 10
    while _advisory_locks(pg_url) and time.monotonic() < deadline:
        time.sleep(0.1)  # the server notices the dead session
    assert _advisory_locks(pg_url) == 0
    assert _scanned(_scan(tmp_path / "music", "--db", pg_url)) == len(files) - len(before)
    assert all(status == "ok" and n == 50 for _, status, n in _tracks(pg_url).values())
    assert _advisory_locks(pg_url) == 0  # a scan that ends gives back every claim


def _one_line(result) -> str:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_write_undo_and_learn_wait_for_no_scan_but_refuse_while_one_runs(tmp_path, pg_url):
    from tagger.store.catalog import Store
    from tagger.store.lock import writer_lock

    Store(pg_url).sql_engine.dispose()
    busy = "another tagger scan or write is writing to this database"
    with writer_lock(pg_url, shared=True):  # as a running scan holds it
        with writer_lock(pg_url, shared=True):  # a second scan is welcome
            pass
        for command in (("write", "--undo"), ("learn", "x", "--remove")):
            line = _one_line(run_cli(*command, "--db", pg_url))
            assert busy in line and "wait for it to finish" in line and "tagger-test-pw" not in line, line
    with writer_lock(pg_url):  # as a write holds it
        line = _one_line(run_cli("scan", "-m", "musicnn-vgg-mtt", tmp_path, "--db", pg_url))
        assert busy in line, line
        with pytest.raises(Exception, match=busy):
            with writer_lock(pg_url, shared=True):
                pass
    result = run_cli("write", "--undo", "--db", pg_url)
    assert result.returncode == 0 and "nothing to undo" in result.stdout, result


def test_a_track_moved_since_a_scanners_plan_is_not_marked_missing_by_it(db):
    """The race of two scanners of different folders: one plans (the track is gone from its
    folder), the other stores the move, then the first marks what it planned as missing."""
    from sqlalchemy import insert, select

    from tagger.store.catalog import Store
    from tagger.store.schema import tracks
    from tagger.store.text import path_key

    library = Store(db)
    with library.sql_engine.begin() as conn:
        rows = [{"path": p, "path_key": path_key(p), "size": 1, "mtime_ns": 1, "status": "ok"} for p in ("/a/x", "/a/y")]
        ids = conn.execute(insert(tracks).returning(tracks.c.id, sort_by_parameter_order=True), rows).scalars().all()
    library.move([(ids[0], "/c/x", 2)])  # the other scanner's move, after this one's plan
    library.set_missing([(ids[0], "/a/x"), (ids[1], "/a/y")])
    with library.sql_engine.connect() as conn:
        rows = dict(conn.execute(select(tracks.c.path, tracks.c.status)).all())
    library.sql_engine.dispose()
    assert rows == {"/c/x": "ok", "/a/y": "missing"}


def test_claims_on_a_session_the_server_ended_close_quietly_and_free_nothing_twice(pg_url):
    from tagger.store.claims import Claims
    from tagger.store.db import open_engine

    engine = open_engine(pg_url)
    claims = Claims(engine)
    assert claims.try_claim(["/m/a.flac", "/m/b.flac"]) == ["/m/a.flac", "/m/b.flac"]
    pid = claims.conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with engine.connect() as other:  # the server ends the scanner's session (a restart, an admin)
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        other.commit()
    claims.close()  # no error of its own: the scan's real outcome stays the one reported
    with Claims(engine) as again:  # and the claims went with the session
        assert again.try_claim(["/m/a.flac"]) == ["/m/a.flac"]


def test_results_the_cluster_lost_are_reported_not_stored_and_retried_next_scan(tmp_path):
    import numpy as np

    from tagger.engine.results import ModelOutput, TrackResult
    from tagger.model.modelfile import read_card
    from tagger.scan import ScanSummary, _Committer
    from tagger.store.catalog import Store

    library = Store(str(tmp_path / "lib.db"))
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    summary = ScanSummary(plan=None)
    store = _Committer(library, [model], summary, None)
    p, e = np.full(50, 0.2, np.float32), np.zeros(256, np.float32)
    store.add(TrackResult("/m/ok.flac", 1, 1, "f", "flac", 3.0, 1, (ModelOutput(p, e),)), [model])
    store.add(TrackResult("/m/lost.flac", 1, 1, error="its results never came back", retry=True), [model])
    store.flush()
    assert summary.scanned == 1 and [path for path, _ in summary.failed] == ["/m/lost.flac"]
    assert library.track("/m/ok.flac").status == "ok"
    assert library.track("/m/lost.flac") is None  # not stored as failed: the next scan plans it again
