"""Long-tail statistics and the Range Loss A/B splits on synthetic labels arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import pytest

from dbrepro.data.splits import (
    class_sizes,
    half_split_identities,
    long_tail_summary,
    range_loss_a_splits,
    range_loss_b_splits,
    size_histogram,
    split_table,
)


def labels_with_sizes(sizes: list[int] | np.ndarray, seed: int = 0) -> np.ndarray:
    """Identity ``c`` gets ``sizes[c]`` images, in shuffled order."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(labels)


# 10 head identities (20..29 images) and 100 tail identities (1..19 images, cycling)
SIZES = [20 + i for i in range(10)] + [1 + (i % 19) for i in range(100)]
LABELS = labels_with_sizes(SIZES)


def identities(indices: np.ndarray, labels: np.ndarray = LABELS) -> set[int]:
    return set(np.unique(labels[indices]).tolist())


def test_class_sizes_and_summary():
    labels = np.array([0, 0, 2, 2, 2, 5])
    assert class_sizes(labels).tolist() == [2, 0, 3, 0, 0, 1]
    assert class_sizes(labels, num_classes=8).tolist() == [2, 0, 3, 0, 0, 1, 0, 0]
    summary = long_tail_summary(labels, tail_below=3)
    assert summary == {
        "identities": 3,
        "images": 6,
        "head_identities": 1,
        "head_images": 3,
        "tail_identities": 2,
        "tail_images": 3,
        "mean_images_per_identity": 2.0,
        "tail_below": 3,
    }


def test_tail_is_strictly_fewer_than_twenty_images():
    summary = long_tail_summary(LABELS)
    assert summary["head_identities"] == 10  # the identity with exactly 20 images is head
    assert summary["tail_identities"] == 100
    assert summary["tail_images"] == sum(SIZES[10:])


def test_size_histogram_counts_every_identity_once():
    hist = size_histogram(LABELS, bins=[1, 5, 20, 30])
    assert hist["identities"].tolist() == [
        sum(1 for s in SIZES if 1 <= s < 5),
        sum(1 for s in SIZES if 5 <= s < 20),
        sum(1 for s in SIZES if 20 <= s <= 30),
    ]
    assert hist["images"].sum() == len(LABELS)
    auto = size_histogram(LABELS, bins=4)
    assert auto["identities"].sum() == len(SIZES) and auto["images"].sum() == len(LABELS)


def test_a_splits_keep_the_head_and_a_nested_fraction_of_the_tail():
    splits = range_loss_a_splits(LABELS)
    assert list(splits) == ["A-0", "A-1", "A-2", "A-3", "A-4"]
    head = set(range(10))
    tails = {name: identities(idx) - head for name, idx in splits.items()}
    for name, idx in splits.items():
        assert head <= identities(idx)
        # whole identities: every image of a kept identity is in the split
        assert len(idx) == sum(SIZES[c] for c in identities(idx))
        assert np.all(np.diff(idx) > 0)
    assert [len(tails[f"A-{i}"]) for i in range(5)] == [100, 80, 50, 30, 0]
    assert tails["A-4"] <= tails["A-3"] <= tails["A-2"] <= tails["A-1"] <= tails["A-0"]


def test_a_splits_cut_the_smallest_tail_identities_first():
    splits = range_loss_a_splits(LABELS)
    kept = identities(splits["A-2"]) - set(range(10))
    removed = set(range(10, 110)) - kept
    assert min(SIZES[c] for c in kept) >= max(SIZES[c] for c in removed)


def test_a_splits_random_cut_is_nested_and_seeded():
    a = range_loss_a_splits(LABELS, cut="random", seed=1)
    b = range_loss_a_splits(LABELS, cut="random", seed=1)
    c = range_loss_a_splits(LABELS, cut="random", seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["A-2"], c["A-2"])
    assert identities(a["A-3"]) <= identities(a["A-2"]) <= identities(a["A-1"])
    kept = identities(a["A-2"]) - set(range(10))
    assert min(SIZES[c] for c in kept) < 10  # a random half keeps some small identities


def test_a_splits_reproduce_table_1_identity_counts():
    # 10,000 head identities (20 images) and 89,891 tail identities (1 image) as in Table 1
    labels = np.repeat(np.arange(99_891), [20] * 10_000 + [1] * 89_891)
    table = split_table(labels, range_loss_a_splits(labels))
    assert table["identities"].tolist()[:3] == [99_891, 81_913, 54_946]
    assert table["identities"].tolist()[4] == 10_000
    # the paper's A-3 lists 26,967 identities = 30 % of the tail alone; with the head it is 36,967
    assert table.loc["A-3", "identities"] == 36_967 == 26_967 + 10_000
    assert table["tail_ratio"].round(4).tolist() == [1.0, 0.8, 0.5, 0.3, 0.0]


def test_split_table_columns():
    splits = range_loss_a_splits(LABELS)
    table = split_table(LABELS, splits)
    assert table.loc["A-0", "images"] == len(LABELS)
    assert table.loc["A-4", "images"] == sum(SIZES[:10])
    assert table.loc["A-4", "tail_identities"] == 0
    assert table.loc["A-2", "tail_image_ratio"] == pytest.approx(
        table.loc["A-2", "tail_images"] / sum(SIZES[10:])
    )
    assert table.index.name == "group"


def test_b_splits_subset_then_remove_from_the_tail():
    splits = range_loss_b_splits(LABELS, subset_identities=40, seed=3)
    assert list(splits) == ["B-0", "B-1", "B-2", "B-3"]
    subset = identities(splits["B-0"])
    assert len(subset) == 40
    counts = [len(identities(idx)) for idx in splits.values()]
    assert counts == [40, 30, 20, 10]
    ids = [identities(idx) for idx in splits.values()]
    assert ids[3] <= ids[2] <= ids[1] <= ids[0]
    removed = subset - ids[3]
    assert all(SIZES[c] < 20 for c in removed)  # removed from the tail
    assert min(SIZES[c] for c in ids[3] if SIZES[c] < 20) >= max(SIZES[c] for c in removed)


def test_b_splits_fraction_and_determinism():
    a = range_loss_b_splits(LABELS, subset_identities=0.5, seed=0)
    b = range_loss_b_splits(LABELS, subset_identities=0.5, seed=0)
    assert len(identities(a["B-0"])) == 55
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_b_splits_with_a_short_tail():
    sizes = [30] * 8 + [5, 6]  # 2 tail identities of 10
    labels = labels_with_sizes(sizes)
    remove = (0.0, 0.2, 0.3, 0.5)
    with pytest.raises(ValueError, match="B-2 removes 3 of 10 identities but the subset's tail .* has only 2"):
        range_loss_b_splits(labels, subset_identities=10, remove=remove)
    splits = range_loss_b_splits(labels, subset_identities=10, remove=remove, allow_head=True)
    assert identities(splits["B-1"], labels) == set(range(8))  # the whole tail, exactly
    b2 = identities(splits["B-2"], labels)
    assert len(b2) == 7 and b2 < set(range(8))  # then one head identity
    assert len(identities(splits["B-3"], labels)) == 5


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: class_sizes([]), "labels are empty"),
        (lambda: class_sizes([0.5, 1.0]), "labels must be integers"),
        (lambda: class_sizes([[0, 1]]), "1-D"),
        (lambda: class_sizes([-1, 0]), ">= 0"),
        (lambda: range_loss_a_splits(LABELS, keep=(1.0, 1.2)), r"keep fraction must lie in \[0, 1\], got \[1.2\]"),
        (lambda: range_loss_a_splits(LABELS, keep=()), "keep is empty"),
        (lambda: range_loss_a_splits(LABELS, tail_below=0), "tail_below"),
        (lambda: range_loss_a_splits(LABELS, cut="largest"), "cut must be one of"),
        (lambda: range_loss_b_splits(LABELS, subset_identities=1000), "asks for 1000 identities"),
        (lambda: range_loss_b_splits(LABELS, subset_identities=1.5), "count or a fraction"),
        (lambda: range_loss_b_splits(LABELS, remove=(0.0, -0.1)), "remove fraction"),
        (lambda: split_table(LABELS, {}), "no splits"),
        (lambda: split_table(LABELS, {"x": np.array([len(LABELS)])}), "outside"),
        (lambda: split_table(LABELS, {"x": np.array([0])}, reference="y"), "reference 'y'"),
        (lambda: half_split_identities(1), "num_classes"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_half_split_identities():
    mask = half_split_identities(9, seed=4)
    assert mask.dtype == bool and mask.shape == (9,) and mask.sum() == 4
    assert np.array_equal(mask, half_split_identities(9, seed=4))
    assert not np.array_equal(mask, half_split_identities(9, seed=5))


# -- the B splits a chapter trains on: recipes.range_split and the data spec ----------------------------


def test_b0_is_the_papers_4000_identities_on_real_data_and_half_a_synthetic_world():
    from dbrepro import recipes

    assert recipes.b0_identities({"kind": "synth"}, 600) == recipes.B_SUBSET
    assert recipes.b0_identities({"kind": "recordio", "root": "x"}, 10_575) == 4_000
    assert recipes.b0_identities({"kind": "recordio", "root": "x"}, 40) == 40  # a set with fewer: all of them


def test_range_split_specs_name_the_split_and_b0():
    from dbrepro import recipes

    synth = {"kind": "synth", "preset": "smoke", "seed": 0}
    assert recipes.range_split(synth, "A-2", 40) == {**synth, "split": "A-2"}
    assert recipes.range_split(synth, "B-1", 40) == {**synth, "split": "B-1", "b_subset": recipes.B_SUBSET}
    real = {"kind": "recordio", "root": "/data/casia", "image_size": 112}
    assert recipes.range_split(real, "B-3", 10_575) == {**real, "split": "B-3", "b_subset": 4_000, "b_allow_head": True}


def test_a_b_split_of_a_set_with_a_short_tail_removes_the_smallest_head_identities_only_when_allowed():
    from dbrepro.data.base import TensorFaces
    from dbrepro.data.specs import apply_split

    # 8 identities: 4 tail (2, 3, 4, 5 images) and 4 head (20, 21, 22, 23); B-3 of all 8 removes 6
    sizes = [2, 3, 4, 5, 20, 21, 22, 23]
    labels = labels_with_sizes(sizes)
    data = TensorFaces(torch.zeros(len(labels), 3, 4, 4, dtype=torch.uint8), labels, len(sizes),
                       pd.DataFrame({"identity": labels}))
    with pytest.raises(ValueError, match="B-3 removes 6 of 8 identities but the subset's tail"):
        apply_split(data, "B-3", b_subset=8)
    b3 = apply_split(data, "B-3", b_subset=8, allow_head=True)
    assert sorted(np.bincount(b3.labels).tolist()) == [22, 23]  # the 4 tail, then the 2 smallest head identities
    b2 = apply_split(data, "B-2", b_subset=8, allow_head=True)  # removes 4: the tail is enough, no head removed
    assert sorted(np.bincount(b2.labels).tolist()) == [20, 21, 22, 23]
