"""PostgreSQL as a first-class store: every command against a real server (tests/pg_server.py)
gives what it gives on SQLite; bad URLs, servers and credentials are one line."""

from __future__ import annotations

import json
import re
import shutil

import pytest

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
