"""Metrics per metadata group (RFW-style per-race verification)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dbrepro.eval import by_group, group_spread, neighbour_agreement, verification, verification_by


def test_by_group_with_a_scalar_metric_keeps_order_within_groups() -> None:
    table = pd.DataFrame({"band": ["old", "young", "old", "young", "old"]})
    seen: list[list[int]] = []

    def first_and_sum(x: np.ndarray) -> float:
        seen.append(x.tolist())
        return float(x.sum())

    out = by_group(first_and_sum, table, "band", x=np.array([1, 2, 3, 4, 5]))
    assert out["band"].tolist() == ["old", "young"]
    assert out["n"].tolist() == [3, 2]
    assert out["value"].tolist() == [9.0, 6.0]
    assert seen == [[1, 3, 5], [2, 4]]


def test_by_group_with_a_dict_metric_and_categorical_order() -> None:
    table = pd.DataFrame({"race": pd.Categorical(["b", "a", "b"], categories=["b", "a"])})
    out = by_group(lambda s: {"mean": float(s.mean()), "raw": s}, table, "race", s=np.array([1.0, 2.0, 3.0]))
    assert out["race"].tolist() == ["b", "a"]  # category order, not alphabetical
    assert out["mean"].tolist() == [2.0, 2.0]
    assert "raw" not in out.columns  # arrays are not table cells


def test_verification_by_runs_the_10_fold_protocol_inside_each_group() -> None:
    rng = np.random.default_rng(0)
    n = 400
    group = np.where(rng.random(n) < 0.5, "Asian", "Caucasian")
    issame = rng.random(n) < 0.5
    separation = np.where(group == "Asian", 1.0, 3.0)
    scores = rng.normal(size=n) + separation * issame
    out = verification_by(scores, issame, pd.DataFrame({"race": group}), "race")
    for _, row in out.iterrows():
        mask = group == row["race"]
        expected = verification(scores[mask], issame[mask])
        assert row["n_pairs"] == mask.sum() and row["n_same"] == issame[mask].sum()
        assert row["accuracy"] == pytest.approx(expected["accuracy"])
        assert row["std"] == pytest.approx(expected["std"])
        assert row["threshold"] == pytest.approx(expected["threshold"])
    acc = dict(zip(out["race"], out["accuracy"]))
    assert acc["Caucasian"] > acc["Asian"]


def test_group_spread_by_hand() -> None:
    table = pd.DataFrame({"race": ["a", "b", "c"], "accuracy": [0.9, 0.8, 0.7]})
    spread = group_spread(table)
    assert spread["mean"] == pytest.approx(0.8)
    assert spread["std"] == pytest.approx(0.1)  # ddof=1
    assert spread["gap"] == pytest.approx(0.2)
    assert spread["worst_group"] == "c"


def test_bad_grouping_inputs_are_named() -> None:
    table = pd.DataFrame({"g": ["a", None, "b"]})
    with pytest.raises(ValueError, match="no column 'race'"):
        by_group(lambda x: 0.0, table, "race", x=np.zeros(3))
    with pytest.raises(ValueError, match="1 row\\(s\\) have no value"):
        by_group(lambda x: 0.0, table, "g", x=np.zeros(3))
    with pytest.raises(ValueError, match="x has 2 entries but the table has 3"):
        by_group(lambda x: 0.0, table, "g", x=np.zeros(2))
    small = pd.DataFrame({"race": ["a"] * 20 + ["b"] * 5})
    with pytest.raises(ValueError, match="group race='b' \\(5 rows\\): 5 pairs cannot be split into 10 folds"):
        verification_by(np.arange(25.0), np.arange(25) % 2 == 0, small, "race")


def test_neighbour_agreement_by_hand_and_own_identity_excluded() -> None:
    # two groups on two axes; images 0 and 1 are one person, so neither is the other's neighbour
    features = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.8, 0.6], [0.0, 1.0], [0.1, 1.0]])
    group = np.array(["a", "a", "a", "b", "b"])
    identity = np.array([0, 0, 1, 2, 3])
    agree, chance = neighbour_agreement(features, group, identity, k=1)
    # nearest other-identity image: 0 -> 2 (a), 1 -> 2 (a), 2 -> 1 (a), 3 -> 4 (b), 4 -> 3 (b)
    assert agree == 1.0
    # same group among other-identity images: 0: 1 of 3, 1: 1 of 3, 2: 2 of 4, 3: 1 of 4, 4: 1 of 4
    assert chance == pytest.approx(np.mean([1 / 3, 1 / 3, 2 / 4, 1 / 4, 1 / 4]))
    agree2, _ = neighbour_agreement(features, group, identity, k=2)
    # second neighbours: 0 -> 4 (b), 1 -> 4 (b), 2 -> 0 (a), 3 -> 2 (a), 4 -> 2 (a)
    assert agree2 == pytest.approx((2 * 0.5 + 1.0 + 2 * 0.5) / 5)
    assert neighbour_agreement(features, group, identity, k=99) == neighbour_agreement(features, group, identity, k=3)


def test_neighbour_agreement_rejects_bad_inputs() -> None:
    f = torch.eye(3)
    with pytest.raises(ValueError, match="one attribute value and one identity per image"):
        neighbour_agreement(f, np.array(["a", "b"]), np.arange(3))
    with pytest.raises(ValueError, match="no image of another identity"):
        neighbour_agreement(f, np.array(["a", "b", "a"]), np.zeros(3))
    with pytest.raises(ValueError, match="k must be >= 1"):
        neighbour_agreement(f, np.array(["a", "b", "a"]), np.arange(3), k=0)


def test_bin_labels_close_bins_on_the_right_and_refuse_values_outside() -> None:
    from dbrepro.eval.grouping import bin_labels

    labels = bin_labels([62.0, 64.0, 66.0, 66.5, 70.0, 80.0], [62, 66, 70, 80], "°")
    assert labels.tolist() == ["62-66°", "62-66°", "62-66°", "66-70°", "66-70°", "70-80°"]
    assert list(labels.cat.categories) == ["62-66°", "66-70°", "70-80°"] and labels.cat.ordered
    # per-bin verification: each bin its own 10-fold protocol, as per race
    meta = pd.DataFrame({"yaw": np.r_[np.full(40, 63.0), np.full(40, 75.0)]})
    meta["bin"] = bin_labels(meta["yaw"], [62, 70, 80])
    issame = np.tile([True, False], 40)
    scores = np.where(issame, 0.8, 0.2)
    scores[40:] = np.where(issame[40:], 0.4, 0.6)  # the second bin's pairs are all on the wrong side
    table = verification_by(scores, issame, meta, "bin")
    assert table["bin"].tolist() == ["62-70", "70-80"]
    assert table["accuracy"].tolist()[0] == 1.0 and table["accuracy"].tolist()[1] <= 0.5
    with pytest.raises(ValueError, match="1 value\\(s\\) outside the bins 62-80°, e.g. 81"):
        bin_labels([63.0, 81.0], [62, 80], "°")
    with pytest.raises(ValueError, match="bin edges must increase"):
        bin_labels([63.0], [70, 62])
