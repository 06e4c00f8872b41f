"""MegaFace-style distractors: one new identity per image, rendered on demand by index.

A million distractors never sit in memory or on disk: distractor ``i`` is a fresh identity (id
``DISTRACTOR_ID_BASE + i``) whose domain follows the training frequencies, photographed once; a
pure function of ``(config, seed, i)``. :func:`distractor_source` wraps :func:`render_distractors`
as the :class:`~dbrepro.data.base.DistractorSource` of the MegaFace-like suite.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch

from dbrepro.data.base import DistractorSource

from .domains import AGE_BANDS, GROUPS
from .identities import sample_identities
from .photos import RENDER_BLOCK, photograph
from .rng import Draws, stream_keys

if TYPE_CHECKING:
    from .config import WorldConfig

#: distractor identity ids start here, far above any world's identities (disjoint by construction)
DISTRACTOR_ID_BASE = 1 << 40


def render_distractors(cfg: WorldConfig, seed: int, start: int, stop: int) -> torch.Tensor:
    """Distractors ``start..stop-1``: each a fresh identity (id ``DISTRACTOR_ID_BASE + i``) whose
    domain follows the training frequencies, in one image; a pure function of the index."""
    if not 0 <= start <= stop <= cfg.megaface_distractors:
        raise ValueError(f"distractor range [{start}, {stop}) outside [0, {cfg.megaface_distractors})")
    if start == stop:
        return torch.empty((0, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8)
    # extend to whole render blocks so the result never depends on the chunking
    lo = start - start % RENDER_BLOCK
    hi = min(cfg.megaface_distractors, stop + (-stop) % RENDER_BLOCK)
    index = np.arange(lo, hi, dtype=np.int64)
    d = Draws(stream_keys(seed, "distractor-domain", index))
    g = np.searchsorted(np.cumsum(cfg.group_freqs), d.uniform("group") * sum(cfg.group_freqs), side="right")
    a = np.searchsorted(np.cumsum(cfg.age_band_freqs), d.uniform("age_band") * sum(cfg.age_band_freqs), side="right")
    g = np.minimum(g, len(GROUPS) - 1)
    a = np.minimum(a, len(AGE_BANDS) - 1)
    ident = sample_identities(seed, DISTRACTOR_ID_BASE + index, np.asarray(GROUPS)[g], np.asarray(AGE_BANDS)[a],
                              cfg.identity_spread)
    keys = stream_keys(seed, "distractor", index)
    images, _ = photograph(ident, keys, nuisance=cfg.nuisance, image_size=cfg.image_size,
                           supersample=cfg.supersample, start=lo, profile_yaw=cfg.profile_yaw, ageing=cfg.ageing,
                           wide_pose_share=cfg.wide_pose_share)
    return images[start - lo: stop - lo]


def distractor_source(cfg: WorldConfig, seed: int) -> DistractorSource:
    """The distractors of a world, ``cfg.megaface_distractors`` of them, rendered chunk by chunk."""
    return DistractorSource(count=cfg.megaface_distractors, render=functools.partial(render_distractors, cfg, seed))
