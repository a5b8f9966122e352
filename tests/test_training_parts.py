"""The training computations one at a time, against their definitions: the metrics against
scikit-learn on fixed matrices, the focal loss against its formula (with and without α), and
the folder dataset's split on a few hundred files."""

import math
import os

import numpy as np
import pytest
import torch

from training.losses import focal_loss, make_loss
from training.metrics import tag_metrics


def fixed_matrices(seed: int = 3, n: int = 120, tags: int = 7):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, tags)) < rng.uniform(0.05, 0.5, tags)).astype(np.int64)
    score = np.clip(0.35 * y + rng.random((n, tags)) * 0.8, 0, 1)
    y[:, 5] = 1  # only positives: no AUC
    y[:, 6] = 0  # only negatives: no AUC
    return y, score


def test_macro_metrics_equal_scikit_learns_over_the_tags_that_have_both_classes():
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, score = fixed_matrices()
    names = [f"t{i}" for i in range(y.shape[1])]
    got = tag_metrics(y, score, names)
    both = [i for i in range(y.shape[1]) if 0 < y[:, i].sum() < len(y)]
    assert both == [0, 1, 2, 3, 4]
    assert got["roc_auc"] == pytest.approx(np.mean([roc_auc_score(y[:, i], score[:, i]) for i in both]), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(np.mean([average_precision_score(y[:, i], score[:, i]) for i in both]),
                                          abs=1e-12)
    assert got["tags_evaluated"] == 5 and got["tags_skipped"] == 2 and got["clips"] == len(y)
    for i in both:
        assert got["per_tag"][f"t{i}"]["pr_auc"] == pytest.approx(average_precision_score(y[:, i], score[:, i]))
        assert got["per_tag"][f"t{i}"]["positives"] == int(y[:, i].sum())
    # PR-AUC is average precision: the mean of the precision at each positive's rank
    i = 2
    order = np.argsort(-score[:, i], kind="stable")
    hits = y[order, i]
    precision_at_hits = np.cumsum(hits)[hits == 1] / (np.flatnonzero(hits) + 1)
    assert got["per_tag"]["t2"]["pr_auc"] == pytest.approx(precision_at_hits.mean(), abs=1e-12)


def _focal_by_formula(logits: np.ndarray, y: np.ndarray, gamma: float, alpha: float) -> float:
    """Lin et al. 2017: −α_t (1 − p_t)^γ log p_t, α_t = α for positives and 1 − α for
    negatives (no α when it is negative), averaged over every element."""
    total = 0.0
    for z, t in zip(logits.ravel(), y.ravel()):
        p = 1 / (1 + math.exp(-z))
        p_t = p if t == 1 else 1 - p
        a_t = 1.0 if alpha < 0 else (alpha if t == 1 else 1 - alpha)
        total += -a_t * (1 - p_t) ** gamma * math.log(p_t)
    return total / logits.size


@pytest.mark.parametrize("gamma,alpha", [(2.0, -1.0), (2.0, 0.25), (1.0, 0.75), (0.0, -1.0), (0.5, 0.5)])
def test_focal_loss_is_its_formula(gamma, alpha):
    rng = np.random.default_rng(int(gamma * 10 + (alpha + 1) * 100))
    logits = rng.normal(0, 2, (6, 9))
    y = (rng.random((6, 9)) < 0.3).astype(np.float64)
    expected = _focal_by_formula(logits, y, gamma, alpha)
    got = focal_loss(torch.tensor(logits), torch.tensor(y), gamma, alpha).item()
    assert got == pytest.approx(expected, rel=1e-9)
    # the loss the training loop builds from --loss focal --focal-gamma --focal-alpha is the same
    built = make_loss("focal", gamma, alpha)(torch.tensor(logits), torch.tensor(y)).item()
    assert built == pytest.approx(expected, rel=1e-9)
    if gamma == 0.0 and alpha < 0:
        bce = make_loss("bce", gamma, alpha)(torch.tensor(logits), torch.tensor(y)).item()
        assert bce == pytest.approx(expected, rel=1e-9)


def test_focal_alpha_on_the_command_line_reaches_the_run_config():
    from training.config import TrainConfig

    config = TrainConfig(focal_alpha=0.25, focal_gamma=1.5)
    again = TrainConfig.from_dict(config.to_dict())
    assert (again.focal_alpha, again.focal_gamma) == (0.25, 1.5)


def _folder(root, n: int, prefix: str = "") -> list[str]:
    wav = bytes(44)  # load_folder finds files, it does not decode them
    out = []
    for i in range(n):
        path = root / prefix / f"album{i % 12}" / f"track{i:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wav)
        out.append(str(path.relative_to(root)))
    return out


def test_folder_split_sizes_on_a_few_hundred_files(tmp_path):
    from training.data import load_folder

    _folder(tmp_path, 400)
    data = load_folder(tmp_path, seed=5)
    sizes = {s: len(data.split(s)) for s in ("train", "valid", "test")}
    assert sum(sizes.values()) == 400
    # 10 % valid, 10 % test, 80 % train, a coin toss per file: within four standard deviations
    sd = math.sqrt(400 * 0.1 * 0.9)
    for split, share in (("valid", 0.1), ("test", 0.1), ("train", 0.8)):
        assert abs(sizes[split] - 400 * share) < 4 * math.sqrt(400 * share * (1 - share)), sizes
    assert sd > 0
    keys = [c.key for c in data.clips]
    assert len(keys) == len(set(keys)), "one clip per file, in one split"
    again = load_folder(tmp_path, seed=5)
    assert [c.split for c in again.clips] == [c.split for c in data.clips], "the same split every run"
    other = load_folder(tmp_path, seed=6)
    assert [c.split for c in other.clips] != [c.split for c in data.clips], "the seed chooses the split"


def test_folder_split_with_held_out_folders(tmp_path):
    from training.data import load_folder

    _folder(tmp_path, 300, "main")
    held = _folder(tmp_path, 40, "held")
    data = load_folder(tmp_path, test_folders=["held"], seed=0)
    test = {c.key for c in data.split("test")}
    assert test == set(held), "the held-out folder is the test split, and nothing else is"
    valid = len(data.split("valid"))
    assert abs(valid - 30) < 4 * math.sqrt(300 * 0.1 * 0.9)
    assert len(data.split("train")) == 300 - valid
    # adding files moves none of the others
    before = {c.key: c.split for c in data.clips}
    for i in range(20):
        (tmp_path / "main" / "new").mkdir(exist_ok=True)
        (tmp_path / "main" / "new" / f"n{i}.wav").write_bytes(bytes(44))
    after = {c.key: c.split for c in load_folder(tmp_path, test_folders=["held"], seed=0).clips}
    assert {k: after[k] for k in before} == before


def test_a_tiny_folder_fills_every_split_or_says_what_it_needs(tmp_path):
    from tagger.errors import UsageError
    from training.data import load_folder

    _folder(tmp_path, 3)
    data = load_folder(tmp_path, seed=0)
    assert sorted(len(data.split(s)) for s in ("train", "valid", "test")) == [1, 1, 1]
    small = tmp_path / "two"
    os.makedirs(small)
    _folder(small, 2)
    with pytest.raises(UsageError, match="needs at least 3"):
        load_folder(small, seed=0)


def test_a_split_short_of_clips_takes_them_from_train_nearest_first():
    """Valid left empty by the hashes: its two clips come from train (the hashes nearest valid's
    interval there), not from test, whose clips lie nearer but which has few (a mutation of the
    train-first rule went unnoticed before this)."""
    from training.splits import assign_splits, position

    fractions = {"valid": 0.1, "test": 0.1}
    test_keys, train_keys, n = [], [], 0
    while len(test_keys) < 4 or len(train_keys) < 12:
        key, n = f"clip-{n}.wav", n + 1
        u = position(key, 0)
        if 0.1 <= u < 0.2 and len(test_keys) < 4:
            test_keys.append(key)
        elif u >= 0.2 and len(train_keys) < 12:
            train_keys.append(key)
    keys = test_keys + train_keys
    out = assign_splits([None] * len(keys), [np.zeros(3, dtype=int)] * len(keys), keys, 0, fractions, "labels.csv")
    nearest_train = sorted(train_keys, key=lambda k: position(k, 0))[:2]
    assert sorted(k for k, s in zip(keys, out) if s == "valid") == sorted(nearest_train)
    assert [s for k, s in zip(keys, out) if k in test_keys] == ["test"] * 4
