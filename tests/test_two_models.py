"""Two models in one scan (-m musicnn-vgg-mtt -m musicnn-vgg-msd): each file decoded once,
each model's scores stored under its own tags, and every command reading both vocabularies."""

import json
import sqlite3

import numpy as np
import pytest
from conftest import music_like, run_cli, write_audio

from tagger.model.vocab import GENRES, tag_name

MTT, MSD = "musicnn-vgg-mtt", "musicnn-vgg-msd"
FILES = {"a.wav": ({}, 16000), "b.flac": ({}, 44100), "c.ogg": ({"subtype": "VORBIS"}, 22050),
         "d.mp3": ({"format": "MP3"}, 44100)}
SCAN = ("--workers", "0", "--runtime", "torch", "--chunks", "2")  # torch: no OpenVINO graph export in tests


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A library scanned with both models into one database (the default: no --model), and with
    each alone into its own."""
    root = tmp_path_factory.mktemp("two")
    for i, (name, (kw, sr)) in enumerate(FILES.items()):
        write_audio(root / name, music_like(7.0, sr, 20 + i), sr, **kw)
    dbs = {}
    for key, models in (("both", ()), ("mtt", (MTT,)), ("msd", (MSD,))):  # both: the default set
        dbs[key] = root.parent / f"{key}.db"
        result = run_cli("scan", root, "--db", dbs[key], *[a for m in models for a in ("-m", m)], *SCAN)
        assert result.returncode == 0, result.stderr
    return root, dbs


def stored(db, model: str) -> dict[str, dict[str, float]]:
    """path → {raw tag: p} of one model's scores, read with sqlite3 alone."""
    out: dict[str, dict[str, float]] = {}
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT t.path, g.raw, s.prob FROM scores s JOIN tracks t ON t.id = s.track_id "
                            "JOIN tags g ON g.id = s.tag_id JOIN models m ON m.id = g.model_id WHERE m.name = ?",
                            (model,))
        for path, raw, p in rows:
            out.setdefault(path, {})[raw] = p
    return out


def vectors(db, model: str) -> dict[str, np.ndarray]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT t.path, e.vector FROM embeddings e JOIN tracks t ON t.id = e.track_id "
                            "JOIN models m ON m.id = e.model_id WHERE m.name = ?", (model,)).fetchall()
    return {p: np.frombuffer(v, dtype="<f2").astype(np.float32) for p, v in rows}


def test_each_model_stores_what_it_scores_alone(library):
    """The scores and embedding of each model in the two-model database equal those of a scan
    with that model alone: one model's scores stored under the other's tags (same count, other
    meaning) would differ here."""
    root, dbs = library
    for model in (MTT, MSD):
        together, alone = stored(dbs["both"], model), stored(dbs[model[-3:]], model)
        assert sorted(together) == sorted(alone) == sorted(str(root / n) for n in FILES)
        for path in alone:
            assert together[path].keys() == alone[path].keys() and len(alone[path]) == 50
            np.testing.assert_allclose([together[path][k] for k in alone[path]], list(alone[path].values()),
                                       atol=2e-5, err_msg=f"{model} {path}")
        a, b = vectors(dbs["both"], model), vectors(dbs[model[-3:]], model)
        for path in b:
            np.testing.assert_allclose(a[path], b[path], atol=2e-3, rtol=2e-3, err_msg=f"{model} {path}")


def test_query_reads_each_tag_from_the_model_that_has_it(library):
    root, dbs = library
    db = dbs["both"]
    mtt, msd = stored(db, MTT), stored(db, MSD)
    for tag, scores in (("jazz", msd), ("piano", mtt)):
        result = run_cli("query", "--db", db, "-t", tag, "--top", "0", "-f", "json")
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        assert {r["path"]: r["score"] for r in rows} == pytest.approx({p: s[tag] for p, s in scores.items()}, abs=1e-6)
    rows = json.loads(run_cli("query", "--db", db, "-t", "jazz", "-t", "piano", "-f", "json").stdout)
    for r in rows:  # each term from its own model, the score their minimum
        assert r["scores"] == pytest.approx({"jazz": msd[r["path"]]["jazz"], "piano": mtt[r["path"]]["piano"]},
                                            abs=1e-6)
        assert r["score"] == pytest.approx(min(r["scores"].values()), abs=1e-6)
    # rock is a tag of both: the default reads the first model scanned (as many tracks), -m the other
    for flag, scores in ((), mtt), (("-m", MSD), msd):
        rows = json.loads(run_cli("query", "--db", db, "-t", "raw:rock", *flag, "--top", "0", "-f", "json").stdout)
        assert {r["path"]: r["score"] for r in rows} == pytest.approx({p: s["rock"] for p, s in scores.items()},
                                                                      abs=1e-6)


def test_show_and_tags_list_both_vocabularies(library):
    root, dbs = library
    db = dbs["both"]
    shown = json.loads(run_cli("show", root / "b.flac", "--db", db, "--json").stdout)
    assert list(shown["models"]) == [MTT, MSD]
    assert sum(len(m["tags"]) for m in shown["models"].values()) == 100
    assert shown["models"][MSD]["tags"]["jazz"] == pytest.approx(stored(db, MSD)[str(root / "b.flac")]["jazz"])
    text = run_cli("show", root / "b.flac", "--db", db).stdout
    assert MTT in text and MSD in text and "harpsichord" in text and "Hip-Hop" in text
    listed = json.loads(run_cli("tags", "--db", db, "--json").stdout)
    assert list(listed["models"]) == [MTT, MSD]
    assert listed["models"][MSD]["tags"]["hip_hop"]["kind"] == "genre"
    assert listed["models"][MSD]["tags"]["80s"]["kind"] == "decade"
    text = run_cli("tags", "--db", db).stdout
    assert f"tags of {MTT}" in text and f"tags of {MSD}" in text
    shadow_notes = [line for line in text.splitlines() if "also a name of" in line]
    assert len(shadow_notes) == 1 and shadow_notes[0].endswith(f"--model {MSD} reads it from this one.")
    shadowed = shadow_notes[0].split(":")[0].split(", ")
    assert {"rock", "pop", "electronic", "female_vocals", "no_vocals"} <= set(shadowed)  # names both have
    assert "jazz" not in shadowed and "hip_hop" not in shadowed


def test_write_takes_genres_from_both_vocabularies(library):
    """GENRE holds the genres of both models' top tags, each label ranked by its best probability:
    MSD's Jazz or Indie beside MTAT's Classical or Techno."""
    from tagger.library.writer import choose_tags
    from tagger.store.catalog import Store

    root, dbs = library
    db = dbs["both"]
    result = run_cli("write", "--db", db, "--fields", "tags,genre,mood", "--top", "5", "--min", "0", "--dry-run")
    assert result.returncode == 0, result.stderr
    proposed, path = {}, None
    for line in result.stdout.splitlines():
        if not line.startswith(" "):
            path = line.strip()
        elif line.strip().startswith("genre:"):
            proposed[path] = line.split("→", 1)[1].strip().split(" | ")
    assert sorted(proposed) == sorted(str(root / n) for n in FILES)
    store = Store(str(db), create=False)
    models = store.scored_models()
    assert [m.name for m in models] == [MTT, MSD]
    msd_only = {GENRES[n] for n in models[1].vocabulary.genres} - {GENRES[n] for n in models[0].vocabulary.genres}
    from_msd = False
    for path, labels in proposed.items():
        track = store.track(path).id
        best: dict[str, float] = {}
        for m in models:
            for name, p in choose_tags(store.track_scores(track, m), m, 5, 0.0):
                label = GENRES.get(tag_name(name))
                if label and p > best.get(label, -1):
                    best[label] = p
        assert labels == sorted(best, key=lambda k: -best[k]), path
        from_msd |= bool(set(labels) & msd_only)
    assert from_msd  # (else this test could not tell that MSD's vocabulary was read)


def test_a_rescan_with_both_models_has_nothing_to_do_and_the_summary_names_them(library):
    root, dbs = library
    result = run_cli("scan", root, "--db", dbs["both"], "-m", MTT, "-m", MSD, *SCAN)
    assert result.returncode == 0 and f"unchanged {len(FILES)}" in result.stdout and "lacked" not in result.stdout
    write_audio(root / "e.wav", music_like(4.0, 16000, 30))  # (the last test here: the others saw FILES)
    result = run_cli("scan", root, "--db", dbs["both"], *SCAN)
    assert result.returncode == 0, result.stderr
    assert f"models {MTT} (torch fp32), {MSD} (torch fp32) on cpu" in result.stdout


def test_the_map_colours_by_both_vocabularies(library, tmp_path):
    """tagger map draws the MTT embedding (the default) and offers every model's tags; a genre
    takes both models' columns, as write ranks a track's genres across its models."""
    import base64

    from tagger.library.map import build_map
    from tagger.store.catalog import Store

    root, dbs = library
    data = build_map(Store(str(dbs["both"]), create=False), tmp_path / "map.html", color="jazz")
    assert data["model"] == MTT and data["color"] == f"tag:{MSD}:jazz"
    keys = [c["key"] for c in data["columns"]]
    assert len(keys) == 100 and len(set(keys)) == 100 and keys[50] == f"tag:{MSD}:rock"
    genres = {g["label"]: g["members"] for g in data["genres"]}
    assert "Jazz" in genres and "Classical" in genres
    assert min(genres["Electronic"]) < 50 <= max(genres["Electronic"])  # one label, both models' columns
    scores = np.frombuffer(base64.b64decode(data["scores"]), np.uint8).reshape(100, data["n"])
    msd = stored(dbs["both"], MSD)
    folder = np.frombuffer(base64.b64decode(data["dir"]), "<u4")
    paths = [f"{data['dirs'][d]}/{name}" for d, name in zip(folder, data["files"])]
    want = [msd[p]["jazz"] for p in paths]
    np.testing.assert_allclose(scores[keys.index(f"tag:{MSD}:jazz")] / 255, want, atol=1 / 255)


def test_the_map_s_columns_stay_in_place_beside_a_learned_tag(library, tmp_path):
    """A learned tag of the embedding model takes a column before the other model's tags: every
    group and genre still points at its own tags' columns."""
    import shutil

    from tagger.library.map import build_map
    from tagger.store.catalog import Store

    root, dbs = library
    shutil.copy(dbs["both"], tmp_path / "learned.db")
    store = Store(str(tmp_path / "learned.db"))
    mtt = store.model(name=MTT)
    ids = [s.id for s in store.track_states().values()]
    store.store_learned(mtt, "mine", {"weights": b"", "bias": 0.0, "mean": b"", "scale": b""}, {}, ids,
                        [0.5] * len(ids))
    data = build_map(store, tmp_path / "map.html")
    keys = [c["key"] for c in data["columns"]]
    assert len(keys) == 101 and keys[50] == "learned:mine" and keys[51] == f"tag:{MSD}:rock"
    genres = {g["label"]: [keys[j] for j in g["members"]] for g in data["genres"]}
    assert genres["Jazz"] == [f"tag:{MSD}:jazz"] and genres["Classical"] == ["tag:classical", "tag:classic"]
    groups = {g["key"]: [keys[j] for j in g["members"]] for g in data["groups"]}
    assert sorted(groups[f"group:{MSD}:chill"]) == [f"tag:{MSD}:chill", f"tag:{MSD}:chillout"]


def test_a_file_tagged_by_one_model_is_written_again_when_a_second_scores_it(tmp_path):
    """Tagged with the MTT model's tags, then the MSD model added: a write without --force
    is not 'tagged already' (a model of the file's values is new) and adds MSD's genres."""
    from tagger.files.tagfile import TagFile

    (tmp_path / "lib").mkdir()
    song = write_audio(tmp_path / "lib" / "song.ogg", music_like(7.0, 22050, 40), 22050, subtype="VORBIS")
    db = tmp_path / "one.db"
    for model in (MTT, MSD):
        assert run_cli("scan", tmp_path / "lib", "--db", db, "-m", model, *SCAN).returncode == 0
        result = run_cli("write", "--db", db, "--fields", "tags,genre", "--top", "5", "--min", "0")
        assert result.returncode == 0 and "written 1" in result.stdout, result.stdout
    written = TagFile(song).read_all()
    assert [v.split(" sha256:")[0] for v in written["model"]] == [MTT, MSD]
    assert written["genre"]  # (filled by the first write; a user's field is never overwritten)


def test_a_write_given_the_models_before_one_was_added_still_reads_both(library):
    """scan --write-tags reads the library's models once; a model whose first tracks a later
    commit stores (Ray's second pass) is read again, not left out of GENRE."""
    from tagger.library.writer import WriteOptions, write_tracks
    from tagger.store.catalog import Store

    root, dbs = library
    store = Store(str(dbs["both"]), create=False)
    rows = store.tracks_at([str(root / n) for n in FILES])
    options = WriteOptions(top=5, min_prob=0.0, fields=("genre",), dry_run=True)
    stale = [m for m in store.scored_models() if m.name == MTT]
    fresh = write_tracks(store, rows, options)
    assert [o.changes for o in write_tracks(store, rows, options, models=stale)] == [o.changes for o in fresh]
    assert any(v for o in fresh for f, _, v in o.changes if f == "model" and len(v) == 2)
