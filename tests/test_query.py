"""tagger query / show / tags / stats on a scanned library, checked against plain sqlite3."""

import csv
import io
import json
import sqlite3

import pytest

from tagger.vocab import MTAT_GROUPS

from conftest import build_library, run_cli


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("qlib")
    build_library(root, seconds=4.0)
    db = root.parent / "q.db"
    result = run_cli("scan", root, "--db", db, "--workers", "1")
    assert result.returncode == 0, result.stderr
    return root, db


def probs_by_track(db):
    """path → {raw tag: p}, read with sqlite3 alone."""
    out = {}
    with sqlite3.connect(db) as conn:
        for path, raw, p in conn.execute("SELECT t.path, g.raw, s.prob FROM scores s JOIN tracks t ON "
                                         "t.id = s.track_id JOIN tags g ON g.id = s.tag_id"):
            out.setdefault(path, {})[raw] = p
    return out


def query_json(db, *args):
    result = run_cli("query", "--db", db, "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_group_query_ranks_by_member_maximum(scanned):
    root, db = scanned
    rows = query_json(db, "--tag", "female_vocals", "--top", "0")
    probs = probs_by_track(db)
    expected = sorted(((max(p[m] for m in MTAT_GROUPS["female_vocals"]), path) for path, p in probs.items()),
                      key=lambda sp: (-sp[0], sp[1]))
    assert [r["path"] for r in rows] == [path for _, path in expected]
    assert [r["score"] for r in rows] == pytest.approx([s for s, _ in expected], abs=1e-6)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))


def test_several_tags_rank_by_minimum_and_not_by_complement(scanned):
    root, db = scanned
    rows = query_json(db, "-t", "piano", "-t", "slow", "--not", "drums", "--top", "3")
    probs = probs_by_track(db)
    expected = sorted(((min(p["piano"], p["slow"], 1 - p["drums"]), path) for path, p in probs.items()),
                      key=lambda sp: (-sp[0], sp[1]))[:3]
    assert [r["path"] for r in rows] == [path for _, path in expected]
    assert set(rows[0]["scores"]) == {"piano", "slow", "not drums"}


def test_min_filters_on_the_score(scanned):
    root, db = scanned
    probs = probs_by_track(db)
    cut = sorted(p["techno"] for p in probs.values())[len(probs) // 2]
    rows = query_json(db, "-t", "techno", "--min", str(cut), "--top", "0")
    assert rows and all(r["score"] >= cut for r in rows)
    assert len(rows) == sum(p["techno"] >= cut for p in probs.values())


def test_formats(scanned):
    root, db = scanned
    args = ("--db", db, "-t", "guitar", "-n", "4")
    jsonl = [json.loads(line) for line in run_cli("query", *args, "-f", "jsonl").stdout.splitlines()]
    assert len(jsonl) == 4 and jsonl == query_json(db, "-t", "guitar", "-n", "4")
    table = list(csv.DictReader(io.StringIO(run_cli("query", *args, "-f", "csv").stdout)))
    assert list(table[0]) == ["rank", "score", "guitar", "duration_s", "format", "path"]
    assert [r["path"] for r in table] == [r["path"] for r in jsonl]
    m3u = run_cli("query", *args, "-f", "m3u").stdout.splitlines()
    assert m3u[0] == "#EXTM3U" and m3u[1].startswith("#EXTINF:4,") and m3u[2] == jsonl[0]["path"]
    assert run_cli("query", *args, "-f", "paths").stdout.splitlines() == [r["path"] for r in jsonl]
    text = run_cli("query", *args).stdout
    assert "score" in text and jsonl[0]["path"].rsplit("/", 1)[-1] in text


def test_query_errors_are_one_line(scanned, tmp_path):
    root, db = scanned
    result = run_cli("query", "--db", db, "-t", "femal_vocals")
    assert result.returncode == 1 and "unknown tag 'femal_vocals'" in result.stderr
    assert "female_vocals" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("query", "--db", tmp_path / "none.db", "-t", "rock")
    assert result.returncode == 1 and "no such database" in result.stderr
    result = run_cli("query", "--db", db, "-t", "rock", "-f", "xml")
    assert result.returncode == 1 and "unknown format" in result.stderr
    result = run_cli("query", "--db", db, "-t", "rock", "--model", "nope")
    assert result.returncode == 1 and "no results from a model named 'nope'" in result.stderr


def test_show_tags_stats(scanned):
    root, db = scanned
    path = root / "b.flac"
    shown = json.loads(run_cli("show", path, "--db", db, "--json").stdout)
    expected = probs_by_track(db)[str(path)]
    assert shown["tags"] == pytest.approx(expected)
    assert list(shown["tags"].values()) == sorted(shown["tags"].values(), reverse=True)
    assert shown["groups"]["vocals"] == pytest.approx(max(expected[m] for m in MTAT_GROUPS["vocals"]))
    assert "probability" in run_cli("show", path, "--db", db).stdout
    failed = run_cli("show", root / "bad" / "empty.mp3", "--db", db)
    assert failed.returncode == 1 and "failed" in failed.stderr
    tags = json.loads(run_cli("tags", "--db", db, "--min", "0.1", "--json").stdout)
    probs = probs_by_track(db)
    assert tags["tags"]["male_vocal"]["tracks"] == sum(p["male vocal"] >= 0.1 for p in probs.values())
    assert tags["groups"]["no_vocals"]["tracks"] == sum(
        max(p[m] for m in MTAT_GROUPS["no_vocals"]) >= 0.1 for p in probs.values())
    stats = json.loads(run_cli("stats", "--db", db, "--json").stdout)
    assert stats["ok"] == len(probs) and stats["failed"] == 3 and stats["missing"] == 0
    assert stats["formats"]["flac"] == 2 and stats["models"][0][0] == "musicnn-vgg-mtt"
