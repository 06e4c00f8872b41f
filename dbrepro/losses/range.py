"""Range loss: Zhang et al., *Range Loss for Deep Face Recognition with Long-Tailed Training Data*, ICCV 2017, §3.4.

.. math::

    L_R = \\alpha L_{intra} + \\beta L_{inter}                                   (Eq. 2)

    L_{intra} = \\sum_{i \\in I} \\frac{k}{\\sum_{j=1}^{k} 1 / D_j}                 (Eq. 3)

    L_{inter} = \\max(M - \\lVert \\bar x_Q - \\bar x_R \\rVert_2^2, 0)                 (Eq. 4)

``I`` is the set of identities present in the mini-batch, ``D_j`` the ``j``-th largest *squared*
Euclidean distance between two samples of one identity, ``\\bar x_Q, \\bar x_R`` the means (centres)
of the two identities of the batch whose centres are closest, and ``M`` the margin.

Rules where the paper is silent
-------------------------------
This module implements exactly these rules:

- an identity with ``n`` samples uses its ``m = min(k, n(n-1)/2)`` largest distances, and the harmonic
  mean is taken over those ``m`` (``m / sum(1/D_j)``); an identity with one sample adds nothing;
- with fewer than two identities in the batch, ``L_inter = 0``;
- when one of an identity's selected distances is 0 (samples coincide), its harmonic mean is 0, the
  limit of ``m / sum(1/D_j)`` as that distance goes to 0. The gradient there is 0, which is the true
  gradient: near coincidence the term behaves like ``m * ||x_a - x_b||^2``. Distances at or below
  ``sqrt(finfo.tiny)`` count as 0, which keeps every intermediate value and gradient finite;
- ties between equal distances (or equal centre distances) are broken by position in the batch.

Vectorised
----------
Algorithm 1 of the paper loops over the identities of the batch. Here one ``B x B`` distance matrix
(no gradient) picks the pairs, a sort groups them by identity (region ``pair selection`` of this
module's source), and only the selected ``m`` pairs per identity and the one closest centre pair are
recomputed exactly, with gradients, from the embeddings (regions ``Eq. 3`` and ``Eq. 4``).
:meth:`RangeLoss.selection` returns what was selected, for inspection.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from dbrepro import papers
from dbrepro.losses.contrastive import check_batch


class RangeParts(NamedTuple):
    """The two unweighted parts of the range loss (or of its gradient): Eq. 3 and Eq. 4."""

    intra: Tensor
    inter: Tensor


class RangeSelection(NamedTuple):
    """The samples the range loss looks at in one batch (:meth:`RangeLoss.selection`).

    ``first[i], second[i]`` (``first < second``, positions in the batch) is the ``i``-th selected pair of
    Eq. 3, of identity ``label[i]``; an identity's pairs are consecutive, the most distant first.
    ``closest`` is the labels ``(Q, R)`` of the two identities whose centres are closest (Eq. 4), or None
    with fewer than two identities in the batch.
    """

    first: Tensor
    second: Tensor
    label: Tensor
    closest: tuple[int, int] | None


def _as_compute_dtype(embeddings: Tensor) -> Tensor:
    """Half-precision embeddings (autocast) are promoted to float32: distances overflow float16."""
    if embeddings.dtype in (torch.float16, torch.bfloat16):
        return embeddings.float()
    return embeddings


def _squared_distances_no_grad(x: Tensor) -> Tensor:
    """All pairwise squared distances of the rows of ``x`` (no gradient; used only to *select* pairs).

    Rows are centred first: distances do not change and the Gram-matrix formula loses less precision.
    """
    with torch.no_grad():
        x = x.detach()
        x = x - x.mean(dim=0, keepdim=True)
        sq = (x * x).sum(dim=1)
        return (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min_(0.0)


class _Classes(NamedTuple):
    index: Tensor  # (B,) position of each sample's label among the distinct labels of the batch
    counts: Tensor  # (C,) samples per distinct label


def _batch_classes(labels: Tensor) -> _Classes:
    _, index, counts = torch.unique(labels, sorted=True, return_inverse=True, return_counts=True)
    return _Classes(index, counts)


# region: pair selection
class _IntraPairs(NamedTuple):
    first: Tensor  # (P,) sample index of the pair's first member
    second: Tensor  # (P,) sample index of the pair's second member (first < second)
    cls: Tensor  # (P,) class position of the pair


def _largest_intra_pairs(x: Tensor, classes: _Classes, k: int) -> _IntraPairs:
    """The ``min(k, n(n-1)/2)`` most distant same-class pairs of every class, grouped by class.

    Within a class the pairs come in decreasing distance order. No Python loop: the same-class upper
    triangle of the distance matrix is flattened, sorted by distance and then (stably) by class, and
    each pair's rank inside its class is its position minus the class's first position.
    """
    with torch.no_grad():
        b = x.shape[0]
        dist = _squared_distances_no_grad(x)
        same = classes.index[:, None] == classes.index[None, :]
        upper = torch.ones(b, b, dtype=torch.bool, device=x.device).triu_(diagonal=1)
        first, second = torch.nonzero(same & upper, as_tuple=True)
        cls = classes.index[first]
        order = torch.argsort(dist[first, second], descending=True, stable=True)
        order = order[torch.argsort(cls[order], stable=True)]
        first, second, cls = first[order], second[order], cls[order]
        pairs_per_class = torch.bincount(cls, minlength=len(classes.counts))
        class_start = torch.cumsum(pairs_per_class, dim=0) - pairs_per_class
        rank = torch.arange(len(cls), device=x.device) - class_start[cls]
        keep = rank < k
    return _IntraPairs(first[keep], second[keep], cls[keep])
# endregion


def _zero_in_graph(x: Tensor) -> Tensor:
    """An exact 0 that is part of the autograd graph of ``x`` (so ``backward()`` always works)."""
    return x[:0].sum()


def _tiny_distance(dtype: torch.dtype) -> float:
    """Squared distances at or below this count as 0 (``sqrt`` of the smallest normal number)."""
    return float(torch.finfo(dtype).tiny) ** 0.5


# region: Eq. 3
def _intra_class_range(x: Tensor, classes: _Classes, k: int) -> Tensor:
    """Eq. 3: the sum over classes of the harmonic mean of their ``min(k, n(n-1)/2)`` largest squared distances."""
    pairs = _largest_intra_pairs(x, classes, k)
    num_classes = len(classes.counts)
    diff = x[pairs.first] - x[pairs.second]
    dist = (diff * diff).sum(dim=1)  # exact D_j with gradients, only for the selected pairs
    is_zero = dist <= _tiny_distance(x.dtype)
    inv = torch.where(is_zero, torch.zeros_like(dist), 1.0 / torch.where(is_zero, torch.ones_like(dist), dist))
    inv_sum = torch.zeros(num_classes, dtype=x.dtype, device=x.device).index_add(0, pairs.cls, inv)
    used = torch.bincount(pairs.cls, minlength=num_classes).to(x.dtype)  # m per class
    has_zero = torch.bincount(pairs.cls[is_zero], minlength=num_classes) > 0
    valid = (used > 0) & ~has_zero
    harmonic = torch.where(valid, used / torch.where(valid, inv_sum, torch.ones_like(inv_sum)), torch.zeros_like(inv_sum))
    return harmonic.sum()
# endregion


# region: Eq. 4
def _class_centres(x: Tensor, classes: _Classes) -> Tensor:
    centres = torch.zeros(len(classes.counts), x.shape[1], dtype=x.dtype, device=x.device)
    centres = centres.index_add(0, classes.index, x)
    return centres / classes.counts.to(x.dtype)[:, None]


def _closest_centre_pair(centres: Tensor) -> tuple[int, int]:
    """Positions ``(q, r)``, ``q < r``, of the two centres with the smallest squared distance."""
    with torch.no_grad():
        dist = _squared_distances_no_grad(centres)
        dist.fill_diagonal_(float("inf"))
        flat = int(torch.argmin(dist))
    q, r = divmod(flat, centres.shape[0])
    return min(q, r), max(q, r)


def _closest_centre_distance(x: Tensor, classes: _Classes) -> Tensor | None:
    """``D_Center`` of Eq. 4: the smallest squared distance between two class centres (None for < 2 classes)."""
    if len(classes.counts) < 2:
        return None
    centres = _class_centres(x, classes)
    q, r = _closest_centre_pair(centres)
    diff = centres[q] - centres[r]
    return (diff * diff).sum()
# endregion


class RangeLoss(nn.Module):
    """Range loss, Eq. 2-4 of Zhang et al. (ICCV 2017); ``forward`` returns ``alpha * L_intra + beta * L_inter``.

    Parameters
    ----------
    k
        Number of largest intra-class distances in the harmonic mean (Eq. 3). The paper uses 2.
    margin
        ``M`` of Eq. 4, in *squared* embedding units. The paper gives no value; a Caffe port uses
        2e4 on unnormalised VGG-style features. ``None`` (the default) means ``M = 2D`` for embeddings
        of width ``D``, resolved at each call; :meth:`resolved_margin` gives the reason. For features
        of another scale, pick ``M`` relative to the smallest squared centre distance of a batch, which
        ``last_parts["center_distance"]`` reports after every call.
    intra_weight, inter_weight
        ``alpha`` and ``beta`` of Eq. 2. Defaults are the paper's (5e-5 and 1e-4 with softmax weight 1,
        §3.4 after Eq. 5).

    After each call ``last_parts`` holds detached tensors ``intra`` and ``inter`` (unweighted, Eq. 3
    and 4), ``center_distance`` (``D_Center``, NaN with fewer than two identities) and ``margin``, for
    logging without an extra forward pass (reading them as floats synchronises a GPU; do it sparingly).
    """

    def __init__(
        self,
        k: int = papers.RANGE_K,
        margin: float | None = None,
        intra_weight: float = papers.RANGE_INTRA_WEIGHT,
        inter_weight: float = papers.RANGE_INTER_WEIGHT,
    ) -> None:
        super().__init__()
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"RangeLoss: k must be a positive integer, got {k!r}")
        if margin is not None and not margin >= 0:
            raise ValueError(f"RangeLoss: margin must be >= 0 (or None for twice the embedding width), got {margin!r}")
        for name, value in (("intra_weight", intra_weight), ("inter_weight", inter_weight)):
            if not value >= 0:
                raise ValueError(f"RangeLoss: {name} must be >= 0, got {value!r}")
        self.k = k
        self.margin = None if margin is None else float(margin)
        self.intra_weight = float(intra_weight)
        self.inter_weight = float(inter_weight)
        self.last_parts: dict[str, Tensor] = {}

    def resolved_margin(self, embedding_size: int) -> float:
        """``M`` for embeddings of width ``D = embedding_size``: ``margin``, or ``2 D`` when it is None.

        The paper gives no value (M is a squared distance in the units of the features). Our embeddings end
        in a ``BatchNorm1d``, so each of their D coordinates has roughly unit variance, and two unrelated
        embeddings lie about ``2 D`` apart (squared): with ``M = 2 D`` the hinge of Eq. 4 asks the two closest
        centres of a batch to be as far apart as two unrelated embeddings. rl-05 measures where that puts M
        among the centre distances of a trained model.
        """
        return 2.0 * float(embedding_size) if self.margin is None else self.margin

    def components(self, embeddings: Tensor, labels: Tensor) -> RangeParts:
        """``(L_intra, L_inter)`` unweighted (Eq. 3 and Eq. 4), both scalars with gradients."""
        check_batch(embeddings, labels, "RangeLoss")
        x = _as_compute_dtype(embeddings)
        classes = _batch_classes(labels)
        margin = self.resolved_margin(x.shape[1])
        intra = _intra_class_range(x, classes, self.k)
        centre_distance = _closest_centre_distance(x, classes)
        if centre_distance is None:
            inter = _zero_in_graph(x)
            logged_distance = torch.full((), float("nan"), dtype=x.dtype, device=x.device)
        else:
            inter = torch.relu(margin - centre_distance)
            logged_distance = centre_distance.detach()
        self.last_parts = {
            "intra": intra.detach(),
            "inter": inter.detach(),
            "center_distance": logged_distance,
            "margin": torch.tensor(margin),
        }
        return RangeParts(intra, inter)

    def selection(self, embeddings: Tensor, labels: Tensor) -> RangeSelection:
        """What Eq. 3 and Eq. 4 select in a batch (see :class:`RangeSelection`); nothing is differentiated."""
        check_batch(embeddings, labels, "RangeLoss.selection")
        x = _as_compute_dtype(embeddings).detach()
        classes = _batch_classes(labels)
        pairs = _largest_intra_pairs(x, classes, self.k)
        names = torch.unique(labels, sorted=True)
        closest = None
        if len(classes.counts) >= 2:
            q, r = _closest_centre_pair(_class_centres(x, classes))
            closest = (int(names[q]), int(names[r]))
        return RangeSelection(pairs.first, pairs.second, names[pairs.cls], closest)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Eq. 2: ``intra_weight * L_intra + inter_weight * L_inter`` for one mini-batch."""
        intra, inter = self.components(embeddings, labels)
        return self.intra_weight * intra + self.inter_weight * inter

    def extra_repr(self) -> str:
        margin = "2 x embedding width" if self.margin is None else f"{self.margin:g}"
        return f"k={self.k}, margin={margin}, intra_weight={self.intra_weight:g}, inter_weight={self.inter_weight:g}"


def paper_gradients(embeddings: Tensor, labels: Tensor, k: int = 2, margin: float | None = None) -> RangeParts:
    """The gradients of ``L_intra`` and ``L_inter`` exactly as the paper prints them (Eq. 7 and Eq. 8).

    Returns ``RangeParts(intra, inter)``, two ``(B, D)`` tensors, for comparison with autograd of
    :meth:`RangeLoss.components` (which differentiates Eq. 3-4 as written). The pairs, the classes
    ``Q, R`` and the margin (``None`` means twice the embedding width, as in :meth:`RangeLoss.resolved_margin`) are chosen exactly as by
    :class:`RangeLoss`. Reading of the printed formulas:

    Eq. 7, for a class with ``S = sum_j 1/D_j`` over its ``m = min(k, n(n-1)/2)`` selected distances
    (``k`` in the paper is the number of distances in the harmonic mean, hence ``m`` here):
    ``dL_intra/dx_i = 2m / (D_j S)^2 * |x_j1 - x_j2|`` for ``x_i = x_j1`` and ``|x_j2 - x_j1|`` for
    ``x_i = x_j2``, where ``|.|`` is the element-wise absolute value. A sample in several selected
    pairs gets the sum of its pairs' terms (the chain rule; the paper lists one pair at a time).
    Pairs whose distance is 0 contribute 0 (the printed factor is undefined there).

    Eq. 8, when ``M - D_Center > 0`` (else 0): every sample of class ``Q`` gets
    ``1 / (2 n_R) * |c_R - c_Q|`` and every sample of ``R`` gets ``1 / (2 n_Q) * |c_Q - c_R|``, with
    ``c`` the class means; all other samples get 0.

    Where they disagree with the derivative of Eq. 3-4
    --------------------------------------------------
    ``tests/test_range_loss.py`` shows each:

    1. Eq. 7's factor ``2k / (D_j S)^2`` is right (``dH/dD_j = k / (D_j S)^2`` and
       ``dD_j/dx_j1 = 2 (x_j1 - x_j2)``), but the direction is not: the true gradients are
       ``+c (x_j1 - x_j2)`` at ``x_j1`` and ``-c (x_j1 - x_j2)`` at ``x_j2`` (opposite vectors), while
       the printed ones are the same non-negative vector ``c |x_j1 - x_j2|`` at both ends. A descent step
       along the printed gradient translates the pair and leaves ``D_j`` unchanged; element-wise
       magnitudes agree (for a sample in a single selected pair).
    2. Eq. 8's factor is ``1 / (2 n_R)`` where the derivative of ``-||c_Q - c_R||^2`` with respect to a
       sample of ``Q`` gives ``2 / n_Q``: the printed magnitude is ``n_Q / (4 n_R)`` times the true one
       (1/4 for equal class sizes; it uses the *other* class's count).
    3. Eq. 8 also loses the sign: the true gradient at a sample of ``Q`` is ``2 (c_R - c_Q) / n_Q``
       (descent moves ``Q`` away from ``R``) and at ``R`` the opposite direction; the element-wise
       ``|.|`` agrees with it only in coordinates where ``c_R > c_Q`` (for ``Q``), and the printed
       gradients of ``Q`` and ``R`` are equal instead of opposite.
    4. Eq. 6 drops ``beta`` in front of the inter-class gradient (``alpha dL_intra + dL_inter``),
       although Eq. 2 weights ``L_inter`` by ``beta``. Algorithm 1 writes ``L_intra = sum_i k / sum_j D_j``
       (the reciprocal is missing, compare Eq. 3) and cites Eq. 8 for the intra-class gradient (it is Eq. 7).
    """
    check_batch(embeddings, labels, "paper_gradients")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"paper_gradients: k must be a positive integer, got {k!r}")
    with torch.no_grad():
        x = _as_compute_dtype(embeddings).detach()
        classes = _batch_classes(labels)
        num_classes = len(classes.counts)
        m_value = RangeLoss(margin=margin).resolved_margin(x.shape[1])

        pairs = _largest_intra_pairs(x, classes, k)
        diff = x[pairs.first] - x[pairs.second]
        dist = (diff * diff).sum(dim=1)
        nonzero = dist > _tiny_distance(x.dtype)
        inv = torch.where(nonzero, 1.0 / torch.where(nonzero, dist, torch.ones_like(dist)), torch.zeros_like(dist))
        inv_sum = torch.zeros(num_classes, dtype=x.dtype, device=x.device).index_add(0, pairs.cls, inv)
        used = torch.bincount(pairs.cls, minlength=num_classes).to(x.dtype)
        s = inv_sum[pairs.cls]
        factor = torch.where(nonzero, 2.0 * used[pairs.cls] / (dist * s) ** 2, torch.zeros_like(dist))
        term = factor[:, None] * diff.abs()
        intra = torch.zeros_like(x).index_add_(0, pairs.first, term).index_add_(0, pairs.second, term)

        inter = torch.zeros_like(x)
        if num_classes >= 2:
            centres = _class_centres(x, classes)
            q, r = _closest_centre_pair(centres)
            gap = centres[q] - centres[r]
            if m_value - float((gap * gap).sum()) > 0:
                n_q, n_r = classes.counts[q].to(x.dtype), classes.counts[r].to(x.dtype)
                in_q, in_r = classes.index == q, classes.index == r
                inter[in_q] = (gap.abs() / (2.0 * n_r)).to(x.dtype)
                inter[in_r] = (gap.abs() / (2.0 * n_q)).to(x.dtype)
    return RangeParts(intra, inter)
