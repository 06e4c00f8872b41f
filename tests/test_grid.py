import pandas as pd
import pytest

from dbrepro.grid import flatten, summarize, values


def test_flatten_keeps_scalars_and_joins_keys():
    r = {"accuracy": 0.9, "scores": [0.1, 0.2], "tar_at_far": {"0.001": 0.5, "curve": [1, 2]}, "rank1": None}
    assert flatten(r) == {"accuracy": 0.9, "tar_at_far/0.001": 0.5, "rank1": None}


def test_summarize_mean_std_over_seeds():
    t = pd.DataFrame({"method": ["a"] * 3 + ["b"], "seed": [0, 1, 2, 0], "accuracy": [0.90, 0.92, 0.94, 0.8]})
    s = summarize(t, by=["method"]).set_index("method")
    assert s.loc["a", "mean"] == pytest.approx(92.0)
    assert s.loc["a", "std"] == pytest.approx(2.0)
    assert s.loc["a", "mean ± std"] == "92.00 ± 2.00"
    assert s.loc["b", "n"] == 1 and s.loc["b", "mean ± std"] == "80.00"
    with pytest.raises(ValueError, match="metric 'auc' is not a column"):
        summarize(t, by=["method"], metric="auc")


def test_values_selects_rows_in_seed_order():
    t = pd.DataFrame({"method": ["a", "a", "b"], "seed": [1, 0, 0], "accuracy": [0.2, 0.1, 0.3]})
    assert values(t, method="a") == [0.1, 0.2]
    with pytest.raises(ValueError, match="no rows"):
        values(t, method="c")
