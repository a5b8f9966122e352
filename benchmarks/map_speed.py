"""`tagger map` at 100,000 tracks: writing the page, its size, and the page in a browser.

    python benchmarks/map_speed.py [--tracks 100000] [--db /tmp/tagger-map-bench.db] [--reuse]
                                   [--chromium /usr/bin/chromium]

The library is benchmarks/similar_speed.py's (synthetic tracks written through Store.save:
500 artists × 200 tracks with embeddings that have neighbourhoods, artist/album/title tags on
90 %). Prints: the whole `tagger map` process (median of 3), the library's steps one by one,
the page's size, the recall of the clustered neighbour search against the exact one (500
tracks), and in headless Chromium (software rendering; Playwright): time until the first
frame is drawn (navigation start → taggerMap.ready), the render time of frames while
panning and zooming by mouse, a hover, a search, a recolouring.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from similar_speed import build

from tagger.library.layout import neighbours_kept, project
from tagger.library.map import build_map
from tagger.library.map_page import render
from tagger.library.neighbours import nearest_all
from tagger.library.similar import DEFAULT_SPACE, fit_space
from tagger.store.catalog import Store


def timed(label: str, fn):
    """Wall time, and the CPU time this process spent (all threads): on shared cores the
    second says what the step costs, the first what it took."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    print(f"  {label}: {time.perf_counter() - t:.2f} s wall, {time.process_time() - c:.2f} s CPU")
    return out


def steps(db: str, out: Path) -> None:
    store = Store(db, create=False)
    model = store.model()
    stored = timed("read the embeddings", lambda: store.embeddings_of(model))
    v = timed(f"the similarity space ({DEFAULT_SPACE})", lambda: fit_space(DEFAULT_SPACE, stored.vectors)(stored.vectors))
    layout = timed("PCA layout", lambda: project(v))
    near, _ = timed("10 nearest of every track", lambda: nearest_all(v, 10, stored.fingerprints))
    timed("neighbourhoods kept on the map (300 tracks)", lambda: neighbours_kept(layout.xy, near))
    timed("read the tracks", lambda: store.tracks_under())
    timed("read the scores (score_matrix)", lambda: store.score_matrix(stored.track_ids, list(model.tag_ids)))
    data = timed("build_map (all of the above)", lambda: build_map(store, out))
    page = timed("render the page", lambda: render(data))
    print(f"  page: {len(page) / 1e6:.1f} MB")
    rows = np.random.default_rng(0).choice(len(v), 500, replace=False)
    s = v[rows] @ v.T
    s[np.arange(len(rows)), rows] = -np.inf
    exact = np.argsort(-s, axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, near[rows])])
    print(f"  clustered neighbour search: recall@10 against exact {recall:.3f} (500 tracks)")


def process(db: str, out: Path, rounds: int = 3) -> None:
    import resource

    cmd = [sys.executable, "-m", "tagger", "map", "--db", db, "--out", str(out)]
    times, cpu = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(time.perf_counter() - t)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    print(f"tagger map, whole process: median {statistics.median(times):.1f} s wall "
          f"({', '.join(f'{x:.1f}' for x in times)}), {statistics.median(cpu):.1f} s CPU; "
          f"{out.stat().st_size / 1e6:.1f} MB")


def browser(out: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                                              "--disable-background-networking"])
        for round_ in range(2):
            page = b.new_page(viewport={"width": 1400, "height": 900})
            t = time.perf_counter()
            page.goto(out.as_uri())
            page.wait_for_function("() => window.taggerMap && window.taggerMap.ready", timeout=60000, polling=20)
            wall = time.perf_counter() - t
            nav = page.evaluate("() => performance.now()")
            print(f"browser round {round_}: first frame drawn {wall:.2f} s after goto (page clock {nav / 1000:.2f} s)")
            box = page.locator("#overlay").bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            frames = []
            page.mouse.move(cx, cy)
            page.mouse.down()
            for k in range(40):
                page.mouse.move(cx + 4 * k, cy + 2 * k)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                frames.append(page.evaluate("() => taggerMap.frameMs"))
            page.mouse.up()
            for k in range(30):
                page.mouse.wheel(0, -120 if k < 20 else 120)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                frames.append(page.evaluate("() => taggerMap.frameMs"))
            frames.sort()
            print(f"  frame render while panning and zooming: median {statistics.median(frames):.1f} ms, "
                  f"p95 {frames[int(0.95 * len(frames))]:.1f} ms, max {frames[-1]:.1f} ms ({len(frames)} frames)")
            t = time.perf_counter()
            page.mouse.move(cx + 10, cy + 10)
            page.evaluate("() => new Promise(r => requestAnimationFrame(r))")
            print(f"  hover (nearest of 100,000 points, tooltip): {1000 * (time.perf_counter() - t):.0f} ms")
            t = time.perf_counter()
            page.fill("#search", "artist 12")
            page.wait_for_function("() => taggerMap.drawn < taggerMap.total", polling=10)
            print(f"  search (120 ms debounce included): {1000 * (time.perf_counter() - t):.0f} ms, "
                  f"{page.evaluate('() => taggerMap.drawn')} shown")
            t = time.perf_counter()
            page.select_option("#color", "tag:piano")
            page.wait_for_function("() => taggerMap.colorBy === 'tag:piano'", polling=10)
            page.evaluate("() => new Promise(r => requestAnimationFrame(r))")
            print(f"  recolour by a tag: {1000 * (time.perf_counter() - t):.0f} ms")
            page.close()
        b.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--db", default="/tmp/tagger-map-bench.db")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    if not (args.reuse and os.path.exists(args.db)):
        build(args.db, args.tracks)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "map.html"
        print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores)")
        print("steps (in process):")
        steps(args.db, out)
        process(args.db, out)
        if os.path.exists(args.chromium):
            browser(out, args.chromium)
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
