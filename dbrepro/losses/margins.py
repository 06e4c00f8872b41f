"""Classification heads for face recognition: softmax, and the margin heads SphereFace, CosFace and ArcFace.

Every head keeps one prototype per class in ``.weight`` (num_classes, embedding_size) and has

- ``logits(embeddings, labels)``: the logits the cross-entropy sees, margin applied to the
  target class and scaled (so ``argmax`` of them is a training accuracy with margin; use
  :meth:`MarginHead.cosine` for plain nearest-prototype predictions);
- ``forward(embeddings, labels)``: the cross-entropy of those logits, **averaged** over the
  batch (the papers write sums; a mean keeps the learning rate independent of batch size).

A head whose logits need the per-class Domain Frequency Indicator (DB Eq. 2) says so with the
class attribute ``needs_dfi = True`` and is called ``head(embeddings, labels, dfi=...)``; it stores
no DFI of its own (the trainer's objective owns the only copy). Every other head takes no ``dfi``.

Inputs are checked: embeddings (B, D) with D == embedding_size, labels int64 (B,) in
[0, num_classes), a DFI (num_classes,), finite and non-negative; anything else is a
``ValueError``, never a silent broadcast.

What is checked where. Types and shapes are checked on every call, on every device (they are host
metadata). The *values* (label range, DFI finite and >= 0) are checked on every call only where
reading them is free, on the CPU (:func:`host_readable`): on a GPU each such read would stall the
training step until the device catches up. There the values are checked where they come from instead:
the trainer checks the training set's labels once against its class count
(:func:`dbrepro.train.loop.fit`) and :func:`dbrepro.dfi.domain_frequency_indicator` refuses a DFI it
cannot compute (a non-positive or non-finite inter-class compactness). A direct call on a GPU with a
label outside ``[0, num_classes)`` fails in CUDA's own index check (a device-side assert) instead of
this module's ``ValueError``. SphereFace's annealing likewise stays on the device there.

A new margin head is a subclass of :class:`MarginHead` that states its target logit in
:meth:`MarginHead.target`, plus one line in :data:`dbrepro.losses.HEADS`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from dbrepro import papers

#: cosines are clamped to [-1 + COS_EPS, 1 - COS_EPS] before acos (whose slope is infinite at +-1)
COS_EPS = 1e-7


def host_readable(tensor: torch.Tensor) -> bool:
    """Whether reading ``tensor``'s values on the host is free: it lives on the CPU.

    The one test behind every value check of the heads (module docstring): a read of a GPU tensor waits
    for the device to finish all queued work, once per call, that is once per training step.
    """
    return tensor.device.type == "cpu"


def check_head_inputs(
    embeddings: torch.Tensor, labels: torch.Tensor, embedding_size: int, num_classes: int, who: str
) -> None:
    """Raise a ``ValueError`` naming ``who`` unless embeddings are (B, D) float and labels int64 (B,) in range.

    The range ``[0, num_classes)`` is checked when the labels are on the CPU (:func:`host_readable`; on a
    GPU the trainer checks its dataset's labels once instead, see the module docstring).
    """
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
    if labels.numel() and host_readable(labels):
        low, high = torch.stack(labels.aminmax()).tolist()
        if low < 0 or high >= num_classes:
            raise ValueError(f"{who}: labels must lie in [0, {num_classes}), got range [{low}, {high}]")


def check_dfi(dfi: torch.Tensor, num_classes: int, who: str) -> torch.Tensor:
    """``dfi`` detached, after a ``ValueError`` naming ``who`` unless it is (num_classes,), finite and >= 0.

    The DFI is a target computed from the prototypes, not a function of them: no gradient flows through it.
    Its values are checked when it is on the CPU (:func:`host_readable`); on a GPU the shape only, since
    :func:`dbrepro.dfi.domain_frequency_indicator`, which computes it, refuses what would make it
    non-finite or negative.
    """
    if not isinstance(dfi, torch.Tensor) or dfi.shape != (num_classes,):
        shape = tuple(dfi.shape) if isinstance(dfi, torch.Tensor) else type(dfi).__name__
        raise ValueError(f"{who}: dfi must have shape ({num_classes},), got {shape}")
    if host_readable(dfi) and (not torch.isfinite(dfi).all() or (dfi < 0).any()):
        bad = int(torch.nonzero(~torch.isfinite(dfi) | (dfi < 0))[0])
        raise ValueError(f"{who}: dfi must be finite and non-negative; class {bad} has {float(dfi[bad])}")
    return dfi.detach()


def check_scale(s: float, who: str) -> float:
    """``s`` as a float, after a ``ValueError`` naming ``who`` unless it is positive."""
    if not s > 0:
        raise ValueError(f"{who}: s must be positive, got {s}")
    return float(s)


def replace_target(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``logits`` with column ``labels[i]`` of row i set to ``target[i]`` (out of place)."""
    return logits.scatter(1, labels.unsqueeze(1), target.unsqueeze(1))


class Head(nn.Module):
    """What every head shares: the prototypes ``.weight``, the input checks and the mean cross-entropy.

    A subclass implements :meth:`logits`, starting with ``self.check(...)``.
    """

    #: whether ``logits``/``forward`` need the per-class DFI (DB Eq. 2), passed as ``dfi=`` on every call
    needs_dfi: ClassVar[bool] = False

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
        nn.init.normal_(self.weight, std=self.init_std(self.embedding_size))

    @staticmethod
    def init_std(embedding_size: int) -> float:
        """Standard deviation of the prototypes' initial N(0, std) draw."""
        return 0.01

    def check(
        self, embeddings: torch.Tensor, labels: torch.Tensor, dfi: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Check the inputs of one call; return the per-call inputs of the hooks (``{"dfi": ...}`` or ``{}``).

        ``dfi`` must be given exactly when the head ``needs_dfi``.
        """
        who = type(self).__name__
        check_head_inputs(embeddings, labels, self.embedding_size, self.num_classes, who)
        if not self.needs_dfi:
            if dfi is not None:
                raise TypeError(f"{who} takes no dfi (its needs_dfi is False): call it as head(embeddings, labels)")
            return {}
        if dfi is None:
            raise ValueError(
                f"{who} needs the per-class DFI (DB Eq. 2) on every call: head(embeddings, labels, "
                f"dfi=<tensor of shape ({self.num_classes},)>), e.g. the trainer's objective.dfi, or "
                "dbrepro.dfi.domain_frequency_indicator(head.weight.detach(), k, s, eps)"
            )
        return {"dfi": check_dfi(dfi, self.num_classes, who)}

    def logits(
        self, embeddings: torch.Tensor, labels: torch.Tensor, *, dfi: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The (B, num_classes) logits the cross-entropy sees."""
        raise NotImplementedError

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, *, dfi: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels, dfi=dfi), labels)


class SoftmaxHead(Head):
    """Softmax cross-entropy with an inner-product classifier and bias (Range Loss Eq. 5, L_S).

    ``logit_j = W_j^T x + b_j``; ``forward`` is ``mean_i -log softmax(logits_i)[y_i]``.
    Initialised like ``nn.Linear``, over the base class's N(0, 0.01) draw; that draw stays, since
    removing it would shift the global RNG stream that every later draw of a softmax run reads.
    """

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__(embedding_size, num_classes)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(embedding_size)
        nn.init.uniform_(self.bias, -bound, bound)

    def logits(
        self, embeddings: torch.Tensor, labels: torch.Tensor, *, dfi: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.check(embeddings, labels, dfi)
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return F.linear(embeddings.to(dtype), self.weight.to(dtype), self.bias.to(dtype))


class MarginHead(Head):
    """The template of the margin heads: ``logit_y = scale * target(cos theta_y)``, ``logit_j = scale * cos theta_j``.

    :meth:`logits` checks the inputs, computes the cosines (in float32), gathers each sample's
    target cosine, replaces it by :meth:`target` and multiplies everything by :meth:`scale`. A subclass
    states only :meth:`target` (and :meth:`scale` if it is not a fixed ``self.s``).
    """

    #: the fixed scale of the normalised-softmax heads, set by the subclass's constructor
    s: float

    @staticmethod
    def init_std(embedding_size: int) -> float:
        """Prototypes start at unit length on average: N(0, 1/D) in D dimensions (the papers leave it open).

        The logits see only the prototypes' directions, so the gradient of a prototype ``w`` is orthogonal
        to it and scales as ``s / ||w||``: a step of SGD lengthens ``w`` by a factor that is large when
        ``||w||`` is small, and the direction then moves by ``lr * s / ||w||**2`` per unit of loss gradient.
        From InsightFace's N(0, 0.01) (``||w||`` ~ 0.1 at 128-D) the first steps inflate the norms many
        times over and freeze the directions early, which a short schedule never recovers from (the
        calibration chapter's C1 checks that the heads converge); starting at ``||w||`` ~ 1 keeps a step
        of the directions at the learning rate's scale. The same draw count as the other heads, so the
        random stream of everything drawn after the head is unchanged.
        """
        return embedding_size ** -0.5

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """cos(theta_ij) between each embedding and each prototype, shape (B, num_classes).

        Always computed in at least float32, also under mixed precision (autocast is switched off
        here, as InsightFace keeps its last layer in fp32): in fp16, 1 - COS_EPS rounds to 1 and
        acos's gradient would be infinite.
        """
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return F.linear(F.normalize(embeddings.to(dtype), dim=1), F.normalize(self.weight.to(dtype), dim=1))

    def target(self, cos_y: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The target class's logit before scaling, from its cosine ``cos_y`` (B,) and the classes ``labels`` (B,).

        A head with ``needs_dfi`` also receives ``dfi`` (num_classes,) as a keyword, checked, detached
        and on the cosines' device and dtype.
        """
        raise NotImplementedError

    def scale(self, embeddings: torch.Tensor) -> float | torch.Tensor:
        """The factor multiplying every logit: the fixed ``s`` here, a (B, 1) tensor for a per-sample scale."""
        return self.s

    def logits(
        self, embeddings: torch.Tensor, labels: torch.Tensor, *, dfi: torch.Tensor | None = None
    ) -> torch.Tensor:
        per_call = self.check(embeddings, labels, dfi)
        # the scale before the cosines: autograd adds up the embeddings' gradients in graph order
        scale = self.scale(embeddings)
        cos = self.cosine(embeddings)
        per_call = {name: value.to(device=cos.device, dtype=cos.dtype) for name, value in per_call.items()}
        cos_y = cos.gather(1, labels.unsqueeze(1)).squeeze(1)
        return scale * replace_target(cos, labels, self.target(cos_y, labels, **per_call))


class CosFace(MarginHead):
    """CosFace / LMCL (Wang et al., CVPR 2018, Eq. 4).

    ``s (cos theta_y - m)`` for the target class, ``s cos theta_j`` for the others. The defaults
    s = 64, m = 0.35 are those of the paper's experiments (Sec. 4).
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = papers.COSFACE_S,
                 m: float = papers.COSFACE_M) -> None:
        super().__init__(embedding_size, num_classes)
        self.s = check_scale(s, type(self).__name__)
        self.m = float(m)

    def margin(self, labels: torch.Tensor) -> float | torch.Tensor:
        """The margin of each sample's class: the same ``m`` for all."""
        return self.m

    def target(self, cos_y: torch.Tensor, labels: torch.Tensor, **per_call: torch.Tensor) -> torch.Tensor:
        return cos_y - self.margin(labels, **per_call)


class ArcFace(MarginHead):
    """ArcFace (Deng et al., CVPR 2019, Eq. 3): ``s cos(theta_y + m)`` for the target, ``s cos theta_j`` otherwise.

    ``cos(theta + m)`` starts to *increase* once ``theta + m > pi``, which would reward pushing a
    sample away from its class. As in InsightFace's ``easy_margin=False`` rule, for targets with
    ``cos theta_y <= cos(pi - m)`` (i.e. ``theta_y >= pi - m``) the target cosine is instead the
    CosFace-like ``cos theta_y - m sin(pi - m) = cos theta_y - m sin m``. The result decreases
    strictly in theta over [0, pi]; at ``theta = pi - m`` it is not continuous but steps *down*
    from -1 to ``-(cos m + m sin m)`` (by 0.117 for m = 0.5), so it never rewards that side.

    The defaults s = 64, m = 0.5 are those of the paper's experiments (Sec. 4).
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = papers.ARCFACE_S,
                 m: float = papers.ARCFACE_M) -> None:
        super().__init__(embedding_size, num_classes)
        if not 0.0 <= m < math.pi:
            raise ValueError(f"ArcFace: m must lie in [0, pi), got {m}")
        self.s = check_scale(s, type(self).__name__)
        self.m = float(m)

    def target(self, cos_y: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``cos(theta + m)``, or ``cos theta - m sin m`` past ``pi - m`` (the same for every class)."""
        theta = torch.acos(cos_y.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS))
        with_margin = torch.cos(theta + self.m)
        fallback = cos_y - self.m * math.sin(self.m)
        return torch.where(cos_y > math.cos(math.pi - self.m), with_margin, fallback)


class SphereFace(MarginHead):
    """SphereFace / A-Softmax (Liu et al., CVPR 2017, the loss L_ang) with the authors' lambda annealing.

    Prototypes are normalised, embeddings are not. For the target class::

        psi(theta) = (-1)^k cos(m theta) - 2k,   theta in [k pi / m, (k + 1) pi / m],  k = 0 .. m-1
        logit_y    = ||x|| (lambda cos theta + psi(theta)) / (1 + lambda)

    and ``logit_j = ||x|| cos theta_j`` for the others: the scale is the feature norm, not a fixed s.
    ``lambda`` anneals from a plain softmax towards the full margin::

        lambda = max(lambda_min, base * (1 + gamma * it) ** -power)

    m = 4 is the paper's margin. The annealing defaults are those of the authors' Caffe release
    and its PyTorch ports: base 1000, gamma 0.12, power 1, lambda_min 5. ``it`` is the buffer
    ``iteration``; ``forward`` advances it by one after each call in training mode (``logits`` and
    eval-mode calls leave it alone), and it is saved in ``state_dict`` so a resumed run continues
    the schedule. On the CPU ``lambda`` is computed on the host (:attr:`lambda_`); elsewhere on the device
    (:meth:`annealed_lambda`), so that a GPU step never waits to read ``iteration`` back.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        m: int = papers.SPHEREFACE_M,
        base: float = papers.SPHEREFACE_BASE,
        gamma: float = papers.SPHEREFACE_GAMMA,
        power: float = papers.SPHEREFACE_POWER,
        lambda_min: float = papers.SPHEREFACE_LAMBDA_MIN,
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
        """The current annealing weight lambda (reads ``iteration`` back to the host)."""
        it = int(self.iteration)
        return max(self.lambda_min, self.base * (1.0 + self.gamma * it) ** -self.power)

    def settle(self) -> None:
        """Move ``iteration`` to where lambda reaches ``lambda_min``: the loss SphereFace anneals towards.

        The training loop's probe (:func:`dbrepro.train.loop.probe_loss`) measures every epoch on that one
        loss and restores ``iteration`` afterwards; nothing else calls it."""
        if self.gamma <= 0 or self.power <= 0 or self.base <= self.lambda_min:
            return  # lambda never anneals (or starts at its floor): nothing to settle
        floor = math.ceil(((self.base / self.lambda_min) ** (1.0 / self.power) - 1.0) / self.gamma)
        self.iteration.fill_(max(int(self.iteration), floor))

    def annealed_lambda(self) -> float | torch.Tensor:
        """lambda as :meth:`target` uses it: :attr:`lambda_` where ``iteration`` is :func:`host_readable`,
        else the same formula in float64 on ``iteration``'s device, a 0-dim tensor (no host read)."""
        if host_readable(self.iteration):
            return self.lambda_
        it = self.iteration.to(torch.float64)
        return torch.clamp(self.base * (1.0 + self.gamma * it) ** -self.power, min=self.lambda_min)

    def psi(self, cos_y: torch.Tensor) -> torch.Tensor:
        """``(-1)^k cos(m theta) - 2k`` with ``k = floor(m theta / pi)`` (monotone decreasing in theta)."""
        theta = torch.acos(cos_y.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS))
        k = torch.floor(self.m * theta / math.pi).detach()
        sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
        return sign * torch.cos(self.m * theta) - 2.0 * k

    def target(self, cos_y: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(lambda cos theta + psi(theta)) / (1 + lambda)`` (the same for every class)."""
        lam = self.annealed_lambda()
        return (lam * cos_y + self.psi(cos_y)) / (1.0 + lam)

    def scale(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``||x||`` per sample, shape (B, 1), in at least float32."""
        return embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)).norm(dim=1).unsqueeze(1)

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, *, dfi: torch.Tensor | None = None
    ) -> torch.Tensor:
        loss = super().forward(embeddings, labels, dfi=dfi)
        if self.training:
            self.iteration += 1
        return loss
