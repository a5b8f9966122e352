"""tagger learn: tags taught from examples, on a library of four families of distinct signals
(piano-like notes, drum patterns, coloured noise, chords) written by the test and scanned once
with the real command line."""

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_audio

SR = 16000
SECONDS = 6.0
PER_FAMILY = 8
EXAMPLES = 5  # members of a family a tag is learned from; the other 3 must rank first


def piano(seed: int) -> np.ndarray:
    """Decaying harmonic notes of a scale, a new one every 0.3–0.5 s."""
    rng = np.random.default_rng(1000 + seed)
    n = int(SECONDS * SR)
    x = np.zeros(n)
    root, step, t0 = 48 + seed % 7, rng.uniform(0.3, 0.5), 0.0
    while t0 < SECONDS - 0.1:
        f = 440 * 2 ** ((root + rng.choice([0, 2, 4, 5, 7, 9, 11, 12]) + 12 * rng.integers(0, 2) - 69) / 12)
        start = int(t0 * SR)
        t = np.arange(min(n - start, int(1.5 * SR))) / SR
        note = sum(np.sin(2 * np.pi * f * h * t) * np.exp(-t * (2.5 + 1.5 * h)) / h ** 1.3 for h in range(1, 8))
        x[start:start + len(t)] += note * np.minimum(1, t / 0.004)
        t0 += step
    return x


def drums(seed: int) -> np.ndarray:
    """Kick, snare and hi-hat in a pattern at 90–146 BPM."""
    rng = np.random.default_rng(2000 + seed)
    n = int(SECONDS * SR)
    x = np.zeros(n)
    step, pattern = 60 / (90 + 8 * seed) / 2, rng.integers(0, 2, 8)
    i, t0 = 0, 0.0
    while t0 < SECONDS - 0.2:
        s = int(t0 * SR)
        t = np.arange(min(n - s, int(0.25 * SR))) / SR
        if i % 8 in (0, 3) or pattern[i % 8]:
            x[s:s + len(t)] += np.sin(2 * np.pi * (50 * t + 100 * (1 - np.exp(-t * 30)) / 30)) * np.exp(-t * 12)
        if i % 4 == 2:
            x[s:s + len(t)] += 0.6 * rng.standard_normal(len(t)) * np.exp(-t * 25)
        hl = min(len(t), int(0.04 * SR))
        x[s:s + hl] += 0.25 * np.diff(rng.standard_normal(hl), prepend=0) * np.exp(-np.arange(hl) / SR * 80)
        i, t0 = i + 1, t0 + step
    return x


def noise(seed: int) -> np.ndarray:
    """White to brown noise, slowly swelling."""
    rng = np.random.default_rng(3000 + seed)
    n = int(SECONDS * SR)
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = 1
    x = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) / f ** ([0.0, 0.5, 1.0, 1.5][seed % 4] / 2), n)
    return x * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * np.arange(n) / SR))


def chords(seed: int) -> np.ndarray:
    """Sustained major and minor triads, a new one every 1–2 s."""
    rng = np.random.default_rng(4000 + seed)
    n = int(SECONDS * SR)
    x = np.zeros(n)
    dur, k = rng.uniform(1.0, 2.0), 0
    while k * dur < SECONDS:
        root, kind = 55 + rng.integers(0, 12), [0, 4, 7] if rng.random() < 0.5 else [0, 3, 7]
        s, e = int(k * dur * SR), min(n, int((k + 1) * dur * SR))
        t = np.arange(e - s) / SR
        env = np.minimum(1, t / 0.05) * np.minimum(1, (t[-1] - t) / 0.05 + 1e-3)
        for iv in kind + [12]:
            f = 440 * 2 ** ((root + iv - 69) / 12)
            x[s:e] += env * (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t))
        k += 1
    return x


FAMILIES = {"piano": (piano, "flac", {}), "drums": (drums, "mp3", {"format": "MP3"}),
            "noise": (noise, "ogg", {"subtype": "VORBIS"}), "chords": (chords, "wav", {})}


def member(family: str, seed: int, folder) -> str:
    make, ext, kw = FAMILIES[family]
    x = make(seed)
    path = folder / f"{family}{seed}.{ext}"
    write_audio(path, (0.7 * x / np.max(np.abs(x))).astype(np.float32), SR, **kw)
    return str(path)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    paths = {}
    for family in FAMILIES:
        (root / family).mkdir()
        paths[family] = [member(family, i, root / family) for i in range(PER_FAMILY)]
    db = root / "lib.db"
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db, "--workers", "1")
    assert result.returncode == 0, result.stderr
    return root, db, paths


def like(paths):
    return [a for p in paths for a in ("--like", p)]


def learn(db, *args):
    result = run_cli("learn", *args, "--db", db)
    assert result.returncode == 0, result.stderr
    return result


def query(db, *args):
    result = run_cli("query", "--db", db, "-f", "json", "-n", "0", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refused(db, *args, status: int = 1) -> str:
    """The one line of a refused command."""
    result = run_cli(*args, "--db", db)
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tagger: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def learned(library):
    """'my piano' learned from five piano members, against a random sample of the library."""
    root, db, paths = library
    result = learn(db, "My Piano", *like(paths["piano"][:EXAMPLES]))
    return result.stdout


def test_learned_tag_ranks_the_rest_of_its_family_first(library, learned):
    root, db, paths = library
    assert "learned my_piano on musicnn-vgg-mtt: 5 liked tracks against 27 other tracks" in learned
    assert "cross-validated ROC-AUC" in learned and "(5-fold, 32 examples)" in learned
    rows = query(db, "--tag", "my_piano")
    assert len(rows) == 4 * PER_FAMILY
    others = [r["path"] for r in rows if r["path"] not in paths["piano"][:EXAMPLES]]
    assert set(others[:PER_FAMILY - EXAMPLES]) == set(paths["piano"][EXAMPLES:]), others
    assert {r["path"] for r in rows[:PER_FAMILY]} == set(paths["piano"])
    assert rows[PER_FAMILY - 1]["score"] > 0.3 > rows[PER_FAMILY]["score"]  # family ≥ 0.3, the rest below


def test_unlike_folder_and_playlist_examples(library, tmp_path):
    root, db, paths = library
    m3u = tmp_path / "drums.m3u"  # relative entries, a comment, a blank line
    rel = [f"../{root.name}/drums/drums{i}.mp3" for i in range(EXAMPLES)]
    m3u.write_text("#EXTM3U\n#EXTINF:6,one\n" + "\n".join(rel) + "\n\n")
    both = paths["drums"][0]  # liked through the playlist and unliked by name: liked, and said
    result = learn(db, "beaten", "--like", m3u, "--unlike", root / "noise", "--unlike", root / "chords",
                   "--unlike", both)
    assert "5 liked tracks against 16 unliked tracks" in result.stdout
    assert "warning: 1 track is in both --like and --unlike: counted as liked" in result.stderr
    rows = query(db, "--tag", "beaten")
    others = [r["path"] for r in rows if r["path"] not in paths["drums"][:EXAMPLES]]
    assert set(others[:PER_FAMILY - EXAMPLES]) == set(paths["drums"][EXAMPLES:])


def test_learned_tag_acts_like_any_tag(library, learned):
    root, db, paths = library
    track = paths["piano"][6]
    shown = json.loads(run_cli("show", track, "--db", db, "--json").stdout)
    assert set(shown["learned"]) >= {"my_piano"} and "my_piano" not in shown["tags"]
    table = run_cli("show", track, "--db", db).stdout
    assert any("(learned)" in line and "my_piano" in line for line in table.splitlines())
    tags = json.loads(run_cli("tags", "--db", db, "--json", "--min", "0.3").stdout)
    assert tags["learned"]["my_piano"] == {"liked": 5, "tracks": PER_FAMILY}
    assert any("my_piano" in line and "learned" in line for line in run_cli("tags", "--db", db).stdout.splitlines())
    # with the model's own tags: the minimum of the terms, as for any tags
    rows = query(db, "--tag", "my_piano", "--tag", "piano", "--not", "drums")
    for r in rows:
        assert r["score"] == pytest.approx(min(r["scores"].values()), abs=1e-6)
    at = {r["path"]: r["scores"]["my_piano"] for r in rows}
    assert at[track] == pytest.approx(shown["learned"]["my_piano"], abs=1e-6)
    # a query spec of a learned tag as examples of another
    out = learn(db, "keys", "--like", "tag:my_piano>=0.3").stdout
    assert "8 liked tracks" in out
    assert {r["path"] for r in query(db, "--tag", "keys", "-n", str(PER_FAMILY))} == set(paths["piano"])


def test_write_puts_learned_tags_into_files(library, learned):
    import mutagen

    root, db, paths = library
    piano_files = paths["piano"]
    result = run_cli("write", root / "piano", "--db", db, "--top", "10")
    assert result.returncode == 0, result.stderr
    for path in piano_files:
        assert "my piano" in mutagen.File(path)["TAGGER_TAGS"], path
    # a tag learned after the files were written goes in without --force
    learn(db, "ivory", *like(piano_files[:EXAMPLES]))
    result = run_cli("write", root / "piano", "--db", db, "--top", "10")
    assert result.returncode == 0, result.stderr
    for path in piano_files[:EXAMPLES]:
        assert "ivory" in mutagen.File(path)["TAGGER_TAGS"], path
    # and nothing else changed: the files' tracks are not rescanned
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root / "piano", "--db", db, "--dry-run")
    assert "changed 0" in result.stdout, result.stdout
    learn(db, "--remove", "ivory")


def copy_db(db, to):
    with sqlite3.connect(db) as src, sqlite3.connect(to) as dst:
        src.backup(dst)
    return to


def test_learned_tag_scores_tracks_scanned_later(library, learned, tmp_path):
    root, db, paths = library
    db2 = copy_db(db, tmp_path / "copy.db")
    new = tmp_path / "new"
    new.mkdir()
    newcomer = member("piano", 20, new)
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", new, "--db", db2, "--workers", "0")
    assert result.returncode == 0, result.stderr
    rows = query(db2, "--tag", "my_piano")
    assert newcomer in [r["path"] for r in rows[:PER_FAMILY + 1]]
    assert len(rows) == 4 * PER_FAMILY + 1
    # a track scanned again scores as it did when the tag was learned
    before = {r["path"]: r["score"] for r in rows}
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", paths["piano"][0], "--db", db2, "--workers", "0", "--force")
    assert result.returncode == 0, result.stderr
    after = {r["path"]: r["score"] for r in query(db2, "--tag", "my_piano")}
    assert after[paths["piano"][0]] == pytest.approx(before[paths["piano"][0]], abs=2e-3)


def test_a_track_missing_while_a_tag_is_learned_has_it_when_it_comes_back(library, tmp_path):
    import shutil

    root, db, paths = library
    db2 = copy_db(db, tmp_path / "missing.db")
    away, parked = paths["chords"][0], tmp_path / "parked.wav"
    shutil.move(away, parked)  # an unmounted drive, a file moved out for a while
    try:
        assert "missing 1" in run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db2, "--workers", "0").stdout
        learn(db2, "back_again", *like(paths["chords"][1:1 + EXAMPLES]))
    finally:
        shutil.move(parked, away)
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root, "--db", db2, "--workers", "0")
    assert result.returncode == 0 and "0 scanned" in result.stdout  # not scored again…
    assert away in [r["path"] for r in query(db2, "--tag", "back_again")]  # …and it has the tag


def test_tracks_scored_by_a_second_model_keep_it(library, learned, tmp_path):
    """A learned tag belongs to the model whose embedding it reads: tracks that a second model
    scores too keep it, and --model of the other model still finds it (only that model has it)."""
    root, db, paths = library
    db2 = copy_db(db, tmp_path / "copy.db")
    result = run_cli("scan", root / "chords", "--db", db2, "--workers", "0", "--model", "musicnn-mtt",
                     "--runtime", "torch")  # the other model: torch spares its graph export
    assert result.returncode == 0, result.stderr
    shown = json.loads(run_cli("show", paths["chords"][0], "--db", db2, "--json").stdout)
    assert list(shown["models"]) == ["musicnn-vgg-mtt", "musicnn-mtt"]
    assert "my_piano" in shown["learned"] and shown["models"]["musicnn-mtt"]["learned"] == {}
    everyone = len(query(db, "--tag", "my_piano"))
    assert len(query(db2, "--tag", "my_piano")) == everyone
    assert len(query(db2, "--tag", "my_piano", "--model", "musicnn-mtt")) == everyone
    # two terms from two models: my_piano from the one that learned it, piano from --model's,
    # which scored the chords only; the note names the second term's model
    result = run_cli("query", "--db", db2, "-f", "json", "-n", "0", "-t", "my_piano", "-t", "piano", "-m", "musicnn-mtt")
    ranked = json.loads(result.stdout)
    assert {Path(r["path"]).parent.name for r in ranked} == {"chords"}
    assert f"{everyone - len(ranked)} tracks not scored by musicnn-mtt (where piano comes from)" in result.stderr


def test_refusals(library, learned, tmp_path):
    root, db, paths = library
    before = run_cli("learn", "--list", "--json", "--db", db).stdout
    assert "no learned tag named 'nothing_here'" in refused(db, "learn", "--remove", "nothing_here")
    stray = member("piano", 30, tmp_path)
    assert "--like: is not in the library" in refused(db, "learn", "x", "--like", stray)
    assert stray in refused(db, "learn", "x", "--like", paths["piano"][0], "--like", stray)
    (tmp_path / "empty").mkdir()
    assert "no tagged track under this folder" in refused(db, "learn", "x", "--like", tmp_path / "empty")
    (tmp_path / "empty.m3u").write_text("#EXTM3U\n")
    assert "the playlist lists no tracks" in refused(db, "learn", "x", "--like", tmp_path / "empty.m3u")
    assert "no track scores at least 1.0" in refused(db, "learn", "x", "--like", "tag:weird>=1.0")
    assert "no such file or folder" in refused(db, "learn", "x", "--like", tmp_path / "typo")
    assert "'piano' is a tag of musicnn-vgg-mtt already" in refused(db, "learn", "Piano", "--like", paths["piano"][0])
    assert "is a group of musicnn-vgg-mtt" in refused(db, "learn", "female_vocals", "--like", paths["piano"][0])
    assert "is a group of musicnn-vgg-mtt" in refused(db, "learn", "instrumental", "--like", paths["piano"][0])
    assert "needs examples" in refused(db, "learn", "x", status=2)  # a command line it cannot take
    assert "cannot name a tag" in refused(db, "learn", "a:b", "--like", paths["piano"][0], status=2)
    assert "expected tag:TAG" in refused(db, "learn", "x", "--like", "tag:>=0.5", status=2)
    assert run_cli("learn", "--list", "--json", "--db", db).stdout == before  # nothing stored


def test_list_relearn_and_remove(library, learned):
    root, db, paths = library
    few = learn(db, "short_lived", *like(paths["noise"][:2]))
    assert "warning: only 2 liked tracks" in few.stderr
    out = learn(db, "short_lived", *like(paths["noise"][:EXAMPLES]))
    assert out.stdout.startswith("re-learned short_lived")
    listed = {t["name"]: t for t in json.loads(run_cli("learn", "--list", "--json", "--db", db).stdout)}
    assert listed["short_lived"]["like"] == EXAMPLES and listed["short_lived"]["tracks"] == 4 * PER_FAMILY
    assert listed["my_piano"]["model"] == "musicnn-vgg-mtt" and listed["my_piano"]["stale"] is None
    table = run_cli("learn", "--list", "--db", db).stdout
    assert "short_lived" in table and "5 liked, 27 random" in table
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM learned_scores s JOIN tags t ON t.id = s.tag_id "
                            "WHERE t.raw = 'short_lived'").fetchone()[0]
    assert rows == 4 * PER_FAMILY  # replaced, not added to
    out = learn(db, "--remove", "short_lived").stdout
    assert "removed learned tag short_lived" in out
    assert "short_lived" not in run_cli("learn", "--list", "--db", db).stdout
    assert "unknown tag 'short_lived'" in refused(db, "query", "--tag", "short_lived")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM tags WHERE raw = 'short_lived'").fetchone()[0] == 0


def test_classifier_is_scikit_learns():
    """What is stored and applied at scan time is the regression scikit-learn fits (its
    objective's minimum: tagger.library.logistic finds it by Newton's method, scikit-learn's
    lbfgs to its tolerance, here made tight and in float64)."""
    from tagger.library.learned import Classifier, cross_validate, fit
    from tagger.library.standardise import Standardiser

    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8)).astype(np.float32)
    x[:3] += 3
    standard = Standardiser.fit(x)
    mean, scale = standard.mean, standard.divisor()
    z = (x - mean) / scale
    y = np.r_[np.ones(3), np.zeros(57)]
    folds, auc = cross_validate(z, y, 0)
    assert folds == 3 and auc > 0.9
    w, b = fit(z, y, 0)
    clf = Classifier(w, b, mean, scale)
    again = Classifier.from_blobs(**clf.blobs())
    p = again.probabilities(x)
    from sklearn.linear_model import LogisticRegression

    ref = LogisticRegression(C=0.02, class_weight="balanced", max_iter=20000, tol=1e-12).fit(
        z.astype(np.float64), y).predict_proba(z.astype(np.float64))[:, 1]
    assert p == pytest.approx(ref, abs=1e-6)
    assert cross_validate(z[:58], np.r_[np.ones(1), np.zeros(57)], 0) == (0, None)


def _blobs(db, name):
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT l.weights, l.bias, l.mean, l.scale, t.id FROM learned_tags l "
                           "JOIN tags t ON t.id = l.tag_id WHERE t.raw = ?", (name,)).fetchone()
        emb = dict(conn.execute("SELECT t.path, e.vector FROM embeddings e JOIN tracks t ON t.id = e.track_id "
                                "WHERE t.status = 'ok'").fetchall())
        stored = dict(conn.execute("SELECT t.path, s.prob FROM learned_scores s JOIN tracks t ON t.id = s.track_id "
                                   "WHERE s.tag_id = ?", (row[4],)).fetchall())
    f4 = [np.frombuffer(b, dtype="<f4") for b in (row[0], row[2], row[3])]
    vectors = {p: np.frombuffer(v, dtype="<f2").astype(np.float32) for p, v in emb.items()}
    return f4[0], float(row[1]), f4[1], f4[2], vectors, stored


def test_stored_classifier_is_the_regression_fitted_on_the_library(library, tmp_path):
    """End to end, checked from outside: the classifier in the database is scikit-learn's
    regression of the liked against the unliked tracks on the library's stored embeddings,
    standardised over the library; the stored scores are that classifier's; and a track
    scanned later is scored at scan time exactly as the stored classifier scores it now."""
    from sklearn.linear_model import LogisticRegression

    root, db, paths = library
    db2 = copy_db(db, tmp_path / "e2e.db")
    learn(db2, "thumps", *like(paths["drums"][:EXAMPLES]), "--unlike", root / "noise", "--unlike", root / "chords")
    weights, bias, mean, scale, vectors, stored = _blobs(db2, "thumps")
    order = sorted(vectors)
    x = np.stack([vectors[p] for p in order]).astype(np.float64)
    assert mean == pytest.approx(x.mean(axis=0), abs=1e-4)
    std = x.std(axis=0)
    assert scale == pytest.approx(np.where(std > 1e-6 * std.max(), std, 1.0), rel=1e-3, abs=1e-5)
    liked = set(paths["drums"][:EXAMPLES])
    unliked = set(paths["noise"]) | set(paths["chords"])
    examples = [p for p in order if p in liked or p in unliked]
    z = (np.stack([vectors[p] for p in examples]) - x.mean(axis=0)) / np.where(std > 1e-6 * std.max(), std, 1.0)
    y = np.array([p in liked for p in examples], dtype=float)
    reference = LogisticRegression(C=0.02, class_weight="balanced", max_iter=5000).fit(z, y)
    assert weights == pytest.approx(reference.coef_[0], abs=2e-3)
    assert bias == pytest.approx(reference.intercept_[0], abs=2e-3)
    z_all = (x - x.mean(axis=0)) / np.where(std > 1e-6 * std.max(), std, 1.0)
    expected = reference.predict_proba(z_all)[:, 1]
    assert [stored[p] for p in order] == pytest.approx(expected, abs=2e-3)
    assert len(stored) == len(order)  # every track of the model is scored

    new = tmp_path / "new"
    new.mkdir()
    newcomer = member("drums", 21, new)
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", new, "--db", db2, "--workers", "0")
    assert result.returncode == 0, result.stderr
    weights2, bias2, mean2, scale2, vectors2, stored2 = _blobs(db2, "thumps")
    assert np.array_equal(weights2, weights) and bias2 == bias  # a scan does not refit
    e = vectors2[newcomer]
    now = 1 / (1 + np.exp(-(((e - mean2) / scale2) @ weights2 + bias2)))
    assert stored2[newcomer] == pytest.approx(now, abs=1e-6)
