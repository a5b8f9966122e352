"""tagger similar and tagger radio on real audio: four families of distinct signals (piano-like
notes, drum patterns, coloured noise, chords), a few short files each, scanned once with the
real command line."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_audio

SR = 16000
SECONDS = 6.0
FAMILIES = ("piano", "drums", "noise", "chords")
MEMBERS = 4
DRUMMERS = {0: "Drummer A", 1: "Drummer A", 2: "Drummer B", 3: "Drummer B"}  # artist tags of drums/d*.flac


def _t() -> np.ndarray:
    return np.arange(int(SECONDS * SR)) / SR


def piano(seed: int) -> np.ndarray:
    """Struck notes: harmonics that decay, higher ones faster, one note every 0.75 s."""
    rng = np.random.default_rng(seed)
    t, x = _t(), np.zeros(int(SECONDS * SR))
    for start in np.arange(0, SECONDS, 0.75):
        f0 = 220 * 2 ** (rng.integers(0, 24) / 12)
        i = int(start * SR)
        tt = t[: len(x) - i]
        note = sum(np.sin(2 * np.pi * f0 * h * tt) * np.exp(-tt * (2 + 1.5 * h)) / h ** 1.5 for h in range(1, 9))
        x[i:] += note
    return x


def drums(seed: int) -> np.ndarray:
    """Kick on the beat (a falling sine), hi-hat on the off-beats (noise clicks)."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(SECONDS * SR))
    beat = 60 / (96 + 8 * seed)
    tk = np.arange(int(0.25 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 * tk + 100 * (1 - np.exp(-tk * 30)) / 30)) * np.exp(-tk * 14)
    th = np.arange(int(0.06 * SR)) / SR
    for k, start in enumerate(np.arange(0, SECONDS - 0.3, beat / 2)):
        i = int(start * SR)
        if k % 2 == 0:
            x[i:i + len(kick)] += kick
        else:
            x[i:i + len(th)] += 0.4 * np.diff(rng.standard_normal(len(th) + 1)) * np.exp(-th * 60)
    return x


def noise(seed: int) -> np.ndarray:
    """Coloured noise (white through brownish, per seed) that swells slowly."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(int(SECONDS * SR))
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(len(white), 1 / SR)
    spectrum /= np.maximum(freqs, 20) ** (0.3 * seed / 2)
    x = np.fft.irfft(spectrum, len(white))
    return x * (0.6 + 0.4 * np.sin(2 * np.pi * 0.3 * _t()))


def chords(seed: int) -> np.ndarray:
    """Held triads (saw-like tones, soft attack), a new chord every 1.5 s."""
    rng = np.random.default_rng(seed)
    t, x = _t(), np.zeros(int(SECONDS * SR))
    n = int(1.5 * SR)
    for i in range(0, len(x), n):
        root = 130.8 * 2 ** (rng.integers(0, 12) / 12)
        tt = t[: min(n, len(x) - i)]
        env = np.minimum(1, tt / 0.2)
        for step in (0, 3 + int(rng.integers(0, 2)), 7):
            f = root * 2 ** (step / 12)
            x[i:i + len(tt)] += env * sum(np.sin(2 * np.pi * f * h * tt) / h for h in range(1, 7))
    return x


SIGNALS = {"piano": piano, "drums": drums, "noise": noise, "chords": chords}


def family_file(path: Path, family: str, seed: int) -> Path:
    x = SIGNALS[family](seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_audio(path, (0.7 * x / np.max(np.abs(x))).astype(np.float32), SR)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """lib/FAMILY/F0..F3.flac, scanned; piano/p0-copy.flac is a byte copy of p0; the drums
    carry artist tags (two per drummer), the others none (their folder is their artist).
    outside/ holds one more of each family, not scanned."""
    import mutagen.flac

    root = tmp_path_factory.mktemp("similar")
    for family in FAMILIES:
        for i in range(MEMBERS):
            path = family_file(root / "lib" / family / f"{family[0]}{i}.flac", family, i)
            if family == "drums":
                tags = mutagen.flac.FLAC(path)
                tags["artist"], tags["title"] = DRUMMERS[i], f"Pattern {i}"
                tags.save()
        family_file(root / "outside" / f"{family}-x.flac", family, 10)
    shutil.copyfile(root / "lib" / "piano" / "p0.flac", root / "lib" / "piano" / "p0-copy.flac")
    db = root / "lib.db"
    result = run_cli("scan", "-m", "musicnn-vgg-mtt", root / "lib", "--db", db, "--workers", "0")
    assert result.returncode == 0, result.stderr
    return root, db


def family_of(path: str) -> str:
    return Path(path).parent.name if Path(path).parent.name in FAMILIES else Path(path).stem.split("-")[0]


def similar_json(db: Path, target: Path, *args: str) -> list[dict]:
    result = run_cli("similar", target, "--db", db, "-f", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_neighbours_of_a_member_are_its_family(lib):
    from tagger.library.similar import Neighbourhood
    from tagger.store.catalog import Store

    root, db = lib
    near = Neighbourhood(Store(str(db), create=False))
    for family in FAMILIES:
        for i in range(MEMBERS):
            path = root / "lib" / family / f"{family[0]}{i}.flac"
            result = near.similar(str(path), MEMBERS - 1)
            assert [family_of(r.path) for r in result.neighbours] == [family] * (MEMBERS - 1), (path, result.neighbours)
            sims = [r.similarity for r in result.neighbours]
            assert sims == sorted(sims, reverse=True) and all(-1.0 <= s <= 1.0 + 1e-6 for s in sims)


def test_similar_cli_formats(lib):
    root, db = lib
    query = root / "lib" / "drums" / "d1.flac"
    rows = similar_json(db, query, "-n", "3")
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert {family_of(r["path"]) for r in rows} == {"drums"}
    assert all(r["artist"] in ("Drummer A", "Drummer B") and r["format"] == "flac" for r in rows)
    m3u = run_cli("similar", query, "--db", db, "-n", "3", "-f", "m3u")
    assert m3u.returncode == 0, m3u.stderr
    lines = m3u.stdout.splitlines()
    assert lines[0] == "#EXTM3U" and len(lines) == 7
    assert lines[1].startswith("#EXTINF:6,Drummer ") and " - Pattern " in lines[1]
    paths = run_cli("similar", query, "--db", db, "-n", "2", "-f", "paths")
    assert paths.stdout.splitlines() == [r["path"] for r in rows[:2]]
    table = run_cli("similar", query, "--db", db, "-n", "2")
    assert table.returncode == 0 and rows[0]["path"] in table.stdout and "similarity" in table.stdout


def test_a_file_outside_the_library_is_embedded_on_the_fly(lib):
    root, db = lib
    result = run_cli("similar", root / "outside" / "chords-x.flac", "--db", db, "-f", "json", "-n", "4")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [family_of(r["path"]) for r in rows] == ["chords"] * 4
    assert "chords-x.flac is not in the library: embedded it now with musicnn-vgg-mtt" in result.stderr


def test_a_copy_outside_the_library_does_not_find_its_original(lib, tmp_path):
    """Same bytes as a library track (same fingerprint): embedded anew, and the original and
    its copies are left out."""
    from tagger.library.similar import Neighbourhood
    from tagger.store.catalog import Store

    root, db = lib
    copy = shutil.copyfile(root / "lib" / "piano" / "p0.flac", tmp_path / "p0-elsewhere.flac")
    result = Neighbourhood(Store(str(db), create=False)).similar(str(copy), 20)
    names = [Path(r.path).name for r in result.neighbours]
    assert result.embedded and "p0.flac" not in names and "p0-copy.flac" not in names
    assert [family_of(p.path) for p in result.neighbours[:3]] == ["piano"] * 3
    assert len(names) == MEMBERS * len(FAMILIES) - 1  # every track once, less p0's two copies


def test_tracks_of_another_model(lib, tmp_path):
    """By default the library's model (embedding a track of another model anew);
    --same-model: the tracks of the track's own model."""
    root, db = lib
    mixed = tmp_path / "mixed.db"
    shutil.copyfile(db, mixed)
    other = tmp_path / "other"
    family_file(other / "drums-y.flac", "drums", 11)
    family_file(other / "noise-y.flac", "noise", 11)
    assert run_cli("scan", other, "--db", mixed, "--model", "musicnn-mtt", "--workers", "0",
                   "--runtime", "torch").returncode == 0
    result = run_cli("similar", root / "lib" / "noise" / "n1.flac", "--db", mixed, "-f", "paths", "-n", "3")
    assert result.returncode == 0, result.stderr
    assert {family_of(p) for p in result.stdout.split()} == {"noise"}
    assert "2 tracks not scored by musicnn-vgg-mtt are not compared (--same-model" in result.stderr
    result = run_cli("similar", other / "drums-y.flac", "--db", mixed, "-f", "paths", "-n", "3")
    assert {family_of(p) for p in result.stdout.split()} == {"drums"}
    assert "drums-y.flac was scanned by another model: embedded it now with musicnn-vgg-mtt" in result.stderr
    result = run_cli("similar", other / "drums-y.flac", "--db", mixed, "-f", "paths", "--same-model")
    assert result.returncode == 0 and result.stdout.split() == [str(other / "noise-y.flac")]
    assert "embedded" not in result.stderr and "17 tracks not scored by musicnn-mtt" in result.stderr


def test_duplicates_are_excluded(lib):
    root, db = lib
    rows = similar_json(db, root / "lib" / "piano" / "p0.flac", "-n", "20")
    names = [Path(r["path"]).name for r in rows]
    assert "p0-copy.flac" not in names and "p0.flac" not in names
    assert len(names) == MEMBERS * len(FAMILIES) - 1
    rows = similar_json(db, root / "lib" / "piano" / "p1.flac", "-n", "20")
    names = [Path(r["path"]).name for r in rows]
    assert len([n for n in names if n in ("p0.flac", "p0-copy.flac")]) == 1  # two copies: one track
    assert "p1.flac" not in names and len(names) == len(set(names))


def radio(db: Path, *args: str) -> tuple[list[dict], str]:
    result = run_cli("radio", *args, "--db", db, "-f", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_radio_does_not_repeat_and_is_deterministic_for_a_seed(lib):
    root, db = lib
    seed_track = root / "lib" / "noise" / "n2.flac"
    first, _ = radio(db, seed_track, "-n", "10", "--seed", "7")
    again, _ = radio(db, seed_track, "-n", "10", "--seed", "7")
    other, _ = radio(db, seed_track, "-n", "10", "--seed", "8")
    assert first == again
    assert [r["path"] for r in other] != [r["path"] for r in first]
    for playlist in (first, other):
        paths = [r["path"] for r in playlist]
        assert len(paths) == 10 and len(set(paths)) == 10
        assert paths[0] == str(seed_track) and playlist[0]["seed"] and not any(r["seed"] for r in playlist[1:])
        assert not {"p0.flac", "p0-copy.flac"} <= {Path(p).name for p in paths}
        assert Counter(map(family_of, paths))["noise"] == MEMBERS  # its neighbourhood, all of it


def test_radio_plays_the_whole_library_once_then_says_so(lib):
    root, db = lib
    playlist, stderr = radio(db, root / "lib" / "piano" / "p3.flac", "-n", "100", "--seed", "1")
    names = [Path(r["path"]).name for r in playlist]
    assert len(names) == len(set(names)) == MEMBERS * len(FAMILIES)  # 17 tracks, two of them copies
    assert len({"p0.flac", "p0-copy.flac"} & set(names)) == 1
    assert "only 16 tracks" in stderr and "--seed" not in stderr


def test_radio_respects_max_per_artist(lib):
    """Artist tags where the files have them (the drums: two drummers), else the folder."""
    root, db = lib
    playlist, _ = radio(db, root / "lib" / "drums" / "d0.flac", root / "lib" / "chords" / "c1.flac",
                        "-n", "10", "--max-per-artist", "2", "--seed", "3")
    assert len(playlist) == 10
    artists = Counter(r["artist"] or family_of(r["path"]) for r in playlist)
    assert max(artists.values()) <= 2, artists
    assert set(artists) == {"Drummer A", "Drummer B", "piano", "noise", "chords"}
    short, stderr = radio(db, root / "lib" / "drums" / "d0.flac", "-n", "10", "--max-per-artist", "1", "--seed", "3")
    assert len(short) == 5 and "only 5 tracks with at most 1 per artist" in stderr


def test_radio_with_a_file_outside_the_library(lib):
    root, db = lib
    playlist, _ = radio(db, root / "outside" / "piano-x.flac", "-n", "4", "--seed", "2")
    assert playlist[0]["path"] == str(root / "outside" / "piano-x.flac") and playlist[0]["seed"]
    assert [family_of(r["path"]) for r in playlist[1:]] == ["piano"] * 3


@pytest.mark.parametrize("args, message", [
    (["similar", "{root}/nowhere.flac"], "no such file, and no track of that path in the library"),
    (["similar", "{root}/lib"], "is a folder"),
    (["radio", "{root}/lib/piano/p1.flac", "{root}/nowhere.flac"], "no such file"),
    (["similar", "{root}/lib/piano/p1.flac", "-n", "0"], "-n"),
    (["radio", "{root}/lib/piano/p1.flac", "-n", "0"], "-n"),
    (["radio", "{root}/lib/piano/p1.flac", "--max-per-artist", "0"], "--max-per-artist"),
])
def test_bad_input_is_one_line(lib, args, message):
    root, db = lib
    result = run_cli(*[a.format(root=root) for a in args], "--db", db)
    assert result.returncode != 0 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr


def test_empty_or_absent_library_is_one_line(tmp_path):
    from tagger.store.catalog import Store

    db = tmp_path / "empty.db"
    Store(str(db))  # what a scan of an empty folder leaves: the schema, no tracks
    for args in (["similar", tmp_path / "x.flac", "--db", db], ["radio", tmp_path / "x.flac", "--db", db],
                 ["similar", tmp_path / "x.flac", "--db", tmp_path / "none.db"]):
        family_file(tmp_path / "x.flac", "piano", 0)
        result = run_cli(*args)
        assert result.returncode == 1 and result.stdout == "", result
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1 and line.startswith("tagger: error: ")
        assert "no tagged tracks" in line or "no such database" in line


@pytest.mark.parametrize("space", ["cosine", "centred", "standardised", "whitened"])
def test_spaces_map_a_matrix_in_blocks_as_one_vector_at_a_time(space):
    """The library's matrix goes through the space in blocks; a query vector alone."""
    from tagger.library.similar import BLOCK, fit_space

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((BLOCK + 500, 16)) * rng.uniform(0.1, 3, 16) + rng.uniform(-5, 5, 16)).astype(np.float32)
    x[:, 3] = 1.5  # a dead unit: standardising drops it
    fitted = fit_space(space, x)
    matrix = fitted(x)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-5)
    for i in (0, BLOCK - 1, BLOCK, len(x) - 1):
        assert np.allclose(fitted(x[i]), matrix[i], atol=1e-6)
    if space == "standardised":
        assert np.allclose(fitted.mean, x.mean(axis=0), atol=1e-4) and fitted.proj[3] == 0
        assert np.allclose(1 / np.delete(fitted.proj, 3), np.delete(x.std(axis=0), 3), rtol=1e-4)
