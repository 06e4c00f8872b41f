"""Contrastive (verification) loss as DeepID2 uses it: Sun et al., NIPS 2014, Eq. 2 (Range Loss ref. [27]).

.. math::

    \\mathrm{Verif}(f_i, f_j) =
    \\begin{cases}
      \\tfrac12 \\lVert f_i - f_j \\rVert_2^2 & \\text{same identity} \\\\
      \\tfrac12 \\max(0, m - \\lVert f_i - f_j \\rVert_2)^2 & \\text{different identities}
    \\end{cases}

averaged over the pairs built inside the mini-batch, then multiplied by ``weight``.

Pairs
-----
Range Loss §3.2 describes its own construction; both are here:

- default: every positive pair ``i < j`` of the batch, and as many negative pairs drawn uniformly at
  random (without replacement, from the loss's own seeded generator) from all ``i < j`` pairs of
  different identities; no hard mining, matching "we compared the performance of these loss without
  hard mining" (§4.1). Fewer negatives exist than positives: all negatives are used.
- ``positive_classes`` given (a boolean mask over class ids, e.g. from
  :func:`dbrepro.data.splits.half_split_identities`): "we divide the dataset into two parts with the
  same number of identities firstly. Positive pairs are randomly selected from the former part and
  negative pairs are generated in the latter part." Positive pairs are then all ``i < j`` pairs whose
  (shared) class is in the mask, and negative pairs are drawn, as many as there are positives, only
  among samples whose class is *not* in the mask.

A batch without a positive pair gives a loss of 0 (use an identity-balanced sampler,
:class:`dbrepro.data.samplers.PKSampler`, as the paper's training does).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F


def check_batch(embeddings: Tensor, labels: Tensor, what: str) -> None:
    """Embeddings ``(B, D)`` floating point, labels ``(B,)`` integer, ``B > 0``; a ``ValueError`` naming ``what`` otherwise.

    Shared by the metric losses (range, contrastive, triplet, center).
    """
    if not isinstance(embeddings, Tensor) or embeddings.ndim != 2 or not embeddings.is_floating_point():
        desc = f"{tuple(embeddings.shape)} {embeddings.dtype}" if isinstance(embeddings, Tensor) else type(embeddings).__name__
        raise ValueError(f"{what}: embeddings must be a floating-point tensor (B, D), got {desc}")
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        desc = f"{tuple(labels.shape)} {labels.dtype}" if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"{what}: labels must be an integer tensor (B,), got {desc}")
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"{what}: {embeddings.shape[0]} embeddings but {labels.shape[0]} labels; one label per embedding expected"
        )
    if embeddings.shape[0] == 0:
        raise ValueError(f"{what}: the batch is empty")


def class_mask_tensor(positive_classes: Tensor | np.ndarray | None, what: str) -> Tensor | None:
    """``positive_classes`` as a 1-D bool tensor (or None), with a clear error for anything else."""
    if positive_classes is None:
        return None
    mask = torch.as_tensor(np.asarray(positive_classes) if not isinstance(positive_classes, Tensor) else positive_classes)
    if mask.dtype != torch.bool or mask.ndim != 1 or mask.numel() < 2:
        raise ValueError(
            f"{what}: positive_classes must be a 1-D boolean mask over the class ids (at least 2 classes), "
            f"got shape {tuple(mask.shape)} of dtype {mask.dtype}"
        )
    return mask


def split_membership(labels: Tensor, mask: Tensor, what: str) -> Tensor:
    """``mask[labels]``: whether each sample's class is in the positive part; checks the label range."""
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= mask.numel():
        raise ValueError(
            f"{what}: labels must lie in [0, {mask.numel()}) to index positive_classes, got range [{lo}, {hi}]"
        )
    return mask.to(labels.device)[labels]


def _pair_distances(x: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """Exact squared distances of the given pairs (zero, with zero gradient, for coinciding points)."""
    diff = x[first] - x[second]
    return (diff * diff).sum(dim=1)


def _safe_sqrt(sq: Tensor) -> Tensor:
    """``sqrt`` with gradient 0 (not inf/NaN) at 0: the subgradient choice for coinciding points."""
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))


class ContrastiveLoss(nn.Module):
    """DeepID2's verification loss on pairs built inside the batch (see the module docstring).

    Parameters
    ----------
    margin
        ``m``: different identities are pushed until their distance (not squared) reaches it.
    normalize
        L2-normalise the embeddings first (default). Distances then lie in ``[0, 2]`` and ``margin=1.0``
        asks different identities to be at least 60 degrees apart. DeepID2 used raw features; pass
        ``normalize=False`` (and a margin in the features' own units) for that.
    weight
        Multiplies the mean pair loss. Default 0.05, DeepID2's verification weight ``lambda``.
    positive_classes
        Optional boolean mask ``(num_classes,)``: the paper's split construction (module docstring).
    seed
        Seed of the generator that draws the negative pairs (the draws are reproducible run to run).
    """

    def __init__(
        self,
        margin: float = 1.0,
        normalize: bool = True,
        weight: float = 0.05,
        positive_classes: Tensor | np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not margin > 0:
            raise ValueError(f"ContrastiveLoss: margin must be > 0, got {margin!r}")
        if not weight >= 0:
            raise ValueError(f"ContrastiveLoss: weight must be >= 0, got {weight!r}")
        self.margin = float(margin)
        self.normalize = bool(normalize)
        self.loss_weight = float(weight)
        self.positive_classes = class_mask_tensor(positive_classes, "ContrastiveLoss")
        self.seed = int(seed)
        # negatives of call t are drawn from a generator seeded by (seed, t); the call counter is a
        # buffer, so it is checkpointed and a resumed run draws exactly the negatives it would have drawn
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def pairs(self, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(first, second, same)``: the pairs the loss uses for a batch with these labels."""
        b = labels.shape[0]
        upper = torch.ones(b, b, dtype=torch.bool, device=labels.device).triu_(diagonal=1)
        same = labels[:, None] == labels[None, :]
        pos_ok = neg_ok = upper
        if self.positive_classes is not None:
            member = split_membership(labels, self.positive_classes, "ContrastiveLoss")
            pos_ok = upper & member[:, None]  # a same-class pair is positive-part when its class is
            outside = ~member
            neg_ok = upper & outside[:, None] & outside[None, :]
        pos_first, pos_second = torch.nonzero(same & pos_ok, as_tuple=True)
        neg_first, neg_second = torch.nonzero(~same & neg_ok, as_tuple=True)
        take = min(len(pos_first), len(neg_first))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.calls))
        self.calls += 1
        pick = torch.randperm(len(neg_first), generator=generator)[:take].to(labels.device)
        first = torch.cat([pos_first, neg_first[pick]])
        second = torch.cat([pos_second, neg_second[pick]])
        is_same = torch.arange(len(first), device=labels.device) < len(pos_first)
        return first, second, is_same

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean DeepID2 verification loss over the batch's pairs, times ``weight``."""
        check_batch(embeddings, labels, "ContrastiveLoss")
        x = embeddings.float() if embeddings.dtype in (torch.float16, torch.bfloat16) else embeddings
        if self.normalize:
            x = F.normalize(x, dim=1)
        first, second, same = self.pairs(labels)
        if len(first) == 0:
            return x[:0].sum()
        sq = _pair_distances(x, first, second)
        negative = torch.relu(self.margin - _safe_sqrt(sq))
        per_pair = 0.5 * torch.where(same, sq, negative * negative)
        return self.loss_weight * per_pair.mean()

    def extra_repr(self) -> str:
        split = ""
        if self.positive_classes is not None:
            split = f", positive_classes={int(self.positive_classes.sum())}/{self.positive_classes.numel()}"
        return f"margin={self.margin:g}, normalize={self.normalize}, weight={self.loss_weight:g}{split}"
