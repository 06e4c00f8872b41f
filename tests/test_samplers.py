"""Identity-balanced P x K batches and plain shuffled batches: shape, balance, sharding, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dbrepro.data.samplers import PKSampler, RandomBatchSampler


def long_tailed_labels(seed: int = 0) -> np.ndarray:
    sizes = [60, 40, 30, 25] + [1 + i % 7 for i in range(46)]  # 50 identities, many with fewer than K images
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(50) * 3 + 1, sizes))  # ids 1, 4, 7, ...


LABELS = long_tailed_labels()


def test_pk_batches_have_p_distinct_identities_times_k():
    sampler = PKSampler(LABELS, p=8, k=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(LABELS) // 32
    for batch in batches:
        assert batch.dtype == np.int64 and batch.shape == (32,)
        counts = Counter(LABELS[batch].tolist())
        assert len(counts) == 8 and set(counts.values()) == {4}
        # the k slots of an identity are consecutive in the batch
        assert all(len(set(LABELS[batch[i * 4 : (i + 1) * 4]].tolist())) == 1 for i in range(8))


def test_pk_small_identities_are_sampled_with_replacement_as_evenly_as_possible():
    labels = np.array([0] * 3 + [1] * 20 + [2] * 20 + [3])
    sampler = PKSampler(labels, p=4, k=8, seed=0, drop_last=False)
    for batch in sampler:
        per_identity = {c: Counter(batch[labels[batch] == c].tolist()) for c in range(4)}
        assert sorted(per_identity[0].values()) == [2, 3, 3]  # 8 slots over 3 images
        assert list(per_identity[3].values()) == [8]
        assert set(per_identity[1].values()) == {1}  # 20 >= 8 images: without replacement


def test_pk_identities_are_drawn_uniformly_over_an_epoch():
    sampler = PKSampler(LABELS, p=5, k=2, seed=0)
    appearances = Counter(c for b in sampler for c in set(LABELS[b].tolist()))
    slots = len(sampler) * 5  # 33 batches x 5 identities over 50 identities
    assert len(appearances) == 50
    assert set(appearances.values()) <= {slots // 50, slots // 50 + 1}


def test_pk_is_deterministic_per_epoch():
    a, b = PKSampler(LABELS, p=4, k=4, seed=7), PKSampler(LABELS, p=4, k=4, seed=7)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    first = [x.copy() for x in a]
    a.set_epoch(1)
    assert not all(np.array_equal(u, v) for u, v in zip(first, a))
    a.set_epoch(0)
    assert all(np.array_equal(u, v) for u, v in zip(first, a))


@pytest.mark.parametrize("world_size", [2, 3])
def test_pk_ddp_shards_have_equal_length_and_disjoint_identities_per_step(world_size):
    shards = [PKSampler(LABELS, p=4, k=4, seed=1, rank=r, world_size=world_size) for r in range(world_size)]
    lengths = {len(s) for s in shards}
    assert lengths == {len(LABELS) // 16 // world_size}
    steps = list(zip(*shards))
    assert len(steps) == lengths.pop()
    for batches in steps:
        ids = [set(LABELS[b].tolist()) for b in batches]
        assert sum(len(i) for i in ids) == len(set().union(*ids))  # no identity on two ranks at once


def test_pk_drop_last_false_rounds_up():
    sampler = PKSampler(LABELS, p=4, k=4, drop_last=False, world_size=2, rank=1)
    assert len(sampler) == -(-(-(-len(LABELS) // 16)) // 2) == len(list(sampler))


def test_random_batches_cover_a_permutation_and_shard_disjointly():
    n, bs = 103, 10
    full = list(RandomBatchSampler(n, bs, seed=0))
    assert len(full) == 10 and all(len(b) == 10 for b in full)
    assert len(np.unique(np.concatenate(full))) == 100
    shards = [list(RandomBatchSampler(n, bs, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert np.intersect1d(np.concatenate(shards[0]), np.concatenate(shards[1])).size == 0
    assert sorted(np.concatenate(shards[0] + shards[1]).tolist()) == sorted(np.concatenate(full).tolist())


def test_random_batches_keep_the_last_batch_and_wrap_ranks_without_drop_last():
    sampler = RandomBatchSampler(25, 10, seed=0, drop_last=False)
    assert [len(b) for b in sampler] == [10, 10, 5]
    shards = [RandomBatchSampler(25, 10, seed=0, rank=r, world_size=2, drop_last=False) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 2 == len(list(shards[1]))


def test_random_batches_are_deterministic_per_epoch():
    s = RandomBatchSampler(50, 5, seed=3)
    first = [b.copy() for b in s]
    s.set_epoch(2)
    assert not all(np.array_equal(u, v) for u, v in zip(first, s))
    s.set_epoch(0)
    assert all(np.array_equal(u, v) for u, v in zip(first, s))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: PKSampler(LABELS, p=51, k=2), "p=51 identities per batch, but the labels have only 50"),
        (lambda: PKSampler(LABELS, p=0), "p must be"),
        (lambda: PKSampler(np.array([0.5, 1.0]), p=1), "integer array"),
        (lambda: PKSampler(LABELS, rank=2, world_size=2), r"rank must lie in \[0, 2\)"),
        (lambda: PKSampler(LABELS[:20], p=4, k=4, world_size=2), "fewer than world_size"),
        (lambda: RandomBatchSampler(5, 10), "gives no batch"),
        (lambda: RandomBatchSampler(0, 1), "n must be"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
