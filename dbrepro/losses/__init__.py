"""Losses: classification heads and the extra terms trained jointly with them.

Heads (``forward(embeddings, labels)``, prototypes in ``.weight``): softmax, SphereFace, CosFace,
ArcFace and the Domain Balancing Margin, which needs the per-class DFI (``needs_dfi``) and is
called ``forward(embeddings, labels, dfi=...)``. Extra terms (``forward(embeddings, labels)``, each
multiplied by its own weight): range, contrastive, triplet and center loss.

:data:`HEADS` and :data:`TERMS` map the names used in a :class:`dbrepro.train.TrainConfig` to
constructors taking ``(embedding_size, num_classes, **kwargs)``; a head's keyword defaults are its
paper's values. A new margin head is one :class:`MarginHead` subclass and one line in :data:`HEADS`;
``tests/test_head_registry.py`` tests every entry.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from dbrepro.losses.center import CenterLoss
from dbrepro.losses.contrastive import ContrastiveLoss
from dbrepro.losses.domain_balancing import DomainBalancingMargin
from dbrepro.losses.margins import ArcFace, CosFace, Head, MarginHead, SoftmaxHead, SphereFace
from dbrepro.losses.range import RangeLoss, RangeParts, paper_gradients
from dbrepro.losses.triplet import TripletLoss

HEADS: dict[str, type[Head]] = {
    "softmax": SoftmaxHead,
    "sphereface": SphereFace,
    "cosface": CosFace,
    "arcface": ArcFace,
    "dbm": DomainBalancingMargin,
}


def _halves(num_classes: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``halves=True``: positives from one half of the identities, negatives from the other (Range Loss §3.2)."""
    from dbrepro.data.splits import half_split_identities

    kwargs = dict(kwargs)
    halves, seed = kwargs.pop("halves", False), int(kwargs.pop("halves_seed", 0))
    if halves:
        kwargs["positive_classes"] = half_split_identities(num_classes, seed=seed)
    return kwargs


def _range(embedding_size: int, num_classes: int, **kw: Any) -> nn.Module:
    return RangeLoss(**kw)


def _contrastive(embedding_size: int, num_classes: int, **kw: Any) -> nn.Module:
    return ContrastiveLoss(**_halves(num_classes, kw))


def _triplet(embedding_size: int, num_classes: int, **kw: Any) -> nn.Module:
    return TripletLoss(**_halves(num_classes, kw))


def _center(embedding_size: int, num_classes: int, **kw: Any) -> nn.Module:
    return CenterLoss(num_classes, embedding_size, **kw)


TERMS: dict[str, Callable[..., nn.Module]] = {
    "range": _range,
    "contrastive": _contrastive,
    "triplet": _triplet,
    "center": _center,
}

#: the class each term builds, and the config keys its builder adds to the class's own arguments
_TERM_CLASSES: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "range": (RangeLoss, {}),
    "contrastive": (ContrastiveLoss, {"halves": False, "halves_seed": 0}),
    "triplet": (TripletLoss, {"halves": False, "halves_seed": 0}),
    "center": (CenterLoss, {}),
}


def term_arguments(name: str) -> dict[str, Any]:
    """The keyword arguments a term takes in a training config, with their defaults (``inspect.Parameter.empty``
    where there is none): its class's arguments (the papers' values as defaults) plus its builder's."""
    cls, extra = _TERM_CLASSES[name]
    derived = ("self", "embedding_size", "num_classes", "positive_classes")
    out = {n: p.default for n, p in inspect.signature(cls).parameters.items()
           if n not in derived and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return {**out, **extra}


__all__ = [
    "ArcFace", "CenterLoss", "ContrastiveLoss", "CosFace", "DomainBalancingMargin", "HEADS", "Head", "MarginHead",
    "RangeLoss", "RangeParts", "SoftmaxHead", "SphereFace", "TERMS", "TripletLoss", "paper_gradients", "term_arguments",
]
