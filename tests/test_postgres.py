"""PostgreSQL as a first-class store: every command against a real server (tests/pg_server.py)
gives what it gives on SQLite; bad URLs, servers and credentials are one line."""

from __future__ import annotations

import json
import re
import shutil

from conftest import build_library, run_cli

from tagger.store.db import display_db


def _ok(*args):
    result = run_cli(*args)
    assert result.returncode == 0, (args, result.stderr)
    return result


def _session(root, db, goods) -> dict:
    """Every command of a library's life, on ``db``; what each printed, normalised."""
    out = {}
    out["scan"] = _ok("scan", root, "--db", db, "--workers", "1").returncode
    out["rescan"] = _ok("scan", root, "--db", db, "--workers", "1").stdout.count("unchanged")
    out["query"] = json.loads(_ok("query", "-t", "piano", "--db", db, "-f", "json", "-n", "0").stdout)
    out["where"] = json.loads(_ok("query", "-t", "piano", "--where", "format=flac", "--db", db,
                                  "-f", "json", "-n", "0").stdout)
    track = sorted(root.glob("*.flac"))[0]
    out["show"] = json.loads(_ok("show", track, "--db", db, "--json").stdout)
    out["tags"] = json.loads(_ok("tags", "--db", db, "--json").stdout)
    out["similar"] = json.loads(_ok("similar", track, "--db", db, "-f", "json").stdout)
    _ok("learn", "mine", "--like", goods[0], "--like", goods[1], "--unlike", goods[2], "--unlike", goods[3],
        "--db", db)
    out["learned"] = json.loads(_ok("query", "-t", "mine", "--db", db, "-f", "json", "-n", "0").stdout)
    out["write"] = _ok("write", root, "--db", db, "--top", "3").returncode
    out["undo"] = _ok("write", "--undo", "--db", db).returncode
    moved = root / "moved.flac"
    shutil.move(track, moved)
    (root / "bad" / "random.mp3").unlink()
    _ok("scan", root, "--db", db, "--workers", "1")
    out["prune"] = _ok("prune", "--db", db).stdout
    out["stats"] = json.loads(_ok("stats", "--db", db, "--json").stdout)
    assert out["stats"].pop("database") in (db, display_db(db))
    shutil.move(moved, track)
    return out


def _normalised(value, root):
    text = json.dumps(value, sort_keys=True).replace(str(root), "ROOT")
    text = re.sub(r'"(scanned_at|added_at|elapsed_s|seconds)": [0-9.e+-]+', r'"\1": 0', text)
    # probabilities: float64 on both, stored as REAL (SQLite) and double precision
    return json.loads(text)


def test_every_command_gives_the_same_on_postgresql_as_on_sqlite(tmp_path, pg_url):
    results = {}
    for kind, db in (("sqlite", str(tmp_path / "lib.db")), ("postgresql", pg_url)):
        root = tmp_path / kind
        goods = build_library(root)["good"]
        results[kind] = _normalised(_session(root, db, goods), root)
    for key in results["sqlite"]:
        assert results["postgresql"][key] == results["sqlite"][key], key


def _one_line_error(result) -> str:
    assert result.returncode == 1, result
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_bad_servers_urls_and_credentials_are_one_line_and_change_nothing(pg_server, pg_url):
    import psycopg

    name = pg_url.rsplit("/", 1)[1]
    cases = [(pg_server.url("no_such_db"), 'database "no_such_db" does not exist', "createdb"),
             (pg_server.url(name, password="wrong-pw"), "password authentication failed", "password"),
             (pg_server.url(name, user="nobody"), 'for user "nobody"', "user name"),
             (f"postgresql://tagger:secret-pw@127.0.0.1:{pg_server.port + 1 if pg_server.port < 65535 else 1}/x",
              "Connection refused", "server running")]
    for url, reason, hint in cases:
        for command in (("stats",), ("scan", "/tmp", "--dry-run"), ("query", "-t", "piano")):
            line = _one_line_error(run_cli(*command, "--db", url))
            assert reason in line and hint in line, line
            assert "wrong-pw" not in line and "secret-pw" not in line and "tagger-test-pw" not in line, line
    with psycopg.connect(pg_server.url(name).replace("+psycopg", "")) as conn:
        tables = conn.execute("select count(*) from information_schema.tables "
                              "where table_schema = 'public'").fetchone()[0]
        assert tables == 0  # nothing was created by the failed attempts (they never got in)
        databases = [r[0] for r in conn.execute("select datname from pg_database")]
        assert "no_such_db" not in databases


def test_a_database_of_a_newer_schema_is_refused_and_left_alone(tmp_path, db):
    from sqlalchemy import create_engine, text

    from tagger.store.db import db_url, open_engine

    open_engine(db).dispose()
    engine = create_engine(db_url(db))
    with engine.begin() as conn:
        conn.execute(text("update meta set value = '99' where key = 'schema_version'"))
    build_library(tmp_path / "music")
    for command in (("stats",), ("scan", tmp_path / "music"), ("query", "-t", "piano")):
        line = _one_line_error(run_cli(*command, "--db", db))
        assert "newer tagger (schema 99" in line and "upgrade tagger" in line and "tagger-test-pw" not in line
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from tracks")).scalar_one() == 0
        assert conn.execute(text("select value from meta where key = 'schema_version'")).scalar_one() == "99"


def test_passwords_in_the_url_query_are_hidden_too():
    from tagger.store.db import display_db

    shown = display_db("postgresql://u@h/db?sslmode=require&password=s3cret")
    assert "password=***" in shown and "sslmode=require" in shown and "s3cret" not in shown
    assert "s3cret" not in display_db("postgresql://u:s3cret@h/db")
