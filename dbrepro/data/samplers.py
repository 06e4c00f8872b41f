"""Batch samplers: identity-balanced P x K batches (Range Loss §3.4) and plain shuffled batches.

Both yield one ``np.ndarray`` of int64 dataset indices per batch, have ``len()`` = batches per epoch
*for this rank*, and are deterministic functions of ``(seed, epoch, rank, world_size)``: call
``set_epoch(e)`` before each epoch, as with ``torch.utils.data.DistributedSampler``. Either can be
passed as ``batch_sampler=`` to a ``DataLoader`` or iterated directly to index an in-memory tensor.

Distributed training: every rank builds the same global sequence of batches and takes batches
``rank, rank + world_size, ...``; so every rank gets the same number of batches, and the batches of
one step differ between ranks.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np


def _check_rank(rank: int, world_size: int, what: str) -> None:
    if not isinstance(world_size, (int, np.integer)) or world_size < 1:
        raise ValueError(f"{what}: world_size must be a positive integer, got {world_size!r}")
    if not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
        raise ValueError(f"{what}: rank must lie in [0, {world_size}), got {rank!r}")


def _per_rank(global_batches: int, world_size: int, drop_last: bool) -> int:
    return global_batches // world_size if drop_last else math.ceil(global_batches / world_size)


def _distinct_blocks(rng: np.random.Generator, num: int, size: int) -> Iterator[np.ndarray]:
    """Endless blocks of ``size`` distinct values of ``range(num)``, walking through random permutations.

    A block that straddles two permutations takes the rest of the old one and the start of a fresh
    one from which those values were moved to the end, so it stays distinct.
    """
    stream, pos = rng.permutation(num), 0
    while True:
        if pos + size <= num:
            yield stream[pos : pos + size]
            pos += size
            continue
        rest = stream[pos:]
        fresh = rng.permutation(num)
        fresh = np.concatenate([fresh[~np.isin(fresh, rest)], rest])
        need = size - len(rest)
        yield np.concatenate([rest, fresh[:need]])
        stream, pos = fresh, need


class PKSampler:
    """Batches of ``p`` distinct identities x ``k`` images each (the paper: 16 x 16 = 256).

    Identities: every epoch walks through random permutations of all identities, ``p`` at a time
    (a fresh permutation when one runs out, with the identities of a batch that straddles two
    permutations kept distinct). So identities are drawn uniformly, each about equally often per
    epoch, and the ``p * world_size`` identities of one distributed step are distinct whenever there
    are that many. Images: ``k`` drawn without replacement from the identity's images; an identity
    with ``n < k`` images is sampled with replacement in the most even way — each of its images
    appears ``floor(k / n)`` or ``ceil(k / n)`` times, randomly which.

    Epoch length: ``len(labels) // (p * k)`` global batches (``ceil`` with ``drop_last=False``), i.e.
    about as many images as the dataset has, then split across ranks (``//`` or ``ceil`` again);
    ``len(sampler)`` is this rank's count.
    """

    def __init__(
        self,
        labels: np.ndarray,
        p: int = 16,
        k: int = 16,
        seed: int = 0,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"PKSampler: labels must be a non-empty 1-D integer array, got shape {labels.shape}, dtype {labels.dtype}"
            )
        for name, value in (("p", p), ("k", k)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"PKSampler: {name} must be a positive integer, got {value!r}")
        _check_rank(rank, world_size, "PKSampler")
        order = np.argsort(labels, kind="stable")
        identities, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
        if p > len(identities):
            raise ValueError(f"PKSampler: p={p} identities per batch, but the labels have only {len(identities)}")
        self.p, self.k = int(p), int(k)
        self.seed, self.drop_last = int(seed), bool(drop_last)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        self.num_images = len(labels)
        self.identities = identities
        self._order, self._starts, self._counts = order, starts, counts
        per_epoch = self.num_images / (self.p * self.k)
        self.global_batches = int(per_epoch) if drop_last else math.ceil(per_epoch)
        if self.global_batches < self.world_size and drop_last:
            raise ValueError(
                f"PKSampler: {self.num_images} images make {self.global_batches} batches of {self.p}x{self.k}, "
                f"fewer than world_size={self.world_size}"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return _per_rank(self.global_batches, self.world_size, self.drop_last)

    def _identity_batches(self) -> Iterator[np.ndarray]:
        """The global sequence of identity positions, ``p`` distinct ones per batch.

        Identities are taken from the permutation stream in blocks of one distributed step
        (``p * world_size`` when there are that many identities, else ``p``), each block distinct.
        """
        num = len(self.identities)
        block = self.p * self.world_size if self.p * self.world_size <= num else self.p
        for identities in _distinct_blocks(np.random.default_rng([self.seed, self.epoch]), num, block):
            yield from identities.reshape(-1, self.p)

    def _images(self, identity_positions: np.ndarray, batch_number: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, batch_number])
        out = np.empty(self.p * self.k, dtype=np.int64)
        for slot, c in enumerate(identity_positions):
            n, start = int(self._counts[c]), int(self._starts[c])
            if n >= self.k:
                picks = rng.choice(n, size=self.k, replace=False)
            else:
                picks = np.concatenate([rng.permutation(n) for _ in range(-(-self.k // n))])[: self.k]
            out[slot * self.k : (slot + 1) * self.k] = self._order[start + picks]
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        mine = len(self)
        for step, identity_positions in enumerate(self._identity_batches()):
            if step // self.world_size >= mine:
                return
            if step % self.world_size == self.rank:
                yield self._images(identity_positions, step)


class RandomBatchSampler:
    """Plain shuffled batches of ``batch_size`` indices in ``range(n)``, with :class:`PKSampler`'s interface.

    One permutation per epoch, cut into ``n // batch_size`` global batches (``drop_last=False``: the
    last, shorter batch is kept, and ranks that run out wrap around to the first batches so every
    rank has ``ceil(batches / world_size)``).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"RandomBatchSampler: n must be a positive integer, got {n!r}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"RandomBatchSampler: batch_size must be a positive integer, got {batch_size!r}")
        _check_rank(rank, world_size, "RandomBatchSampler")
        self.n, self.batch_size = int(n), int(batch_size)
        self.seed, self.drop_last = int(seed), bool(drop_last)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        self.global_batches = self.n // self.batch_size if drop_last else math.ceil(self.n / self.batch_size)
        if len(self) == 0:
            raise ValueError(
                f"RandomBatchSampler: n={self.n} with batch_size={self.batch_size} gives no batch for "
                f"each of world_size={self.world_size} ranks (drop_last={self.drop_last})"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return _per_rank(self.global_batches, self.world_size, self.drop_last)

    def __iter__(self) -> Iterator[np.ndarray]:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        for step in range(len(self)):
            b = (step * self.world_size + self.rank) % self.global_batches
            yield perm[b * self.batch_size : (b + 1) * self.batch_size]
