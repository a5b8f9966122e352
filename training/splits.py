"""Seeded train/valid/test splits of multi-label clips that leave no split empty.

Iterative stratification (Sechidis et al. 2011): the rarest tag is placed first, each of its
clips going to the split that still wants the most of that tag. On small datasets a split of a
few clips is only useful for validation if its tags have positives *and* negatives, so the
valid and test splits want at least one positive of every tag that has three or more (one per
split); the rest follow the fractions.
"""

from __future__ import annotations

import random

import numpy as np

from tagger.errors import UsageError

SPLITS = ("train", "valid", "test")


def split_sizes(n: int, fractions: dict[str, float], must_fill: tuple[str, ...]) -> dict[str, int]:
    """How many of ``n`` clips each split gets: valid and test by their ``fractions``, train the
    rest; every split in ``must_fill`` at least one. Raises ValueError if ``n`` cannot fill them."""
    sizes = {s: round(n * fractions[s]) for s in ("valid", "test")}
    for s in ("valid", "test"):
        if s in must_fill:
            sizes[s] = max(1, sizes[s])
    sizes["train"] = n - sizes["valid"] - sizes["test"]
    least_train = 1 if "train" in must_fill else 0
    if sizes["train"] < least_train:
        raise ValueError(f"{n} clips cannot fill the {', '.join(must_fill)} splits")
    return sizes


def _wanted_positives(positives: np.ndarray, sizes: dict[str, int], n: int) -> dict[str, np.ndarray]:
    """Per split, how many positives of each tag it should get (fractional)."""
    wanted = {s: positives * sizes[s] / n for s in SPLITS}
    shareable = positives >= len(SPLITS)  # enough positives for one in every split
    for s in ("valid", "test"):
        if sizes[s]:
            wanted[s] = np.where(shareable, np.maximum(wanted[s], 1.0), wanted[s])
    wanted["train"] = positives - wanted["valid"] - wanted["test"]
    return wanted


def stratified_split(vectors: list[np.ndarray], sizes: dict[str, int], seed: int) -> list[str]:
    """``vectors``: one 0/1 label vector ``[n_tags]`` per clip → one split name per clip, exactly
    ``sizes[split]`` clips each (they must sum to the number of clips)."""
    n = len(vectors)
    labels = np.array(vectors, dtype=bool).reshape(n, -1)
    rng = random.Random(seed)
    wanted = _wanted_positives(labels.sum(axis=0).astype(float), sizes, n)
    room = dict(sizes)
    assigned: list[str | None] = [None] * n
    order = list(range(n))
    rng.shuffle(order)

    def place(i: int, tag: int | None) -> None:
        open_splits = [s for s in SPLITS if room[s] > 0]
        ties = {s: rng.random() for s in open_splits}
        best = max(open_splits, key=lambda s: (wanted[s][tag] if tag is not None else 0, room[s], ties[s]))
        assigned[i] = best
        room[best] -= 1
        wanted[best] = wanted[best] - labels[i]

    while True:
        left = [i for i in order if assigned[i] is None]
        counts = labels[left].sum(axis=0) if left else np.zeros(labels.shape[1], int)
        if not counts.any():
            break
        rarest = int(np.argmin(np.where(counts > 0, counts, n + 1)))
        for i in left:
            if labels[i, rarest]:
                place(i, rarest)
    for i in order:
        if assigned[i] is None:  # clips without any tag: wherever room is left
            place(i, None)
    return assigned  # type: ignore[return-value]


def assign_splits(given: list[str | None], vectors: list[np.ndarray], seed: int,
                  fractions: dict[str, float], source: str) -> list[str]:
    """Keep the ``given`` splits; split the clips without one (``None``) by stratification, valid
    and test by their ``fractions``, giving at least one clip to every split that no given row
    names. ``source`` names the file in errors."""
    free = [i for i, s in enumerate(given) if s is None]
    missing = tuple(s for s in SPLITS if s not in given)
    out = [s or "" for s in given]
    if free:
        try:
            sizes = split_sizes(len(free), fractions, missing)
        except ValueError:
            raise UsageError(source, f"{len(free)} clip(s) without a split cannot fill the {', '.join(missing)} "
                             f"split(s), one clip each at least",
                             f"needs at least {len(missing)} clips, or a 'split' column naming each row's split") from None
        for i, split in zip(free, stratified_split([vectors[i] for i in free], sizes, seed)):
            out[i] = split
    for split in ("train", "valid"):
        if split not in out:
            raise UsageError(source, f"the 'split' column names no {split} clips",
                             f"mark some rows {split}, or leave 'split' empty for an automatic split")
    return out
