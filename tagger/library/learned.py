"""Learned tags: a person's own tag, taught from example tracks, as a classifier on the
embeddings of the model that scored them.

    p = sigmoid(weights · ((embedding − mean) / scale) + bias)

``mean`` and ``scale`` standardise each embedding dimension over the library's tracks of that
model; the weights are a logistic regression (balanced class weights, L2 with C = ``C``:
scikit-learn's ``LogisticRegression(C=C, class_weight="balanced")``, fitted by
tagger.library.logistic) of the liked tracks against the unliked ones, or, when none are
given, against a seeded random sample of the rest of the library. The classifier is stored with the
tag (``learned_tags``), scores every track of the model when it is learned, and every track
a scan stores later (``LearnedScores``, handed to ``Store.save`` by the scan), so that a learned
tag is a tag like the model's own.

Why C = 0.02: random library tracks standing in for negatives include unlabelled tracks of
the very kind being taught. A weakly regularised fit (scikit-learn's default C = 1) pushes
those down to p ≈ 0.03 and ranks worse; at C = 0.02 five examples of a soundtrack find the rest
of it best (R-precision 0.544 on the real-music corpus, against 0.485 at C = 1), the rest of
the kind keeps p ≈ 0.3 (median) and other tracks stay near 0.02 (RESULTS.md).

numpy loads with this module, and is all it needs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from tagger.errors import CommandLineError, UsageError, quoted
from tagger.library import logistic
from tagger.library.standardise import Standardiser
from tagger.model.vocab import tag_name

if TYPE_CHECKING:
    from tagger.store.catalog import Store, StoredModel

C = 0.02  # inverse L2 strength of the logistic regression (see the module docstring)
MIN_POSITIVES = 5  # fewer liked tracks than this: learned, with a warning
MIN_CV = 2  # fewer examples of either class: no cross-validation
FOLDS = 5
# when no --unlike is given: a random sample of the library of this size stands in for negatives
SAMPLE_MIN, SAMPLE_PER_POSITIVE, SAMPLE_MAX = 500, 5, 10_000
NAME_PATTERN = re.compile(r"[^\W_]\w*")
MAX_NAME = 64  # tags.raw holds 200 characters; a name is a word to type


LEARNED_MIN = 0.5  # a learned tag applies from here: its classifier means "yes" (write, learn's counts)


@dataclass(frozen=True)
class Classifier:
    weights: np.ndarray  # float32 [E]
    bias: float
    mean: np.ndarray  # float32 [E]
    scale: np.ndarray  # float32 [E], > 0

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """float32 embeddings ``[N, E]`` → probabilities ``[N]`` (float64). The same arithmetic
        at learning time and at scan time, so a track gets the same score either way."""
        # ((x − mean) / scale) · w, as x · (w / scale) − mean · (w / scale): one pass over the
        # embeddings instead of two temporaries of their size (100,000 tracks: 1 s → 20 ms)
        w = (self.weights / self.scale).astype(np.float64)
        z = np.asarray(embeddings, dtype=np.float32) @ w.astype(np.float32) - float(self.mean.astype(np.float64) @ w)
        return 0.5 * (1.0 + np.tanh(0.5 * (z.astype(np.float64) + self.bias)))  # sigmoid, without overflow

    def blobs(self) -> dict:
        """The ``learned_tags`` columns: float32 little-endian arrays and the bias."""
        return {"weights": self.weights.astype("<f4").tobytes(), "bias": float(self.bias),
                "mean": self.mean.astype("<f4").tobytes(), "scale": self.scale.astype("<f4").tobytes()}

    @classmethod
    def from_blobs(cls, weights: bytes, bias: float, mean: bytes, scale: bytes) -> Classifier:
        def f4(b: bytes) -> np.ndarray:
            return np.frombuffer(b, dtype="<f4").astype(np.float32)

        return cls(f4(weights), float(bias), f4(mean), f4(scale))


def check_name(text: str, model: StoredModel) -> str:
    """A learned tag's name as ``--tag`` takes it (lower case, ``_`` for spaces); refused where
    it is not a plain word or clashes with one of the model's tags, groups or aliases."""
    name = tag_name(text)
    if not NAME_PATTERN.fullmatch(name) or len(name) > MAX_NAME:
        raise CommandLineError(None, f"{quoted(text)} cannot name a tag",
                         f"use up to {MAX_NAME} letters, digits and _ (spaces become _), starting with a letter or digit")
    if model.vocabulary.resolve(name) is not None or name in model.vocabulary.aliases:
        kind = "group" if name in model.vocabulary.groups or name in model.vocabulary.aliases else "tag"
        raise UsageError(None, f"{name!r} is a {kind} of {model.name} already",
                         "choose another name for the learned tag")
    return name


def sample_negatives(pool: np.ndarray, liked: np.ndarray, seed: int) -> np.ndarray:
    """Track ids standing in for negatives: a seeded random sample of ``pool`` outside ``liked``
    (``SAMPLE_PER_POSITIVE`` per liked track, at least ``SAMPLE_MIN``, at most ``SAMPLE_MAX``)."""
    rest = np.setdiff1d(pool, liked)
    n = min(len(rest), max(SAMPLE_MIN, SAMPLE_PER_POSITIVE * len(liked)), SAMPLE_MAX)
    return np.sort(np.random.default_rng(seed).choice(rest, size=n, replace=False))


def fit(z: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Weights and bias of the regression on standardised embeddings ``z`` with labels ``y``
    (``seed``: unused, the fit is exact; kept for the callers' one signature)."""
    weights, bias = logistic.fit(z, y, C)
    return weights.astype(np.float32), bias


def cross_validate(z: np.ndarray, y: np.ndarray, seed: int,
                   start: tuple[np.ndarray, float] | None = None) -> tuple[int, float | None]:
    """(folds, ROC-AUC of the out-of-fold scores) of stratified k-fold cross-validation;
    (0, None) when either class has fewer than ``MIN_CV`` examples. ``start``: the fit of all
    the examples, where each fold's fit starts (the same minimum, found in fewer steps)."""
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    folds = min(FOLDS, n_pos, n_neg)
    if folds < MIN_CV:
        return 0, None
    fold = np.empty(len(y), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for label in (0, 1):  # each class dealt round the folds in a random order
        members = rng.permutation(np.flatnonzero(y == label))
        fold[members] = np.arange(len(members)) % folds
    out = np.empty(len(y))
    for k in range(folds):
        test = fold == k
        weights, bias = logistic.fit(z[~test], y[~test], C, start)
        out[test] = z[test].astype(np.float64) @ weights + bias
    return folds, logistic.roc_auc(y, out)


class LearnedScores:
    """The learned tags of one model, scoring tracks as a scan stores them: the
    ``extra_scores`` of ``Store.save``. Read once, when a scan starts: ``tagger learn`` cannot
    change them while a scan holds the database's writer lock."""

    def __init__(self, library: Store, model: StoredModel) -> None:
        self.classifiers = [(row.tag_id, Classifier.from_blobs(row.weights, row.bias, row.mean, row.scale))
                            for row in library.learned_classifiers(model)]

    def __bool__(self) -> bool:
        return bool(self.classifiers)

    def __call__(self, embeddings: np.ndarray) -> dict[int, np.ndarray]:
        """float32 embeddings ``[N, E]`` (as stored) → {learned tag id: probabilities [N]}."""
        return {tag_id: clf.probabilities(embeddings) for tag_id, clf in self.classifiers}


@dataclass
class LearnReport:
    name: str
    model: str
    positives: int
    negatives: int
    sampled: bool  # negatives are a random sample of the library
    folds: int
    roc_auc: float | None
    scored: int  # tracks scored
    applies: int  # tracks at p ≥ 0.5
    replaced: bool
    notes: list[str] = field(default_factory=list)


def learn(library: Store, model: StoredModel, name: str, like: Sequence[int], unlike: Sequence[int] | None,
          seed: int = 0, specs: dict | None = None) -> LearnReport:
    """Fit ``name`` on the embeddings of track ids ``like`` against ``unlike`` (None: a random
    sample of the library), cross-validate it, store it and score every track of ``model``.
    Re-learning a name replaces it. ``specs``: what --like/--unlike were, kept to say how to
    re-learn it."""
    stored = library.embeddings_of(model)
    track_ids, x = stored.track_ids, stored.vectors
    row_of = {int(t): i for i, t in enumerate(track_ids)}
    liked = np.array(sorted({int(t) for t in like if int(t) in row_of}), dtype=np.int64)
    if len(liked) == 0:
        raise UsageError(None, f"none of the --like tracks has an embedding of {model.name}; nothing was learned")
    notes = []
    if unlike is None:
        unliked, sampled = sample_negatives(track_ids, liked, seed), True
        if len(unliked) == 0:
            raise UsageError(None, "the library holds no other tracks to stand in for negatives",
                             "name some with --unlike; nothing was learned")
    else:
        unliked, sampled = np.array(sorted({int(t) for t in unlike if int(t) in row_of}), dtype=np.int64), False
        both = np.intersect1d(liked, unliked)
        if len(both):
            notes.append(f"{len(both)} track{'s are' if len(both) > 1 else ' is'} in both --like and --unlike: "
                         "counted as liked")
            unliked = np.setdiff1d(unliked, liked)
        if len(unliked) == 0:
            raise UsageError(None, "the --unlike tracks are all liked too; no negatives are left",
                             "nothing was learned")
    if len(liked) < MIN_POSITIVES:
        notes.append(f"only {len(liked)} liked track{'s' if len(liked) > 1 else ''}: a tag learned from fewer "
                     f"than {MIN_POSITIVES} is unsteady (give more with --like)")
    standard = Standardiser.fit(x)
    mean, scale = standard.mean, standard.divisor()
    examples = np.concatenate([liked, unliked])
    z = (x[[row_of[int(t)] for t in examples]] - mean) / scale
    y = np.concatenate([np.ones(len(liked)), np.zeros(len(unliked))])
    weights, bias = fit(z, y, seed)
    folds, auc = cross_validate(z, y, seed, (weights, bias))
    if auc is None:
        notes.append(f"too few examples to cross-validate (at least {MIN_CV} liked and {MIN_CV} unliked)")
    elif auc < 0.7:
        notes.append(f"cross-validated ROC-AUC is only {auc:.2f}: {model.name}'s embeddings tell these "
                     "tracks apart from the others poorly")
    clf = Classifier(weights, bias, mean, scale)
    probs = clf.probabilities(x)
    info = {"like": len(liked), "unlike": len(unliked), "sampled_negatives": sampled, "folds": folds,
            "roc_auc": auc, "C": C, "seed": seed, **(specs or {})}
    # tracks marked missing are scored too: one that comes back (a drive mounted again, a file
    # moved back) is not scanned again, and would otherwise lack the tag
    gone = library.embeddings_of(model, statuses=("missing",))
    gone_ids, gone_x = gone.track_ids, gone.vectors
    if len(gone_ids):
        track_ids, probs = np.concatenate([track_ids, gone_ids]), np.concatenate([probs, clf.probabilities(gone_x)])
    replaced = library.store_learned(model, name, clf.blobs(), info, track_ids, probs)
    return LearnReport(name, model.name, len(liked), len(unliked), sampled, folds, auc, len(track_ids) - len(gone_ids),
                       int((probs >= LEARNED_MIN).sum()), replaced, notes)


def relearn_hint(name: str, examples: dict) -> str:
    """``tagger learn NAME --like …`` as it was learned, for messages."""
    parts = ["tagger learn", name]
    for option in ("like", "unlike"):
        for spec in examples.get(f"{option}_specs") or []:
            parts += [f"--{option}", _quote(spec)]
    if len(parts) == 2:
        parts.append("--like …")
    return " ".join(parts)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def age(created_at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(created_at))
