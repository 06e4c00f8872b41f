"""Domains and long tails: who is in the training set.

A *domain* is a (group, age band) pair: ``G0``..``G3`` (an ethnicity-like attribute) times
``young`` / ``middle`` / ``old``. Both long tails of the world are set here:

- **domains**: the training identities of each domain are ``num_identities x P(group) x
  P(age band)``, rounded so that they sum to ``num_identities`` (:func:`domain_counts`);
- **classes**: the images per identity are deterministic quantiles of a Pareto law, the same
  multiset for every seed (:func:`power_law_class_sizes`), dealt to identities in a random
  order independent of their domain (:func:`training_identities`).

The number of groups and of age bands is fixed by :data:`GROUPS` and :data:`AGE_BANDS`; a
config's ``group_freqs`` and ``age_band_freqs`` must have one entry per name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .rng import name_code

if TYPE_CHECKING:
    from .config import WorldConfig

GROUPS: tuple[str, ...] = ("G0", "G1", "G2", "G3")
AGE_BANDS: tuple[str, ...] = ("young", "middle", "old")
#: base-age range (years) of each age band (the DB paper's AFW: [0-30), [30-60), [60-90))
AGE_BAND_YEARS: dict[str, tuple[float, float]] = {"young": (16.0, 30.0), "middle": (30.0, 60.0), "old": (60.0, 85.0)}
#: the youngest and oldest age an image may show (years)
AGE_MIN, AGE_MAX = 12.0, 90.0


def domain_name(group: str, age_band: str) -> str:
    """How a domain is written in every table: ``"G2/old"``."""
    return f"{group}/{age_band}"


def power_law_class_sizes(cfg: WorldConfig) -> np.ndarray:
    """Images per training identity, largest first: quantiles of a Pareto law clipped to
    ``[min_images, max_images]`` (deterministic, so every world has exactly this shape)::

        n_i = min(max_images, floor(min_images * q_i ** (-1 / class_size_exponent))),  q_i = (i + 1/2) / C

    These are the sizes a config asks for; :func:`dbrepro.data.splits.class_sizes` counts the
    images per label of any training set."""
    q = (np.arange(cfg.num_identities) + 0.5) / cfg.num_identities
    n = np.floor(cfg.min_images * q ** (-1.0 / cfg.class_size_exponent))
    return np.clip(n, cfg.min_images, cfg.max_images).astype(np.int64)


def domain_counts(cfg: WorldConfig) -> pd.DataFrame:
    """Training identities per domain: largest-remainder rounding of ``num_identities x P(domain)``."""
    p = np.outer(cfg.group_freqs, cfg.age_band_freqs).ravel()
    raw = cfg.num_identities * p
    n = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - n), kind="stable")
    n[order[: cfg.num_identities - n.sum()]] += 1
    groups = np.repeat(GROUPS, len(AGE_BANDS))
    bands = np.tile(AGE_BANDS, len(GROUPS))
    return pd.DataFrame({"group": groups, "age_band": bands, "domain": [domain_name(g, a) for g, a in zip(groups, bands)],
                         "frequency": p, "identities": n})


def training_identities(cfg: WorldConfig, seed: int) -> pd.DataFrame:
    """The training roster, one row per identity (``group``, ``age_band``, ``n_images``): domain
    counts from :func:`domain_counts`, class sizes from :func:`power_law_class_sizes`, both
    dealt in independent random orders (a ``numpy`` generator seeded with ``seed`` and the
    stream name), so class size is independent of the domain."""
    rng = np.random.default_rng([seed, name_code("train-identities")])
    counts = domain_counts(cfg)
    groups = np.repeat(counts["group"].to_numpy(), counts["identities"].to_numpy())
    bands = np.repeat(counts["age_band"].to_numpy(), counts["identities"].to_numpy())
    order = rng.permutation(cfg.num_identities)
    sizes = rng.permutation(power_law_class_sizes(cfg))
    return pd.DataFrame({"group": groups[order], "age_band": bands[order], "n_images": sizes})
