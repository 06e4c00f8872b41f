"""Images to embeddings: batched, no gradients, optional flip test-time augmentation.

A *model* is anything that maps normalised float images (B, 3, H, W) to embeddings (B, D) --
a :class:`dbrepro.models.FaceModel` or any ``nn.Module``/callable with that contract.
Images are uint8 RGB tensors, normalised here with :func:`dbrepro.models.normalize_images`.

With ``flip=True`` the embedding is ``emb(x) + emb(hflip(x))`` before any normalisation, as
InsightFace evaluates its verification packs; scores are cosines, so the sum acts like the
average of the two views.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from dbrepro.config import resolve_device
from dbrepro.models import normalize_images

__all__ = ["embed", "embed_chunks"]

Model = Callable[[torch.Tensor], torch.Tensor]


def _check_uint8_images(images: torch.Tensor, what: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        dtype = getattr(images, "dtype", None)
        raise ValueError(f"{what}: expected a uint8 tensor N x 3 x H x W, got {shape} of dtype {dtype}")


def _forward(model: Model, batch: torch.Tensor, flip: bool, device: torch.device) -> torch.Tensor:
    x = normalize_images(batch.to(device, non_blocking=True))
    if flip:
        x = torch.cat((x, x.flip(3)))
    amp = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()
    with amp:
        out = model(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != len(x):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model output: expected embeddings ({len(x)}, D), got {shape}")
    out = out.float()
    if flip:
        half = len(batch)
        out = out[:half] + out[half:]
    return out


def embed(
    model: Model,
    images: torch.Tensor,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    flip: bool = False,
) -> torch.Tensor:
    """Embed uint8 images N x 3 x H x W -> float32 (N, D) on the CPU.

    The model runs in eval mode under ``torch.no_grad`` (and float16 autocast on CUDA); an
    ``nn.Module`` is moved to ``device`` (in place, as ``.to`` does) and its train/eval mode
    is restored afterwards. ``device="auto"`` picks CUDA when present.
    """
    _check_uint8_images(images)
    if len(images) == 0:
        raise ValueError("images: nothing to embed (0 images)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.to(dev)
        model.eval()
    try:
        with torch.no_grad():
            parts = [
                _forward(model, images[i : i + batch_size], flip, dev).cpu()
                for i in range(0, len(images), batch_size)
            ]
    finally:
        if was_training:
            model.train()  # type: ignore[union-attr]
    return torch.cat(parts)


def embed_chunks(
    model: Model,
    chunks: Iterable[torch.Tensor],
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    flip: bool = False,
) -> Iterator[torch.Tensor]:
    """Embed each uint8 image chunk an iterable yields (e.g. ``DistractorSource.chunks()``), lazily."""
    for i, images in enumerate(chunks):
        _check_uint8_images(images, f"chunk {i}")
        yield embed(model, images, batch_size=batch_size, device=device, flip=flip)
