"""How visible each facial trait is in the pictures: the yardstick of trait ownership.

:data:`~dbrepro.data.synth.identities.TRAIT_OWNER` deals the shape traits to the groups so that
every group's share is equally visible (equal sums of squared visibility), so that no group is
intrinsically easier to tell apart; :func:`trait_visibility` measures it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .domains import AGE_BANDS, GROUPS
from .identities import PARTS, TRAIT_OWNER, TRAITS, Z_RANGE, sample_identities
from .photos import photograph
from .rng import stream_keys


def trait_visibility(n_identities: int = 48, image_size: int = 32, nuisance: float = 1.0, seed: int = 5) -> pd.DataFrame:
    """How visible each trait of :data:`~dbrepro.data.synth.identities.PARTS` is: the mean
    absolute pixel change (0-255 scale) when the trait's latent goes from -1 to +1, everything
    else fixed, averaged over ``n_identities`` random identities (groups and age bands in turn)
    photographed with the given ``nuisance`` (supersampled twice).

    One row per trait: ``trait``, ``part``, ``owner`` (its group) and ``visibility``."""
    groups = np.asarray(GROUPS)[np.arange(n_identities) % len(GROUPS)]
    bands = np.asarray(AGE_BANDS)[np.arange(n_identities) % len(AGE_BANDS)]
    base = sample_identities(seed, np.arange(n_identities), groups, bands)
    keys = stream_keys(seed, "visibility", np.arange(n_identities))
    rows = []
    for t in TRAITS:
        if t.part not in PARTS:
            continue
        mid, half = (t.low + t.high) / 2, (t.high - t.low) / 2
        pair = []
        for sign in (-1.0, 1.0):
            ident = base.copy()
            ident[t.name] = mid + sign * half / Z_RANGE
            images, _ = photograph(ident, keys, nuisance=nuisance, image_size=image_size, supersample=2)
            pair.append(images.float())
        rows.append({"trait": t.name, "part": t.part, "owner": TRAIT_OWNER[t.name],
                     "visibility": float((pair[0] - pair[1]).abs().mean())})
    return pd.DataFrame(rows)
