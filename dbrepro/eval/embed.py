"""Images to embeddings: batched, no gradients, optional flip test-time augmentation.

A *model* is anything that maps normalised float images (B, 3, H, W) to embeddings (B, D) --
a :class:`dbrepro.models.FaceModel` or any ``nn.Module``/callable with that contract.
Images are uint8 RGB tensors, normalised here with :func:`dbrepro.models.normalize_images`.

With ``flip=True`` the embedding is ``emb(x) + emb(hflip(x))`` before any normalisation, as
InsightFace evaluates its verification packs; scores are cosines, so the sum acts like the
average of the two views.

:func:`embed_with_aux` also returns what a :class:`~dbrepro.models.FaceModel` computes on the way
(``forward(x, return_aux=True)``): with an RBM, the backbone's embedding ``"pre_rbm"`` and the soft
gate ``"gate"`` f(x) of DB Eq. 3, batched the same way.
"""

from __future__ import annotations

import dataclasses
import functools
from contextlib import nullcontext
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from dbrepro.config import resolve_device
from dbrepro.models import normalize_images

__all__ = ["embed", "embed_chunks", "embed_with_aux", "keep_rendered_distractors"]

Model = Callable[[torch.Tensor], torch.Tensor]


def _check_uint8_images(images: torch.Tensor, what: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        dtype = getattr(images, "dtype", None)
        raise ValueError(f"{what}: expected a uint8 tensor N x 3 x H x W, got {shape} of dtype {dtype}")


def _check_embeddings(out: Any, n: int) -> None:
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != n:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model output: expected embeddings ({n}, D), got {shape}")


def _forward(model: Model, batch: torch.Tensor, flip: bool, device: torch.device) -> torch.Tensor:
    x = normalize_images(batch.to(device, non_blocking=True))
    if flip:
        x = torch.cat((x, x.flip(3)))
    amp = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()
    with amp:
        out = model(x)
    _check_embeddings(out, len(x))
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
    parts = _batched(model, images, batch_size, device, lambda batch, dev: _forward(model, batch, flip, dev).cpu())
    return torch.cat(parts)


def _batched(model: Model, images: torch.Tensor, batch_size: int, device: str | torch.device,
             step: Callable[[torch.Tensor, torch.device], Any]) -> list[Any]:
    """``step(batch, device)`` for each batch of ``images``, the model in eval mode under ``no_grad``
    (an ``nn.Module`` moved to ``device``, its train/eval mode restored afterwards)."""
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
            return [step(images[i : i + batch_size], dev) for i in range(0, len(images), batch_size)]
    finally:
        if was_training:
            model.train()  # type: ignore[union-attr]


def embed_with_aux(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Embed uint8 images N x 3 x H x W with a model that also returns its auxiliary outputs.

    ``model(x, return_aux=True)`` must return ``(embeddings (B, D), aux)``, ``aux`` a dict of tensors
    with one row per image (a :class:`~dbrepro.models.FaceModel`: with an RBM, ``"pre_rbm"`` (B, D),
    the backbone's embedding x, and with the soft gate ``"gate"`` (B,), f(x) of DB Eq. 3). Returns the
    float32 embeddings (N, D) and each aux output concatenated over the batches (N, ...), on the CPU;
    batching, eval mode, ``no_grad`` and autocast as in :func:`embed` (no flip: a gate of a mirrored
    face is another sample, not a second view to add).
    """

    def step(batch: torch.Tensor, dev: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = normalize_images(batch.to(dev, non_blocking=True))
        amp = torch.autocast("cuda", dtype=torch.float16) if dev.type == "cuda" else nullcontext()
        with amp:
            out = model(x, return_aux=True)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise ValueError(f"model output: model(x, return_aux=True) must return (embeddings, aux dict), "
                             f"got {type(out).__name__}")
        emb, aux = out
        _check_embeddings(emb, len(x))
        for name, value in aux.items():
            if not isinstance(value, torch.Tensor) or value.ndim < 1 or len(value) != len(x):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"model output: aux[{name!r}] must have one row per image ({len(x)}), got {shape}")
        return emb.float().cpu(), {name: value.float().cpu() for name, value in aux.items()}

    parts = _batched(model, images, batch_size, device, step)
    names = list(parts[0][1])
    for i, (_, aux) in enumerate(parts):
        if list(aux) != names:
            raise ValueError(f"model output: batch {i} has aux outputs {list(aux)}, the first batch {names}")
    return torch.cat([emb for emb, _ in parts]), {name: torch.cat([aux[name] for _, aux in parts]) for name in names}


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


def keep_rendered_distractors(suite: Any) -> Any:
    """The identification ``suite`` with its distractor chunks rendered once and kept in memory.

    A synthetic MegaFace-like suite renders its distractors chunk by chunk on every evaluation
    (:class:`~dbrepro.data.base.DistractorSource`); a page that evaluates many models on it renders
    each chunk once this way. The same images come back (the renderer is deterministic), so results and
    their cache entries are unchanged. Memory: every distractor image at once, so only for distractor
    sets that fit (the synthetic ones); a suite without distractors is returned as it is.
    """
    from dbrepro.data.base import DistractorSource

    source = getattr(suite, "distractors", None)
    if source is None:
        return suite
    kept = DistractorSource(len(source), functools.lru_cache(maxsize=None)(source.render))
    return dataclasses.replace(suite, distractors=kept)
