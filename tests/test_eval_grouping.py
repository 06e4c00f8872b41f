"""Metrics per metadata group (RFW-style per-race verification)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dbrepro.eval import by_group, group_spread, verification, verification_by


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
