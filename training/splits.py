"""Seeded train/valid/test splits of multi-label clips that stay put as rows are added and
leave no split empty.

Each clip's split comes from a seeded hash of its key (its normalised path): a number in
[0, 1) that puts it in valid below the valid fraction, in test below valid + test, in train
above. A clip's split thus depends on its own path only, so adding, removing or reordering
rows moves no other clip, and a model's test clips stay out of the next run's training. The
price: the sizes follow the fractions only on average (a coin toss per clip), so two repairs
keep what a small dataset needs, each moving as few clips as it can, from train where it can,
those whose hash lies nearest the split they go to. These few clips are the only ones an
addition can move (on small datasets, where repairs are common, about one per added row):

- every split that no given row names gets a clip, and valid and test two each from 15
  clips on (a tag needs two clips to have both classes);
- every split gets a positive of every tag that has three or more (valid and test growing to
  twice their share at most), so a small validation split can still be scored.
"""

from __future__ import annotations

import hashlib

import numpy as np

from tagger.errors import UsageError

SPLITS = ("train", "valid", "test")


def position(key: str, seed: int) -> float:
    """The clip's place in [0, 1): a seeded hash of its key, the same on every machine."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _intervals(fractions: dict[str, float]) -> dict[str, tuple[float, float]]:
    valid, test = fractions["valid"], fractions["test"]
    return {"valid": (0.0, valid), "test": (valid, valid + test), "train": (valid + test, 1.0)}


def _distance(u: float, interval: tuple[float, float]) -> float:
    lo, hi = interval
    return lo - u if u < lo else max(0.0, u - hi)


class _Assignment:
    """The splits being repaired: who is where, each split's size (of all clips and of those
    without a given split) and its positives per tag, kept up to date as clips move."""

    def __init__(self, out: list[str], free: list[int], labels: np.ndarray, u: list[float],
                 fractions: dict[str, float]) -> None:
        self.out, self.free, self.labels, self.u = out, free, labels, u
        self.intervals = _intervals(fractions)
        self.positives = {s: labels[[i for i, x in enumerate(out) if x == s]].sum(axis=0) for s in SPLITS}
        self.sizes = {s: out.count(s) for s in SPLITS}
        self.free_sizes = {s: sum(out[i] == s for i in free) for s in SPLITS}

    def sole_positive(self, i: int) -> bool:
        """Whether clip ``i`` is its split's only positive of one of its tags."""
        return bool((self.labels[i] & (self.positives[self.out[i]] == 1)).any())

    def move(self, i: int, split: str) -> None:
        old = self.out[i]  # only clips without a given split move
        self.positives[old] = self.positives[old] - self.labels[i]
        self.positives[split] = self.positives[split] + self.labels[i]
        for sizes in (self.sizes, self.free_sizes):
            sizes[old] -= 1
            sizes[split] += 1
        self.out[i] = split

    def nearest(self, candidates: list[int], split: str) -> int:
        # train's clip whose hash is nearest the split: a choice that other rows hardly change
        return min(candidates, key=lambda i: (self.out[i] != "train",
                                              _distance(self.u[i], self.intervals[split]), self.u[i]))


def _fill(a: _Assignment, least: dict[str, int]) -> None:
    """Give every split at least ``least[split]`` clips, from the splits that have more."""
    for split in ("valid", "test", "train"):
        while a.sizes[split] < least.get(split, 0):
            spare = {s for s in SPLITS if s != split and a.sizes[s] > least.get(s, 0)}
            donors = [i for i in a.free if a.out[i] in spare]
            if not donors:
                return
            a.move(a.nearest(donors, split), split)


def _cover(a: _Assignment, most: dict[str, int]) -> None:
    """Give every split a positive of every tag that has three or more, rarest tag first."""
    total = a.labels.sum(axis=0)
    for tag in sorted(range(a.labels.shape[1]), key=lambda t: (total[t], t)):
        if total[tag] < len(SPLITS):
            continue
        for split in SPLITS:
            if a.positives[split][tag] or a.free_sizes[split] >= most.get(split, len(a.out)):
                continue
            # a donor keeps a positive of the tag in its own split, and of its other tags
            donors = [i for i in a.free if a.labels[i, tag] and a.out[i] != split
                      and a.positives[a.out[i]][tag] >= 2 and not a.sole_positive(i)]
            if donors:
                a.move(a.nearest(donors, split), split)


def assign_splits(given: list[str | None], vectors: list[np.ndarray], keys: list[str], seed: int,
                  fractions: dict[str, float], source: str,
                  too_few_hint: str = "or a 'split' column naming each row's split") -> list[str]:
    """Keep the ``given`` splits; place the clips without one (``None``) by the seeded hash of
    their ``keys`` (valid and test by their ``fractions``, train the rest), then repair as the
    module docstring says. CSV and folder datasets both split here. ``source`` names the file
    or folder in errors; ``too_few_hint`` says what else to do when there are too few clips."""
    free = [i for i, s in enumerate(given) if s is None]
    missing = tuple(s for s in SPLITS if s not in given)
    u = [position(k, seed) for k in keys]
    out = [s or "" for s in given]
    if free:
        if len(free) < len(missing):
            raise UsageError(source, f"{len(free)} clip(s) without a split cannot fill the {', '.join(missing)} "
                             f"split(s), one clip each at least",
                             f"needs at least {len(missing)} clips, {too_few_hint}")
        intervals = _intervals(fractions)
        for i in free:
            out[i] = next(s for s in SPLITS if intervals[s][0] <= u[i] < intervals[s][1])
        share = {s: max(1, round(len(free) * fractions[s])) for s in ("valid", "test")}
        least = {s: (min(2, share[s]) if s in share else 1) for s in missing}
        labels = np.array(vectors, dtype=bool).reshape(len(given), -1) if len(vectors[0]) else \
            np.zeros((len(given), 0), dtype=bool)  # a folder's clips: no labels yet
        repair = _Assignment(out, free, labels, u, fractions)
        _fill(repair, least)
        _cover(repair, {s: 2 * n for s, n in share.items()})
    for split in ("train", "valid"):
        if split not in out:
            raise UsageError(source, f"the 'split' column names no {split} clips",
                             f"mark some rows {split}, or leave 'split' empty for an automatic split")
    return out
