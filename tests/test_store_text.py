"""Any path, any text, one folding rule (issue 19): paths of any length and tag values with
characters a database refuses cost nothing, a row the database refuses costs its file alone,
--where answers alike on SQLite and PostgreSQL, and what is typed is bounded before SQL."""

from __future__ import annotations

import pytest
from conftest import module_db, one_line, short_library, stored_result


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
    files = short_library(root, 2)
    deep = _long_folder(root / "deep") / "long.wav"  # (libsndfile cannot write at such a path)
    write_audio(tmp_path / "long.wav", music_like(4.0, 16000, 7), 16000).rename(deep)
    nul = write_audio(root / "nul.flac", music_like(4.0, 16000, 8), 16000)
    tags = FLAC(nul)
    tags["title"] = "before\x00after"
    tags["artist"] = "Straße"
    tags.save()
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "4 scanned" in result.stdout and "failed 0" in result.stdout, result.stdout
    ranked = json.loads(run_cli("query", "-t", "rock", "-n", "0", "-f", "json", "--db", db).stdout)
    assert sorted(r["path"] for r in ranked) == sorted(map(str, [*files, deep, nul]))  # each with its scores
    assert next(r for r in ranked if r["path"] == str(nul))["title"] == "beforeafter"
    again = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "1")  # and a rescan finds them unchanged
    assert "0 scanned" in again.stdout and "unchanged 4" in again.stdout, again.stdout


def test_a_row_the_database_refuses_costs_that_file_alone_named(db):
    """What the database still refuses (here an integer out of its range) fails that file, with
    the reason, and the others of the commit are kept."""
    from tagger.model.modelfile import read_card
    from tagger.store.catalog import Store

    library = Store(db)
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    batch = [stored_result("/m/a.flac"), stored_result("/m/big.flac"), stored_result("/m/b.flac")]
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

    from tagger.engine.results import ModelOutput, TrackResult
    from tagger.model.modelfile import read_card
    from tagger.store.catalog import Store

    library = Store(module_db(request, tmp_path_factory, "probed"))
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    rng = np.random.default_rng(5)
    batch = [TrackResult(f"/m/{i:02d}-{(v or 'none').replace('/', '')}.flac", 1, i, f"{i:040x}", "flac", 3.0, 1,
                         (ModelOutput(rng.random(50).astype(np.float32), rng.standard_normal(256).astype(np.float32)),),
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


# --- numbers and strings bounded before they reach SQL ------------------------------------------

@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tiny(request, tmp_path_factory):
    """A scanned library of two tracks on each store, read by the bound probes."""
    from conftest import run_cli

    root = tmp_path_factory.mktemp("tiny")
    files = short_library(root / "music", 2)
    db = module_db(request, tmp_path_factory, "tiny-db")
    assert run_cli("scan", "-m", "musicnn-vgg-mtt", root / "music", "--db", db, "--workers", "1").returncode == 0
    return files, db


def test_numbers_and_strings_are_bounded_before_they_reach_sql(tiny, request):
    from conftest import run_cli

    files, db = tiny
    huge = "99999999999999999999"
    cases = [(("query", "-t", "rock", "--where", f"year>={huge}"), 2),
             (("query", "-t", "rock", "--where", "year<=3000000000"), 2),
             (("query", "-t", "rock", "--where", "track_no=2147483648"), 2),
             (("query", "-t", "rock", "-m", "m" * 50_000), 1),
             (("query", "-t", "y" * 100_000), 1)]
    if "sqlite" in request.node.callspec.id:  # refused as they are parsed: once is enough
        cases += [(("query", "-t", "rock", "-n", huge), 2), (("similar", files[0], "-n", huge), 2),
                  (("radio", files[0], "-n", huge), 2), (("write", "--undo", "--run", huge), 2),
                  (("learn", "x", "--like", files[0], "--seed", huge), 2),
                  (("query", "-t", "rock", "--where", "artist~" + "x" * 50_000), 2),
                  (("learn", "x" * 100_000, "--like", files[0]), 2)]
    for command, status in cases:
        line = one_line(run_cli(*command, "--db", db), status)
        assert len(line) < 400, (command[:2], line[:400])  # what was typed is not echoed whole
    # a model is named, or picked by a prefix of its hash: LIKE's % and _ are not wildcards
    line = one_line(run_cli("query", "-t", "rock", "-m", "%", "--db", db))
    assert "no results from a model named '%'" in line, line
    assert run_cli("query", "-t", "rock", "-m", "51363aaf", "--db", db).returncode == 0
    assert run_cli("query", "-t", "rock", "--where", "year<=2147483647", "--db", db).returncode == 0
