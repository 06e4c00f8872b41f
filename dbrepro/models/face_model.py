"""A face model: backbone (+ optional Residual Balancing Module) -> embedding; and how to build one.

Images travel as uint8 RGB ``N x 3 x H x W`` tensors and are turned into network input by
:func:`normalize_images`, ``(x / 255 - 0.5) / 0.5`` in [-1, 1] (InsightFace's normalisation; the DB
paper's "subtract 127.5, divide by 128" differs by under 0.4%).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from dbrepro.models.iresnet import iresnet18, iresnet50
from dbrepro.models.rbm import ResidualBalancingModule
from dbrepro.models.small import SmallFaceNet

#: backbone name -> constructor ``(embedding_size=..., image_size=..., **kwargs) -> nn.Module``
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "small": SmallFaceNet,
    "ir18": iresnet18,
    "ir50": iresnet50,
}


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> float32 ``(x / 255 - 0.5) / 0.5`` in [-1, 1]."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        dtype = getattr(images, "dtype", type(images).__name__)
        raise ValueError(f"normalize_images: expected a uint8 tensor, got {dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"normalize_images: expected N x 3 x H x W, got shape {tuple(images.shape)}")
    return (images.float() / 255.0 - 0.5) / 0.5


class FaceModel(nn.Module):
    """Backbone, then optionally the RBM (DB Eq. 3): normalised images -> embeddings (B, D).

    ``forward(x)`` returns the embedding; ``forward(x, return_aux=True)`` returns
    ``(embedding, aux)``, where ``aux`` holds, when there is an RBM, ``"pre_rbm"`` (the
    backbone's embedding x) and, with the soft gate, ``"gate"`` (f(x), shape (B,)).
    """

    def __init__(self, backbone: nn.Module, rbm: ResidualBalancingModule | None = None) -> None:
        super().__init__()
        size = getattr(backbone, "embedding_size", None)
        if not isinstance(size, int):
            raise ValueError("FaceModel: the backbone needs an integer attribute `embedding_size`")
        if rbm is not None and rbm.embedding_size != size:
            raise ValueError(
                f"FaceModel: the RBM adjusts {rbm.embedding_size}-D embeddings but the backbone gives {size}-D"
            )
        self.backbone = backbone
        self.rbm = rbm

    @property
    def embedding_size(self) -> int:
        return int(self.backbone.embedding_size)

    def forward(
        self, x: torch.Tensor, return_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not torch.is_floating_point(x):
            raise ValueError(
                f"FaceModel: expected float images (use dbrepro.models.normalize_images), got {x.dtype}"
            )
        embedding = self.backbone(x)
        aux: dict[str, torch.Tensor] = {}
        if self.rbm is not None:
            aux["pre_rbm"] = embedding
            embedding, gate = self.rbm(embedding)
            if gate is not None:
                aux["gate"] = gate
        return (embedding, aux) if return_aux else embedding


def build_backbone(name: str, embedding_size: int, image_size: int, **kwargs: Any) -> nn.Module:
    """The backbone ``name`` (a key of :data:`BACKBONES`); ``kwargs`` go to its constructor."""
    try:
        constructor = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}") from None
    return constructor(embedding_size=embedding_size, image_size=image_size, **kwargs)


def build_model(
    backbone: str = "small",
    embedding_size: int = 512,
    image_size: int = 112,
    rbm: str | None = None,
    **backbone_kwargs: Any,
) -> FaceModel:
    """A :class:`FaceModel` with the named backbone.

    ``rbm``: ``None`` for no RBM, ``"soft"`` for the RBM with its soft gate, ``"ungated"`` for the
    RBM with f(x) = 1 (the paper's "RBM w/o sg"). ``backbone_kwargs`` (e.g. ``dropout``) go to
    the backbone's constructor.
    """
    net = build_backbone(backbone, embedding_size, image_size, **backbone_kwargs)
    module = ResidualBalancingModule(embedding_size, gate=rbm) if rbm is not None else None
    return FaceModel(net, module)
