"""The objective: the classification head plus extra loss terms plus the RBM gate regression (one DFI).

``L = head(x, y) + sum_t term_t(x, y) [+ lambda * L_rrm]``: Range Loss Eq. 5 (softmax plus a metric term)
and DB Eq. 6 (a margin head plus the gate regression of Eq. 4). The Domain Frequency Indicator (DB Eq. 2)
lives here, and only here: one buffer, checkpointed with the head, read by the DBM head (passed per call)
and by the gate regression, refreshed by :func:`refresh_dfi`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..dfi import domain_frequency_indicator
from ..losses import HEADS, TERMS
from ..models import build_model
from ..models.rbm import rbm_gate_loss
from .config import DFIConfig, TrainConfig


class Objective(nn.Module):
    """The head, the extra terms (each carrying its own weight) and, with a soft RBM gate, lambda * Eq. 4."""

    def __init__(self, head: nn.Module, num_classes: int, terms: dict[str, nn.Module] | None = None,
                 rbm_weight: float = 0.0):
        super().__init__()
        self.head = head
        self.terms = nn.ModuleDict(terms or {})
        self.rbm_weight = float(rbm_weight)
        #: the per-class DFI (DB Eq. 2); ones until the first refresh, so DBM starts as CosFace
        self.register_buffer("dfi", torch.ones(num_classes))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                aux: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if getattr(self.head, "needs_dfi", False):
            parts = {"head": self.head(embeddings, labels, dfi=self.dfi)}
        else:
            parts = {"head": self.head(embeddings, labels)}
        for name, term in self.terms.items():
            parts[name] = term(embeddings, labels)
        if aux and "gate" in aux and self.rbm_weight:
            parts["rbm"] = self.rbm_weight * rbm_gate_loss(aux["gate"], self.dfi[labels])
        total = torch.stack(list(parts.values())).sum()
        return total, parts


@torch.no_grad()
def refresh_dfi(objective: Objective, dfi: DFIConfig) -> None:
    """Recompute the DFI (DB Eq. 1-2) from the head's current prototypes into ``objective.dfi``."""
    fresh = domain_frequency_indicator(objective.head.weight.detach(), k=dfi.k, s=dfi.s, eps=dfi.eps)
    objective.dfi.copy_(fresh.to(objective.dfi))


class TrainModule(nn.Module):
    """Model + objective as one module, so a single DDP wrapper synchronises both."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        emb, aux = self.model(x, return_aux=True)  # under the caller's autocast on CUDA
        # the head and the loss terms run in float32 (InsightFace keeps the last FC in fp32 too)
        with torch.autocast(x.device.type, enabled=False):
            return self.objective(emb.float(), labels, {k: v.float() for k, v in aux.items()})


def build_objective(cfg: TrainConfig, num_classes: int) -> Objective:
    head = HEADS[cfg.head](cfg.embedding_size, num_classes, **cfg.head_kwargs)
    terms = {name: TERMS[name](cfg.embedding_size, num_classes, **kwargs) for name, kwargs in cfg.terms.items()}
    return Objective(head, num_classes, terms, rbm_weight=cfg.rbm_weight if cfg.rbm == "soft" else 0.0)


def build(cfg: TrainConfig, num_classes: int) -> TrainModule:
    """Model and objective for ``cfg``, initialised from ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.backbone, cfg.embedding_size, cfg.image_size, rbm=cfg.rbm, **cfg.backbone_kwargs)
    return TrainModule(model, build_objective(cfg, num_classes))
