"""Range Loss §3.3: SD, EM and kurtosis (Eq. 1) of intra- and inter-class pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from dbrepro.eval import feature_statistics, kurtosis
from dbrepro.eval.features import identity_sample


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kurtosis_is_eq1_like_scipy(seed: int) -> None:
    x = np.random.default_rng(seed).standard_t(5, size=300)
    assert kurtosis(x) == pytest.approx(scipy.stats.kurtosis(x, fisher=True, bias=True))


def test_kurtosis_known_values_and_errors() -> None:
    assert kurtosis([0.0, 1.0]) == pytest.approx(-2.0)  # two equally likely values: the minimum
    assert kurtosis([0, 0, 0, 1]) == pytest.approx((0.75 * 0.25**4 + 0.25 * 0.75**4) / (3 / 16) ** 2 - 3)
    with pytest.raises(ValueError, match="constant"):
        kurtosis([2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 values"):
        kurtosis([1.0])


def excess(values: list[float]) -> float:
    v = np.array(values)
    c = v - v.mean()
    return float(np.mean(c**4) / np.mean(c**2) ** 2 - 3)


def test_feature_statistics_on_a_two_class_example_by_hand() -> None:
    features = np.array([[0, 0], [2, 0], [0, 2], [10, 0], [12, 0]], dtype=float)
    labels = np.array([0, 0, 0, 1, 1])
    stats = feature_statistics(features, labels)
    intra = [2.0, 2.0, math.sqrt(8), 2.0]  # (0,0)-(2,0), (0,0)-(0,2), (2,0)-(0,2); (10,0)-(12,0)
    inter = [10.0, 12.0, 8.0, 10.0, math.sqrt(104), math.sqrt(148)]
    assert stats["intra_em"] == pytest.approx(np.mean(intra))
    assert stats["inter_em"] == pytest.approx(np.mean(inter))
    assert stats["intra_kurtosis"] == pytest.approx(excess(intra))
    assert stats["inter_kurtosis"] == pytest.approx(excess(inter))
    # squared deviations from the class centres (2/3, 2/3) and (11, 0): 8/9, 20/9, 20/9, 1, 1
    assert stats["intra_sd"] == pytest.approx(math.sqrt((48 / 9 + 2) / 5))
    # from the global centre (4.8, 0.4): 23.2, 8.0, 25.6, 27.2, 52.0
    assert stats["inter_sd"] == pytest.approx(math.sqrt(136 / 5))
    assert (stats["n_intra_pairs"], stats["n_inter_pairs"]) == (4, 6)


def test_statistics_ignore_rotation_translation_and_chunking() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    features = rng.normal(size=(200, 2)) + 5 * rng.normal(size=(10, 2))[labels]
    angle = 0.7
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = features @ rotation.T + np.array([3.0, -8.0])
    a = feature_statistics(features, labels)
    b = feature_statistics(moved, labels, chunk=7)
    assert a == pytest.approx(b)
    assert a["inter_em"] > a["intra_em"] and a["inter_sd"] > a["intra_sd"]


def test_sd_is_the_feature_spread_not_the_pair_distance_spread() -> None:
    # a large Gaussian blob: EM / SD -> sqrt(pi) / sqrt(2) = 1.2533 with SD = rms distance to the centre
    rng = np.random.default_rng(1)
    features = rng.normal(size=(1000, 2))
    labels = np.r_[np.zeros(500, int), np.ones(500, int)]
    stats = feature_statistics(features, labels)
    assert stats["intra_em"] / stats["intra_sd"] == pytest.approx(math.sqrt(math.pi / 2), rel=0.03)


def test_singletons_have_no_intra_pairs_and_bad_labels_are_errors() -> None:
    features = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    stats = feature_statistics(features, [0, 0, 1])
    assert stats["intra_sd"] == pytest.approx(0.5)  # the singleton does not count
    assert stats["n_intra_pairs"] == 1 and math.isnan(stats["intra_kurtosis"])
    with pytest.raises(ValueError, match="at least 2 identities"):
        feature_statistics(features, [0, 0, 0])
    with pytest.raises(ValueError, match="at least 2 images"):
        feature_statistics(features, [0, 1, 2])
    with pytest.raises(ValueError, match="labels: expected 3 ids"):
        feature_statistics(features, [0, 1])


def test_identity_sample_draws_identities_with_enough_images() -> None:
    # identity c has sizes[c] images; only identities 1, 2 and 4 have 20 or more
    sizes = [5, 20, 31, 19, 25]
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(5), sizes))
    indices, sample = identity_sample(labels, identities=2, images=20, seed=1)
    assert len(indices) == 40 and len(set(indices.tolist())) == 40
    assert sample.tolist() == [0] * 20 + [1] * 20
    drawn = [set(labels[indices[sample == i]].tolist()) for i in range(2)]
    assert all(len(d) == 1 for d in drawn) and drawn[0] != drawn[1]
    assert drawn[0] | drawn[1] <= {1, 2, 4}
    again, _ = identity_sample(labels, identities=2, images=20, seed=1)
    assert np.array_equal(indices, again)  # seeded
    everyone, sample = identity_sample(labels, identities=10, images=20, seed=0)
    assert set(labels[everyone].tolist()) == {1, 2, 4} and sample.max() == 2  # fewer eligible: all of them


def test_identity_sample_rejects_what_cannot_give_inter_class_pairs() -> None:
    labels = np.repeat(np.arange(3), [30, 5, 5])
    with pytest.raises(ValueError, match="only 1 identities have 20 images"):
        identity_sample(labels, identities=10, images=20)
    with pytest.raises(ValueError, match="images must be an integer >= 2"):
        identity_sample(labels, images=1)
    with pytest.raises(ValueError, match="1-D integer array"):
        identity_sample(labels.astype(float))


def test_the_sections_the_feature_statistics_chapter_shows_exist() -> None:
    from dbrepro import show
    from dbrepro.eval import features

    definitions = show.doc(features, "What SD, EM and kurtosis are here").text
    assert all(name in definitions for name in ("intra_em", "inter_kurtosis", "intra_sd", "inter_sd"))
    assert "t-SNE maps" in show.doc(features, "Any dimension").text
