"""The Domain Balancing Margin (DBM) of Cao et al., CVPR 2020, Sec. 3.3."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dbrepro.losses.margins import MarginHead, replace_target


class DomainBalancingMargin(MarginHead):
    """DB Eq. 5: CosFace with a per-class margin ``beta_y * m``, ``beta = DFI`` (Eq. 2).

    ::

        logit_y = s (cos theta_y - DFI_y m),   logit_j = s cos theta_j  (j != y)
        L_dbm   = mean_i -log softmax(logits_i)[y_i]

    The DFI comes from the head's own prototypes (:func:`dbrepro.dfi.domain_frequency_indicator`
    on ``.weight``) and is refreshed periodically by the trainer through :meth:`set_dfi`; it is
    kept in the buffer ``dfi`` (saved in ``state_dict``), which starts at ones, so until the first
    refresh DBM is exactly CosFace. ``forward(..., dfi=...)`` overrides the buffer for one call.
    The DFI is a target, not a function of the weights: no gradient flows through it.
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.35) -> None:
        super().__init__(embedding_size, num_classes)
        self.s = float(s)
        self.m = float(m)
        self.register_buffer("dfi", torch.ones(num_classes))

    def _checked_dfi(self, dfi: torch.Tensor) -> torch.Tensor:
        if not isinstance(dfi, torch.Tensor) or dfi.shape != (self.num_classes,):
            shape = tuple(dfi.shape) if isinstance(dfi, torch.Tensor) else type(dfi).__name__
            raise ValueError(f"DomainBalancingMargin: dfi must have shape ({self.num_classes},), got {shape}")
        if not torch.isfinite(dfi).all() or (dfi < 0).any():
            bad = int(torch.nonzero(~torch.isfinite(dfi) | (dfi < 0))[0])
            raise ValueError(
                f"DomainBalancingMargin: dfi must be finite and non-negative; class {bad} has {float(dfi[bad])}"
            )
        return dfi.detach()

    @torch.no_grad()
    def set_dfi(self, dfi: torch.Tensor) -> None:
        """Store a fresh per-class DFI (num_classes,) for the following iterations."""
        self.dfi.copy_(self._checked_dfi(dfi))

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor, dfi: torch.Tensor | None = None) -> torch.Tensor:
        self.check(embeddings, labels)
        beta = self.dfi if dfi is None else self._checked_dfi(dfi)
        cos = self.cosine(embeddings)
        margin = self.m * beta.to(device=cos.device, dtype=cos.dtype)[labels]
        target = cos.gather(1, labels.unsqueeze(1)).squeeze(1) - margin
        return self.s * replace_target(cos, labels, target)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, dfi: torch.Tensor | None = None) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels, dfi), labels)
