r"""Statistics of deep features per identity: Range Loss §3.3, Eq. 1 and Table 5.

The paper maps 10 identities x 20 test images to 2-D with t-SNE and reports, for "intra-class
and inter-class pairs", a standard deviation (SD), an average Euclidean metric (EM) and the
kurtosis of Eq. 1. It does not say what SD is the deviation of.

What SD, EM and kurtosis are here
---------------------------------
- ``intra_em`` / ``inter_em``: the mean Euclidean distance over all intra-class pairs (two
  different images of one identity) / all inter-class pairs (images of two different identities).
- ``intra_kurtosis`` / ``inter_kurtosis``: Eq. 1 (excess kurtosis with population moments) of those
  same pairwise distances: a heavy tail of unusually distant pairs -- "infrequent extreme samples" --
  raises it.
- ``intra_sd``: the spread of the feature vectors around their own class centre,
  ``sqrt(mean_i ||x_i - mu_(y_i)||^2)`` over the images of every identity with at least two images
  (population, like Eq. 1).
- ``inter_sd``: the spread of all feature vectors around the global centre, ``sqrt(mean_i ||x_i - mu||^2)``.

Why SD of the features rather than the standard deviation of the pair distances: the mean
distance over the pairs of n points is at most ``sqrt(2n / (n - 1))`` times this SD (about
1.25 times for a Gaussian blob), whereas the distances within a compact cluster have EM/std
near 2 (1.91 for a 2-D Gaussian). Table 5's EM/SD ratios run from 0.76 to 1.50 (intra
0.89-1.50, inter 0.76-1.24). t-SNE maps of 10 x 20 simulated identities give EM/SD of about
1.3 (intra) and 1.4 (inter) with the definition above, and about 2.0 and 2.5 with SD = std of
the pair distances, which no row of Table 5 comes near. Two intra rows (1.46, 1.50) slightly
exceed the bound (1.45 for 20 images), and the inter-class kurtosis values near -2 fit neither
reading, so the paper's exact recipe differs somewhere; its numbers are not a target.

Any dimension
-------------
All statistics depend only on distances, so they work in any dimension (2-D t-SNE maps or raw
embeddings) and are invariant to rotations of the map.

The sample
----------
:func:`identity_sample` draws §3.3's sample (n identities, m images each) from any labels array:
from a labelled test set when there is one, else from the identities of a training set that have at
least m images (those are in every Range Loss A split: the head holds 20 images or more).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from dbrepro.eval._checks import ensure_embeddings, ensure_ids

__all__ = ["feature_statistics", "identity_sample", "kurtosis"]


def kurtosis(x: Any) -> float:
    r"""Range Loss Eq. 1: :math:`m_4 / m_2^2 - 3`, central moments with the ``1/n`` normaliser.

    The excess kurtosis (0 for a Gaussian, -2 for two equally likely values); equals
    ``scipy.stats.kurtosis(x, fisher=True, bias=True)``.
    """
    values = np.asarray(x, dtype=np.float64).ravel()
    if len(values) < 2:
        raise ValueError(f"kurtosis needs at least 2 values, got {len(values)}")
    if np.isnan(values).any():
        raise ValueError("kurtosis: the values contain NaN")
    centred = values - values.mean()
    m2 = np.mean(centred**2)
    if m2 == 0:
        raise ValueError("kurtosis is undefined for constant values (zero variance)")
    return float(np.mean(centred**4) / m2**2 - 3.0)


def _pair_blocks(
    x: torch.Tensor, labels: torch.Tensor, chunk: int
) -> Iterator[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]]:
    """Yield (distances, (intra mask, inter mask)) over the pairs i < j, ``chunk`` rows of i at a time."""
    n = len(x)
    cols = torch.arange(n)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        d = torch.cdist(x[start:stop], x)
        upper = cols[None, :] > torch.arange(start, stop)[:, None]
        same = labels[start:stop, None] == labels[None, :]
        yield d, (upper & same, upper & ~same)


def feature_statistics(features: Any, labels: Any, chunk: int = 2048) -> dict[str, float]:
    """Intra/inter-class SD, EM and kurtosis of ``features`` (N, D) with identities ``labels`` (N,).

    See the module docstring for the exact definitions. Distances are computed in float64,
    ``chunk`` rows at a time (two passes: means, then central moments), so 10^4 raw
    embeddings need no N x N matrix. Returns dict ``intra_sd``, ``intra_em``,
    ``intra_kurtosis``, ``inter_sd``, ``inter_em``, ``inter_kurtosis``, ``n_intra_pairs``,
    ``n_inter_pairs``; a kurtosis is NaN when all its distances are equal.
    """
    x = ensure_embeddings(features, "features").detach().to("cpu", torch.float64)
    y = ensure_ids(labels, len(x), "labels")
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"labels: inter-class statistics need at least 2 identities, got {len(classes)}")
    if not (counts >= 2).any():
        raise ValueError("labels: intra-class statistics need an identity with at least 2 images")
    lab = torch.from_numpy(inverse)

    centres = torch.zeros(len(classes), x.shape[1], dtype=torch.float64).index_add_(0, lab, x)
    centres /= torch.from_numpy(counts).double()[:, None]
    in_pairs = torch.from_numpy(counts >= 2)[lab]
    intra_sd = float(((x - centres[lab])[in_pairs] ** 2).sum(dim=1).mean().sqrt())
    inter_sd = float(((x - x.mean(dim=0)) ** 2).sum(dim=1).mean().sqrt())

    # index 0: intra-class pairs, 1: inter-class pairs; pass 1 sums distances, pass 2 central powers
    count, total = np.zeros(2, dtype=np.int64), np.zeros(2)
    for d, masks in _pair_blocks(x, lab, chunk):
        for k, mask in enumerate(masks):
            count[k] += int(mask.sum())
            total[k] += float(d[mask].sum())
    mean = total / count
    m2, m4 = np.zeros(2), np.zeros(2)
    for d, masks in _pair_blocks(x, lab, chunk):
        for k, mask in enumerate(masks):
            c = d[mask] - mean[k]
            m2[k] += float((c**2).sum())
            m4[k] += float((c**4).sum())
    m2, m4 = m2 / count, m4 / count
    with np.errstate(divide="ignore", invalid="ignore"):
        kurt = np.where(m2 > 0, m4 / m2**2 - 3.0, np.nan)

    return {
        "intra_sd": intra_sd,
        "intra_em": float(mean[0]),
        "intra_kurtosis": float(kurt[0]),
        "inter_sd": inter_sd,
        "inter_em": float(mean[1]),
        "inter_kurtosis": float(kurt[1]),
        "n_intra_pairs": int(count[0]),
        "n_inter_pairs": int(count[1]),
    }


def identity_sample(labels: Any, identities: int = 10, images: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """§3.3's sample: ``identities`` identities drawn at random among those with at least ``images`` images,
    and ``images`` of each drawn at random (the paper: "10 identities and 20 face images for each identity").

    Returns ``(indices, sample_labels)``: positions in ``labels`` (identity by identity, in the order drawn)
    and the identities renumbered ``0 .. n-1`` in that order. When fewer identities have ``images`` images,
    all of them are taken (at least two are needed for inter-class statistics); the caller reports ``n``.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"identity_sample: labels must be a 1-D integer array, got shape {arr.shape} of {arr.dtype}")
    for name, value in (("identities", identities), ("images", images)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 2:
            raise ValueError(f"identity_sample: {name} must be an integer >= 2, got {value!r}")
    ids, counts = np.unique(arr, return_counts=True)
    eligible = ids[counts >= images]
    if len(eligible) < 2:
        raise ValueError(f"identity_sample: only {len(eligible)} identities have {images} images or more; "
                         "inter-class statistics need two")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(eligible, size=min(int(identities), len(eligible)), replace=False)
    indices = np.concatenate([rng.choice(np.flatnonzero(arr == c), size=int(images), replace=False) for c in chosen])
    return indices, np.repeat(np.arange(len(chosen)), int(images))
