"""Triplet loss: Schroff et al., *FaceNet*, CVPR 2015, Eq. 1-3 (Range Loss ref. [24]).

.. math::

    L = \\frac{1}{|T|} \\sum_{(a, p, n) \\in T}
        \\max\\left(\\lVert f_a - f_p \\rVert_2^2 - \\lVert f_a - f_n \\rVert_2^2 + \\alpha,\\ 0\\right)

on L2-normalised embeddings ``f`` (FaceNet constrains ``||f|| = 1``), times ``weight``.

Mining: none. ``T`` is *every* valid triplet of the batch (anchor and positive of one identity,
``a != p``, both orders; negative of another identity) and the loss is averaged over all of them,
easy ones (zero loss) included. The Range Loss paper compares its losses "without hard mining" (§4.1);
FaceNet's hard / semi-hard mining is deliberately not the default here and not implemented.

With ``positive_classes`` (the paper's §3.2 split, see :mod:`dbrepro.losses.contrastive`) anchors and
positives come only from identities in the mask and negatives only from identities outside it.

Cost: the batch's ``(a, p)`` pairs times the batch, e.g. 3,840 x 256 for a 16 x 16 batch — never the
full ``B^3`` cube.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dbrepro.losses.contrastive import check_batch, class_mask_tensor, split_membership


class TripletLoss(nn.Module):
    """FaceNet's triplet loss, batch-all (every valid triplet averaged, no mining).

    Parameters
    ----------
    margin
        ``alpha`` of FaceNet Eq. 1, in squared distance on the unit sphere; FaceNet uses 0.2.
    weight
        Multiplies the mean; 1.0 by default (the Range Loss paper gives no weight for its joint
        softmax + triplet training).
    positive_classes
        Optional boolean mask ``(num_classes,)``: anchors/positives from its identities, negatives
        from the others.
    """

    def __init__(
        self,
        margin: float = 0.2,
        weight: float = 1.0,
        positive_classes: Tensor | np.ndarray | None = None,
    ) -> None:
        super().__init__()
        if not margin >= 0:
            raise ValueError(f"TripletLoss: margin must be >= 0, got {margin!r}")
        if not weight >= 0:
            raise ValueError(f"TripletLoss: weight must be >= 0, got {weight!r}")
        self.margin = float(margin)
        self.loss_weight = float(weight)
        self.positive_classes = class_mask_tensor(positive_classes, "TripletLoss")

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean hinge over all valid triplets of the batch (0 when there are none), times ``weight``."""
        check_batch(embeddings, labels, "TripletLoss")
        x = embeddings.float() if embeddings.dtype in (torch.float16, torch.bfloat16) else embeddings
        x = F.normalize(x, dim=1)
        b = labels.shape[0]
        same = labels[:, None] == labels[None, :]
        not_self = ~torch.eye(b, dtype=torch.bool, device=labels.device)
        anchor_ok = torch.ones(b, dtype=torch.bool, device=labels.device)
        negative_ok = anchor_ok
        if self.positive_classes is not None:
            anchor_ok = split_membership(labels, self.positive_classes, "TripletLoss")
            negative_ok = ~anchor_ok
        anchor, positive = torch.nonzero(same & not_self & anchor_ok[:, None], as_tuple=True)
        if len(anchor) == 0:
            return x[:0].sum()
        sq = (2.0 - 2.0 * (x @ x.T)).clamp_min(0.0)  # ||f_i - f_j||^2 on the unit sphere
        valid = ~same[anchor] & negative_ok[None, :]  # (pairs, B): n differs from a's identity
        hinge = torch.relu(sq[anchor, positive][:, None] - sq[anchor] + self.margin)
        count = valid.sum()
        if int(count) == 0:
            return x[:0].sum()
        return self.loss_weight * (hinge * valid).sum() / count

    def extra_repr(self) -> str:
        split = ""
        if self.positive_classes is not None:
            split = f", positive_classes={int(self.positive_classes.sum())}/{self.positive_classes.numel()}"
        return f"margin={self.margin:g}, weight={self.loss_weight:g}{split}"
