"""The files' own metadata: read at scan time from tagged MP3/FLAC/M4A files, shown by
query and show, and usable as filters."""

import csv
import io
import json
import sqlite3

import mutagen
import pytest
from conftest import music_like, run_cli, write_audio, write_m4a
from mutagen.easyid3 import EasyID3
from mutagen.easymp4 import EasyMP4

TAGS = {
    "a.mp3": {"title": "Blue Train", "artist": "John Coltrane", "album": "Blue Train", "genre": "Jazz",
              "date": "1958", "tracknumber": "1/5"},
    "b.flac": {"title": "Strange Fruit", "artist": "Nina Simone", "album": "Pastel Blues", "genre": "Vocal Jazz",
               "date": "1965-10-01", "tracknumber": "7", "albumartist": "Nina Simone"},
    "c.m4a": {"title": "Windowlicker", "artist": "Aphex Twin", "album": "Windowlicker", "genre": "Electronic",
              "date": "1999", "tracknumber": "1"},
    "e.ogg": {"title": "Love = War", "artist": "Émilie Simon", "date": "①", "tracknumber": "99999999999999999999"},
}


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    root = tmp_path_factory.mktemp("tagged")
    write_audio(root / "a.mp3", music_like(4.0, 44100, 1), 44100, format="MP3")
    write_audio(root / "b.flac", music_like(4.0, 44100, 2), 44100)
    write_m4a(root / "c.m4a", music_like(4.0, 44100, 3))
    write_audio(root / "d-untagged.wav", music_like(4.0, 16000, 4))
    write_audio(root / "e.ogg", music_like(4.0, 44100, 5), 44100, subtype="VORBIS")
    for name, values in TAGS.items():
        path = root / name
        f = EasyID3() if name.endswith(".mp3") else EasyMP4(path) if name.endswith(".m4a") else mutagen.File(path)
        # (e.ogg: a year no number parser should trust, a track number beyond any integer column)
        for k, v in values.items():
            f[k] = [v]
        f.save(path) if name.endswith(".mp3") else f.save()
    db = root.parent / "meta.db"
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "1")
    assert result.returncode == 0 and "failed 0" in result.stdout, result.stderr
    return root, db


def test_scan_stores_each_files_metadata(tagged):
    root, db = tagged
    with sqlite3.connect(db) as conn:
        rows = {p.rsplit("/", 1)[1]: r for p, *r in conn.execute(
            "SELECT path, title, artist, album, album_artist, genre, year, track_no FROM tracks")}
    assert rows["a.mp3"] == ["Blue Train", "John Coltrane", "Blue Train", None, "Jazz", 1958, 1]
    assert rows["b.flac"] == ["Strange Fruit", "Nina Simone", "Pastel Blues", "Nina Simone", "Vocal Jazz", 1965, 7]
    assert rows["c.m4a"][:2] == ["Windowlicker", "Aphex Twin"] and rows["c.m4a"][5:] == [1999, 1]
    assert rows["d-untagged.wav"] == [None] * 7
    assert rows["e.ogg"] == ["Love = War", "Émilie Simon", None, None, None, None, None]  # stored, not a crash


def test_query_shows_metadata_in_every_format(tagged):
    root, db = tagged
    out = run_cli("query", "-t", "techno", "-n", "0", "-f", "json", "--db", db)
    records = {r["path"].rsplit("/", 1)[1]: r for r in json.loads(out.stdout)}
    assert records["b.flac"]["artist"] == "Nina Simone" and records["b.flac"]["year"] == 1965
    assert records["d-untagged.wav"]["title"] is None
    m3u = run_cli("query", "-t", "techno", "-n", "0", "-f", "m3u", "--db", db).stdout
    assert "#EXTINF:4,John Coltrane - Blue Train\n" in m3u and "#EXTINF:4,d-untagged\n" in m3u
    rows = list(csv.DictReader(io.StringIO(run_cli("query", "-t", "piano", "-n", "0", "-f", "csv", "--db", db).stdout)))
    assert {r["artist"] for r in rows} == {"John Coltrane", "Nina Simone", "Aphex Twin", "Émilie Simon", ""}
    table = run_cli("query", "-t", "piano", "--db", db).stdout
    assert "Aphex Twin - Windowlicker" in table
    show = run_cli("show", root / "a.mp3", "--db", db)
    assert "artist: John Coltrane" in show.stdout and "year: 1958" in show.stdout


@pytest.mark.parametrize("where,expected", [
    (["artist=nina simone"], {"b.flac"}),
    (["genre~JAZZ"], {"a.mp3", "b.flac"}),
    (["year>=1960"], {"b.flac", "c.m4a"}),
    (["year>=1960", "year<=1990"], {"b.flac"}),
    (["genre~%"], set()),  # % is a character to look for, not a wildcard
    (["format=m4a"], {"c.m4a"}),
    (["album~pastel BLUES"], {"b.flac"}),
    (["artist=émilie simon"], {"e.ogg"}),  # SQLite's own LOWER() folds ASCII only
    (["title~Love = War"], {"e.ogg"}),  # an operator inside the value
])
def test_where_filters(tagged, where, expected):
    root, db = tagged
    args = [a for w in where for a in ("--where", w)]
    for extra in ([], ["--tag", "piano"]):  # one term (the fast path otherwise) and two
        out = run_cli("query", "-t", "techno", *extra, "-n", "10", "-f", "paths", *args, "--db", db)
        assert out.returncode == 0, out.stderr
        assert {p.rsplit("/", 1)[1] for p in out.stdout.split()} == expected


@pytest.mark.parametrize("where,message", [("nope=1", "unknown field 'nope'"), ("year~19", "year is a number"),
                                           ("artist>=3", "needs a number field"), ("year=soon", "whole number"),
                                           ("artist", "is not FIELD=VALUE")])
def test_bad_where_is_one_line(tagged, where, message):
    root, db = tagged
    out = run_cli("query", "-t", "techno", "--where", where, "--db", db)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_tracks_scanned_before_metadata_get_it_on_the_next_scan_without_rescoring(tagged, tmp_path):
    import shutil

    root, db = tagged
    old = tmp_path / "old.db"
    shutil.copy(db, old)
    with sqlite3.connect(old) as conn:  # as a schema-2 library's tracks come out of the migration
        conn.execute("UPDATE tracks SET title = NULL, artist = NULL, year = NULL, metadata_read = NULL")
        before = dict(conn.execute("SELECT path, scanned_at FROM tracks"))
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", old, "--workers", "0")
    assert result.returncode == 0 and "0 scanned" in result.stdout, result.stdout + result.stderr
    assert "read the file metadata (artist, title, …) of 5 tracks" in result.stdout
    with sqlite3.connect(old) as conn:
        assert dict(conn.execute("SELECT path, scanned_at FROM tracks")) == before  # not scored again
        assert conn.execute("SELECT artist, year FROM tracks WHERE path LIKE '%b.flac'").fetchone() == ("Nina Simone", 1965)
        assert conn.execute("SELECT count(*) FROM tracks WHERE metadata_read IS NULL").fetchone() == (0,)
