"""Classification heads for face recognition: softmax, SphereFace, CosFace and ArcFace.

Every head keeps one prototype per class in ``.weight`` (num_classes, embedding_size) and has

- ``logits(embeddings, labels)``: the logits the cross-entropy sees, margin applied to the
  target class and scaled (so ``argmax`` of them is a training accuracy with margin; use
  :meth:`MarginHead.cosine` for plain nearest-prototype predictions);
- ``forward(embeddings, labels)``: the cross-entropy of those logits, **averaged** over the
  batch (the papers write sums; a mean keeps the learning rate independent of batch size).

Inputs are checked: embeddings (B, D) with D == embedding_size, labels int64 (B,) in
[0, num_classes); anything else is a ``ValueError``, never a silent broadcast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: cosines are clamped to [-1 + COS_EPS, 1 - COS_EPS] before acos (whose slope is infinite at +-1)
COS_EPS = 1e-7


def check_head_inputs(
    embeddings: torch.Tensor, labels: torch.Tensor, embedding_size: int, num_classes: int, who: str
) -> None:
    """Raise a ``ValueError`` naming ``who`` unless embeddings are (B, D) float and labels int64 (B,) in range."""
    if not isinstance(embeddings, torch.Tensor) or not torch.is_floating_point(embeddings):
        got = getattr(embeddings, "dtype", type(embeddings).__name__)
        raise ValueError(f"{who}: embeddings must be a floating-point tensor, got {got}")
    if embeddings.ndim != 2 or embeddings.shape[1] != embedding_size:
        raise ValueError(f"{who}: embeddings must have shape (B, {embedding_size}), got {tuple(embeddings.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
        got = getattr(labels, "dtype", type(labels).__name__)
        raise ValueError(f"{who}: labels must be an int64 tensor, got {got}")
    if labels.shape != (embeddings.shape[0],):
        raise ValueError(
            f"{who}: labels must have shape ({embeddings.shape[0]},) to match the embeddings, got {tuple(labels.shape)}"
        )
    if labels.numel():
        low, high = torch.stack(labels.aminmax()).tolist()  # one device sync, not two
        if low < 0 or high >= num_classes:
            raise ValueError(f"{who}: labels must lie in [0, {num_classes}), got range [{low}, {high}]")


class MarginHead(nn.Module):
    """Shared parts of the heads: the prototypes, input checks, cosines, and the mean cross-entropy."""

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        if embedding_size <= 0 or num_classes <= 0:
            raise ValueError(
                f"{type(self).__name__}: embedding_size and num_classes must be positive, "
                f"got {embedding_size} and {num_classes}"
            )
        self.embedding_size = int(embedding_size)
        self.num_classes = int(num_classes)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def check(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        check_head_inputs(embeddings, labels, self.embedding_size, self.num_classes, type(self).__name__)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """cos(theta_ij) between each embedding and each prototype, shape (B, num_classes).

        Always computed in at least float32, also under mixed precision (autocast is switched off
        here, as InsightFace keeps its last layer in fp32): in fp16, 1 - COS_EPS rounds to 1 and
        acos's gradient would be infinite.
        """
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return F.linear(F.normalize(embeddings.to(dtype), dim=1), F.normalize(self.weight.to(dtype), dim=1))

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)


def replace_target(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``logits`` with column ``labels[i]`` of row i set to ``target[i]`` (out of place)."""
    return logits.scatter(1, labels.unsqueeze(1), target.unsqueeze(1))


class SoftmaxHead(MarginHead):
    """Softmax cross-entropy with an inner-product classifier and bias (Range Loss Eq. 5, L_S).

    ``logit_j = W_j^T x + b_j``; ``forward`` is ``mean_i -log softmax(logits_i)[y_i]``.
    Initialised like ``nn.Linear``.
    """

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__(embedding_size, num_classes)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(embedding_size)
        nn.init.uniform_(self.bias, -bound, bound)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.check(embeddings, labels)
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return F.linear(embeddings.to(dtype), self.weight.to(dtype), self.bias.to(dtype))


class CosFace(MarginHead):
    """CosFace / LMCL (Wang et al., CVPR 2018, Eq. 4).

    ``s (cos theta_y - m)`` for the target class, ``s cos theta_j`` for the others.
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.35) -> None:
        super().__init__(embedding_size, num_classes)
        self.s = float(s)
        self.m = float(m)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.check(embeddings, labels)
        cos = self.cosine(embeddings)
        target = cos.gather(1, labels.unsqueeze(1)).squeeze(1) - self.m
        return self.s * replace_target(cos, labels, target)


class ArcFace(MarginHead):
    """ArcFace (Deng et al., CVPR 2019, Eq. 3): ``s cos(theta_y + m)`` for the target, ``s cos theta_j`` otherwise.

    ``cos(theta + m)`` starts to *increase* once ``theta + m > pi``, which would reward pushing a
    sample away from its class. As in InsightFace's ``easy_margin=False`` rule, for targets with
    ``cos theta_y <= cos(pi - m)`` (i.e. ``theta_y >= pi - m``) the target cosine is instead the
    CosFace-like ``cos theta_y - m sin(pi - m) = cos theta_y - m sin m``. The result decreases
    strictly in theta over [0, pi]; at ``theta = pi - m`` it is not continuous but steps *down*
    from -1 to ``-(cos m + m sin m)`` (by 0.117 for m = 0.5), so it never rewards that side.
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.5) -> None:
        super().__init__(embedding_size, num_classes)
        if not 0.0 <= m < math.pi:
            raise ValueError(f"ArcFace: m must lie in [0, pi), got {m}")
        self.s = float(s)
        self.m = float(m)

    def target_cosine(self, cos_y: torch.Tensor) -> torch.Tensor:
        """The margin-applied target cosine ``cos(theta + m)``, or ``cos theta - m sin m`` past ``pi - m``."""
        theta = torch.acos(cos_y.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS))
        with_margin = torch.cos(theta + self.m)
        fallback = cos_y - self.m * math.sin(self.m)
        return torch.where(cos_y > math.cos(math.pi - self.m), with_margin, fallback)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.check(embeddings, labels)
        cos = self.cosine(embeddings)
        target = self.target_cosine(cos.gather(1, labels.unsqueeze(1)).squeeze(1))
        return self.s * replace_target(cos, labels, target)


class SphereFace(MarginHead):
    """SphereFace / A-Softmax (Liu et al., CVPR 2017, the loss L_ang) with the authors' lambda annealing.

    Prototypes are normalised, embeddings are not. For the target class::

        psi(theta) = (-1)^k cos(m theta) - 2k,   theta in [k pi / m, (k + 1) pi / m],  k = 0 .. m-1
        logit_y    = ||x|| (lambda cos theta + psi(theta)) / (1 + lambda)

    and ``logit_j = ||x|| cos theta_j`` for the others. ``lambda`` anneals from a plain softmax
    towards the full margin::

        lambda = max(lambda_min, base * (1 + gamma * it) ** -power)

    The defaults are those of the authors' Caffe release and its PyTorch ports: base 1000,
    gamma 0.12, power 1, lambda_min 5. ``it`` is the buffer ``iteration``; ``forward`` advances it
    by one after each call in training mode (``logits`` and eval-mode calls leave it alone), and it
    is saved in ``state_dict`` so a resumed run continues the schedule.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        m: int = 4,
        base: float = 1000.0,
        gamma: float = 0.12,
        power: float = 1.0,
        lambda_min: float = 5.0,
    ) -> None:
        super().__init__(embedding_size, num_classes)
        if not isinstance(m, int) or m < 1:
            raise ValueError(f"SphereFace: m must be a positive integer, got {m!r}")
        self.m = m
        self.base = float(base)
        self.gamma = float(gamma)
        self.power = float(power)
        self.lambda_min = float(lambda_min)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.int64))

    @property
    def lambda_(self) -> float:
        """The current annealing weight lambda."""
        it = int(self.iteration)
        return max(self.lambda_min, self.base * (1.0 + self.gamma * it) ** -self.power)

    def psi(self, cos_y: torch.Tensor) -> torch.Tensor:
        """``(-1)^k cos(m theta) - 2k`` with ``k = floor(m theta / pi)`` (monotone decreasing in theta)."""
        theta = torch.acos(cos_y.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS))
        k = torch.floor(self.m * theta / math.pi).detach()
        sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
        return sign * torch.cos(self.m * theta) - 2.0 * k

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.check(embeddings, labels)
        norm = embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)).norm(dim=1)
        cos = self.cosine(embeddings)
        cos_y = cos.gather(1, labels.unsqueeze(1)).squeeze(1)
        lam = self.lambda_
        target = (lam * cos_y + self.psi(cos_y)) / (1.0 + lam)
        return norm.unsqueeze(1) * replace_target(cos, labels, target)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = super().forward(embeddings, labels)
        if self.training:
            self.iteration += 1
        return loss
