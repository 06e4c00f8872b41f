"""The Residual Balancing Module (RBM) of Domain Balancing (Cao et al., CVPR 2020, Sec. 3.2).

Eq. 3::

    x_re = x + f(x) * R(x)

``x`` is the top-level embedding, ``R`` a light residual branch and ``f`` a soft gate, one
scalar per sample, regressed onto the Domain Frequency Indicator of the sample's class by the
L2 loss of Eq. 4 (:func:`rbm_gate_loss`).

Choices the paper leaves open
-----------------------------
- ``R(x) = FC(D -> H) - BN(H) - PReLU - FC(H -> D)`` with ``H = D // 2``. Fig. 5 names two FC
  layers and a batch norm; without a nonlinearity between them R would be a linear map
  (BN is affine at test time), so a PReLU, the activation of the face ResNets, sits after the BN.
- The last FC of R starts at zero, so a freshly built model with an RBM computes exactly the
  same embedding as without it (x_re = x) and the residual grows from the training signal,
  as in zero-initialised residual branches (Goyal et al. 2017).
- ``f(x) = softplus(a . x + b)``: a linear regression (the paper: "the linear regression is
  employed by the L2 loss") passed through softplus. The target DFI = eps / IC is positive
  and unbounded above: with eps = 5.5 and s = 64, IC is a few tens and DFI ~ 0.1-0.5, but with
  a small s IC ~ log K and DFI can exceed 1. A sigmoid would cap f at 1 and flatten its
  gradient near the targets above 1; a raw linear output could turn negative and flip the
  residual. Softplus is positive, unbounded and close to linear above ~2. ``b`` starts at 0,
  so f starts near log 2 = 0.69.
- ``gate="ungated"`` is the paper's "RBM w/o soft gate": f(x) = 1 for every sample (Table 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: the RBM's gate modes: the learned soft gate f(x) of Eq. 3, or f(x) = 1 (DB Table 2's "RBM w/o sg")
GATES = ("soft", "ungated")


class ResidualBalancingModule(nn.Module):
    """DB Eq. 3: ``x_re = x + f(x) * R(x)``.

    Parameters
    ----------
    embedding_size
        Dimension D of the embedding it adjusts.
    hidden
        Width H of the residual branch; ``embedding_size // 2`` by default.
    gate
        ``"soft"``: the learned gate f(x) (exposed so that Eq. 4 can supervise it);
        ``"ungated"``: f(x) = 1 (the ablation "RBM w/o sg").

    ``forward(x)`` returns ``(x_re, gate)``, where ``gate`` is f(x) with shape (B,), or
    ``None`` when ``gate="ungated"``.
    """

    def __init__(self, embedding_size: int, hidden: int | None = None, gate: str = "soft") -> None:
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"ResidualBalancingModule: gate must be one of {GATES}, got {gate!r}")
        if embedding_size <= 0:
            raise ValueError(f"ResidualBalancingModule: embedding_size must be positive, got {embedding_size}")
        hidden = embedding_size // 2 if hidden is None else hidden
        if hidden <= 0:
            raise ValueError(f"ResidualBalancingModule: hidden must be positive, got {hidden}")
        self.embedding_size = int(embedding_size)
        self.gate_mode = gate
        self.residual = nn.Sequential(
            nn.Linear(embedding_size, hidden),
            nn.BatchNorm1d(hidden),
            nn.PReLU(hidden),
            nn.Linear(hidden, embedding_size),
        )
        nn.init.zeros_(self.residual[-1].weight)
        nn.init.zeros_(self.residual[-1].bias)
        self.gate = nn.Linear(embedding_size, 1) if gate == "soft" else None
        if self.gate is not None:
            nn.init.zeros_(self.gate.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if x.ndim != 2 or x.shape[1] != self.embedding_size:
            raise ValueError(
                f"ResidualBalancingModule: expected embeddings (B, {self.embedding_size}), got {tuple(x.shape)}"
            )
        r = self.residual(x)
        if self.gate is None:
            return x + r, None
        f = F.softplus(self.gate(x)).squeeze(1)
        return x + f.unsqueeze(1) * r, f


def rbm_gate_loss(gate: torch.Tensor, dfi_of_labels: torch.Tensor) -> torch.Tensor:
    """DB Eq. 4, ``L_rrm = || f(x) - DFI(x) ||^2``, averaged (not summed) over the batch.

    Parameters
    ----------
    gate
        f(x), shape (B,) (``aux["gate"]`` of :class:`dbrepro.models.FaceModel`).
    dfi_of_labels
        The DFI of each sample's class from the last refresh, shape (B,); a target, so it is
        detached.

    Returns
    -------
    The scalar ``mean_i (f(x_i) - DFI_{y_i})^2``.

    Only shapes are checked (host metadata): no value is read back, so on a GPU the loss never waits
    for the device. The DFI's values are checked where it is computed
    (:func:`dbrepro.dfi.domain_frequency_indicator`).
    """
    if gate.ndim != 1:
        raise ValueError(f"rbm_gate_loss: gate must have shape (B,), got {tuple(gate.shape)}")
    if dfi_of_labels.shape != gate.shape:
        raise ValueError(
            f"rbm_gate_loss: dfi_of_labels must have the gate's shape {tuple(gate.shape)}, "
            f"got {tuple(dfi_of_labels.shape)}"
        )
    target = dfi_of_labels.detach().to(dtype=gate.dtype, device=gate.device)
    return (gate - target).pow(2).mean()
