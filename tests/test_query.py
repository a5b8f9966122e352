"""tagger query / show / tags / stats on a scanned library, checked against plain sqlite3."""

import csv
import io
import json
import os
import shutil
import sqlite3

import pytest
from conftest import build_library, music_like, run_cli, write_audio

from tagger.model.vocab import MTAT_GROUPS, MTAT_TAGS, tag_name

LONG = "a-rather-long-folder-name-for-testing-tables/and another long folder name/a track with a long name.wav"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("qlib")
    build_library(root, seconds=4.0)
    (root / LONG).parent.mkdir(parents=True)
    write_audio(root / LONG, music_like(4.0, 16000, 11))
    write_audio(root / "two\nlines.wav", music_like(4.0, 16000, 12))
    db = root.parent / "q.db"
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "1")
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
    assert rows and all(r["score"] >= round(cut, 6) for r in rows)  # JSON prints 6 decimals
    assert len(rows) == sum(p["techno"] >= cut for p in probs.values())


def test_formats(scanned):
    root, db = scanned
    args = ("--db", db, "-t", "guitar", "-n", "4")
    jsonl = [json.loads(line) for line in run_cli("query", *args, "-f", "jsonl").stdout.splitlines()]
    assert len(jsonl) == 4 and jsonl == query_json(db, "-t", "guitar", "-n", "4")
    table = list(csv.DictReader(io.StringIO(run_cli("query", *args, "-f", "csv").stdout)))
    assert list(table[0]) == ["rank", "score", "guitar", "duration_s", "format", "title", "artist", "album",
                              "album_artist", "genre", "year", "track_no", "path"]
    assert [r["path"] for r in table] == [r["path"] for r in jsonl]
    plain = [r["path"] for r in jsonl if "\n" not in r["path"]]  # (the others: see below)
    m3u = run_cli("query", *args, "-f", "m3u").stdout.splitlines()
    assert m3u[0] == "#EXTM3U" and m3u[1].startswith("#EXTINF:4,") and m3u[2] == plain[0]
    assert run_cli("query", *args, "-f", "paths").stdout.splitlines() == plain
    text = run_cli("query", *args).stdout
    assert "score" in text and plain[0].rsplit("/", 1)[-1] in text


def test_query_errors_are_one_line(scanned, tmp_path):
    root, db = scanned
    result = run_cli("query", "--db", db, "-t", "femal_vocals")
    assert result.returncode == 1 and "unknown tag 'femal_vocals'" in result.stderr
    assert "female_vocals" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("query", "--db", tmp_path / "none.db", "-t", "rock")
    assert result.returncode == 1 and "no such database" in result.stderr
    result = run_cli("query", "--db", db, "-t", "rock", "-f", "xml")
    assert result.returncode == 2 and "'xml' is not one of" in result.stderr
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


def test_show_finds_a_track_by_any_path_to_its_file(scanned, tmp_path):
    root, db = scanned
    probs = probs_by_track(db)
    (tmp_path / "linked").symlink_to(root)  # the library through a symlinked folder
    os.link(root / "a.wav", tmp_path / "hard.wav")  # the same file under a name no symlink explains
    cases = {root / "zz-alias.flac": root / "b.flac",  # a symlink the scan saw after its target
             tmp_path / "linked" / "sub" / "c.ogg": root / "sub" / "c.ogg",
             tmp_path / "hard.wav": root / "a.wav"}
    for path, stored in cases.items():
        result = run_cli("show", path, "--db", db, "--json")
        assert result.returncode == 0, result.stderr
        shown = json.loads(result.stdout)
        assert shown["path"] == str(stored) and shown["tags"] == pytest.approx(probs[str(stored)])
    (tmp_path / "other.wav").write_bytes((root / "a.wav").read_bytes())  # same bytes, another file
    result = run_cli("show", tmp_path / "other.wav", "--db", db)
    assert result.returncode == 1 and "is not in the library" in result.stderr


def test_tags_table_names_raw_tags_apart_from_groups(scanned):
    root, db = scanned
    text = run_cli("tags", "--db", db).stdout
    names = [line.split("│")[0].strip() for line in text.splitlines() if "│" in line]
    assert len(names) == len(set(names)) == len(MTAT_TAGS) + len(MTAT_GROUPS)
    for group in ("classical", "choir", "beats", "vocals", "no_vocals"):
        assert group in names and f"raw:{group}" in names
    assert "male_vocal" in names and "raw:male_vocal" not in names  # only where a group takes the name


def test_piped_tables_keep_each_row_on_one_line(scanned):
    root, db = scanned
    text = run_cli("query", "--db", db, "-t", "guitar", "--top", "0").stdout
    assert any(line.rstrip().endswith(str(root / LONG)) for line in text.splitlines()), text
    assert str(root / "two\\nlines.wav") in text  # a line break in a name is shown, not obeyed
    text = run_cli("show", root / LONG, "--db", db).stdout
    assert text.splitlines()[0].startswith(str(root / LONG))


def test_stats_says_which_database(scanned):
    root, db = scanned
    assert f"database: {db}" in run_cli("stats", "--db", db).stdout
    assert json.loads(run_cli("stats", "--db", db, "--json").stdout)["database"] == str(db)


def test_a_second_model_scores_only_what_it_is_given_and_query_says_what_it_leaves_out(scanned, tmp_path):
    """Two tracks scanned again with another model keep the first model's scores and gain the
    second's; a tag both models have is read from --model, and the tracks that model has not
    scored are named as left out."""
    root, db = scanned
    copy = tmp_path / "two-models.db"
    shutil.copy(db, copy)
    result = run_cli("scan", root / "sub" / "c.ogg", root / "sub" / "d.opus", "--db", copy,
                     "--model", "musicnn-mtt", "--workers", "0", "--runtime", "torch")  # no graph export
    assert result.returncode == 0, result.stderr
    assert "2 unchanged tracks lacked a model of this scan" in result.stdout
    with sqlite3.connect(copy) as conn:
        (vgg,), (mtt,) = conn.execute("SELECT id FROM models ORDER BY id").fetchall()
        kept = conn.execute("SELECT t.path, s.tag_id, s.prob FROM scores s JOIN tracks t ON t.id = s.track_id "
                            "JOIN tags g ON g.id = s.tag_id WHERE g.model_id = ? ORDER BY 1, 2", (vgg,)).fetchall()
        added = conn.execute("SELECT DISTINCT t.path FROM embeddings e JOIN tracks t ON t.id = e.track_id "
                             "WHERE e.model_id = ?", (mtt,)).fetchall()
    with sqlite3.connect(db) as conn:
        assert kept == conn.execute("SELECT t.path, s.tag_id, s.prob FROM scores s JOIN tracks t ON "
                                    "t.id = s.track_id ORDER BY 1, 2").fetchall()
    assert sorted(p for (p,) in added) == [str(root / "sub" / "c.ogg"), str(root / "sub" / "d.opus")]
    n = len(probs_by_track(db))
    result = run_cli("query", "--db", copy, "-t", "piano", "--top", "0", "-f", "json")
    assert result.returncode == 0 and len(json.loads(result.stdout)) == n and "not ranked" not in result.stderr
    result = run_cli("query", "--db", copy, "-t", "piano", "-m", "musicnn-mtt", "-f", "json")
    assert len(json.loads(result.stdout)) == 2
    assert f"{n - 2} tracks not scored by musicnn-mtt (where piano comes from) are not ranked" in result.stderr
    assert "'tagger scan FOLDER --model musicnn-mtt' scores them" in result.stderr


def test_query_hints_when_no_track_matches_well(scanned):
    root, db = scanned
    probs = probs_by_track(db)
    best = {raw: max(p[raw] for p in probs.values()) for raw in MTAT_TAGS}
    weak, strong = min(best, key=best.get), max(best, key=best.get)
    assert best[weak] < 0.2 <= best[strong]
    result = run_cli("query", "--db", db, "-t", f"raw:{tag_name(weak)}", "-f", "json")
    assert result.returncode == 0 and len(json.loads(result.stdout)) == len(probs)  # stdout stays JSON
    assert f"no track scores above 0.2 for raw:{tag_name(weak)} (best: {best[weak]:.3f})" in result.stderr
    result = run_cli("query", "--db", db, "-t", f"raw:{tag_name(strong)}", "-f", "json")
    assert result.returncode == 0 and result.stderr == ""


def test_m3u_and_paths_skip_paths_with_line_breaks(scanned):
    root, db = scanned
    rows = query_json(db, "-t", "guitar", "--top", "0")
    assert [r["path"] for r in rows if "\n" in r["path"]] == [str(root / "two\nlines.wav")]
    for fmt in ("m3u", "paths"):
        result = run_cli("query", "--db", db, "-t", "guitar", "--top", "0", "-f", fmt)
        assert result.returncode == 0
        listed = [line for line in result.stdout.splitlines() if not line.startswith("#")]
        assert listed == [r["path"] for r in rows if "\n" not in r["path"]]
        assert f"skipped 1 track whose path has a line break ({fmt} cannot hold it" in result.stderr
    result = run_cli("query", "--db", db, "-t", "guitar", "--top", "0", "-f", "csv")
    assert str(root / "two\nlines.wav") in [r["path"] for r in csv.DictReader(io.StringIO(result.stdout))]
