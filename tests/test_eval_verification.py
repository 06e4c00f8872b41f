"""The 10-fold verification protocol, pair scores and bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dbrepro.eval import all_pair_scores, contiguous_folds, pair_scores, paired_bootstrap, verification


def reference_verification(scores: np.ndarray, issame: np.ndarray, fold_of: np.ndarray) -> tuple[list, list]:
    """Slow reference: try every candidate threshold with a Python loop; smallest best one wins."""
    thresholds, accuracies = [], []
    for k in np.unique(fold_of):
        train, test = fold_of != k, fold_of == k
        values = np.unique(scores[train])
        candidates = [-math.inf] + [(a + b) / 2 for a, b in zip(values[:-1], values[1:])] + [math.inf]
        best_t, best_acc = None, -1.0
        for t in candidates:
            acc = sum((s > t) == y for s, y in zip(scores[train], issame[train])) / train.sum()
            if acc > best_acc:
                best_t, best_acc = t, acc
        thresholds.append(best_t)
        accuracies.append(np.mean((scores[test] > best_t) == issame[test]))
    return thresholds, accuracies


def test_contiguous_folds_match_kfold_sizes() -> None:
    assert contiguous_folds(7, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert np.bincount(contiguous_folds(6000, 10)).tolist() == [600] * 10
    assert np.bincount(contiguous_folds(23, 10)).tolist() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]


def test_perfectly_separable_pairs_give_full_accuracy_and_the_midpoint_threshold() -> None:
    issame = np.tile([True, False], 50)
    scores = np.where(issame, 0.8, 0.2) + np.linspace(0, 0.1, 100)
    result = verification(scores, issame)
    assert result["accuracy"] == 1.0 and result["std"] == 0.0
    for k, t in enumerate(result["thresholds"]):
        train = contiguous_folds(100, 10) != k
        lo = scores[train & ~issame].max()
        hi = scores[train & issame].min()
        assert t == pytest.approx((lo + hi) / 2)


def test_hand_constructed_folds_with_different_thresholds() -> None:
    # fold k holds (positive, negative). Positives 1.0 (fold 0) and 1 + k/10; negatives 0,
    # except 1.05 in fold 2 (a high impostor) and 0.5 in fold 9.
    pos = [1.0] + [1 + k / 10 for k in range(1, 10)]
    neg = [0.0] * 10
    neg[2], neg[9] = 1.05, 0.5
    scores = np.ravel(np.column_stack([pos, neg]))
    issame = np.tile([True, False], 10)
    result = verification(scores, issame)
    # fold 0: training separable between 1.05 and 1.1; fold 2: between 0.5 and 1.0;
    # fold 9: 0.5 and 1.075 tie on training (one error each), the smaller wins; other folds:
    # 0.75 and the midpoint above 1.05 tie, 0.75 wins.
    expected_t = [1.075, 0.75, 0.75, 0.75, 0.75, 0.75, 0.75, 0.75, 0.75, 0.5]
    expected_acc = [0.5, 1, 0.5, 1, 1, 1, 1, 1, 1, 1]
    np.testing.assert_allclose(result["thresholds"], expected_t)
    np.testing.assert_allclose(result["fold_accuracies"], expected_acc)
    assert result["accuracy"] == pytest.approx(0.9)
    assert result["std"] == pytest.approx(0.2)  # population std (ddof=0)
    assert result["threshold"] == pytest.approx(0.7575)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_search_equals_slow_reference_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 230
    issame = rng.random(n) < 0.5
    scores = np.round(rng.normal(size=n) + issame, 1)  # many ties
    result = verification(scores, issame)
    t_ref, acc_ref = reference_verification(scores, issame, contiguous_folds(n, 10))
    np.testing.assert_allclose(result["thresholds"], t_ref)
    np.testing.assert_allclose(result["fold_accuracies"], acc_ref)


def test_fold_ids_override_the_contiguous_split() -> None:
    rng = np.random.default_rng(3)
    issame = rng.random(120) < 0.5
    scores = rng.normal(size=120) + issame
    perm = rng.permutation(120)
    folds = contiguous_folds(120, 10)
    direct = verification(scores, issame)
    shuffled = verification(scores[perm], issame[perm], fold_ids=folds[perm])
    np.testing.assert_allclose(shuffled["fold_accuracies"], direct["fold_accuracies"])
    np.testing.assert_allclose(shuffled["thresholds"], direct["thresholds"])


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="3 entries but issame has 2"):
        verification([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(ValueError, match="cannot be split into 10 folds"):
        verification(np.arange(5.0), np.array([1, 0, 1, 0, 1], bool))
    with pytest.raises(ValueError, match="NaN score.*index 1"):
        verification([0.1, np.nan] * 10, [True, False] * 10)
    with pytest.raises(ValueError, match="no negative pair"):
        verification(np.arange(20.0), [True] * 18 + [False] * 2)
    with pytest.raises(ValueError, match="fold_ids"):
        verification(np.arange(20.0), [True, False] * 10, fold_ids=np.zeros(19))


def test_6000_pairs_of_two_gaussians_reach_the_bayes_accuracy() -> None:
    rng = np.random.default_rng(0)
    issame = rng.random(6000) < 0.5
    result = verification(rng.normal(size=6000) + 2 * issame, issame)
    assert 0.8 < result["accuracy"] < 0.9  # two unit Gaussians 2 apart: 84% at the midpoint


def test_pair_scores_are_cosines() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    scores = pair_scores(emb, np.array([[0, 1], [0, 2], [1, 2], [2, 2]]))
    np.testing.assert_allclose(scores, [0.0, 1 / math.sqrt(2), 1 / math.sqrt(2), 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="pairs: indices"):
        pair_scores(emb, np.array([[0, 3]]))
    with pytest.raises(ValueError, match=r"pairs: expected shape \(P, 2\)"):
        pair_scores(emb, np.array([0, 1]))


@pytest.mark.parametrize("chunk", [1, 4, 100])
def test_all_pair_scores_cover_every_pair_once(chunk: int) -> None:
    rng = np.random.default_rng(0)
    emb = torch.from_numpy(rng.normal(size=(9, 4))).float()
    ids = np.array([0, 0, 1, 1, 1, 2, 3, 3, 0])
    scores, same = all_pair_scores(emb, ids, chunk=chunk)
    i, j = np.triu_indices(9, 1)
    np.testing.assert_allclose(scores, pair_scores(emb, np.column_stack([i, j])), atol=1e-6)
    np.testing.assert_array_equal(same, ids[i] == ids[j])


def test_paired_bootstrap_interval_has_the_normal_width() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(2000) < 0.9, rng.random(2000) < 0.8  # per-pair correctness of two models
    boot = paired_bootstrap([a], [b], n=400, seed=0)
    d = a.astype(float) - b
    assert boot["difference"] == pytest.approx(d.mean())
    assert boot["low"] < boot["difference"] < boot["high"]
    expected_width = 2 * 1.96 * d.std() / math.sqrt(2000)
    assert boot["high"] - boot["low"] == pytest.approx(expected_width, rel=0.15)
    assert paired_bootstrap([a], [b], n=400, seed=0) == boot  # seeded


@pytest.mark.parametrize("module", ["dbrepro.eval.verification", "dbrepro.eval.grouping"])
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
