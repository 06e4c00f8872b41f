"""The Domain Balancing Margin (DBM) of Cao et al., CVPR 2020, Sec. 3.3."""

from __future__ import annotations

import torch

from dbrepro.losses.margins import CosFace


class DomainBalancingMargin(CosFace):
    """DB Eq. 5: CosFace with a per-class margin ``beta_y * m``, ``beta = DFI`` (Eq. 2).

    ::

        logit_y = s (cos theta_y - DFI_y m),   logit_j = s cos theta_j  (j != y)
        L_dbm   = mean_i -log softmax(logits_i)[y_i]

    Everything but the margin is CosFace's. "m is a fixed parameter as defined in CosFace"
    (below Eq. 5) and the paper sets no scale of its own, so the defaults are CosFace's
    (s = 64, m = 0.35).

    The head stores no DFI: it is passed on every call, ``head(embeddings, labels, dfi=...)``,
    shape (num_classes,), computed from the head's own prototypes
    (:func:`dbrepro.dfi.domain_frequency_indicator` on ``.weight``) and owned by the trainer's
    objective. With ``dfi`` all ones DBM is exactly CosFace. The DFI is a target, not a function
    of the weights: no gradient flows through it. Its shape is checked on every call, its values
    (finite, >= 0) on the CPU only (:func:`dbrepro.losses.margins.check_dfi`): on a GPU they are
    vouched for by :func:`dbrepro.dfi.domain_frequency_indicator`, which computed them.
    """

    needs_dfi = True

    def margin(self, labels: torch.Tensor, dfi: torch.Tensor) -> torch.Tensor:
        """``beta_y m`` with ``beta = dfi`` (num_classes,): each sample's class gets its own margin."""
        return self.m * dfi[labels]
