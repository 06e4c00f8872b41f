"""Center loss: Wen et al., *A Discriminative Feature Learning Approach for Deep Face Recognition*, ECCV 2016
(Range Loss ref. [32]).

.. math::

    L_C = \\frac{1}{2m} \\sum_{i=1}^{m} \\lVert x_i - c_{y_i} \\rVert_2^2          (Wen Eq. 2, averaged)

    \\Delta c_j = \\frac{\\sum_{i=1}^{m} \\delta(y_i = j)(c_j - x_i)}{1 + \\sum_{i=1}^{m} \\delta(y_i = j)},
    \\qquad c_j \\leftarrow c_j - \\alpha \\Delta c_j                                (Wen Eq. 4, Algorithm 1)

The paper writes ``L_C`` as a sum over the mini-batch; here it is the mean over the ``m`` samples
(the ``1/2m`` of Wen et al.'s Caffe layer), so the loss does not grow with the batch size. The
gradient with respect to ``x_i`` is ``(x_i - c_{y_i}) / m`` (times ``weight``).

The centres are a buffer, not a parameter: no optimiser touches them. They are updated by the rule
above inside ``forward`` while the module is in training mode, under ``no_grad``, *after* the loss of
the batch has been computed with the current centres (Wen et al., Algorithm 1, steps 4-6).
Under DistributedDataParallel each rank updates its own copy from its own batch (this module does no
communication). :func:`dbrepro.train.fit` wraps the objective in DDP with its default
``broadcast_buffers=True``, which copies rank 0's buffers to every rank at each forward: the centres
then follow rank 0's batches only (a quarter of the data on 4 GPUs), and the other ranks' updates are
overwritten. All-reducing the update instead would use every batch; not done here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dbrepro import papers
from dbrepro.losses.contrastive import check_batch


class CenterLoss(nn.Module):
    """Wen et al.'s center loss with the paper's centre update (see the module docstring).

    Parameters
    ----------
    num_classes, embedding_size
        Shape of the ``centers`` buffer ``(num_classes, embedding_size)``.
    alpha
        Centre learning rate of Wen Eq. 4, in ``[0, 1]``; 0.5 in Wen et al.'s face experiments.
    weight
        ``lambda`` multiplying ``L_C`` in the joint loss; 0.003 in Wen et al.'s face experiments.
        Stored as ``loss_weight`` (``weight`` on a head means its class-prototype matrix).

    Centres start Xavier-uniform, as in Wen et al.'s released Caffe model (``center_filler: xavier``).
    """

    def __init__(self, num_classes: int, embedding_size: int, alpha: float = papers.CENTER_ALPHA,
                 weight: float = papers.CENTER_WEIGHT) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"CenterLoss: num_classes must be a positive integer, got {num_classes!r}")
        if not isinstance(embedding_size, int) or embedding_size < 1:
            raise ValueError(f"CenterLoss: embedding_size must be a positive integer, got {embedding_size!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"CenterLoss: alpha must lie in [0, 1], got {alpha!r}")
        if not weight >= 0:
            raise ValueError(f"CenterLoss: weight must be >= 0, got {weight!r}")
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.alpha = float(alpha)
        self.loss_weight = float(weight)
        self.register_buffer("centers", nn.init.xavier_uniform_(torch.empty(num_classes, embedding_size)))

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """``weight * L_C`` for the batch; in training mode the centres of its classes then move (Eq. 4)."""
        check_batch(embeddings, labels, "CenterLoss")
        if embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"CenterLoss: embeddings have {embeddings.shape[1]} dimensions, the centres {self.embedding_size}"
            )
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(f"CenterLoss: labels must lie in [0, {self.num_classes}), got range [{lo}, {hi}]")
        x = embeddings.float() if embeddings.dtype in (torch.float16, torch.bfloat16) else embeddings
        centers = self.centers.to(x.dtype)[labels]  # a copy: the in-place update below cannot touch it
        diff = x - centers
        loss = 0.5 * (diff * diff).sum(dim=1).mean()
        if self.training:
            self.update_centers(x.detach(), labels)
        return self.loss_weight * loss

    @torch.no_grad()
    def update_centers(self, embeddings: Tensor, labels: Tensor) -> None:
        """Wen Eq. 4: ``c_j -= alpha * sum_{y_i = j} (c_j - x_i) / (1 + n_j)`` for the classes in the batch."""
        present, index, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        counts = counts.to(self.centers.dtype)[:, None]
        sums = torch.zeros(len(present), self.embedding_size, dtype=self.centers.dtype, device=self.centers.device)
        sums.index_add_(0, index, embeddings.to(self.centers.dtype))
        delta = (counts * self.centers[present] - sums) / (1.0 + counts)
        self.centers[present] -= self.alpha * delta

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, "
            f"alpha={self.alpha:g}, weight={self.loss_weight:g}"
        )
