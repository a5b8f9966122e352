"""Store and query layer on a real SQLite file and a real PostgreSQL database (the ``db``
fixture), with synthetic results."""

import numpy as np
import pytest
from conftest import module_db

from tagger.engine.results import ModelOutput, TrackResult
from tagger.library.query import parse_terms
from tagger.model.modelfile import read_card
from tagger.store.catalog import Store
from tagger.store.db import StoreError, open_engine
from tagger.store.query import TrackQuery, run_query


@pytest.fixture
def lib(db):
    library = Store(db)
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    rng = np.random.default_rng(7)
    probs = {}
    batch = []
    for i in range(400):
        p = rng.beta(0.5, 3.0, 50).astype(np.float32)
        path = f"/m/{i:03d}.flac"
        probs[path] = p
        batch.append(TrackResult(path, 1000 + i, i, f"{i:040x}", "flac", 180.0, 16, (ModelOutput(p,
                                 rng.standard_normal(256).astype(np.float32)),)))
    library.save(batch, model)
    top_paths = sorted(probs, key=lambda k: -probs[k][model.vocabulary.tags.index("female")])[:5]
    missing = [library.track(p).id for p in top_paths]  # the best 'female' tracks are gone
    library.set_status(missing, "missing")
    return library, model, {k: v for k, v in probs.items() if k not in top_paths}


def brute(model, probs, terms, top):
    idx = {t: i for i, t in enumerate(model.vocabulary.tags)}
    scored = []
    for path, p in probs.items():
        vals = [max(p[idx[r]] for r in t.raw) for t in terms]
        vals = [1 - v if t.negate else v for v, t in zip(vals, terms)]
        scored.append((min(vals), path))
    scored.sort(key=lambda sp: (-sp[0], sp[1]))
    return scored[:top]


@pytest.mark.parametrize("tags,nots", [(["female_vocals"], []), (["techno"], []), (["female"], []),
                                       (["piano", "male_vocals"], []), (["rock"], ["vocals"])])
@pytest.mark.parametrize("top", [1, 10, 50])
def test_queries_equal_brute_force(lib, tags, nots, top):
    library, model, probs = lib
    terms = parse_terms(model.vocabulary, tags, nots)
    rows = run_query(library, TrackQuery(terms, None, top), model)
    expected = brute(model, probs, terms, top)
    assert [r.path for r in rows] == [p for _, p in expected]
    assert [r.score for r in rows] == pytest.approx([s for s, _ in expected], abs=1e-6)


ARTISTS = ["Nina Simone", "nina simone", "Björk", "Straße Band", "The 100% Band", None]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tagged(request, tmp_path_factory):
    """One library of 300 tracks with scores and metadata, read by every filter probe."""
    library = Store(module_db(request, tmp_path_factory, "tagged"))
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    rng = np.random.default_rng(11)
    rows, batch = {}, []
    for i in range(300):
        p = rng.beta(0.6, 2.0, 50).astype(np.float32)
        meta = {"artist": ARTISTS[i % len(ARTISTS)], "year": 1960 + (i * 7) % 60,
                "title": f"Song {i}", "genre": ["Jazz", "jazz fusion", "Rock", None][i % 4]}
        path = f"/m/{'live' if i % 5 == 0 else 'studio'}/{i:03d}.{'flac' if i % 3 else 'mp3'}"
        rows[path] = (p, meta, "flac" if i % 3 else "mp3")
        batch.append(TrackResult(path, 1000 + i, i, f"{i:040x}", rows[path][2], 180.0, 16, (ModelOutput(p,
                                 rng.standard_normal(256).astype(np.float32)),), metadata=meta))
    library.save(batch, model)
    return library, model, rows


def _matches(f, meta: dict, fmt: str, path: str) -> bool:
    value = {"format": fmt, "path": path}.get(f.field, meta.get(f.field))
    if value is None:
        return False
    if f.op == ">=":
        return value >= f.value
    if f.op == "<=":
        return value <= f.value
    if isinstance(f.value, int):
        return value == f.value
    from tagger.store.text import fold

    if f.op == "~":
        return fold(str(f.value)) in fold(str(value))
    return fold(str(value)) == fold(str(f.value))


def brute_filtered(model, rows, terms, min_score, where, top):
    """The query's answer by its definition: every term's score (a group's maximum, 1 − p for
    --not), their minimum, --min on that minimum, every --where condition, best first."""
    idx = {t: i for i, t in enumerate(model.vocabulary.tags)}
    scored = []
    for path, (p, meta, fmt) in rows.items():
        vals = [max(float(p[idx[r]]) for r in t.raw) for t in terms]
        score = min(1 - v if t.negate else v for v, t in zip(vals, terms))
        if min_score is not None and score < min_score:
            continue
        if all(_matches(f, meta, fmt, path) for f in where):
            scored.append((score, path))
    scored.sort(key=lambda sp: (-sp[0], sp[1]))
    return scored if top is None else scored[:top]


@pytest.mark.parametrize("tags,nots", [(["techno"], []), (["female_vocals"], []), (["piano", "slow"], []),
                                       (["rock"], ["vocals"]), (["guitar"], ["drums", "female"])])
@pytest.mark.parametrize("min_score", [None, 0.1, 0.35])
@pytest.mark.parametrize("where", [[], ["year>=1990"], ["artist=NINA SIMONE", "format=flac"],
                                   ["genre~jazz", "year<=1985"], ["path~/live/"], ["artist~100%"]])
def test_filters_combined_equal_brute_force(tagged, tags, nots, min_score, where):
    from tagger.library.query import parse_where

    library, model, rows = tagged
    terms = parse_terms(model.vocabulary, tags, nots)
    filters = parse_where(where)
    for top in (None, 7):
        got = run_query(library, TrackQuery(terms, min_score, top, filters), model)
        expected = brute_filtered(model, rows, terms, min_score, filters, top)
        assert [r.path for r in got] == [p for _, p in expected], (tags, nots, min_score, where, top)
        assert [r.score for r in got] == pytest.approx([s for s, _ in expected], abs=1e-6)


def test_save_replaces_results_and_failure_clears_scores(lib):
    library, model, probs = lib
    path = next(iter(probs))
    track = library.track(path)
    new = np.full(50, 0.25, dtype=np.float32)
    library.save([TrackResult(path, 1, 2, "f", "flac", 10.0, 4, (ModelOutput(new, np.zeros(256, np.float32)),))], model)
    assert library.track(path).id == track.id
    assert set(library.track_scores(track.id, model).values()) == {0.25}
    library.save([TrackResult(path, 1, 3, error="broken")], model)
    row = library.track(path)
    assert row.status == "failed" and row.error == "broken" and library.track_scores(row.id, model) == {}
    assert library.embedding(row.id, model) is None


def test_embeddings_round_trip_as_float16(lib):
    library, model, probs = lib
    v = np.linspace(-2, 2, 256).astype(np.float32)
    library.save([TrackResult("/m/new.flac", 5, 6, "x", "flac", 3.0, 1, (ModelOutput(np.zeros(50, np.float32), v),))], model)
    got = library.embedding(library.track("/m/new.flac").id, model)
    assert np.allclose(got, v, atol=2e-3)


def test_prune_and_stats(lib):
    library, model, probs = lib
    stats = library.stats()
    assert stats.ok == 395 and stats.missing == 5 and stats.hours == pytest.approx(395 * 180 / 3600)
    assert library.prune() == 5 and library.stats().missing == 0


def test_foreign_or_newer_databases_are_refused(tmp_path):
    import sqlite3
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE songs (x)")
    with pytest.raises(StoreError, match="not a tagger library"):
        open_engine(str(other))
    newer = tmp_path / "newer.db"
    open_engine(str(newer))
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer tagger"):
        open_engine(str(newer))
    (tmp_path / "folder.db").mkdir()
    with pytest.raises(StoreError, match="is a directory"):
        open_engine(str(tmp_path / "folder.db"))


def _downgrade(conn, version: int) -> None:
    """Make a database of this tagger look like one of schema ``version``, step by step (the
    reverse of each migration), as the releases that wrote those versions left them."""
    from sqlalchemy import text

    if version < 5:  # 4: a track holds one model's scores (tracks.model_id), embeddings keyed by the track
        conn.execute(text("ALTER TABLE tracks ADD COLUMN model_id INTEGER REFERENCES models (id)"))
        conn.execute(text("UPDATE tracks SET model_id = (SELECT min(model_id) FROM embeddings "
                          "WHERE embeddings.track_id = tracks.id)"))
        conn.execute(text("DROP INDEX ix_tracks_status"))
        conn.execute(text("CREATE INDEX ix_tracks_status_model ON tracks (status, model_id)"))
        conn.execute(text("DROP INDEX ix_embeddings_track"))
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE embeddings DROP CONSTRAINT embeddings_pkey"))
            conn.execute(text("ALTER TABLE embeddings ADD CONSTRAINT embeddings_pkey PRIMARY KEY (track_id)"))
        else:
            conn.execute(text("ALTER TABLE embeddings RENAME TO embeddings_v5"))
            conn.execute(text("CREATE TABLE embeddings (track_id INTEGER NOT NULL PRIMARY KEY REFERENCES tracks (id) "
                              "ON DELETE CASCADE, model_id INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE, "
                              "vector BLOB NOT NULL)"))
            conn.execute(text("INSERT INTO embeddings SELECT track_id, model_id, vector FROM embeddings_v5"))
            conn.execute(text("DROP TABLE embeddings_v5"))
    if version < 4:  # 3: learned scores in scores, a unique index on the path itself, no folded text
        conn.execute(text("INSERT INTO scores (track_id, tag_id, prob) SELECT track_id, tag_id, prob "
                          "FROM learned_scores"))
        conn.execute(text("DROP TABLE learned_scores"))
        conn.execute(text("DELETE FROM meta WHERE key = 'index_version'"))
        conn.execute(text("DROP INDEX ux_tracks_path_key"))
        conn.execute(text("DROP INDEX ix_tracks_status_model"))
        conn.execute(text("CREATE INDEX ix_tracks_status ON tracks (status)"))
        for column in ("path_key", "title_folded", "artist_folded", "album_folded", "album_artist_folded",
                       "genre_folded", "format_folded", "path_folded"):
            conn.execute(text(f"ALTER TABLE tracks DROP COLUMN {column}"))
        unique = ("CREATE UNIQUE INDEX v3_unique_path ON tracks (path)" if conn.dialect.name == "sqlite"
                  else "ALTER TABLE tracks ADD CONSTRAINT tracks_path_key UNIQUE (path)")
        conn.execute(text(unique))
    if version < 3:  # 2: no file metadata, no learned tags
        conn.execute(text("DROP TABLE learned_tags"))
        for column in ("title", "artist", "album", "album_artist", "genre", "year", "track_no", "metadata_read"):
            conn.execute(text(f"ALTER TABLE tracks DROP COLUMN {column}"))
    if version < 2:  # 1: no tag writing
        conn.execute(text("DROP TABLE write_journal"))
        conn.execute(text("DROP TABLE write_runs"))
    conn.execute(text(f"UPDATE meta SET value = '{version}' WHERE key = 'schema_version'"))


def test_schema_1_database_is_migrated(db):
    from sqlalchemy import create_engine, inspect, text

    from tagger.store.db import db_url
    from tagger.store.schema import SCHEMA_VERSION
    open_engine(db).dispose()
    raw = create_engine(db_url(db))
    with raw.begin() as conn:  # make it look like a database of the first release
        _downgrade(conn, 1)
        conn.execute(text("INSERT INTO tracks (path, size, mtime_ns, status) VALUES ('/m/old.mp3', 1, 2, 'failed')"))
    engine = open_engine(db)
    assert {"write_runs", "write_journal", "learned_tags"} <= set(inspect(engine).get_table_names())
    assert {"title", "artist", "year", "track_no"} <= {c["name"] for c in inspect(engine).get_columns("tracks")}
    with raw.connect() as conn:
        assert conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar_one() == \
            str(SCHEMA_VERSION)
        assert conn.execute(text("SELECT path, artist FROM tracks")).fetchall() == [("/m/old.mp3", None)]
    library = Store(db)  # and the migrated database works: a scan result is stored and read
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    p = np.full(50, 0.25, dtype=np.float32)
    library.save([TrackResult("/m/new.flac", 1, 1, "f", "flac", 3.0, 1, (ModelOutput(p, np.zeros(256, np.float32)),))], model)
    assert library.track("/m/new.flac").status == "ok"
    library.save([TrackResult("/m/old.mp3", 1, 3, "f", "mp3", 3.0, 1, (ModelOutput(p, np.zeros(256, np.float32)),))], model)
    assert library.track("/m/old.mp3").status == "ok"  # found by the key the migration gave it


def test_schema_4_database_is_migrated_and_its_tracks_then_take_a_second_model(db):
    """Schema 5: a track's scores and embedding stay those of its one model, which the track's
    model set now says; a second model's scores are then stored beside them, not over them."""
    from sqlalchemy import create_engine, inspect

    from tagger.store.db import db_url

    library = Store(db)
    mtt = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    rng = np.random.default_rng(4)
    batch = [TrackResult(f"/m/{i}.flac", 1, i, f"{i:040x}", "flac", 3.0, 1,
                         (ModelOutput(rng.random(50).astype(np.float32), rng.standard_normal(256).astype(np.float32)),))
             for i in range(3)]
    library.save(batch, mtt)
    before = {r.path: library.track_scores(library.track(r.path).id, mtt) for r in batch}
    library.sql_engine.dispose()
    with create_engine(db_url(db)).begin() as conn:
        _downgrade(conn, 4)
    library = Store(db)
    columns = {c["name"] for c in inspect(library.sql_engine).get_columns("tracks")}
    assert ("model_id" in columns) == (library.sql_engine.dialect.name == "sqlite")  # SQLite keeps it, unread
    assert {s.model_ids for s in library.track_states().values()} == {frozenset({mtt.id})}
    assert {r.path: library.track_scores(library.track(r.path).id, mtt) for r in batch} == before
    ids = [library.track(r.path).id for r in batch]
    assert library.embeddings_of(mtt).track_ids.tolist() == sorted(ids)
    msd = library.ensure_model(read_card("musicnn-vgg-msd"), 256)
    p = rng.random(50).astype(np.float32)
    library.save([TrackResult("/m/0.flac", 1, 0, f"{0:040x}", "flac", 3.0, 1,
                              (ModelOutput(p, np.ones(256, np.float32)),))], msd)
    assert library.track_states()["/m/0.flac"].model_ids == {mtt.id, msd.id}
    assert library.track_scores(ids[0], mtt) == before["/m/0.flac"]  # the first model's scores stay
    assert list(library.track_scores(ids[0], msd).values()) == pytest.approx(p.tolist())
    assert library.embedding(ids[0], msd).tolist() == [1.0] * 256


def test_schema_3_database_is_migrated_with_its_learned_tags_and_metadata(db):
    """Schema 4: the path's key and the folded text are filled in for the tracks there are,
    learned scores move to their own table, and long paths can then be stored."""
    from sqlalchemy import create_engine, inspect

    from tagger.library.query import parse_where
    from tagger.store.db import db_url

    library = Store(db)
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    rng = np.random.default_rng(3)
    batch = [TrackResult(f"/m/{name}.flac", 1, i, "f", "flac", 3.0, 1, (ModelOutput(rng.random(50).astype(np.float32),
                         rng.standard_normal(256).astype(np.float32)),), metadata={"artist": artist})
             for i, (name, artist) in enumerate([("a", "STRASSE"), ("b", "Straße"), ("c", "Nina")])]
    library.save(batch, model)
    ids = [library.track(r.path).id for r in batch]
    library.store_learned(model, "mine", {"weights": b"", "bias": 0.0, "mean": b"", "scale": b""}, {}, ids,
                          [0.9, 0.5, 0.1])
    library.sql_engine.dispose()
    raw = create_engine(db_url(db))
    with raw.begin() as conn:
        _downgrade(conn, 3)
    library = Store(db)
    assert "learned_scores" in inspect(library.sql_engine).get_table_names()
    model = library.model()
    assert library.track_scores(ids[0], model)["mine"] == pytest.approx(0.9)
    terms = parse_terms(model.vocabulary, ["mine"], learned=model.learned)
    rows = run_query(library, TrackQuery(terms, None, 10, parse_where(["artist=strasse"])), model)
    assert [r.path for r in rows] == ["/m/a.flac", "/m/b.flac"]  # ß folds to ss, on both stores
    long = "/m/" + "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(1500)) + ".flac"
    library.save([TrackResult(long, 1, 1, "f", "flac", 3.0, 1, (ModelOutput(np.full(50, 0.5, np.float32),
                              np.zeros(256, np.float32)),))], model)
    assert library.track(long).status == "ok"
    library.sql_engine.dispose()


def test_a_track_that_cannot_be_stored_costs_only_itself(db):
    library = Store(db)
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    p = np.full(50, 0.3, dtype=np.float32)
    nan = p.copy()
    nan[7] = np.nan
    e = np.zeros(256, np.float32)
    batch = [TrackResult("/m/a.flac", 1, 1, "f", "flac", 3.0, 1, (ModelOutput(p, e),)),
             TrackResult("/m/nan.flac", 1, 1, "f", "flac", 3.0, 1, (ModelOutput(nan, e),)),
             TrackResult("/m/\udce9.flac", 1, 1, "f", "flac", 3.0, 1, (ModelOutput(p, e),)),  # the database refuses it
             TrackResult("/m/b.flac", 1, 1, "f", "flac", 3.0, 1, (ModelOutput(p, e),))]
    unsaved = dict(library.save(batch, model))
    assert list(unsaved) == ["/m/\udce9.flac"] and "could not be stored" in unsaved["/m/\udce9.flac"]
    assert batch[1].error and "not finite" in batch[1].error  # turned into a failure, not stored
    assert library.track("/m/a.flac").status == "ok" and library.track("/m/b.flac").status == "ok"
    assert library.track("/m/nan.flac").status == "failed"
    assert all(np.isfinite(list(library.track_scores(library.track("/m/a.flac").id, model).values())))


def test_a_full_database_stops_with_one_clear_error(tmp_path):
    """The database's own failure (here SQLite's 'database or disk is full', by a page limit)
    is not one track's fault: save stops with a StoreError instead of failing every track."""
    from sqlalchemy import event

    library = Store(str(tmp_path / "lib.db"))
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    library.sql_engine.dispose()
    pages = tmp_path.joinpath("lib.db").stat().st_size // 4096 + 2
    event.listen(library.sql_engine, "connect", lambda conn, _: conn.execute(f"PRAGMA max_page_count = {pages}"))
    p, e = np.full(50, 0.3, dtype=np.float32), np.zeros(256, np.float32)
    batch = [TrackResult(f"/m/{i}.flac", 1, 1, "f", "flac", 3.0, 1, (ModelOutput(p, e),)) for i in range(300)]
    with pytest.raises(StoreError, match=r"the disk is full \(database or disk is full\)"):
        library.save(batch, model)


def test_tracks_by_id_takes_numpy_ids(lib):
    library, model, probs = lib
    ids = library.embeddings_of(model).track_ids[:3]  # int64, as the features hold them
    rows = library.tracks_by_id(ids)
    assert sorted(rows) == [int(i) for i in ids] and all(r.status == "ok" for r in rows.values())


def test_score_matrix_reads_learned_tags_from_their_own_table(lib):
    """Schema 4 keeps learned tags' scores apart (learned_scores): the map's score matrix reads
    both tables."""
    library, model, probs = lib
    ids = sorted(library.track(p).id for p in list(probs)[:3])
    library.store_learned(model, "mine", {"weights": b"", "bias": 0.0, "mean": b"", "scale": b""}, {}, ids,
                          [0.25, 0.5, 0.75])
    model = library.model(model_id=model.id)
    got = library.score_matrix(np.array(ids, dtype=np.int64), [model.tag_ids[0], model.learned["mine"]])
    assert got[:, 1].tolist() == [0.25, 0.5, 0.75] and not np.isnan(got[:, 0]).any()


def test_a_changed_file_loses_the_scores_of_models_that_did_not_score_it_again(db):
    """Other models' scores stay with the content they scored: the same fingerprint keeps them
    (test_schema_4_… above), a new one drops them with their embeddings."""
    library = Store(db)
    mtt = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    msd = library.ensure_model(read_card("musicnn-vgg-msd"), 256)
    out = ModelOutput(np.full(50, 0.5, np.float32), np.ones(256, np.float32))
    library.save([TrackResult("/m/a.flac", 1, 1, "a" * 40, "flac", 3.0, 1, (out, out))], [mtt, msd])
    track = library.track("/m/a.flac").id
    assert library.track_states()["/m/a.flac"].model_ids == {mtt.id, msd.id}
    library.save([TrackResult("/m/a.flac", 2, 2, "b" * 40, "flac", 3.0, 1, (out,))], mtt)  # rewritten
    assert library.track_states()["/m/a.flac"].model_ids == {mtt.id}
    assert library.track_scores(track, msd) == {} and library.embedding(track, msd) is None
    assert len(library.track_scores(track, mtt)) == 50


def test_model_sets_of_more_tracks_than_one_statement_takes(tmp_path):
    """model_sets reads ids 900 at a time (SQLite's old parameter limit): none is lost between."""
    library = Store(str(tmp_path / "many.db"))
    model = library.ensure_model(read_card("musicnn-vgg-mtt"), 256)
    out = ModelOutput(np.full(50, 0.5, np.float32), np.zeros(256, np.float32))
    library.save([TrackResult(f"/m/{i:04d}.flac", 1, i, f"{i:040x}", "flac", 3.0, 1, (out,)) for i in range(1801)],
                 model)
    ids = [s.id for s in library.track_states().values()]
    got = library.model_sets(ids)
    assert len(ids) == 1801 and sorted(got) == sorted(ids) and set(got.values()) == {frozenset({model.id})}
