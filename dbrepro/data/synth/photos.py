"""Photographs of identities: the one path from identity traits to pixels.

Every image of the world (training images, suite images, distractors, :meth:`World.render
<dbrepro.data.synth.world.World.render>`, :func:`~dbrepro.data.synth.visibility.trait_visibility`)
is made by :func:`photograph`: draw the image's conditions and renderer parameters
(:func:`~dbrepro.data.synth.nuisance.image_parameters`), then render them
(:func:`~dbrepro.data.synth.render.render_faces`) in aligned blocks of :data:`RENDER_BLOCK`
images on one torch thread.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import torch

from .nuisance import WIDE_POSE_SHARE, image_parameters
from .render import CLUTTER_PARAMS, COLOUR_PARAMS, SCALAR_PARAMS, render_faces

#: images are rendered in aligned blocks of this many, so any chunking gives identical bytes
RENDER_BLOCK = 128


def photograph(
    ident: pd.DataFrame,
    keys: np.ndarray,
    *,
    nuisance: float,
    image_size: int,
    supersample: int,
    yaw_mode: np.ndarray | None = None,
    age: np.ndarray | None = None,
    overrides: Mapping[str, Any] | None = None,
    start: int = 0,
    profile_yaw: tuple[float, float] | None = None,
    ageing: float = 1.0,
    wide_pose_share: float = WIDE_POSE_SHARE,
    profile_pose_share: float = 0.0,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """One photograph per row of ``ident`` (identity traits, as :func:`sample_identities
    <dbrepro.data.synth.identities.sample_identities>` gives them), the image of row ``i``
    seeded by ``keys[i]``.

    ``yaw_mode``, ``age`` and ``overrides`` impose conditions; ``profile_yaw``, ``ageing``,
    ``wide_pose_share`` and ``profile_pose_share`` are the world's (see :func:`~dbrepro.data.synth.nuisance.image_parameters`).
    ``start`` is the position of the first row in its stream: rows are rendered in blocks of
    :data:`RENDER_BLOCK` counted from position 0, so the bytes of an image never depend on how a caller
    chunks its requests.

    Returns ``(images, meta)``: uint8 ``N x 3 x image_size x image_size`` and one row of
    conditions (:data:`~dbrepro.data.synth.nuisance.NUISANCE_COLUMNS`) per image.
    """
    extra = {} if profile_yaw is None else {"profile_yaw": tuple(profile_yaw)}
    params, meta = image_parameters(ident, keys, nuisance, yaw_mode=yaw_mode, age=age, overrides=overrides,
                                    ageing=ageing, wide_pose_share=wide_pose_share,
                                    profile_pose_share=profile_pose_share, **extra)
    return _render_blocks(params, keys, image_size, supersample, start), meta


def _render_blocks(params: Mapping[str, np.ndarray], keys: np.ndarray, image_size: int, supersample: int,
                   start: int) -> torch.Tensor:
    """Render rows of ``params`` in aligned blocks of :data:`RENDER_BLOCK` counted from ``start``.

    Rows ``i`` and ``j`` of the same block are always rendered together. The renderer works on
    whole batches (vectorised kernels; rows and layers skipped when no image of the batch needs
    them), so an image's last bits can depend on its batch-mates; fixed blocks keep them fixed."""
    n = len(keys)
    out = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
    names = SCALAR_PARAMS + COLOUR_PARAMS + CLUTTER_PARAMS + ("clutter_rgb",)
    pos = 0
    with single_thread():
        while pos < n:
            stop = min(n, pos + RENDER_BLOCK - (start + pos) % RENDER_BLOCK)
            batch = {k: torch.from_numpy(np.ascontiguousarray(params[k][pos:stop], dtype=np.float32)) for k in names}
            out[pos:stop] = render_faces(batch, keys[pos:stop], image_size, supersample)
            pos = stop
    return out


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the body on one torch thread, restoring the previous thread count afterwards.

    The renderer is hundreds of element-wise ops on tensors of about a million floats; splitting
    each over OpenMP threads gains little on an idle machine and costs a lot when another
    process holds the cores (each op waits at a barrier)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
