"""Positive controls: each verdict from hand-made numbers, thresholds as the calibration chapter states them."""

import numpy as np
import pytest

from dbrepro import controls


def hist(*losses):
    return [{"loss": v} for v in losses]


def test_c1_needs_a_plateau_and_learning():
    assert controls.convergence(hist(10, 5, 4.95))["plateau"]  # -1 %
    assert not controls.convergence(hist(10, 5, 4.8))["plateau"]  # -4 %
    assert not controls.convergence(hist(10, 9.9, 9.89))["learned"]  # a plateau at the starting loss
    good = {"cosface": [hist(12, 4, 3.99)] * 3, "softmax": [hist(6, 1, 0.995)] * 3}
    assert controls.c1_converged(good).verdict == "reproduced"
    bad = {**good, "arcface": [hist(12, 7, 6.9)]}
    c = controls.c1_converged(bad)
    assert c.verdict == "not reproduced" and "arcface" in c.ours and "final/first loss 0.58" in c.ours


def test_c1_judges_the_probe_loss_where_every_run_has_it():
    # the running means still fall 4 % in the last epoch (noise of the epoch's batches); the probe is flat
    probed = [{"loss": a, "probe_loss": b} for a, b in ((10, 8), (5, 4), (4.8, 3.99))]
    c = controls.convergence(probed)
    assert c["measure"] == "probe_loss" and c["plateau"] and c["final"] == 3.99
    assert controls.c1_converged({"cosface": [probed] * 3}).verdict == "reproduced"
    assert "fixed probe" in controls.c1_converged({"cosface": [probed] * 3}).ours
    # one run without the probe (trained before it was recorded): every run is judged on its epoch mean
    mixed = controls.c1_converged({"cosface": [probed, probed], "softmax": [hist(6, 1, 0.995)]})
    assert mixed.verdict == "not reproduced" and "cosface (run 1: last epoch -4.0%)" in mixed.ours
    assert "epoch-mean" in mixed.ours
    # and a probe that still falls fails, as the mean would
    falling = [{"loss": 1.0, "probe_loss": v} for v in (10, 5, 4.8)]
    assert controls.c1_converged({"softmax": [falling]}).verdict == "not reproduced"


def test_c1_of_one_epoch_runs_is_not_measured():
    one = controls.convergence(hist(7.5))
    assert one["plateau"] is None and one["learned"] is None and one["final"] == 7.5
    c = controls.c1_converged({"cosface": [hist(7.5)], "softmax": [hist(6, 1, 0.995)]})
    assert c.verdict == "not measured" and "1 of 2 runs trained one epoch" in c.ours
    with pytest.raises(ValueError, match="no epoch"):
        controls.convergence([])


def acc(lfw, calfw, cplfw, agedb, spread=0.001):
    return {s: [v - spread, v, v + spread] for s, v in zip(("lfw", "calfw", "cplfw", "agedb"), (lfw, calfw, cplfw, agedb))}


def test_c2_margins_beat_softmax_by_a_point_most_on_cross_pose():
    table = {"Softmax": acc(0.95, 0.85, 0.70, 0.84), "CosFace": acc(0.96, 0.87, 0.76, 0.86),
             "ArcFace": acc(0.96, 0.87, 0.75, 0.85)}
    assert controls.c2_margins_help(table).verdict == "reproduced"
    small = {**table, "ArcFace": acc(0.951, 0.851, 0.705, 0.841)}  # +0.2 points: below the threshold
    assert controls.c2_margins_help(small).verdict == "not reproduced"
    wrong_place = {**table, "CosFace": acc(0.99, 0.87, 0.71, 0.86)}  # the gain is on LFW, not cross-pose
    assert controls.c2_margins_help(wrong_place).verdict == "not reproduced"


def test_c3_every_method_orders_the_suites():
    ok = {"Softmax": acc(0.95, 0.85, 0.70, 0.84), "CosFace": acc(0.96, 0.87, 0.76, 0.86)}
    assert controls.c3_difficulty(ok).verdict == "reproduced"
    swapped = {**ok, "CosFace": acc(0.96, 0.70, 0.76, 0.86)}  # CALFW below CPLFW
    c = controls.c3_difficulty(swapped)
    assert c.verdict == "not reproduced" and "CosFace: calfw" in c.ours


def test_c4_and_c5():
    assert controls.c4_rarity([0.08, 0.09, 0.07], [0.02, 0.01, 0.03]).verdict == "reproduced"
    assert controls.c4_rarity([0.08, 0.09, 0.07], [0.06, 0.05, 0.07]).verdict == "not reproduced"  # 25 % removed
    assert controls.c5_tail([0.90, 0.91, 0.905], [0.85, 0.86, 0.855]).verdict == "reproduced"
    assert controls.c5_tail([0.85, 0.86, 0.855], [0.90, 0.91, 0.905]).verdict == "not reproduced"


def test_profile_yaw_edges_cut_at_the_training_limit_and_halve_bins_of_a_large_suite():
    assert controls.profile_yaw_edges((62, 80), 70, 100) == [62, 70, 80]
    assert controls.profile_yaw_edges((62, 80), 70, 6000) == [62, 66, 70, 75, 80]
    assert controls.profile_yaw_edges((50, 70), 70, 100) == [50, 70]  # the limit is no cut at the range's end


def test_gain_by_profile_yaw_is_each_bins_own_protocol_and_the_gain_over_softmax():
    import pandas as pd

    n = 80
    meta = pd.DataFrame({"yaw_b": np.r_[np.full(n // 2, 64.0), np.full(n // 2, -76.0)]}, index=np.arange(n) + 100)
    issame = np.tile([True, False], n // 2)
    right = np.where(issame, 0.9, 0.1)
    wrong_beyond = right.copy()
    # beyond 70 degrees every matched pair scores below every mismatched one: no threshold beats chance
    wrong_beyond[n // 2:] = np.where(issame[n // 2:], 0.1, 0.9)
    results = {"Softmax": [{"scores": wrong_beyond, "issame": issame}] * 2,
               "CosFace": [{"scores": right, "issame": issame}, {"scores": wrong_beyond, "issame": issame}]}
    table = controls.gain_by_profile_yaw(results, meta, [62, 70, 80])
    assert [y for y, _ in table.index] == ["62-70°", "70-80°"] and [p for _, p in table.index] == [40, 40]
    assert table["Softmax"].tolist() == [100.0, 50.0]
    assert table["CosFace"].tolist() == [100.0, 75.0]  # the mean of its two seeds
    assert table["CosFace gain"].tolist() == [0.0, 25.0]
    with pytest.raises(ValueError, match="no 'Softmax' among the methods"):
        controls.gain_by_profile_yaw({"CosFace": results["CosFace"]}, meta, [62, 70, 80])
