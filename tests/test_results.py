import json

import numpy as np
import pandas as pd
import pytest

from dbrepro.results import (Results, claims_frame, compare, compare_intervals, fmt_pm, load_results, mean_std,
                             verdict_all)


def test_results_written_atomically_and_read_back(tmp_path):
    r = Results("rl-02", "smoke", tmp_path / "rl-02")
    r.add("accuracy", {"A-0": 0.91})
    r.claim("t2-a2-best", "A-2 beats A-0", "98.25 vs 97.87", "90.1 vs 90.0", "inconclusive", section="Table 2")
    path = r.save()
    data = json.loads(path.read_text())
    assert data["notebook"] == "rl-02" and data["numbers"]["accuracy"] == {"A-0": 0.91}
    assert data["claims"][0]["verdict"] == "inconclusive"
    frame = claims_frame(load_results(tmp_path))
    assert list(frame["notebook"]) == ["rl-02"]


def test_numbers_are_saved_as_standard_json(tmp_path):
    r = Results("db-02", "smoke", tmp_path / "db-02")
    rho = r.add("spearman", np.float64("nan"))  # returned as given, recorded as null
    assert np.isnan(rho)
    r.add("table", pd.DataFrame({"IC": [0.5, np.inf]}, index=["G0", "G1"]))
    text = r.save().read_text()
    numbers = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in results.json"))["numbers"]
    assert numbers == {"spearman": None, "table": {"IC": {"G0": 0.5, "G1": None}}}
    with pytest.raises(TypeError, match=r"number 'when'\['t'\]: cannot write a value of type object"):
        r.add("when", {"t": object()})


def test_bad_verdict_and_duplicate_claim(tmp_path):
    r = Results("x", "smoke", tmp_path / "x")
    with pytest.raises(ValueError, match="verdict must be one of"):
        r.claim("a", "c", 1, 2, "probably")
    r.claim("a", "c", 1, 2, "reproduced")
    with pytest.raises(ValueError, match="twice"):
        r.claim("a", "c", 1, 2, "reproduced")


def test_compare_uses_standard_errors():
    assert compare([0.90, 0.91, 0.92], [0.80, 0.81, 0.82]) == "reproduced"
    assert compare([0.80, 0.81, 0.82], [0.90, 0.91, 0.92]) == "not reproduced"
    assert compare([0.80, 0.85, 0.90], [0.82, 0.84, 0.86]) == "inconclusive"
    assert compare([0.80, 0.81, 0.82], [0.90, 0.91, 0.92], expect="less") == "reproduced"
    assert compare([0.9], [0.8]) == "inconclusive"  # no error bar from one seed


def test_compare_intervals():
    assert compare_intervals(0.01, 0.03) == "reproduced"
    assert compare_intervals(-0.03, -0.01) == "not reproduced"
    assert compare_intervals(-0.01, 0.02) == "inconclusive"
    assert compare_intervals(-0.03, -0.01, expect="less") == "reproduced"


def test_mean_std_and_format():
    m, s = mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and s == pytest.approx(1.0)
    assert fmt_pm([0.9, 0.92]) == "91.00 ± 1.41"


def test_verdict_all_needs_every_condition():
    assert verdict_all("reproduced", "reproduced") == "reproduced"
    assert verdict_all("reproduced", "not reproduced") == "not reproduced"
    assert verdict_all("inconclusive", "not reproduced") == "not reproduced"  # one contradiction decides
    assert verdict_all("reproduced", "inconclusive") == "inconclusive"
    assert verdict_all("not measured", "not measured") == "not measured"
    assert verdict_all("reproduced", "not measured") == "inconclusive"
    with pytest.raises(ValueError, match="must be one of"):
        verdict_all("reproduced", "maybe")
    with pytest.raises(ValueError, match="at least one"):
        verdict_all()
