"""Exact ROC, AUC, EER and TAR at FAR."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from dbrepro.eval import FarResolutionWarning, auc, eer, min_far, operating_points, roc_curve, tar_at_far


def scores_and_labels(genuine: list[float], impostor: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(genuine + impostor), np.array([True] * len(genuine) + [False] * len(impostor))


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_curve_and_auc_match_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    issame = rng.random(500) < 0.3
    scores = np.round(rng.normal(size=500) + issame, 1)
    far, tar, thresholds = roc_curve(scores, issame)
    sk_far, sk_tar, sk_thr = sk_roc_curve(issame, scores, drop_intermediate=False)
    np.testing.assert_allclose(far, sk_far)
    np.testing.assert_allclose(tar, sk_tar)
    np.testing.assert_array_equal(thresholds, sk_thr)
    assert auc(scores, issame) == pytest.approx(roc_auc_score(issame, scores))


def test_tar_at_far_on_a_hand_example() -> None:
    genuine = [0.9, 0.8, 0.7, 0.4]
    impostor = [0.85, 0.6, 0.5, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3]
    scores, issame = scores_and_labels(genuine, impostor)
    p10, p25, p35, p100 = tar_at_far(scores, issame, [0.1, 0.25, 0.35, 1.0])
    # FAR 0.1: one impostor may pass; rejecting 0.6 and below keeps 0.9, 0.8, 0.7
    assert (p10.tar, p10.far, p10.threshold) == (0.75, 0.1, 0.7)
    # FAR 0.25: two impostors (0.85, 0.6) may pass; 0.4 still rejected (0.5 must be)
    assert (p25.tar, p25.far, p25.threshold) == (0.75, 0.2, 0.6)
    assert (p35.tar, p35.far, p35.threshold) == (1.0, 0.3, 0.4)
    assert (p100.tar, p100.far, p100.threshold) == (1.0, 1.0, -0.3)
    assert tar_at_far(scores, issame, 0.1) == p10  # a float gives one point


def test_tar_at_far_never_exceeds_the_target_when_impostors_tie() -> None:
    scores, issame = scores_and_labels([0.7, 0.65, 0.5], [0.6, 0.6, 0.1])
    point = tar_at_far(scores, issame, 1 / 3)
    # accepting one 0.6 impostor means accepting both (FAR 2/3): stay above them
    assert (point.tar, point.far, point.threshold) == (pytest.approx(2 / 3), 0.0, 0.65)


def test_far_below_the_resolution_is_nan_with_a_warning() -> None:
    scores, issame = scores_and_labels([0.9, 0.1], [0.5] * 10)
    assert min_far(10) == 0.1
    with pytest.warns(FarResolutionWarning, match="below 1/10 impostor pairs"):
        point = tar_at_far(scores, issame, 0.05)
    assert math.isnan(point.tar) and math.isnan(point.far) and point.num_impostors == 10


def test_tar_at_far_agrees_with_the_roc_curve() -> None:
    rng = np.random.default_rng(5)
    issame = rng.random(3000) < 0.2
    scores = np.round(rng.normal(size=3000) + 2 * issame, 2)
    far, tar, _ = roc_curve(scores, issame)
    for target in (1e-3, 1e-2, 0.1, 0.5):
        point = tar_at_far(scores, issame, target)
        best = tar[far <= target].max()  # the best TAR any ROC point offers within the target
        assert point.tar == best
        assert point.far <= target


def test_operating_points_from_only_the_top_impostors() -> None:
    rng = np.random.default_rng(6)
    genuine = rng.normal(size=200) + 2
    impostor = rng.normal(size=10_000)
    full = operating_points(genuine, impostor, [1e-3, 1e-2])
    top = np.sort(impostor)[::-1][:101]  # floor(1e-2 * 10^4) + 1
    streamed = operating_points(genuine, top, [1e-3, 1e-2], num_impostors=10_000)
    assert streamed == full
    with pytest.raises(ValueError, match="needs the top 101"):
        operating_points(genuine, top[:50], 1e-2, num_impostors=10_000)


def test_eer_on_hand_examples() -> None:
    assert eer(*scores_and_labels([2.0, 3.0], [0.0, 1.0])) == 0.0
    assert eer(*scores_and_labels([1.0, 3.0], [0.0, 2.0])) == pytest.approx(0.5)
    # ROC points (0, 2/3) and (1/2, 2/3): FAR = FRR = 1/3 on the segment between them
    assert eer(*scores_and_labels([1.0, 3.0, 4.0], [0.0, 2.0])) == pytest.approx(1 / 3)


def test_eer_equals_far_and_frr_at_the_crossing() -> None:
    rng = np.random.default_rng(7)
    issame = rng.random(4000) < 0.5
    scores = rng.normal(size=4000) + 2 * issame
    # two unit Gaussians 2 apart: EER = Phi(-1) = 0.1587
    assert eer(scores, issame) == pytest.approx(0.1587, abs=0.015)


def test_missing_class_is_an_error() -> None:
    with pytest.raises(ValueError, match="no impostor"):
        roc_curve([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="no genuine"):
        auc([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="far must lie in"):
        tar_at_far(*scores_and_labels([0.9], [0.1]), 2.0)
