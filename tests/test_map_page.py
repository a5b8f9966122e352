"""tagger map's page in a real browser (Debian's Chromium driven by Playwright), on a scanned
library of four families of sounds (tests/test_similar.py's signals): offline, every track
drawn where its own embedding puts it, hover and click, colours, search, filters, and a
selection saved as m3u. Skips with one line where Playwright or Chromium is missing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import mutagen.flac
import numpy as np
import pytest
from conftest import run_cli
from test_similar import FAMILIES, family_file

from tagger.model.vocab import MTAT_GROUPS
from tagger.store.catalog import Store

MEMBERS = 3
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def chromium() -> str | None:
    for exe in (os.environ.get("TAGGER_TEST_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if exe and os.path.exists(exe):
            return exe
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests skipped: Playwright is not installed (pip install -e '.[test]')")
    exe = chromium()
    if exe is None:
        pytest.skip("browser tests skipped: no Chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """lib/FAMILY/*.flac (3 each; the drums with artist and title tags, one noise file in a
    folder with a space and an umlaut), a file that fails, scanned; and its map."""
    root = tmp_path_factory.mktemp("map-page")
    for family in FAMILIES:
        for i in range(MEMBERS):
            folder = root / "lib" / (f"{family}/grün {i}" if family == "noise" and i == 2 else family)
            path = family_file(folder / f"{family[0]}{i}.flac", family, i)
            if family == "drums":
                tags = mutagen.flac.FLAC(path)
                tags["artist"], tags["title"] = "Drummer A", f"Pattern {i}"
                tags.save()
    (root / "lib" / "broken.flac").write_bytes(b"fLaC not really")
    db = root / "lib.db"
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root / "lib", "--db", db, "--workers", "0")
    assert result.returncode == 0, result.stderr
    result = run_cli("map", "--db", db, "--out", root / "map.html")
    assert result.returncode == 0, result.stderr
    store = Store(str(db), create=False)
    model = store.model()
    tracks = {r.path: store.track_scores(r.id, model) for r in store.tracks_under()}
    return root, db, tracks


@pytest.fixture
def page(browser, library):
    """The map opened from file://. Every request but the page's own is recorded
    (``page.made_requests``) and any but a file's refused; at the end nothing went to the
    console as an error, and nothing was asked for but the library's files (the player)."""
    root = library[0]
    url = (root / "map.html").as_uri()
    context = browser.new_context(viewport={"width": 1300, "height": 850}, accept_downloads=True)
    requests, errors = [], []

    def refuse(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", refuse)
    pg = context.new_page()
    pg.made_requests = requests
    pg.on("request", lambda r: r.url != url and requests.append(r.url))
    pg.on("console", lambda m: m.type == "error" and errors.append(m.text))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url)
    pg.wait_for_function("() => window.taggerMap && window.taggerMap.ready", timeout=20000)
    yield pg
    pg.wait_for_timeout(100)
    context.close()
    assert errors == [], errors
    library_url = (root / "lib").as_uri() + "/"
    assert all(r.startswith(library_url) for r in requests), f"the page asked for {requests}"


def family_of(path: str) -> str:
    return next(f for f in FAMILIES if f"/{f}/" in path)


def track_index(page, path: str) -> int:
    i = page.evaluate("p => taggerMap.indexOf(p)", path)
    assert i >= 0, path
    return i


def top_tag(scores: dict[str, float]) -> str:
    """The track's best tag as the page names it: groups collapse their members."""
    grouped = {m for members in MTAT_GROUPS.values() for m in members}
    cands = {g.replace("_", " "): max(scores[m] for m in members) for g, members in MTAT_GROUPS.items()}
    cands.update({t: p for t, p in scores.items() if t not in grouped})
    return max(cands, key=lambda k: (cands[k], k))


def test_every_track_drawn_offline_where_its_embedding_puts_it(page, library):
    _, _, tracks = library
    page.wait_for_timeout(300)
    assert page.made_requests == []  # nothing asked for on opening, not even the files
    assert page.evaluate("taggerMap.total") == page.evaluate("taggerMap.drawn") == len(tracks) == 4 * MEMBERS
    assert page.evaluate("taggerMap.inView") == len(tracks)
    paths = list(tracks)
    xy = np.array([page.evaluate("i => taggerMap.position(i)", track_index(page, p)) for p in paths])
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.diag([np.inf] * len(paths))
    nearest_same = [family_of(paths[int(np.argmin(d[i]))]) == family_of(p) for i, p in enumerate(paths)]
    assert sum(nearest_same) >= 0.75 * len(paths), list(zip(paths, nearest_same))
    assert "sound alike only approximately" in page.inner_text("#about")


def test_hover_and_click_show_the_track(page, library):
    root, db, tracks = library
    path = str(root / "lib" / "drums" / "d1.flac")
    i = track_index(page, path)
    at = page.evaluate("i => taggerMap.screenPosition(i)", i)
    page.mouse.move(at["x"], at["y"])
    tip = page.locator("#tooltip")
    tip.wait_for(state="visible")
    assert "Drummer A – Pattern 1" in tip.inner_text() and top_tag(tracks[path]) in tip.inner_text()

    page.mouse.click(at["x"], at["y"])
    selected = page.evaluate("taggerMap.selected")
    assert selected["path"] == path and selected["title"] == "Pattern 1"
    panel = page.inner_text("#track")
    assert "Drummer A – Pattern 1" in panel and top_tag(tracks[path]) in panel
    src = page.get_attribute("#track audio", "src")
    assert (root / src).resolve() == Path(path)  # relative to the page, beside the library
    duration = page.evaluate("""() => new Promise(res => { const a = document.querySelector('#track audio');
        a.addEventListener('loadedmetadata', () => res(a.duration)); a.load(); })""")
    assert abs(duration - 6.0) < 0.1  # the player reaches the file
    similar = run_cli("similar", path, "--db", db, "-n", "5", "-f", "json")
    assert selected["neighbours"][:5] == [r["path"] for r in json.loads(similar.stdout)]

    unicode_path = str(root / "lib" / "noise" / "grün 2" / "n2.flac")
    at = page.evaluate("i => taggerMap.screenPosition(i)", track_index(page, unicode_path))
    page.mouse.click(at["x"], at["y"])
    src = page.get_attribute("#track audio", "src")
    assert "gr%C3%BCn%202/n2.flac" in src


def test_colour_scale_runs_from_low_to_high(page, library):
    _, _, tracks = library
    paths = list(tracks)
    idx = [track_index(page, p) for p in paths]
    genre = page.evaluate("ix => ix.map(i => taggerMap.colorOf(i))", idx)
    # the tag whose probabilities differ most between the tracks
    tag = max(tracks[paths[0]], key=lambda t: np.ptp([tracks[p][t] for p in paths]))
    page.select_option("#color", f"tag:{tag}")
    page.wait_for_function("k => taggerMap.colorBy === k", arg=f"tag:{tag}")
    colours = page.evaluate("ix => ix.map(i => taggerMap.colorOf(i))", idx)
    assert sum(a != b for a, b in zip(genre, colours)) >= len(paths) // 2
    legend = page.evaluate("taggerMap.legend")
    assert legend["kind"] == "scale" and legend["title"] == tag

    def rgb(h: str) -> np.ndarray:
        return np.array([int(h[k:k + 2], 16) for k in (1, 3, 5)], float)

    low, high = rgb(legend["low"]), rgb(legend["high"])
    # where each colour lies between the legend's low and high ends, 0 … 1
    where = [float(np.dot(rgb(c) - low, high - low) / np.dot(high - low, high - low)) for c in colours]
    probs = [tracks[p][tag] for p in paths]
    assert np.corrcoef(np.argsort(np.argsort(probs)), np.argsort(np.argsort(where)))[0, 1] > 0.8
    top, bottom = int(np.argmax(probs)), int(np.argmin(probs))
    assert where[top] > where[bottom]
    stops = [rgb(c) for c in legend["stops"]]  # the legend's gradient, low to high

    def on_scale(p: float) -> np.ndarray:
        t = p * (len(stops) - 1)
        a = min(int(t), len(stops) - 2)
        return stops[a] + (stops[a + 1] - stops[a]) * (t - a)

    for c, p in zip(colours, probs):  # each point's colour is the legend's at its probability
        assert np.abs(rgb(c) - on_scale(p)).max() <= 6, (c, p)


def test_search_and_tag_filters_narrow_the_points(page, library):
    _, _, tracks = library
    page.fill("#search", "pattern")
    page.wait_for_function("() => taggerMap.drawn === 3")
    page.fill("#search", "grün")
    page.wait_for_function("() => taggerMap.drawn === 1")
    page.fill("#search", "")
    page.wait_for_function(f"() => taggerMap.drawn === {len(tracks)}")

    paths = list(tracks)
    tag = max(tracks[paths[0]], key=lambda t: np.ptp([tracks[p][t] for p in paths]))
    probs = np.array([tracks[p][tag] for p in paths])
    # a threshold on the slider's 0.05 steps that splits the tracks, with no track within rounding of it
    cut = next(c for c in np.arange(0.05, 1.0, 0.05)[::-1]
               if 0 < (probs >= c).sum() < len(paths) and np.abs(probs - c).min() > 0.01)
    page.click("#add-filter")
    page.select_option("#filters select", f"tag:{tag}")
    page.evaluate("c => { const r = document.querySelector('#filters input[type=range]'); r.value = c; "
                  "r.dispatchEvent(new Event('input')); }", str(round(float(cut), 2)))
    page.wait_for_function(f"() => taggerMap.drawn === {int((probs >= cut).sum())}")


def test_box_and_lasso_selections_save_exactly_their_tracks_as_m3u(page, library, tmp_path):
    _, _, tracks = library
    paths = list(tracks)
    at = {p: page.evaluate("i => taggerMap.screenPosition(i)", track_index(page, p)) for p in paths}
    drums = [p for p in paths if family_of(p) == "drums"]
    x0 = min(at[p]["x"] for p in drums) - 6
    x1 = max(at[p]["x"] for p in drums) + 6
    y0 = min(at[p]["y"] for p in drums) - 6
    y1 = max(at[p]["y"] for p in drums) + 6
    inside = {p for p in paths if x0 < at[p]["x"] < x1 and y0 < at[p]["y"] < y1}

    page.check("input[name=mode][value=box]")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=3)
    page.mouse.move(x1, y1, steps=3)
    page.mouse.up()
    assert set(page.evaluate("taggerMap.selection")) == inside
    entries = save_m3u(page, tmp_path)
    assert sorted(e for e in entries if not e.startswith("#")) == sorted(inside)
    assert "#EXTINF:6,Drummer A - Pattern 0" in entries

    # a lasso: a triangle around one track, with its points in between
    page.check("input[name=mode][value=lasso]")
    c = at[paths[0]]
    triangle = [(c["x"] - 12, c["y"] + 9), (c["x"] + 12, c["y"] + 9), (c["x"], c["y"] - 14)]
    page.mouse.move(*triangle[0])
    page.mouse.down()
    for a, b in zip(triangle, triangle[1:] + triangle[:1]):
        for t in np.linspace(0, 1, 5)[1:]:
            page.mouse.move(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)
    page.mouse.up()
    expected = {p for p in paths if _in_triangle(at[p], triangle)}
    assert paths[0] in expected and set(page.evaluate("taggerMap.selection")) == expected
    assert sorted(e for e in save_m3u(page, tmp_path) if not e.startswith("#")) == sorted(expected)


def save_m3u(page, folder: Path) -> list[str]:
    with page.expect_download() as download:
        page.click("#save")
    target = folder / "selection.m3u"
    download.value.save_as(target)
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U"
    return lines


def _in_triangle(p: dict, tri: list[tuple[float, float]]) -> bool:
    def side(a, b):
        return (b[0] - a[0]) * (p["y"] - a[1]) - (b[1] - a[1]) * (p["x"] - a[0])

    s = [side(tri[k], tri[(k + 1) % 3]) for k in range(3)]
    return all(v > 0 for v in s) or all(v < 0 for v in s)


def test_the_library_in_figures(page, library):
    page.wait_for_selector("#charts figure")
    text = page.inner_text("#charts")
    assert "Tracks with each tag at ≥ 0.20" in text and "Formats" in text and "Durations" in text
    assert "failed to decode" in text and "Why files failed" in text
    assert page.locator("#charts svg").count() > 50  # pictures: one per tag's distribution and more
