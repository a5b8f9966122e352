"""More like this: the nearest tracks by embedding, and radio walks through a neighbourhood.

A track's embedding is the mean of its chunks' penultimate features (stored float16 by the
scan). The library's embeddings of one model are read into a float32 matrix, mapped into a
*space* fitted over the library (``SPACES``; the default is the one that measured best on the
real-music corpus: benchmarks/similarity.py, RESULTS.md) and scaled to unit length, so a
track's similarity to another is the cosine of the two, and the nearest tracks are one
matrix-vector product away (exact brute force: ~3 ms at 100,000 tracks on 2 cores).

A file outside the library is embedded on the fly with the library's model (the only place
torch is loaded). A query's own duplicates (same content fingerprint) never come back as its
neighbours, and of several copies of one file only the nearest counts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from tagger.errors import TaggerError, UsageError
from tagger.files.fields import TRACK_METADATA
from tagger.library import index_cache
from tagger.library.standardise import BLOCK, Standardiser

if TYPE_CHECKING:
    from tagger.store.catalog import Store, StoredModel

SPACES = ("cosine", "centred", "standardised", "whitened")
DEFAULT_SPACE = "standardised"  # precision@5 on the real-music corpus (RESULTS.md)
WHITEN_EPS = 0.01  # whitening: eigenvalues are floored at this share of the largest
WHITEN_SAMPLE = 20_000  # tracks that the whitening covariance is estimated from, at most



# --- spaces -----------------------------------------------------------------------------------
@dataclass
class Space:
    """An affine map fitted over the library, then unit length: ``unit((x − mean) @ proj)``
    (``proj`` a per-dimension scale ``[E]`` or a matrix ``[E, K]``; None: identity)."""
    name: str
    mean: np.ndarray | None = None
    proj: np.ndarray | None = None

    def __call__(self, x: np.ndarray, inplace: bool = False) -> np.ndarray:
        """``x`` ``[..., E]`` in the space (``inplace``: overwriting ``x``, float32, where the
        space keeps the dimensions). A matrix goes in blocks of rows that stay in cache."""
        x = np.asarray(x, dtype=np.float32) if inplace else np.array(x, dtype=np.float32)
        if x.ndim == 2 and len(x) > BLOCK:
            parts = [self(x[i:i + BLOCK], inplace=True) for i in range(0, len(x), BLOCK)]
            return x if self.proj is None or self.proj.ndim == 1 else np.concatenate(parts)
        if self.mean is not None:
            x -= self.mean
        if self.proj is not None:
            if self.proj.ndim == 1:
                x *= self.proj
            else:
                x = x @ self.proj
        norm = np.sqrt(np.einsum("...i,...i->...", x, x))[..., None]
        x /= np.maximum(norm, 1e-12)
        return x


def fit_space(name: str, x: np.ndarray, eps: float = WHITEN_EPS) -> Space:
    """The space ``name`` fitted over the library's embeddings ``x`` ``[N, E]``:

    cosine        raw embeddings
    centred       minus the library's mean
    standardised  minus the mean, divided by each dimension's standard deviation
    whitened      PCA-whitened: rotated onto the principal axes, each divided by its
                  standard deviation (eigenvalues floored at ``eps`` × the largest)
    """
    if name not in SPACES:
        raise UsageError(None, f"unknown similarity space {name!r}", f"one of {', '.join(SPACES)}")
    if name == "cosine" or len(x) == 0:
        return Space(name)
    standard = Standardiser.fit(x)
    mean = standard.mean.astype(np.float64)
    if name == "centred":
        return Space(name, standard.mean)
    if name == "standardised":  # a dimension that never varies (a dead unit) carries nothing: dropped
        return Space(name, standard.mean, standard.inverse_scale())
    step = max(1, len(x) // WHITEN_SAMPLE)
    centred = x[::step].astype(np.float64) - mean
    cov = centred.T @ centred / max(1, len(centred) - 1)
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, eps * max(vals.max(), 1e-12))
    return Space(name, mean.astype(np.float32), (vecs / np.sqrt(vals)).astype(np.float32))


# --- the library's embeddings as a matrix -------------------------------------------------------
class RowFingerprints:
    """The content fingerprints of an index's rows, read from the store as a search needs them
    (a search looks at a few hundred rows of 100,000: reading them all cost more than the
    search). Reads as a list does: ``fps[row]``; ``load(rows)`` reads many at once."""

    def __init__(self, lookup, track_ids: np.ndarray) -> None:
        self.lookup, self.track_ids = lookup, track_ids  # lookup: [track id] → {track id: fingerprint}
        self.known: dict[int, str | None] = {}

    def load(self, rows) -> None:
        todo = [int(r) for r in rows if int(r) not in self.known]
        if todo:
            found = self.lookup([int(self.track_ids[r]) for r in todo])
            self.known.update({r: found.get(int(self.track_ids[r])) for r in todo})

    def __getitem__(self, row: int) -> str | None:
        if int(row) not in self.known:
            self.load([row])
        return self.known[int(row)]

    def __len__(self) -> int:
        return len(self.track_ids)

    def __iter__(self):
        self.load(range(len(self)))
        return (self.known[r] for r in range(len(self)))


@dataclass
class EmbeddingIndex:
    """The ``'ok'`` tracks of one model: ids, fingerprints, and unit vectors in ``space``."""
    model: StoredModel
    space: Space
    track_ids: np.ndarray  # int64 [N], ascending
    fingerprints: Sequence  # [N] str | None (a list, or RowFingerprints)
    vectors: np.ndarray  # float32 [N, K], unit rows
    raw: np.ndarray | None = None  # float32 [N, E] as stored (kept only when asked for)

    def __len__(self) -> int:
        return len(self.track_ids)

    def row(self, track_id: int) -> int | None:
        i = int(np.searchsorted(self.track_ids, track_id))
        return i if i < len(self.track_ids) and self.track_ids[i] == track_id else None

    def nearest(self, query: np.ndarray, n: int, exclude_ids: Sequence[int] = (),
                exclude_fingerprints: Sequence[str | None] = ()) -> list[tuple[int, float]]:
        """The ``n`` rows nearest to ``query`` (a unit vector in the space) as ``(row,
        cosine)``, best first (ties: lower track id). Tracks in ``exclude_ids`` and copies
        of ``exclude_fingerprints`` are left out, and of several tracks with one fingerprint
        only the nearest is kept."""
        if n <= 0 or not len(self):
            return []
        sims = self.vectors @ np.asarray(query, dtype=np.float32)
        for track_id in exclude_ids:
            i = self.row(track_id)
            if i is not None:
                sims[i] = -np.inf
        seen = {fp for fp in exclude_fingerprints if fp}
        k = min(len(self), 2 * n + 8)
        while True:
            top = np.argpartition(-sims, k - 1)[:k] if k < len(self) else np.arange(len(self))
            top = top[np.lexsort((top, -sims[top]))]
            if hasattr(self.fingerprints, "load"):
                self.fingerprints.load(top)
            out, taken = [], set(seen)
            for i in top:
                if sims[i] == -np.inf:
                    break
                fp = self.fingerprints[i]
                if fp and fp in taken:
                    continue
                taken.add(fp)
                out.append((int(i), float(sims[i])))
                if len(out) == n:
                    return out
            if k >= len(self) or sims[top[-1]] == -np.inf:
                return out
            k = min(len(self), 4 * k)


def load_index(library: Store, model: StoredModel, space: str = DEFAULT_SPACE,
               keep_raw: bool = False) -> EmbeddingIndex:
    """Every ``'ok'`` track of ``model`` with its embedding, in ``space`` fitted over them: the
    index kept from an earlier command where the store has not changed since
    (tagger.library.index_cache), else read from the store (and kept)."""
    path = index_cache.path_for(library.db, model.sha256, space)
    version = library.index_version()
    cached = None if keep_raw else index_cache.load(path, version, model.id)
    if cached is not None:
        return EmbeddingIndex(model, Space(space, cached.mean, cached.proj), cached.track_ids,
                              RowFingerprints(library.fingerprints, cached.track_ids), cached.vectors)
    stored = library.embeddings_of(model)
    fitted = fit_space(space, stored.vectors)
    vectors = fitted(stored.vectors, inplace=not keep_raw)
    if library.index_version() == version:  # nothing was committed while it was read: it is of that version
        index_cache.save(path, version, model.id,
                         index_cache.CachedIndex(stored.track_ids, vectors, fitted.mean, fitted.proj))
    return EmbeddingIndex(model, fitted, stored.track_ids, RowFingerprints(library.fingerprints, stored.track_ids),
                          vectors, stored.vectors if keep_raw else None)


# --- what a query starts from -------------------------------------------------------------------
@dataclass
class Anchor:
    """A track or file a search starts from: its stored or freshly computed embedding."""
    path: str
    embedding: np.ndarray  # float32 [E], raw (not in a space yet)
    model: StoredModel
    track: object | None = None  # its tracks row, where it is in the library
    fingerprint: str | None = None
    duration_s: float | None = None

    @property
    def track_id(self) -> int | None:
        return None if self.track is None else self.track.id


@dataclass
class Neighbour:
    """One track of a result: its rank, similarity (cosine in the space) and what to show."""
    rank: int
    track_id: int | None
    path: str
    similarity: float
    duration_s: float | None = None
    format: str | None = None
    metadata: dict = field(default_factory=dict)  # the track's own title, artist, album, …: where known
    is_seed: bool = False  # radio: one of the seed tracks


@dataclass
class SimilarResult:
    query: Anchor
    neighbours: list[Neighbour]
    other_models: int  # 'ok' tracks left out: not scored by the model compared by
    embedded: bool  # the query was embedded now (a file not in the library with that model)


@dataclass
class RadioResult:
    seeds: list[Anchor]
    tracks: list[Neighbour]
    random_seed: int  # --seed repeats the playlist
    short: bool  # fewer tracks than asked: the neighbourhood ran out (--max-per-artist)


class Neighbourhood:
    """Similarity searches on one library; each model's index is read once and kept."""

    def __init__(self, library: Store, space: str = DEFAULT_SPACE, model_name: str | None = None) -> None:
        self.library = library
        self.model_name = model_name
        self.space = space
        self._indexes: dict[int, EmbeddingIndex] = {}
        self._models: dict[str, object] = {}  # model sha256 → loaded network
        self._main: StoredModel | None = None
        self._counts: list | None = None

    def main_model(self) -> StoredModel:
        """The model whose embedding is searched (tagger.library.embedding: ``model_name``, or
        the one that scored the most tracks)."""
        if self._main is None:
            from tagger.library.embedding import embedding_model

            self._main = embedding_model(self.library, self.model_name,
                                         None if self.model_name else self.model_counts())
        return self._main

    def model_counts(self) -> list[tuple[int, str, str, int]]:
        """``Store.model_counts()``, read once (each count reads every track)."""
        if self._counts is None:
            self._counts = self.library.model_counts()
        return self._counts

    def index(self, model: StoredModel) -> EmbeddingIndex:
        if model.id not in self._indexes:
            self._indexes[model.id] = load_index(self.library, model, self.space)
        return self._indexes[model.id]

    # --- anchors ------------------------------------------------------------------------------
    def anchor(self, target: str, same_model: bool = False) -> Anchor:
        """The track at ``target`` (any path to it) or, for a file not in the library, the file
        embedded now. The model is the library's (the one that scored most tracks); with
        ``same_model`` a library track's own model, whichever it is."""
        library = self.library
        path = os.path.abspath(os.path.expanduser(str(target)))
        main = self.main_model()
        row = library.find_track(path)
        if row is None and not os.path.exists(path):
            raise UsageError(target, "no such file, and no track of that path in the library")
        if row is None and os.path.isdir(path):
            raise UsageError(target, "is a folder", "give one audio file or library track")
        if row is not None and row.status != "ok":
            if row.status == "missing" and not os.path.exists(path):
                raise TaggerError(row.path, "is in the library but the file is gone", "run 'tagger scan' again")
            if row.status == "failed":
                raise TaggerError(row.path, f"has no embedding: its scan failed: {row.error}")
            row = None  # marked missing but here again: embedded as a file
        if row is not None:
            scored_by = library.model_sets([row.id]).get(row.id, frozenset())
            model = main
            if same_model and main.id not in scored_by and scored_by:  # the track's own (largest) model
                model = next(m for m in library.scored_models() if m.id in scored_by)
            if model.id in scored_by:
                vector = library.embedding(row.id, model)
                if vector is not None:
                    return Anchor(row.path, vector, model, row, row.fingerprint, row.duration_s)
            if not os.path.exists(row.path):
                raise TaggerError(row.path, f"has no embedding from {model.name} and the file is gone",
                                  "--same-model compares a track with the tracks of its own model")
            path = row.path
        return self._embed(path, main, row)

    def _embed(self, path: str, model: StoredModel, row) -> Anchor:
        from tagger.audio.discover import fingerprint
        from tagger.engine.inference import tag_file  # torch: only to embed a file now
        from tagger.engine.options import DEFAULT_CHUNKS

        network = self._network(model)
        scores = tag_file(network, path, DEFAULT_CHUNKS)
        try:
            fp = fingerprint(path)
        except OSError:
            fp = None
        return Anchor(path, scores.embedding.astype(np.float32), model, row, fp, scores.duration_s)

    def _network(self, model: StoredModel):
        """The library's model, loaded: the built-in model file with the stored hash."""
        if model.sha256 not in self._models:
            from tagger.model.modelcard import builtin_names, read_card

            names = [n for n in builtin_names() if read_card(n).sha256 == model.sha256]
            if not names:
                raise UsageError(None, f"the library's model {model.name} ({model.sha256[:12]}) is not a built-in "
                                 "model, so a file outside the library cannot be embedded with it",
                                 "scan the file into the library first")
            from tagger.model.modelfile import load_model

            self._models[model.sha256] = load_model(names[0])
        return self._models[model.sha256]

    # --- similar ------------------------------------------------------------------------------
    def similar(self, target: str, n: int = 20, same_model: bool = False) -> SimilarResult:
        """The ``n`` tracks nearest to ``target`` (see ``anchor``), best first."""
        if n < 1:
            raise UsageError(None, f"-n must be at least 1, not {n}")
        query = self.anchor(target, same_model)
        index = self._usable_index(query.model)
        vector = index.space(query.embedding)
        exclude = [query.track_id] if query.track_id is not None else []
        hits = index.nearest(vector, n, exclude, [query.fingerprint])
        embedded_now = query.track is None or query.model.id not in self.library.model_sets(
            [query.track.id]).get(query.track.id, frozenset())
        return SimilarResult(query, self._rows(index, hits), self._other_models(query.model), embedded_now)

    def _usable_index(self, model: StoredModel) -> EmbeddingIndex:
        index = self.index(model)
        if not len(index):
            raise UsageError(None, f"no track of the library has an embedding from {model.name}",
                             "run 'tagger scan' on the library")
        return index

    def _other_models(self, model: StoredModel) -> int:
        """How many 'ok' tracks ``model`` has not scored (they are not searched)."""
        scored = sum(n for mid, _, _, n in self.model_counts() if mid == model.id)
        return self.library.ok_count() - scored

    def _rows(self, index: EmbeddingIndex, hits: Sequence[tuple[int, float]]) -> list[Neighbour]:
        ids = [int(index.track_ids[i]) for i, _ in hits]
        info = self._track_info(ids)
        return [_neighbour(rank, info[int(index.track_ids[i])], sim) for rank, (i, sim) in enumerate(hits, 1)]

    def _track_info(self, ids: Sequence[int]) -> dict[int, object]:
        return self.library.tracks_by_id(ids)

    # --- radio --------------------------------------------------------------------------------
    def radio(self, seeds: Sequence[str], n: int = 50, max_per_artist: int | None = None,
              random_seed: int | None = None) -> RadioResult:
        """A playlist of ``n`` tracks that starts with the seeds and walks their neighbourhood.

        The walk. The playlist opens with the seeds, in the order given (a file outside the
        library is embedded now, and is an entry too). Each next track is drawn from the
        candidates: tracks not played yet, not a copy (same fingerprint) of one played, and
        whose artist has fewer than ``max_per_artist`` tracks in the playlist. At step t a
        candidate x scores ``½·cos(x, current) + ½·cos(x, seed[t mod m])`` in the similarity
        space (``current``: the track played last; m seeds): the first half lets the playlist
        drift from track to track, the second keeps pulling it back towards the seeds, each
        seed in turn, so that two seeds of different styles each get their neighbourhood
        visited rather than the space between them. The next track is one of the five best
        candidates, drawn with chances falling by 0.6 per rank (0.43, 0.26, 0.15, 0.09, 0.06)
        by a random generator seeded with ``random_seed``: the same one on the same library gives
        the same playlist. The candidates are each seed's ``max(1000, 20·n)`` nearest tracks,
        widened (doubled, up to the whole library) when none is left there; the walk stops
        early when the library has no candidate left (``RadioResult.short``).

        An artist is the track's artist, else its album artist, else its album (all compared
        without case), else the folder that holds the file.
        """
        if n < 1:
            raise UsageError(None, f"-n must be at least 1, not {n}")
        if not seeds:
            raise UsageError(None, "radio needs at least one seed track")
        if max_per_artist is not None and max_per_artist < 1:
            raise UsageError(None, f"--max-per-artist must be at least 1, not {max_per_artist}")
        if random_seed is None:
            random_seed = int(np.random.SeedSequence().entropy % (1 << 31))
        anchors = [self.anchor(s) for s in seeds]  # all in the library's model
        index = self._usable_index(anchors[0].model)
        seed_vectors = index.space(np.stack([a.embedding for a in anchors]))
        walk = _Walk(index, seed_vectors, max_per_artist, np.random.default_rng(random_seed), self._artists,
                     max(RADIO_POOL, 20 * n))
        playlist: list[Neighbour] = []
        info = {}
        for a, v in zip(anchors, seed_vectors):
            if walk.play_seed(a, v):
                if a.track_id is not None:
                    info.update(self._track_info([a.track_id]))
                playlist.append(_seed_entry(a, info.get(a.track_id)))
        playlist = playlist[:n]
        chosen = walk.run(n - len(playlist))
        info.update(self._track_info([int(index.track_ids[i]) for i, _ in chosen]))
        playlist += [_neighbour(0, info[int(index.track_ids[i])], sim) for i, sim in chosen]
        for rank, entry in enumerate(playlist, 1):
            entry.rank = rank
        return RadioResult(anchors, playlist, random_seed, len(playlist) < n)

    def _artists(self, ids: Sequence[int]) -> dict[int, str]:
        """track id → the artist key --max-per-artist counts (see ``radio``)."""
        rows = self.library.tracks_by_id(list(ids), ARTIST_COLUMNS)  # (a pool is thousands of tracks)
        return {tid: artist_key(r) for tid, r in rows.items()}


ARTIST_COLUMNS = ("artist", "album_artist", "album", "path")  # what artist_key reads


def artist_key(row) -> str:
    """Whose track ``row`` is, for --max-per-artist: artist, album artist, album, or folder."""
    for col, kind in (("artist", "artist"), ("album_artist", "artist"), ("album", "album")):
        value = getattr(row, col, None)
        if value and value.strip():
            return f"{kind}:{value.strip().casefold()}"
    return "folder:" + os.path.dirname(row.path)


RADIO_CHOICES = 5
RADIO_DECAY = 0.6
RADIO_POOL = 1000  # each seed's nearest tracks a walk starts with: at least this, 20 per track asked for


class _Walk:
    """The state of a radio walk (see ``Neighbourhood.radio``). Rows of the index that can no
    longer be played (played, a copy of one played, their artist at the cap) are blocked."""

    def __init__(self, index: EmbeddingIndex, seeds: np.ndarray, max_per_artist: int | None,
                 rng: np.random.Generator, artists, pool_size: int) -> None:
        self.index, self.seeds, self.cap, self.rng, self.lookup = index, seeds, max_per_artist, rng, artists
        self.pool_size = pool_size
        self.seed_sims = index.vectors @ seeds.T  # [N, seeds]
        self.to_seeds = self.seed_sims.max(axis=1)  # [N]: the nearest seed's cosine
        self.blocked = np.zeros(len(index), dtype=bool)
        self.played = np.zeros(len(index), dtype=bool)
        self.known = np.zeros(len(index), dtype=bool)  # rows whose artist has been looked up
        self.artist = np.full(len(index), -1, dtype=np.int64)  # row → artist code
        self.codes: dict[str, int] = {}  # artist key → code
        self.count: dict[int, int] = {}  # artist code → tracks in the playlist
        self.played_fps: set[str] = set()
        self.rows_of_fp: dict[str, list[int]] = {}  # fingerprint → rows, within the pool
        self.current = seeds[-1]
        self.pool = np.zeros(0, dtype=np.int64)
        self.per_seed = 0  # the pool: each seed's nearest ``per_seed`` tracks

    def _code(self, key: str) -> int:
        return self.codes.setdefault(key, len(self.codes))

    def _learn(self, rows: np.ndarray) -> None:
        """Look up the artists of ``rows`` (those not known yet), and block what must be."""
        rows = rows[~self.known[rows]]
        if not len(rows):
            return
        keys = self.lookup([int(t) for t in self.index.track_ids[rows]])
        if hasattr(self.index.fingerprints, "load"):
            self.index.fingerprints.load(rows)
        for r in rows:
            r = int(r)
            self.artist[r] = self._code(keys[int(self.index.track_ids[r])])
            fp = self.index.fingerprints[r]
            if fp:
                self.rows_of_fp.setdefault(fp, []).append(r)
                if fp in self.played_fps:
                    self.blocked[r] = True
            if self.cap is not None and self.count.get(int(self.artist[r]), 0) >= self.cap:
                self.blocked[r] = True
        self.known[rows] = True

    def _play(self, row: int | None, key: str | None, fingerprint: str | None) -> None:
        """Count a track as played: block it, its copies, and its artist at the cap."""
        if row is not None:
            self._learn(np.array([row]))
            self.blocked[row] = self.played[row] = True
            code = int(self.artist[row])
        else:
            code = self._code(key)
        if fingerprint:
            self.played_fps.add(fingerprint)
            self.blocked[self.rows_of_fp.get(fingerprint, [])] = True
        self.count[code] = self.count.get(code, 0) + 1
        if self.cap is not None and self.count[code] >= self.cap:
            self.blocked[self.pool[self.artist[self.pool] == code]] = True

    def play_seed(self, anchor: Anchor, vector: np.ndarray) -> bool:
        """Count a seed as played; False if it repeats one already played (a copy)."""
        row = self.index.row(anchor.track_id) if anchor.track_id is not None else None
        if (anchor.fingerprint and anchor.fingerprint in self.played_fps) or (row is not None and self.played[row]):
            return False
        key = None
        if row is None:  # not in the index: a track of another model, or a file outside the library
            key = artist_key(anchor.track) if anchor.track is not None else "folder:" + os.path.dirname(anchor.path)
        self._play(row, key, anchor.fingerprint)
        self.current = vector
        return True

    def _widen(self) -> bool:
        """Grow the pool to each seed's ``2 × per_seed`` nearest tracks (at first
        ``pool_size``), or to the whole library; False if it is the whole library already."""
        n = len(self.index)
        if len(self.pool) >= n:
            return False
        self.per_seed = min(n, max(self.pool_size, 2 * self.per_seed))
        if self.per_seed >= n:
            pool = np.arange(n)
        else:
            pool = np.unique(np.argpartition(-self.seed_sims, self.per_seed - 1, axis=0)[:self.per_seed].ravel())
        self._learn(pool)
        self.pool, self.pool_vectors = pool, self.index.vectors[pool]
        return True

    def run(self, n: int) -> list[tuple[int, float]]:
        """Up to ``n`` more tracks as ``(row, cosine to the nearest seed)``."""
        chosen: list[tuple[int, float]] = []
        if n > 0:
            self._widen()
        while len(chosen) < n:
            turn = len(chosen) % self.seeds.shape[0]  # each seed pulls in turn
            score = 0.5 * (self.pool_vectors @ self.current) + 0.5 * self.seed_sims[self.pool, turn]
            score[self.blocked[self.pool]] = -np.inf
            k = min(RADIO_CHOICES, len(score))
            best = np.argpartition(-score, k - 1)[:k] if k < len(score) else np.arange(len(score))
            best = best[np.lexsort((self.pool[best], -score[best]))]  # best first; ties: the lower row
            best = best[score[best] > -np.inf]
            if not len(best):
                if self._widen():
                    continue
                break
            weights = RADIO_DECAY ** np.arange(len(best))
            row = int(self.pool[best[int(self.rng.choice(len(best), p=weights / weights.sum()))]])
            self._play(row, None, self.index.fingerprints[row])
            self.current = self.index.vectors[row]
            chosen.append((row, float(self.to_seeds[row])))
        return chosen


def _meta(row) -> dict:
    return {c: getattr(row, c) for c in TRACK_METADATA if getattr(row, c, None) not in (None, "")}


def _neighbour(rank: int, row, similarity: float) -> Neighbour:
    return Neighbour(rank, row.id, row.path, similarity, row.duration_s, row.format, _meta(row))


def _seed_entry(anchor: Anchor, row) -> Neighbour:
    if row is not None:
        entry = _neighbour(0, row, 1.0)
    else:
        entry = Neighbour(0, anchor.track_id, anchor.path, 1.0, anchor.duration_s)
    entry.is_seed = True
    return entry
