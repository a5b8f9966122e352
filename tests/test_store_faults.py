"""The shared store under faults (issue 19): real SQLite files and the real PostgreSQL server
(tests/pg_server.py) with faults injected: full disks, read-only and damaged files, server
timeouts, terminated sessions and restarts, hostile strings. What is checked: no silent loss
of the writer lock, one bad path costs one file, and one line for every failure."""

from __future__ import annotations

import pickle

import pytest

from tagger.errors import TaggerError


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_every_error_class_survives_a_pickle_round_trip():
    """Ray sends a worker's exception to the driver pickled: a TaggerError must arrive whole."""
    import tagger.engine.ray_engine  # noqa: F401 - each module defines error classes of its own
    import tagger.files.tagfile  # noqa: F401
    import tagger.library.writer  # noqa: F401
    import tagger.store.db  # noqa: F401

    classes = [TaggerError, *_all_subclasses(TaggerError)]
    assert len(classes) >= 9
    for cls in classes:
        for args in (("/m/a.flac", "cannot be read", "try again"), (None, "no path", None)):
            error = cls(*args)
            back = pickle.loads(pickle.dumps(error))
            assert type(back) is cls and str(back) == str(error)
            assert (back.path, back.reason, back.hint) == (error.path, error.reason, error.hint)


# --- the PostgreSQL writer lock: held for real ------------------------------------------------

def _lock_pids(url: str) -> list[int]:
    """Backends holding the writer lock (shared or not) of the database at ``url``."""
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    engine = create_engine(db_url(url))
    with engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 8021863 "
                                 "AND objid = 1 AND objsubid = 2 AND granted AND database = "
                                 "(SELECT oid FROM pg_database WHERE datname = current_database())")).scalars().all()
    engine.dispose()
    return list(pids)


def _terminate(url: str, pids: list[int]) -> None:
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    engine = create_engine(db_url(url))
    with engine.connect() as conn:
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    engine.dispose()


def _result(path: str, p: float = 0.3):
    import numpy as np

    from tagger.engine.results import TrackResult

    return TrackResult(path, 1, 1, "f", "flac", 3.0, 1, np.full(50, p, np.float32), np.zeros(256, np.float32))


def test_a_command_whose_lock_session_the_server_ended_writes_nothing_more(pg_url):
    from tagger.model.modelfile import read_card
    from tagger.store.catalog import Store
    from tagger.store.db import StoreError

    library = Store(pg_url)
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    for shared in (True, False):  # a scan's lock, and a write's or learn's
        with library.writing(shared=shared):
            library.save([_result(f"/m/before-{shared}.flac")], model)
            _terminate(pg_url, _lock_pids(pg_url))  # an administrator, a reaper, a restart
            with pytest.raises(StoreError, match="lost the database's writer lock"):
                library.save([_result(f"/m/after-{shared}.flac")], model)
            with pytest.raises(StoreError, match="lost the database's writer lock"):
                library.lock.check()  # and it says so from then on, without asking the server
        assert library.track(f"/m/before-{shared}.flac").status == "ok"
        assert library.track(f"/m/after-{shared}.flac") is None
    library.sql_engine.dispose()


def _scan(*args, **kw):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "tagger", "scan", *map(str, args), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _one_line(result_or_stderr, status: int = 1) -> str:
    stderr = result_or_stderr if isinstance(result_or_stderr, str) else result_or_stderr.stderr
    if not isinstance(result_or_stderr, str):
        assert result_or_stderr.returncode == status, result_or_stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tagger: error: "), stderr
    return lines[0]


def _library(root, n: int, seconds: float = 4.0, first: int = 0) -> list:
    from conftest import music_like, write_audio

    root.mkdir(parents=True, exist_ok=True)
    return [write_audio(root / f"t{i:02d}.wav", music_like(seconds, 16000, first + i), 16000) for i in range(n)]


def _count(url: str, sql: str) -> int:
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    engine = create_engine(db_url(url))
    with engine.connect() as conn:
        n = conn.execute(text(sql)).scalar_one()
    engine.dispose()
    return n


def test_a_scan_that_lost_its_lock_stops_and_a_learn_beside_it_misses_no_track(tmp_path, pg_url):
    """The issue's case: the server ends the session of a scan's lock mid-scan, a learn runs
    (the lock is free), and the scan must not go on storing tracks that the learned tag never
    scored: it stops with one line, and every stored track has the learned tag's score."""
    import time

    from conftest import run_cli

    liked = _library(tmp_path / "liked", 3)
    assert run_cli("scan", tmp_path / "liked", "--db", pg_url, "--workers", "1").returncode == 0
    _library(tmp_path / "more", 40, first=10)
    scan = _scan(tmp_path / "more", "--db", pg_url)
    deadline = time.monotonic() + 120
    while _count(pg_url, "SELECT count(*) FROM tracks") <= 3 and scan.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _terminate(pg_url, _lock_pids(pg_url))
    while True:  # the lock is free now (a scan's commit may hold it for a moment)
        learned = run_cli("learn", "mine", *[a for p in liked for a in ("--like", p)], "--db", pg_url)
        if learned.returncode == 0 or scan.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    out, err = scan.communicate(timeout=300)
    assert learned.returncode == 0, learned.stderr
    assert scan.returncode == 1, (out, err)
    assert "lost the database's writer lock" in _one_line(err)
    import json

    ok = _count(pg_url, "SELECT count(*) FROM tracks WHERE status = 'ok'")
    ranked = run_cli("query", "-t", "mine", "-n", "0", "-f", "json", "--db", pg_url)  # tracks with its score
    assert 3 < ok < 43 and len(json.loads(ranked.stdout)) == ok, (ok, ranked.stdout[-500:])


def test_scans_survive_a_server_that_ends_idle_sessions_quickly(tmp_path, pg_url):
    """idle_session_timeout shorter than a round of claims: the lock's and the claims'
    sessions sit idle between rounds; the scan must neither lose them nor die."""
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url

    files = _library(tmp_path / "music", 6)
    name = pg_url.rsplit("/", 1)[1]
    engine = create_engine(db_url(pg_url))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" SET idle_session_timeout = 300'))  # 0.3 s
    engine.dispose()
    scan = _scan(tmp_path / "music", "--db", pg_url)
    out, err = scan.communicate(timeout=300)
    assert scan.returncode == 0, err
    assert f"{len(files)} scanned" in out
    assert _count(pg_url, "SELECT count(*) FROM tracks WHERE status = 'ok'") == len(files)


# --- any path, any text: one bad row costs one file ---------------------------------------------

def _long_folder(root):
    """A folder whose path is over 3 kB of characters that do not compress (the index limit is
    2,704 bytes, after compression), in components of at most 255 bytes."""
    part = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(1100))
    folder = root
    for i in range(0, len(part), 80):  # 80 CJK characters: 240 bytes a name
        folder = folder / part[i:i + 80]
    folder.mkdir(parents=True)
    assert len(str(folder).encode()) > 3000
    return folder


def test_a_path_of_any_length_and_a_nul_in_a_tag_cost_nothing(tmp_path, db):
    """A scan of a folder holding a file at a path of over 3 kB and a file whose title has a
    NUL: every file is stored, with its scores (PostgreSQL refused both: the first stopped
    the whole scan, the second cost the file its scores)."""
    import json

    from conftest import music_like, run_cli, write_audio
    from mutagen.flac import FLAC

    root = tmp_path / "music"
    files = _library(root, 2)
    deep = _long_folder(root / "deep") / "long.wav"  # (libsndfile cannot write at such a path)
    write_audio(tmp_path / "long.wav", music_like(4.0, 16000, 7), 16000).rename(deep)
    nul = write_audio(root / "nul.flac", music_like(4.0, 16000, 8), 16000)
    tags = FLAC(nul)
    tags["title"] = "before\x00after"
    tags["artist"] = "Straße"
    tags.save()
    result = run_cli("scan", root, "--db", db, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "4 scanned" in result.stdout and "failed 0" in result.stdout, result.stdout
    for path in [*files, deep, nul]:
        shown = run_cli("show", path, "--db", db, "--json")
        assert shown.returncode == 0, shown.stderr
        assert len(json.loads(shown.stdout)["tags"]) == 50
    assert json.loads(run_cli("show", nul, "--db", db, "--json").stdout)["title"] == "beforeafter"
    again = run_cli("scan", root, "--db", db, "--workers", "1")  # and a rescan finds them unchanged
    assert "0 scanned" in again.stdout and "unchanged 4" in again.stdout, again.stdout


def test_a_row_the_database_refuses_costs_that_file_alone_named(db):
    """What the database still refuses (here an integer out of its range) fails that file, with
    the reason, and the others of the commit are kept."""
    from tagger.model.modelfile import read_card
    from tagger.store.catalog import Store

    library = Store(db)
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    batch = [_result("/m/a.flac"), _result("/m/big.flac"), _result("/m/b.flac")]
    batch[1].size = 2**70  # no file is that large; a BIGINT cannot hold it
    unsaved = dict(library.save(batch, model))
    assert list(unsaved) == ["/m/big.flac"] and "could not be stored" in unsaved["/m/big.flac"]
    assert library.track("/m/a.flac").status == "ok" and library.track("/m/b.flac").status == "ok"
    library.sql_engine.dispose()


# --- --where: one folding rule on both stores ---------------------------------------------------

PROBE_VALUES = ["Straße", "STRASSE", "strasse", "Ǆemal", "ǆemal", "ﬁnale", "Finale", "ΟΔΥΣΣΕΥΣ", "Οδυσσεύς",
                "ὈΔΥΣΣΕΎΣ", "İstanbul", "istanbul", "ıstanbul", "Ａｂｃ", "abc", "Å", "Å", "ß", "ẞ", "Ⅸ", "ix",
                "Ꮳherokee", "ꮳherokee", "\u00e9t\u00e9", "e\u0301te\u0301", "100% Band", "a_b", None]
PROBES = ["artist=Straße", "artist=strasse", "artist~SS", "artist=ǅemal", "artist=FINALE", "artist~ﬁ",
          "artist=ὀδυσσεύς", "artist~σσ", "artist=İSTANBUL", "artist=ISTANBUL", "artist=abc", "artist=Å",
          "artist=ss", "artist=ix", "artist=ꮳHEROKEE", "artist=été", "artist~%", "artist~_", "artist~",
          "path~STRASSE", "format=FLAC"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def probed(request, tmp_path_factory):
    """A library whose artists are the probe values, on each store."""
    import numpy as np

    from tagger.engine.results import TrackResult
    from tagger.model.modelfile import read_card
    from tagger.store.catalog import Store

    if request.param == "sqlite":
        db = str(tmp_path_factory.mktemp("probed") / "library.db")
    else:
        db = request.getfixturevalue("pg_server").create_database()
    library = Store(db)
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    rng = np.random.default_rng(5)
    batch = [TrackResult(f"/m/{i:02d}-{(v or 'none').replace('/', '')}.flac", 1, i, f"{i:040x}", "flac", 3.0, 1,
                         rng.random(50).astype(np.float32), rng.standard_normal(256).astype(np.float32),
                         metadata={"artist": v} if v else {})
             for i, v in enumerate(PROBE_VALUES)]
    library.save(batch, model)
    yield request.param, library, model


_answers: dict[str, dict] = {}


def test_where_gives_the_same_answers_on_both_stores_for_any_unicode(probed):
    from tagger.library.query import parse_terms, parse_where
    from tagger.store.query import TrackQuery, run_query
    from tagger.store.text import fold

    kind, library, model = probed
    terms = parse_terms(model.vocabulary, ["rock"])
    got = {}
    for probe in PROBES:
        (f,) = parse_where([probe])
        rows = run_query(library, TrackQuery(terms, None, None, (f,)), model)
        got[probe] = sorted(r.path for r in rows)
        value = fold(f.value)
        expected = sorted(
            f"/m/{i:02d}-{(v or 'none').replace('/', '')}.flac" for i, v in enumerate(PROBE_VALUES)
            if (f.field == "format") or (f.field == "path" and value in fold(f"/m/{i:02d}-{v or 'none'}.flac"))
            or (f.field == "artist" and v is not None and (value in fold(v) if f.op == "~" else fold(v) == value)))
        assert got[probe] == expected, probe
    assert len(got["artist=strasse"]) == 3 and len(got["artist=ss"]) == 2 and len(got["artist=ix"]) == 2  # ẞ, Ⅸ
    _answers[kind] = got
    if len(_answers) == 2:
        assert _answers["sqlite"] == _answers["postgresql"]
