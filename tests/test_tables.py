"""seeds_table: hand-computed means and sample stds, missing seeds, one seed, bad input."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import dbrepro.tables
from dbrepro.tables import sampler_coverage, seeds_table


def test_known_values_with_a_missing_seed():
    table = seeds_table({"a": {0: 0.9, 1: 0.8}, "b": {2: 0.7, 0: 0.5}})
    assert list(table.columns) == ["seed 0", "seed 1", "seed 2", "mean", "std", "seeds", "mean ± std"]
    assert list(table.index) == ["a", "b"] and table.index.name == "method"
    a, b = table.loc["a"], table.loc["b"]
    assert [a["seed 0"], a["seed 1"]] == pytest.approx([90.0, 80.0]) and math.isnan(a["seed 2"])
    assert a["mean"] == pytest.approx(85.0)
    assert a["std"] == pytest.approx(math.sqrt(50.0))  # (5^2 + 5^2) / (2 - 1) = 50
    assert (a["seeds"], a["mean ± std"]) == (2, "85.00 ± 7.07")
    assert math.isnan(b["seed 1"]) and b["mean"] == pytest.approx(60.0)
    assert b["std"] == pytest.approx(math.sqrt(200.0))
    assert b["mean ± std"] == "60.00 ± 14.14"


def test_one_seed_has_no_error_bar_and_scale_and_digits_apply():
    table = seeds_table({"only": {3: 0.25}}, scale=1.0, digits=3)
    row = table.loc["only"]
    assert row["seed 3"] == 0.25 and row["mean"] == 0.25
    assert math.isnan(row["std"]) and row["seeds"] == 1
    assert row["mean ± std"] == "0.250"


def test_numpy_numbers_are_accepted():
    table = seeds_table({"m": {0: np.float32(0.5), 1: np.float64(0.75)}})
    assert table.loc["m", "mean"] == pytest.approx(62.5)


@pytest.mark.parametrize("values, message", [
    ({}, "no methods given"),
    ({"a": {}}, "method 'a' needs a non-empty"),
    ({"a": [0.5, 0.6]}, "method 'a' needs a non-empty {seed: value} mapping"),
    ({"a": {0: float("nan")}}, "method 'a', seed 0: expected a finite number"),
    ({"a": {1: "0.9"}}, "method 'a', seed 1: expected a finite number"),
    ({"a": {0: 0.5}, "b": {"x": 0.5}}, "seeds must be mutually comparable"),
])
def test_bad_input_names_the_method_and_seed(values, message):
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        seeds_table(values)


def test_docstring_example():
    result = doctest.testmod(dbrepro.tables, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted == 2 and result.failed == 0  # seeds_table and suite_labels


class FixedBatches:
    """A sampler that yields the same given batches every epoch and records the epochs it was set to."""

    def __init__(self, *batches):
        self.batches, self.epochs = [list(b) for b in batches], []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __iter__(self):
        return iter(self.batches)


def test_sampler_coverage_by_hand():
    # identities: 0 has 3 images (0, 1, 2), 1 has one (3), 2 has one (4), 3 has 20 (5..24)
    labels = np.array([0, 0, 0, 1, 2] + [3] * 20)
    sampler = FixedBatches([0, 1, 3, 3], [5, 5, 6, 0])
    cov = sampler_coverage(sampler, labels, epochs=2, tail_below=20)
    assert sampler.epochs == [0, 1]
    # 16 slots; people 0, 1, 3 of 4 drawn; images 0, 1, 3, 5, 6 of 25
    assert cov["people drawn"] == pytest.approx(3 / 4)
    assert cov["images drawn"] == pytest.approx(5 / 25)
    assert cov["repeated slots"] == pytest.approx(4 / 16)  # one repeat per batch, two batches per epoch
    assert cov["one-image people's slots"] == pytest.approx(4 / 16)  # image 3, twice per epoch
    assert cov["head slots"] == pytest.approx(6 / 16)  # images 5, 5, 6 per epoch


def test_sampler_coverage_of_pk_batches_counts_the_copies_of_single_images():
    from dbrepro.data.samplers import PKSampler

    labels = np.array([0] * 4 + [1])  # one person with 4 images, one with a single image
    cov = sampler_coverage(PKSampler(labels, p=2, k=4, seed=0, drop_last=False), labels, epochs=1, tail_below=4)
    # one batch: 4 distinct images of person 0 and 4 copies of person 1's image
    assert cov == pytest.approx({"people drawn": 1.0, "images drawn": 1.0, "repeated slots": 3 / 8,
                                 "one-image people's slots": 0.5, "head slots": 0.5})


def test_sampler_coverage_bad_input():
    labels = np.array([0, 1])
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        sampler_coverage(FixedBatches([0]), labels, epochs=0)
    with pytest.raises(ValueError, match="yielded no batch"):
        sampler_coverage(FixedBatches(), labels, epochs=1)
    with pytest.raises(ValueError, match=r"indices outside \[0, 2\)"):
        sampler_coverage(FixedBatches([0, 2]), labels, epochs=1)
