"""Which embedding for `tagger similar`, `radio` and `learn` when a library was scanned with
more than one model: each model's alone, or all of them concatenated?

    python benchmarks/embedding_choice.py --db MTT.db --db MSD.db \\
        --model musicnn-vgg-mtt --model musicnn-vgg-msd [FOLDER] [--k 5] [--repeats 10]

FOLDER defaults to the real-music corpus (../shared/corpus/fetch-real-music.sh: one subfolder
per game soundtrack, each a coherent style), scanned beforehand with `tagger scan FOLDER --db
DB --model NAME` once per model (a track has one model in a database, so one database per
model; one database holding several models' tracks works too). Nothing is scanned or stored
here. Each --model's embeddings are read from whichever --db holds the most of its tracks, and
tracks are matched across models by path (those that some model lacks are left out, and
counted). For each model alone and for all of them concatenated (each model's embedding mapped
into `tagger similar`'s default space, fitted over the library, side by side, then unit
length; for learn, each standardised as `tagger learn` does, side by side):

  similar/radio  precision@1/@k/@10 of "neighbour from the same package", as
                 benchmarks/similarity.py counts it (its functions, imported)
  learn          R-precision and ROC-AUC of a tag learned from 5 tracks of a soundtrack,
                 against a random sample of the rest, as benchmarks/learn_quality.py
                 measures it (same draws: seeds 0 … repeats−1; C as `tagger learn` uses)

with 95 % paired bootstrap intervals of the difference from the first model alone, and the
chance levels.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the benchmarks beside this one (run as a script, its folder is sys.path[0]): their measures
from learn_quality import CORPUS, LIKE, trial
from similarity import paired_ci, precision

from tagger.errors import UsageError
from tagger.library import learned as L
from tagger.library.similar import DEFAULT_SPACE, EmbeddingIndex, Space, fit_space
from tagger.library.standardise import Standardiser
from tagger.store.catalog import Store, StoredModel


@dataclass
class Corpus:
    """The tracks every model has, in one row order: each model's raw embeddings side by side."""
    models: list[StoredModel]
    dbs: list[str]  # the database each model was read from
    track_ids: np.ndarray  # int64 [N], ascending: the first model's database's track ids
    fingerprints: list  # [N] str | None
    labels: list[str]  # [N] the package (first subfolder under FOLDER)
    vectors: list[np.ndarray]  # per model, float32 [N, E_m] as stored
    dropped: dict[str, int]  # model name → its tracks under FOLDER that some other model lacks


def read_corpus(dbs: list[str], names: list[str], root: Path) -> Corpus:
    """Each model's embeddings of the tracks under ``root``, from the database holding most of
    its tracks, matched by path."""
    models, used, by_path, fps = [], [], [], {}
    for name in names:
        best = None
        for db in dbs:
            store = Store(db, create=False)
            try:
                model = store.model(name=name)
            except UsageError:
                continue
            stored = store.embeddings_of(model, fingerprints=True)
            if len(stored) and (best is None or len(stored) > len(best[2])):
                best = (db, model, stored, store)
        if best is None:
            raise SystemExit(f"no database of {dbs} holds embeddings of {name!r}")
        db, model, stored, store = best
        # the paths of the tracks under root: a track's id differs between databases, its path not
        paths = {r.id: r.path for r in store.tracks_under([str(root)])}
        rows = {paths[int(t)]: (int(t), i) for i, t in enumerate(stored.track_ids) if int(t) in paths}
        fps.update({p: stored.fingerprints[i] for p, (_, i) in rows.items()})
        models.append(model)
        used.append(db)
        by_path.append((rows, stored.vectors))
    common = set(by_path[0][0]).intersection(*(rows for rows, _ in by_path[1:]))
    # rows in the first model's track-id order: its single-model figures are then those of
    # benchmarks/similarity.py on that database to the last digit (ties go to the lower id)
    order = sorted(common, key=lambda p: by_path[0][0][p][0])
    ids = np.array([by_path[0][0][p][0] for p in order], dtype=np.int64)
    vectors = [x[[rows[p][1] for p in order]] for rows, x in by_path]
    labels = [Path(p).relative_to(root).parts[0] for p in order]
    dropped = {m.name: len(rows) - len(common) for m, (rows, _) in zip(models, by_path)}
    return Corpus(models, used, ids, [fps[p] for p in order], labels, vectors, dropped)


def joint_space(parts: list[np.ndarray], name: str = DEFAULT_SPACE) -> Space:
    """``name`` fitted over each model's embeddings on its own, the maps side by side (block
    diagonal) over the concatenated embeddings, then unit length: each model is centred and
    scaled as a one-model library would be, and no model's spread leaks into another's."""
    spaces = [fit_space(name, x) for x in parts]
    if len(spaces) == 1:
        return spaces[0]
    dims = [x.shape[1] for x in parts]
    if all(s.mean is None and s.proj is None for s in spaces):
        return Space(name)
    mean = np.concatenate([s.mean if s.mean is not None else np.zeros(d, np.float32) for s, d in zip(spaces, dims)])
    if all(s.proj is None or s.proj.ndim == 1 for s in spaces):  # per-dimension maps stay a vector
        proj = np.concatenate([s.proj if s.proj is not None else np.ones(d, np.float32) for s, d in zip(spaces, dims)])
    else:  # a matrix (whitened): the blocks on the diagonal
        cols = [d if s.proj is None else s.proj.shape[1] for s, d in zip(spaces, dims)]
        proj = np.zeros((sum(dims), sum(cols)), np.float32)
        r = c = 0
        for s, d, k in zip(spaces, dims, cols):
            proj[r:r + d, c:c + k] = np.eye(d, dtype=np.float32) if s.proj is None else (
                np.diag(s.proj) if s.proj.ndim == 1 else s.proj)
            r, c = r + d, c + k
    return Space(name, mean.astype(np.float32), proj.astype(np.float32))


def same_package(corpus: Corpus, parts: list[int], ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Per query track, the share of its k nearest tracks (`tagger similar`'s search: the
    query and its copies left out) from its own package, in the space of the models ``parts``."""
    x = np.concatenate([corpus.vectors[m] for m in parts], axis=1)
    space = joint_space([corpus.vectors[m] for m in parts])
    index = EmbeddingIndex(corpus.models[parts[0]], space, corpus.track_ids, corpus.fingerprints, space(x))
    return precision(index, corpus.labels, ks)


def learn_quality(corpus: Corpus, parts: list[int], repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """R-precision and ROC-AUC per trial (soundtrack × draw, in that order) of a tag learned
    from ``LIKE`` of a soundtrack's tracks on the models ``parts``, as
    benchmarks/learn_quality.py measures it at `tagger learn`'s C."""
    x = np.concatenate([corpus.vectors[m] for m in parts], axis=1)
    # each model standardised over the library on its own (as `tagger learn` standardises one
    # model's embeddings), side by side: dead dimensions are judged within their own model
    fitted = [Standardiser.fit(corpus.vectors[m]) for m in parts]
    mean = np.concatenate([s.mean for s in fitted])
    scale = np.concatenate([s.divisor() for s in fitted])
    z = (x - mean) / scale
    ids, labels = corpus.track_ids, np.array(corpus.labels)
    groups = [g for g in sorted(set(labels)) if (labels == g).sum() >= LIKE + 3]
    rp, auc = [], []
    for g in groups:
        for rep in range(repeats):
            r, a, _, _ = trial(x, z, mean, scale, ids, labels, g, rep)
            rp.append(r)
            auc.append(a)
    return np.array(rp), np.array(auc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default=str(CORPUS))
    ap.add_argument("--db", action="append", required=True, help="a scanned database (repeatable)")
    ap.add_argument("--model", action="append", required=True, help="a model's name (repeatable)")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    root = Path(args.folder).expanduser().resolve()
    corpus = read_corpus(args.db, args.model, root)
    n, counts = len(corpus.labels), Counter(corpus.labels)
    for m, db, x in zip(corpus.models, corpus.dbs, corpus.vectors):
        print(f"{m.name} ({m.sha256[:12]}): {x.shape[1]} dimensions, from {db}; "
              f"{corpus.dropped[m.name]} of its tracks left out (not in every model)")
    chance = sum(c * (c - 1) for c in counts.values()) / (n * (n - 1))
    groups = [g for g in sorted(counts) if counts[g] >= LIKE + 3]
    chance_rp = np.mean([counts[g] / n for g in groups])
    print(f"{n} tracks in {len(counts)} packages: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
          + f"; similarity space {DEFAULT_SPACE}; learn: C {L.C}, {LIKE} liked, {len(groups)} soundtracks "
          f"× {args.repeats} draws")
    ks = tuple(sorted({1, args.k, 10}))
    spaces = [(m.name, [i]) for i, m in enumerate(corpus.models)]
    if len(corpus.models) > 1:
        spaces.append((" + ".join(m.name for m in corpus.models) + " (concatenated)", list(range(len(corpus.models)))))
    print(f"\n| embedding | dims | P@1 | P@{args.k} | P@{args.k} − first, 95 % CI | P@10 "
          f"| R-precision | R-prec. − first, 95 % CI | ROC-AUC |\n|---|---|---|---|---|---|---|---|---|")
    first = None
    per_package = []
    for label, parts in spaces:
        p = same_package(corpus, parts, ks)
        rp, auc = learn_quality(corpus, parts, args.repeats)
        if first is None:  # the differences are from the first model alone
            first = (p, rp)
        # paired over the same queries / the same draws: the spaces see identical tracks and trials
        dp = "—" if first[0] is p else "{:+.3f} … {:+.3f}".format(*paired_ci(p[args.k], first[0][args.k]))
        dr = "—" if first[1] is rp else "{:+.3f} … {:+.3f}".format(*paired_ci(rp, first[1]))
        dims = sum(corpus.vectors[i].shape[1] for i in parts)
        print(f"| {label} | {dims} | {p[1].mean():.3f} | {p[args.k].mean():.3f} | {dp} | {p[10].mean():.3f} "
              f"| {rp.mean():.3f} | {dr} | {auc.mean():.3f} |", flush=True)
        labels = np.array(corpus.labels)
        per_package.append((label, {g: p[args.k][labels == g].mean() for g in sorted(counts)},
                            {g: rp[i * args.repeats:(i + 1) * args.repeats].mean() for i, g in enumerate(groups)}))
    print(f"| chance | | {chance:.3f} | {chance:.3f} | | {chance:.3f} | {chance_rp:.3f} | | 0.500 |")
    print(f"\nper package, P@{args.k} / R-precision:")
    for label, pk, rk in per_package:
        print(f"  {label}: " + ", ".join(f"{g.removesuffix('-music')} {v:.2f}"
                                         + (f"/{rk[g]:.2f}" if g in rk else "") for g, v in pk.items()))


if __name__ == "__main__":
    main()
