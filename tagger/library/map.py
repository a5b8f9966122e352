"""The library as a map: one self-contained HTML page (``tagger map``).

``build_map`` reads one model's 'ok' tracks (those passing ``--where``) from the store and
computes what the page shows: each track's position (tagger.library.layout), its nearest
tracks by embedding (tagger.library.neighbours, in the space ``tagger similar`` uses), its
tag probabilities, the track's own title, artist, album, path and a link to the file, and the
library's failures. ``write_map`` renders it (tagger.library.map_page) and writes the file
atomically.

The page's data is columnar, with binary columns as base64 (little-endian), so that 100,000
tracks fit in a few tens of MB and parse in well under a second: ``xy`` float32 [N, 2];
``scores`` uint8 [T, N] (probability × 255, tag-major so a colour is one column);
``neighbours`` int32 [N, k] rows (-1: none) and ``similarity`` int8 [N, k] (cosine × 127).
"""

from __future__ import annotations

import base64
import os
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger.errors import UsageError
from tagger.files.atomic import replace_atomically
from tagger.library.layout import neighbours_kept, project
from tagger.library.neighbours import nearest_all
from tagger.library.similar import DEFAULT_SPACE, fit_space
from tagger.model.vocab import GENRES, MOODS, tag_name
from tagger.store.catalog import Store, StoredModel
from tagger.store.query import Filter, filtered_track_ids

NEIGHBOURS = 10  # "sounds most like" entries per track
LINKS = ("relative", "absolute")
DEFAULT_THRESHOLD = 0.2  # a tag applies from this probability (as tagger write's default --min)
FAILURES_SHOWN = 50


@dataclass
class MapSummary:
    """What ``write_map`` wrote."""
    path: Path
    tracks: int
    model: str
    bytes: int
    other_models: int  # 'ok' tracks left out: not scored by the map's model
    filtered_out: int  # tracks of the model left out by --where
    failed: int
    seconds: float


def b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def resolve_color(model: StoredModel, color: str | None, others: Sequence[StoredModel] = ()) -> str:
    """The colour a page opens with, as the page names it: ``genre``, ``mood``, ``group:NAME``,
    ``tag:RAW`` or ``learned:NAME`` (``tag:MODEL:RAW``, ``group:MODEL:NAME`` for a name only
    one of ``others``, the library's other models, has). An unknown name is an error with
    close matches."""
    if color is None:
        return "genre" if model.vocabulary.genres or any(m.vocabulary.genres for m in others) \
            else f"tag:{model.vocabulary.tags[0]}"
    text = color.strip()
    if text.lower() in ("genre", "mood"):
        return text.lower()
    if text.lower().startswith("learned:"):
        text = text[8:]
    if tag_name(text) in model.learned:
        return f"learned:{tag_name(text)}"
    vocab = model.vocabulary
    raw = vocab.resolve(text)
    other = next((m for m in others if m.vocabulary.resolve(text) is not None), None)
    if raw is None and other is not None:
        raw = other.vocabulary.resolve(text)
        name = other.vocabulary.aliases.get(tag_name(text), tag_name(text))
        if len(raw) > 1 or name in other.vocabulary.groups:
            return f"group:{other.name}:{name}"
        return f"tag:{other.name}:{raw[0]}"
    if raw is None:
        close = vocab.suggest(text) + [n for n in model.learned if n.startswith(tag_name(text)[:3])][:2]
        hint = f"did you mean {', '.join(close)}?" if close else "genre, mood, or a tag: 'tagger tags' lists them"
        raise UsageError(None, f"--color: unknown tag {color!r}", hint)
    name = tag_name(text)
    name = vocab.aliases.get(name, name)
    if len(raw) > 1 or name in vocab.groups:
        return f"group:{name}"
    return f"tag:{raw[0]}"


def build_map(store: Store, out: Path, model_name: str | None = None, where: Sequence[Filter] = (),
              color: str | None = None, link: str = "relative", projection: str = "pca") -> dict:
    """The page's data (JSON-able) for the model's 'ok' tracks that pass ``where``.
    ``out``: where the page will be written (relative links start from its folder)."""
    if link not in LINKS:
        raise UsageError(None, f"--link must be one of {', '.join(LINKS)}, not {link!r}")
    from tagger.library.embedding import embedding_model

    model = embedding_model(store, model_name)
    initial = resolve_color(model, color, [m for m in store.scored_models() if m.id != model.id])
    stored = store.embeddings_of(model, fingerprints=True)
    total = len(stored)
    if where:
        keep = np.isin(stored.track_ids, np.array(filtered_track_ids(store, model, tuple(where)), np.int64))
        ids, raw = stored.track_ids[keep], stored.vectors[keep]
        fingerprints = [fp for fp, k in zip(stored.fingerprints, keep) if k]
    else:
        ids, raw, fingerprints = stored.track_ids, stored.vectors, stored.fingerprints
    if not len(ids):
        why = " pass --where" if where and total else " have an embedding from " + model.name
        raise UsageError(None, f"no track of the library can be mapped: none{why}",
                         "loosen --where" if where and total else "run 'tagger scan' on the library")
    vectors = fit_space(DEFAULT_SPACE, raw)(raw)  # the space tagger similar ranks in
    layout = project(vectors, projection)
    near, sims = nearest_all(vectors, NEIGHBOURS, fingerprints)
    rows = {r.id: r for r in store.tracks_under(status="ok")}
    tracks = [rows[int(i)] for i in ids]
    others = [m for m in store.scored_models() if m.id != model.id]  # their tags too: colour by any of them
    columns = list(model.tag_ids) + sorted(model.learned.values()) + [t for m in others for t in m.tag_ids]
    learned_names = {tid: name for name, tid in model.learned.items()}
    probs = store.score_matrix(ids, columns)  # (NaN, drawn as 0, where another model has not scored a track)
    offsets = {model.id: 0}  # where each model's columns start
    start = len(model.tag_ids) + len(model.learned)
    for m in others:
        offsets[m.id], start = start, start + len(m.tag_ids)
    stats = store.stats(failures=FAILURES_SHOWN)
    other = stats.ok - sum(n for mid, _, _, n in store.model_counts() if mid == model.id)  # not scored by it
    return {
        "format": 1,
        "model": model.name,
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "n": len(ids),
        "threshold": DEFAULT_THRESHOLD,
        "color": initial,
        "projection": {"name": layout.projection, "explained": layout.explained,
                       "kept": neighbours_kept(layout.xy, near), "k": NEIGHBOURS,
                       "axes": axis_tags(layout.xy, probs[:, :len(model.tag_ids)], model.vocabulary.tags)},
        "xy": b64(layout.xy, "<f4"),
        "columns": ([{"key": f"tag:{t}", "label": t, "kind": "tag"} for t in model.vocabulary.tags]
                    + [{"key": f"learned:{learned_names[t]}", "label": learned_names[t].replace("_", " "),
                        "kind": "learned"} for t in sorted(model.learned.values())]
                    + [{"key": f"tag:{m.name}:{t}", "label": f"{t} ({m.name})", "kind": "tag"}
                       for m in others for t in m.vocabulary.tags]),
        "groups": [{"key": f"group:{g}" if m is model else f"group:{m.name}:{g}",
                    "label": g.replace("_", " ") + ("" if m is model else f" ({m.name})"),
                    "members": [offsets[m.id] + m.vocabulary.tags.index(t) for t in members]}
                   for m in [model, *others] for g, members in m.vocabulary.groups.items()],
        "genres": _categories([model, *others], offsets, "genres"),
        "moods": _categories([model, *others], offsets, "moods"),
        "scores": b64(np.round(np.nan_to_num(probs.T, nan=0.0).clip(0, 1) * 255), "u1"),
        "neighbours": b64(near, "<i4"),
        "similarity": b64(np.round(np.nan_to_num(sims, nan=0.0).clip(-1, 1) * 127), "i1"),
        **_track_columns(tracks, out, link),
        "library": {"ok": stats.ok, "failed": stats.failed, "missing": stats.missing, "other_models": other,
                    "filtered_out": total - len(ids), "failures": [list(f) for f in stats.failures]},
    }


def axis_tags(xy: np.ndarray, probs: np.ndarray, labels: Sequence[str], n: int = 3,
              least: float = 0.3) -> list[dict[str, list[str]]]:
    """What changes along each axis of the map: per axis, the ``n`` tags whose probability
    falls (``low``) and rises (``high``) most with the position (Pearson r, at least
    ``least`` in size), strongest first."""
    out = []
    p = np.nan_to_num(probs, nan=0.0).astype(np.float64)
    p -= p.mean(axis=0)
    p_norm = np.sqrt((p ** 2).sum(axis=0))
    for axis in range(xy.shape[1]):
        x = xy[:, axis].astype(np.float64) - xy[:, axis].mean()
        r = (x @ p) / np.maximum(np.sqrt((x ** 2).sum()) * p_norm, 1e-12)
        order = np.argsort(r)
        out.append({"low": [labels[j] for j in order[:n] if r[j] <= -least],
                    "high": [labels[j] for j in order[::-1][:n] if r[j] >= least]})
    return out


def _categories(models: Sequence[StoredModel], offsets: dict[int, int], kind: str) -> list[dict]:
    """Genres or moods (``kind``) of every model: each label and the tag columns whose maximum is
    its score, a label that two vocabularies have (Electronic, Rock) once, with both models'
    columns (as tagger write ranks a track's genres across its models)."""
    labels = {**GENRES, **MOODS}
    out: dict[str, list[int]] = {}
    for m in models:
        vocab = m.vocabulary
        for n in getattr(vocab, kind):
            members = out.setdefault(labels.get(n, n.replace("_", " ")), [])
            members += [offsets[m.id] + vocab.tags.index(t) for t in vocab.resolve(n)]
    return [{"label": label, "members": members} for label, members in out.items()]


def _track_columns(tracks: list, out: Path, link: str) -> dict:
    """Titles, artists, albums, folders, file names, links, formats and durations; repeated
    strings (artist, album, folder, format) as a list and an index per track (0: none)."""
    lists: dict[str, dict[str, int]] = {"artists": {"": 0}, "albums": {"": 0}, "dirs": {}, "formats": {"": 0}}
    idx = {k: np.zeros(len(tracks), np.uint32) for k in lists}
    titles, files = [], []
    for i, r in enumerate(tracks):
        folder, name = os.path.split(r.path)
        for key, value in (("artists", r.artist or r.album_artist or ""), ("albums", r.album or ""),
                           ("dirs", folder), ("formats", r.format or "")):
            idx[key][i] = lists[key].setdefault(value, len(lists[key]))
        titles.append(r.title or None)
        files.append(name)
    base = out.resolve().parent
    dirs = list(lists["dirs"])
    return {
        "titles": titles, "files": files,
        "artists": list(lists["artists"]), "artist": b64(idx["artists"], "<u4"),
        "albums": list(lists["albums"]), "album": b64(idx["albums"], "<u4"),
        "dirs": dirs, "dir": b64(idx["dirs"], "<u4"), "dirUrls": [_dir_url(d, base, link) for d in dirs],
        "formats": list(lists["formats"]), "format_": b64(idx["formats"], "u1"),
        "durations": b64(np.array([r.duration_s or 0.0 for r in tracks]), "<f4"),
    }


def _dir_url(folder: str, base: Path, link: str) -> str:
    """The URL of a folder, ending in '/', to which a file name (URL-quoted) is added:
    relative to the page's folder, or absolute (file://)."""
    if link == "absolute":
        return Path(folder).as_uri().rstrip("/") + "/"
    rel = os.path.relpath(folder, base)
    return "" if rel == "." else urllib.parse.quote(rel.replace(os.sep, "/"), errors="surrogateescape") + "/"


def write_map(store: Store, out: str | os.PathLike, model_name: str | None = None, where: Sequence[Filter] = (),
              color: str | None = None, link: str = "relative", projection: str = "pca") -> MapSummary:
    """Build the map and write it to ``out`` (replaced atomically: a reader never sees half a page)."""
    from tagger.library.map_page import render

    start = time.perf_counter()
    path = Path(out).expanduser()
    if path.is_dir():
        raise UsageError(path, "is a folder", "give the file to write, e.g. --out library-map.html")
    if not path.parent.resolve().is_dir():
        raise UsageError(path, "its folder does not exist")
    data = build_map(store, path, model_name, where, color, link, projection)
    page = render(data)
    target = path.resolve()
    try:
        with replace_atomically(target) as tmp:
            tmp.write_bytes(page)
            tmp.chmod(_mode(target))
    except OSError as e:
        raise UsageError(path, f"cannot be written: {e.strerror or e}") from None
    lib = data["library"]
    return MapSummary(path, data["n"], data["model"], len(page), lib["other_models"], lib["filtered_out"],
                      lib["failed"], time.perf_counter() - start)


def _mode(path: Path) -> int:
    """The new page's permissions: the old file's, else what the umask allows (a temporary
    file is made private)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask
