"""Long-tail statistics and the Range Loss paper's training splits (Zhang et al., ICCV 2017, §3.1, Table 1).

Everything here needs only a labels array (one non-negative integer identity per image); splits are
returned as sorted index arrays into that array, so they apply to any dataset with ``labels``.

Tail: an identity with fewer than ``tail_below`` images (20 in the paper: "identities that contain
less than 20 face images are regarded as poor classes (tailed data)"); the others are the head.

What Table 1's "Tail Ratio" counts
----------------------------------
It is the fraction of the tail *identities* kept. With A-0 = 99,891 identities and A-4 (no tail) =
10,000, the tail has 89,891 identities, and

| group | identities | tail kept | kept / 89,891          | tail images kept   |
|-------|-----------:|----------:|------------------------|--------------------|
| A-0   | 99,891     | 89,891    | 100.00 %               | 987,859 (100.0 %)  |
| A-1   | 81,913     | 71,913    | 80.000 % (of 71,912.8) | 920,694 (93.2 %)   |
| A-2   | 54,946     | 44,946    | 50.001 % (of 44,945.5) | 696,582 (70.5 %)   |
| A-3   | 26,967     | 16,967    | 18.88 %                | 310,903 (31.5 %)   |
| A-4   | 10,000     | 0         | 0 %                    | 0                  |

A-1 and A-2 match 80 % and 50 % of the tail identities to the identity (rounding half up). A-3 does
not: 26,967 is 30 % of the *tail* identities (0.3 x 89,891 = 26,967.3), so its row reads as if the
10,000 head identities had been left out of the count; taken literally it keeps 18.9 % of the tail.
The image counts (A-2 has "291,277 more tailed images" removed, as the text says) show the removal was
*not* random: cutting 20 % of the tail identities removed only 6.8 % of the tail images (3.7 images per
removed identity against 11.0 on average), so the smallest identities went first — the "cutting lines"
of the paper's Figure 2 on the sorted distribution. The images per kept tail identity rise
monotonically (11.0, 12.8, 15.5, 18.3 for A-0..A-3), which holds under smallest-first cutting only if
A-3 keeps 16,967 tail identities; with 26,967 it would be 11.5, below A-2's 15.5 — impossible for nested
smallest-first cuts. So: the ratio is of identities, the paper cut the smallest identities first, and
the A-3 identity count is inconsistent with its own image count unless A-3 kept 18.9 % of the tail.

How the splits are cut
----------------------
Therefore :func:`range_loss_a_splits` cuts the smallest tail identities first by default
(``cut="smallest"``, ties broken at random by ``seed``); ``cut="random"`` keeps a uniformly random
subset instead. Either way the kept tails are nested (one ordering, kept prefixes).
:func:`range_loss_b_splits` removes identities from the tail of a random subset in the same order.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import papers

#: RL §3.1's tail: an identity with fewer images is a "poor class" (:data:`dbrepro.papers.TAIL_BELOW`)
PAPER_TAIL_BELOW = papers.TAIL_BELOW
A_KEEP = (1.0, 0.8, 0.5, 0.3, 0.0)
B_REMOVE = (0.0, 1 / 4, 2 / 4, 3 / 4)
CUTS = ("smallest", "random")


def _labels_array(labels: Iterable[int] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{what}: labels must be a 1-D array (one identity per image), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what}: labels are empty")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{what}: labels must be integers (identity ids), got dtype {arr.dtype}; "
            "map names to ids first, e.g. pandas.factorize(meta['identity'])[0]"
        )
    if arr.min() < 0:
        raise ValueError(f"{what}: labels must be >= 0, got a minimum of {arr.min()}")
    return arr.astype(np.int64, copy=False)


def _check_tail_below(tail_below: int, what: str) -> None:
    if not isinstance(tail_below, (int, np.integer)) or tail_below < 1:
        raise ValueError(f"{what}: tail_below must be a positive integer, got {tail_below!r}")


def class_sizes(labels: Iterable[int] | np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Images per identity: ``sizes[c]`` = number of images labelled ``c``, for ``c`` in ``[0, C)``.

    ``C`` is ``num_classes`` when given (absent identities count 0), else ``max(labels) + 1``.
    """
    arr = _labels_array(labels, "class_sizes")
    if num_classes is not None and arr.max() >= num_classes:
        raise ValueError(f"class_sizes: label {arr.max()} does not fit num_classes={num_classes}")
    return np.bincount(arr, minlength=num_classes or 0)


def size_histogram(labels: Iterable[int] | np.ndarray, bins: Sequence[float] | int = 10) -> pd.DataFrame:
    """Identities and images per range of identity size (the paper's Figure 2, as a table).

    ``bins`` are edges on the images-per-identity axis (a bin is ``[lo, hi)``, the last one ``[lo, hi]``),
    or a number of log-spaced bins from 1 to the largest identity. Returns columns ``min_images``,
    ``max_images`` (the edges), ``identities`` and ``images``.
    """
    sizes = class_sizes(labels)
    sizes = sizes[sizes > 0]
    if isinstance(bins, (int, np.integer)):
        if bins < 1:
            raise ValueError(f"size_histogram: bins must be >= 1, got {bins}")
        edges = np.unique(np.round(np.geomspace(1, max(sizes.max(), 2), int(bins) + 1)))
    else:
        edges = np.asarray(bins, dtype=float)
        if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError(f"size_histogram: bins must be at least two increasing edges, got {list(bins)}")
    which = np.digitize(sizes, edges[1:-1], right=False)  # bin index 0..len(edges)-2
    inside = (sizes >= edges[0]) & (sizes <= edges[-1])
    identities = np.bincount(which[inside], minlength=len(edges) - 1)
    images = np.bincount(which[inside], weights=sizes[inside], minlength=len(edges) - 1).astype(np.int64)
    return pd.DataFrame(
        {"min_images": edges[:-1], "max_images": edges[1:], "identities": identities, "images": images}
    )


def long_tail_summary(labels: Iterable[int] | np.ndarray, tail_below: int = PAPER_TAIL_BELOW) -> dict[str, float]:
    """Identities, images, head and tail counts (identities and images) and mean images per identity."""
    _check_tail_below(tail_below, "long_tail_summary")
    sizes = class_sizes(labels)
    sizes = sizes[sizes > 0]
    tail = sizes < tail_below
    return {
        "identities": int(len(sizes)),
        "images": int(sizes.sum()),
        "head_identities": int((~tail).sum()),
        "head_images": int(sizes[~tail].sum()),
        "tail_identities": int(tail.sum()),
        "tail_images": int(sizes[tail].sum()),
        "mean_images_per_identity": float(sizes.mean()),
        "tail_below": int(tail_below),
    }


def _check_fractions(values: Sequence[float], name: str, what: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError(f"{what}: {name} is empty")
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"{what}: every {name} fraction must lie in [0, 1], got {bad}")
    return values


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5 + 1e-9))


def _ordered_identities(ids: np.ndarray, sizes: np.ndarray, cut: str, rng: np.random.Generator, what: str) -> np.ndarray:
    """``ids`` in removal order: smallest first (random among equal sizes) or uniformly random."""
    if cut not in CUTS:
        raise ValueError(f"{what}: cut must be one of {CUTS}, got {cut!r}")
    shuffled = ids[rng.permutation(len(ids))]
    if cut == "random":
        return shuffled
    return shuffled[np.argsort(sizes[shuffled], kind="stable")]


def _indices_of(labels: np.ndarray, identities: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isin(labels, identities))


def range_loss_a_splits(
    labels: Iterable[int] | np.ndarray,
    tail_below: int = PAPER_TAIL_BELOW,
    keep: Sequence[float] = A_KEEP,
    seed: int = 0,
    cut: str = "smallest",
) -> dict[str, np.ndarray]:
    """Table 1's groups ``"A-0"``, ``"A-1"``, ...: all head identities plus a fraction of the tail identities.

    ``keep[i]`` is the fraction of tail identities in ``"A-i"`` (``round_half_up(keep * T)`` of the
    ``T`` tail identities). The tail identities are put in one order — smallest first by default, see
    the module docstring, or random with ``cut="random"`` — and each group keeps a prefix of the
    *reversed* order (the largest ones for ``"smallest"``), so a group with a smaller fraction keeps a
    subset of the tail of any group with a larger one. Returns sorted image indices per group.
    """
    arr = _labels_array(labels, "range_loss_a_splits")
    _check_tail_below(tail_below, "range_loss_a_splits")
    keep = _check_fractions(keep, "keep", "range_loss_a_splits")
    sizes = np.bincount(arr)
    present = np.flatnonzero(sizes)
    head = present[sizes[present] >= tail_below]
    tail = present[sizes[present] < tail_below]
    removal_order = _ordered_identities(tail, sizes, cut, np.random.default_rng(seed), "range_loss_a_splits")
    kept_first = removal_order[::-1]
    splits = {}
    for i, fraction in enumerate(keep):
        kept_tail = kept_first[: _round_half_up(fraction * len(tail))]
        splits[f"A-{i}"] = _indices_of(arr, np.concatenate([head, kept_tail]))
    return splits


def range_loss_b_splits(
    labels: Iterable[int] | np.ndarray,
    subset_identities: int | float = 0.04,
    remove: Sequence[float] = B_REMOVE,
    tail_below: int = PAPER_TAIL_BELOW,
    seed: int = 0,
    cut: str = "smallest",
    allow_head: bool = False,
) -> dict[str, np.ndarray]:
    """§3.1's groups ``"B-0"``, ``"B-1"``, ...: a random subset of identities, then identities removed from its tail.

    ``subset_identities`` is a count (int) or a fraction of all identities (float in ``(0, 1]``; the
    default 0.04 is the paper's 4,000 of 99,891). ``"B-0"`` is the uniformly random subset (seeded).
    ``"B-i"`` removes ``round_half_up(remove[i] * S)`` of its ``S`` identities "from the tailed part"
    (paper: 1,000, 2,000 and 3,000 of 4,000), in the order of ``cut`` (smallest tail identities first
    by default, as for the A groups); removals are nested.

    When the subset's tail has fewer identities than a group asks to remove: with ``allow_head=False``
    (default) a ``ValueError`` says so; with ``allow_head=True`` the smallest head identities are
    removed next.
    """
    arr = _labels_array(labels, "range_loss_b_splits")
    _check_tail_below(tail_below, "range_loss_b_splits")
    remove = _check_fractions(remove, "remove", "range_loss_b_splits")
    sizes = np.bincount(arr)
    present = np.flatnonzero(sizes)
    if isinstance(subset_identities, (bool, np.bool_)):
        raise ValueError("range_loss_b_splits: subset_identities must be an int or a float, got a bool")
    if isinstance(subset_identities, (int, np.integer)):
        count = int(subset_identities)
    elif isinstance(subset_identities, (float, np.floating)) and 0.0 < subset_identities <= 1.0:
        count = _round_half_up(subset_identities * len(present))
    else:
        raise ValueError(
            f"range_loss_b_splits: subset_identities must be a count or a fraction in (0, 1], got {subset_identities!r}"
        )
    if not 1 <= count <= len(present):
        raise ValueError(
            f"range_loss_b_splits: subset_identities asks for {count} identities; the labels have {len(present)}"
        )
    rng = np.random.default_rng(seed)
    subset = np.sort(rng.choice(present, size=count, replace=False))
    tail = subset[sizes[subset] < tail_below]
    head = subset[sizes[subset] >= tail_below]
    tail_order = _ordered_identities(tail, sizes, cut, rng, "range_loss_b_splits")
    head_order = head[np.argsort(sizes[head], kind="stable")]
    removal_order = np.concatenate([tail_order, head_order])
    splits = {}
    for i, fraction in enumerate(remove):
        n_remove = _round_half_up(fraction * count)
        if n_remove > len(tail) and not allow_head:
            raise ValueError(
                f"range_loss_b_splits: B-{i} removes {n_remove} of {count} identities but the subset's tail "
                f"(< {tail_below} images) has only {len(tail)}; pass allow_head=True to remove the smallest "
                "head identities next, or a larger tail_below"
            )
        splits[f"B-{i}"] = _indices_of(arr, removal_order[n_remove:])
    return splits


def split_table(
    labels: Iterable[int] | np.ndarray,
    splits: Mapping[str, np.ndarray],
    tail_below: int = PAPER_TAIL_BELOW,
    reference: str | None = None,
) -> pd.DataFrame:
    """Table 1 for any splits: identities, images, tail identities and images, and the tail ratios.

    ``tail_ratio`` is the split's tail identities over the ``reference`` split's (default: the first
    split, e.g. A-0 or B-0); ``tail_image_ratio`` the same for tail images. Identity sizes are counted
    inside each split (the splits keep whole identities, so this equals the full-data size).
    """
    arr = _labels_array(labels, "split_table")
    _check_tail_below(tail_below, "split_table")
    if not splits:
        raise ValueError("split_table: no splits given")
    reference = next(iter(splits)) if reference is None else reference
    if reference not in splits:
        raise ValueError(f"split_table: reference {reference!r} is not one of the splits {list(splits)}")
    rows = {}
    for name, indices in splits.items():
        indices = np.asarray(indices)
        if indices.size and (indices.min() < 0 or indices.max() >= len(arr)):
            raise ValueError(f"split_table: split {name!r} has indices outside [0, {len(arr)})")
        summary = long_tail_summary(arr[indices], tail_below) if indices.size else None
        rows[name] = {
            "identities": summary["identities"] if summary else 0,
            "images": summary["images"] if summary else 0,
            "tail_identities": summary["tail_identities"] if summary else 0,
            "tail_images": summary["tail_images"] if summary else 0,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    ref = table.loc[reference]
    table["tail_ratio"] = table["tail_identities"] / ref["tail_identities"] if ref["tail_identities"] else np.nan
    table["tail_image_ratio"] = table["tail_images"] / ref["tail_images"] if ref["tail_images"] else np.nan
    table.index.name = "group"
    return table


def half_split_identities(num_classes: int, seed: int = 0) -> np.ndarray:
    """Range Loss §3.2: "divide the dataset into two parts with the same number of identities".

    Returns a boolean mask over class ids ``(num_classes,)``, True for a uniformly random half
    (``num_classes // 2`` identities; the odd one out goes to the other part). The contrastive and
    triplet losses take it as ``positive_classes``: positives from the True part, negatives from the rest.
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"half_split_identities: num_classes must be an integer >= 2, got {num_classes!r}")
    mask = np.zeros(int(num_classes), dtype=bool)
    mask[np.random.default_rng(seed).permutation(int(num_classes))[: int(num_classes) // 2]] = True
    return mask
