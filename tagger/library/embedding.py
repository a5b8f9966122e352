"""Which model's embedding ``similar``, ``radio``, ``learn`` and ``map`` read when a library
holds several models' scores (``scan -m A -m B``).

The model that scored the most tracks (an embedding only compares tracks it has); among models
that scored as many, the one measured best for finding tracks of a kind (RESULTS.md, "Which
embedding for similar, radio and learn"), then the one added first. ``--model`` overrides.
"""

from __future__ import annotations

from tagger.store.catalog import Store, StoredModel

# built-in models by how well their embedding found same-soundtrack tracks on the real corpus
# (benchmarks/embedding_choice.py: same-package precision@5, learned-tag R-precision): the first
# three are within noise of each other, musicnn-vgg-msd is measurably worse (P@5 0.563 against
# 0.611 for musicnn-vgg-mtt). Both concatenated did better by ~0.02, within noise by package.
MEASURED_BEST = ("musicnn-vgg-mtt", "musicnn-mtt", "musicnn-msd", "musicnn-vgg-msd")


def embedding_model(library: Store, name: str | None = None,
                    counts: list[tuple[int, str, str, int]] | None = None) -> StoredModel:
    """The model whose embeddings to read: ``name`` (a model name or hash prefix), else the
    default above (``counts``: ``Store.model_counts()`` where the caller has it already: it
    reads every track). Raises UsageError where the library holds no tagged track."""
    if name:
        return library.model(name=name)
    counts = library.model_counts() if counts is None else counts
    if not counts:
        return library.model()  # raises: no tagged tracks yet
    most = counts[0][3]
    tied = [(mid, model_name) for mid, model_name, _, n in counts if n == most]
    rank = {n: i for i, n in enumerate(MEASURED_BEST)}
    best = min(tied, key=lambda t: (rank.get(t[1], len(rank)), t[0]))
    return library.model(model_id=best[0])
