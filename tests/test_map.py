"""tagger map without a browser: the page's data on SQLite and PostgreSQL, the all-pairs
neighbour search, the links to the files, and one-line errors. (tests/test_map_page.py opens
the page in Chromium.)"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from tagger.engine.results import ModelOutput, TrackResult
from tagger.library.neighbours import nearest_all
from tagger.model.modelcard import DEFAULT_MODEL
from tagger.model.modelfile import read_card
from tagger.store.catalog import Store

ARTISTS = 6
PER_ARTIST = 5


def page_data(html: Path) -> dict:
    """The data a page carries (the JSON inside its <script id="tagger-data">)."""
    text = html.read_text(encoding="utf-8")
    m = re.search(r'<script id="tagger-data" type="application/json">(.*?)</script>', text, re.DOTALL)
    assert m, "no data in the page"
    return json.loads(m.group(1))


def column(data: dict, name: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data[name]), dtype=dtype)


def paths_of(data: dict) -> list[str]:
    idx = column(data, "dir", "<u4")
    return [str(Path(data["dirs"][d]) / f) for d, f in zip(idx, data["files"])]


def synthetic_library(db: str, folder: Path) -> dict[str, np.ndarray]:
    """30 tracks of 6 'artists' (embeddings around 6 centres) written through Store.save, as a
    scan stores them, plus a failed file and a byte copy of a1/t0 (same fingerprint). Returns
    path → embedding as stored (float16)."""
    store = Store(db)
    model = store.ensure_model(read_card(DEFAULT_MODEL), 256)
    rng = np.random.default_rng(1)
    centres = 3 * rng.standard_normal((ARTISTS, 256))
    results, stored = [], {}
    for a in range(ARTISTS):
        for t in range(PER_ARTIST):
            path = folder / f"artist {a}" / f"t{t}.flac"
            emb = (centres[a] + rng.standard_normal(256)).astype(np.float16)
            probs = rng.beta(0.5, 3, 50).astype(np.float32)
            title = f"Song {t}" if (a, t) != (0, 4) else "Song </script><!-- 4"  # must not end the page's data
            results.append(TrackResult(str(path), 1000 + t, 1, f"{a:02d}{t:038d}", "flac", 61.0, 16, (ModelOutput(probs,
                                       emb.astype(np.float32)),), metadata={"artist": f"Artist {a}", "title": title}))
            stored[str(path)] = emb.astype(np.float32)
    copy = folder / "copies" / "t0 again.flac"
    results.append(TrackResult(str(copy), 1000, 1, results[PER_ARTIST].fingerprint, "flac", 61.0, 16,
                               results[PER_ARTIST].outputs, metadata={}))
    stored[str(copy)] = stored[results[PER_ARTIST].path]
    results.append(TrackResult(str(folder / "broken.mp3"), 10, 1, error="cannot decode: not audio"))
    store.save(results, model)
    return stored


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[str, Path]:
    """One synthetic library in SQLite for the tests that only read it."""
    root = tmp_path_factory.mktemp("map")
    synthetic_library(str(root / "lib.db"), root / "music")
    return str(root / "lib.db"), root / "music"


def test_map_of_a_library_on_each_database(db, tmp_path):
    """On SQLite and PostgreSQL: every ok track is on the map once, with its own metadata, and
    its listed neighbours are the exact nearest by cosine of the standardised embeddings (the
    space tagger similar ranks in), a track's copy never among them."""
    stored = synthetic_library(db, tmp_path / "music")
    out = tmp_path / "map.html"
    result = run_cli("map", "--db", db, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "31 tracks" in result.stdout and "1 file that failed" in result.stderr
    data = page_data(out)
    paths = paths_of(data)
    assert sorted(paths) == sorted(stored) and data["n"] == 31
    assert data["library"]["failed"] == 1 and data["library"]["failures"][0][1] == "cannot decode: not audio"
    titles = dict(zip(paths, data["titles"]))
    assert titles[str(tmp_path / "music" / "artist 2" / "t3.flac")] == "Song 3"
    assert titles[str(tmp_path / "music" / "artist 0" / "t4.flac")] == "Song </script><!-- 4"

    x = np.stack([stored[p] for p in paths])
    z = (x - x.mean(0)) / x.std(0)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    sims = z @ z.T
    near = column(data, "neighbours", "<i4").reshape(len(paths), -1)
    copies = {j for j, p in enumerate(paths) if "t0 again" in p or p.endswith("artist 1/t0.flac")}
    token = [("copy" if j in copies else j) for j in range(len(paths))]  # the two copies are one file
    for i, p in enumerate(paths):
        s = sims[i].copy()
        s[i] = -np.inf
        if i in copies:  # its copy is no neighbour of it
            s[list(copies)] = -np.inf
        ranked = [token[j] for j in np.argsort(-s, kind="stable") if s[j] > -np.inf]
        expected = [t for k, t in enumerate(ranked) if t not in ranked[:k]][:10]  # of the copies, the nearer
        assert [token[j] for j in near[i]] == expected, p
    # positions: inside [-1, 1], and one artist's tracks closer together than to the others
    xy = column(data, "xy", "<f4").reshape(-1, 2)
    assert np.abs(xy).max() <= 1.0 + 1e-6
    artist = np.array([Path(p).parent.name for p in paths])
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    same = artist[:, None] == artist[None]
    assert d[same & ~np.eye(len(paths), dtype=bool)].mean() < 0.6 * d[~same].mean()

    result = run_cli("map", "--db", db, "--out", out, "--where", "artist=artist 2", "--color", "female_vocals")
    assert result.returncode == 0 and "26 tracks left out by --where" in result.stderr, result.stderr
    data = page_data(out)
    assert data["n"] == PER_ARTIST and data["color"] == "group:female_vocals"
    assert {Path(p).parent.name for p in paths_of(data)} == {"artist 2"}


def test_links_reach_the_files_relative_and_absolute(synthetic, tmp_path):
    db, _ = synthetic
    for link in ("relative", "absolute"):
        out = tmp_path / f"{link}.html"
        assert run_cli("map", "--db", db, "--out", out, "--link", link).returncode == 0
        data = page_data(out)
        page = out.as_uri()
        for d, name, path in zip(column(data, "dir", "<u4"), data["files"], paths_of(data)):
            url = urllib.parse.urljoin(page, data["dirUrls"][d] + urllib.parse.quote(name, safe=""))
            assert urllib.parse.unquote(urllib.parse.urlparse(url).path) == path
            assert url.startswith("file://")
        assert data["dirUrls"][0].startswith("file://" if link == "absolute" else "../")
        assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_clustered_neighbour_search_finds_nearly_all_and_drops_copies():
    """Above the exact search's limit, the clustered one: checked against the exact one on
    clustered data (recall ≥ 0.9), and copies (same fingerprint) are never neighbours."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 32))
    x = (centres[rng.integers(0, 40, 3000)] + 0.7 * rng.standard_normal((3000, 32))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    fps = [f"f{i}" for i in range(3000)]
    fps[1] = fps[0]  # a copy
    exact, exact_sims = nearest_all(x, 10, fps)
    approx, _ = nearest_all(x, 10, fps, exact_limit=100)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)])
    assert recall >= 0.9, recall
    assert 1 not in exact[0] and 0 not in exact[1] and 1 not in approx[0]
    assert not any(0 in row and 1 in row for row in exact) and not any(0 in row and 1 in row for row in approx)
    assert np.all(np.diff(exact_sims, axis=1) <= 1e-6)  # best first
    assert (nearest_all(x[:3], 5)[0][:, 2:] == -1).all()  # fewer tracks than asked: -1


@pytest.mark.parametrize("args, status, message", [
    (["--color", "jazzz"], 1, "--color: unknown tag 'jazzz'"),
    (["--out", "{tmp}/nowhere/map.html"], 1, "its folder does not exist"),
    (["--out", "{tmp}"], 1, "is a folder"),
    (["--where", "artist=Nobody"], 1, "no track of the library can be mapped: none pass --where"),
    (["--where", "artist"], 2, "--where 'artist' is not FIELD=VALUE"),
    (["--link", "sideways"], 2, "--link"),
    (["--model", "nosuchmodel"], 1, "no results from a model named 'nosuchmodel'"),
])
def test_bad_input_is_one_line(synthetic, tmp_path, args, status, message):
    db, _ = synthetic
    result = run_cli("map", "--db", db, "--out", tmp_path / "map.html", *[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == status, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "map.html").exists()


def test_empty_library_and_tsne_without_opentsne(synthetic, tmp_path):
    db = str(tmp_path / "empty.db")
    Store(db)
    result = run_cli("map", "--db", db, "--out", tmp_path / "map.html")
    assert result.returncode == 1 and "the database holds no tagged tracks yet" in result.stderr
    try:
        import openTSNE  # noqa: F401
    except ImportError:
        result = run_cli("map", "--db", synthetic[0], "--out", tmp_path / "map.html", "--projection", "tsne")
        assert result.returncode == 1 and "pip install openTSNE" in result.stderr


def test_the_axes_are_read_from_the_tags_that_change_along_them():
    from tagger.library.map import axis_tags

    rng = np.random.default_rng(0)
    probs = rng.random((200, 4)).astype(np.float32)
    xy = np.stack([probs[:, 2] - probs[:, 0], -probs[:, 3] + 0.01 * rng.standard_normal(200)], axis=1)
    axes = axis_tags(xy, probs, ["a", "b", "c", "d"])
    assert axes[0] == {"low": ["a"], "high": ["c"]} and axes[1] == {"low": ["d"], "high": []}
