"""One track per real file across scans: a file reached through a symlink by a later scan is
the track already stored, a database that holds a file twice is repaired by the next scan,
and a file only touched (its time changed, not its content) is not scored again."""

from __future__ import annotations

import os
import sqlite3

from conftest import music_like, run_cli, write_audio

from tagger.store.text import fold, path_key


def tracks(db) -> list[str]:
    with sqlite3.connect(db) as conn:
        return sorted(p for (p,) in conn.execute("SELECT path FROM tracks"))


def scan(db, *paths):
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", *paths, "--db", db, "--workers", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def duplicate_track(db, path: str, as_path: str) -> None:
    """What an older tagger left: the track of ``path`` stored again under ``as_path``."""
    with sqlite3.connect(db) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(tracks)") if r[1] != "id"]
        given = {"path": as_path, "path_key": path_key(as_path), "path_folded": fold(as_path)}
        values = ", ".join("?" if c in given else c for c in cols)
        conn.execute(f"INSERT INTO tracks ({', '.join(cols)}) SELECT {values} FROM tracks WHERE path = ?",
                     (*(given[c] for c in cols if c in given), path))
        new_id, old_id = (conn.execute("SELECT id FROM tracks WHERE path = ?", (p,)).fetchone()[0]
                          for p in (as_path, path))
        for table in ("scores", "embeddings"):
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if r[1] != "track_id"]
            conn.execute(f"INSERT INTO {table} (track_id, {', '.join(cols)}) SELECT ?, {', '.join(cols)} "
                         f"FROM {table} WHERE track_id = ?", (new_id, old_id))


def test_one_track_per_file_across_scans(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    a = write_audio(music / "a.wav", music_like(4.0, 16000, 1), 16000)
    write_audio(music / "b.wav", music_like(4.0, 16000, 2), 16000)
    (tmp_path / "link").symlink_to(music)
    db = tmp_path / "lib.db"
    scan(db, music)
    assert tracks(db) == [str(music / "a.wav"), str(music / "b.wav")]

    # a later scan reaches the same files through a symlinked folder: the same tracks
    out = scan(db, tmp_path / "link")
    assert tracks(db) == [str(music / "a.wav"), str(music / "b.wav")], out
    assert "0 scanned" in out and "unchanged 2" in out, out

    # a database that already holds one file twice: the next scan keeps one track
    duplicate_track(db, str(music / "a.wav"), str(tmp_path / "link" / "a.wav"))
    assert len(tracks(db)) == 3
    out = scan(db, music)
    assert tracks(db) == [str(music / "a.wav"), str(music / "b.wav")], out
    assert "merged 1 duplicate track" in out, out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(DISTINCT track_id) FROM scores").fetchone()[0] == 2

    # touched (time only): not decoded and scored again, the new time is stored
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 10**10))
    out = scan(db, music)
    assert "0 scanned" in out and "changed 0" in out, out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT mtime_ns FROM tracks WHERE path = ?", (str(a),)).fetchone()[0] == \
            st.st_mtime_ns + 10**10
    # changed content of the same size is scored again
    data = bytearray(a.read_bytes())
    data[-1000:] = bytes(1000)
    a.write_bytes(bytes(data))
    out = scan(db, music)
    assert "1 scanned" in out and "changed 1" in out, out
