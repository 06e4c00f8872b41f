"""The synthetic long-tailed face world: the book's default data.

No face dataset can ship with the book, and real face datasets carry no domain labels. This
module generates a world of procedurally drawn faces in which identity, domain and every
nuisance are known exactly, with long tails in both classes and domains::

    world = make_world("cpu", seed=0)
    world.train            # TensorFaces: uint8 N x 3 x H x W, labels 0..C-1, meta per image
    world.suites["rfw"]    # PairSuite with per-pair 'group'
    world.identities       # one row per identity (train and test)
    world.domain_table()   # identities and images per domain in training

The generative model
--------------------
*Identities.* Every identity has a group (``G0``..``G3``, an ethnicity-like attribute), an age
band (``young`` 16-30, ``middle`` 30-60, ``old`` 60-85 years), a sex, and about 50 facial traits
(head shape, eyes, brows, nose, mouth, hair, colours, ears, marks, ageing rates): see
:data:`TRAITS`. Groups differ in their *mean* face (skin, hair and eye colour; fixed offsets of
every shape trait, :data:`GROUP_MEANS`) **and in their covariance**: every shape trait is owned by
one group (:data:`TRAIT_OWNER`), whose people vary a lot in it while the other groups vary
little, so ``G0``'s people differ mostly in jaw, chin, eye tilt and hair length, ``G3``'s in head
shape, eye opening, nose and mouth width and hair volume. The traits were dealt so that every
group's share is equally visible (:func:`trait_visibility`), so no group is intrinsically easier
to tell apart; a model trained mostly on ``G0`` learns ``G0``'s traits and transfers
imperfectly to the rare groups. Age bands change proportions and texture on top.

*Domains* are (group, age band) pairs with long-tailed, configurable frequencies (the product
of ``group_freqs`` and ``age_band_freqs``; by default the most frequent domain has ~17x the
identities of the rarest). *Class sizes* follow a power law independent of the domain
(deterministic quantiles of a Pareto law: a few head identities with 100+ images, most with
fewer than 20, so Range Loss's "tail = fewer than 20 images" rule applies as written).

*Images.* Each image of an identity varies pose (yaw, pitch, roll after a landmark-like
alignment), expression (smile, open mouth, brows), age (the identity's base age +- a few years:
proportions, wrinkles, greying, receding hair), illumination (direction, ambient share,
intensity, colour temperature), occlusion (glasses habit, sunglasses, hats, masks, patches),
haircut changes, blur, sensor noise and a cluttered background. ``nuisance`` scales all of it.

Everything is a pure function of ``(config, seed)``: per-image and per-identity randomness is
counter-based (a hash of seed, stream, index and variable name), so a distractor is the same
image whichever chunk renders it, and adding a variable never changes the others.
Worlds are cached under ``dbrepro.paths.cache_dir("worlds")`` keyed by the config, the seed
and :data:`WORLD_VERSION`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from scipy.special import ndtr, ndtri

from dbrepro.config import get_profile
from dbrepro.data import suites as suite_plans
from dbrepro.data.base import AllVsAllSuite, DistractorSource, IdentificationSuite, PairSuite, Suite, TensorFaces
from dbrepro.data.synth_render import (
    CLUTTER_PARAMS, COLOUR_PARAMS, MIN_IMAGE_SIZE, N_CLUTTER, SCALAR_PARAMS, hash_key, hash_uniform, render_faces,
)
from dbrepro.paths import atomic_torch_save, cache_dir, config_hash

#: bump whenever the generator changes what a (config, seed) renders: invalidates cached worlds
WORLD_VERSION = "14"

GROUPS: tuple[str, ...] = ("G0", "G1", "G2", "G3")
AGE_BANDS: tuple[str, ...] = ("young", "middle", "old")
#: base-age range (years) of each age band (the DB paper's AFW: [0-30), [30-60), [60-90))
AGE_BAND_YEARS: dict[str, tuple[float, float]] = {"young": (16.0, 30.0), "middle": (30.0, 60.0), "old": (60.0, 85.0)}
#: ages an image may show
AGE_LIMITS = (suite_plans.AGE_MIN, suite_plans.AGE_MAX)
#: images are rendered in aligned blocks of this many, so any chunking gives identical bytes
RENDER_BLOCK = 128
SUITE_NAMES = ("lfw", "cplfw", "calfw", "agedb", "rfw", "afw", "blufr", "megaface")


# ----------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and knobs of a synthetic world. Presets: :data:`PRESETS`."""

    #: output resolution (square) and the supersampling factor of the renderer
    image_size: int = 32
    supersample: int = 2
    #: training identities and their class sizes: deterministic power-law quantiles
    #: ``n_i = min(max_images, floor(min_images * q_i ** (-1 / class_size_exponent)))``
    num_identities: int = 600
    min_images: int = 4
    max_images: int = 150
    class_size_exponent: float = 1.0
    #: domain frequencies: P(group) x P(age band), each summing to 1
    group_freqs: tuple[float, ...] = (0.5, 0.25, 0.15, 0.10)
    age_band_freqs: tuple[float, ...] = (0.5, 0.35, 0.15)
    #: scale of identity variation (bigger: easier to tell people apart)
    identity_spread: float = 1.0
    #: scale of every per-image nuisance (0: canonical frontal, neutral, evenly lit photos; 1: the
    #: widest variation the generator draws). 0.7 puts LFW-like accuracy of the cpu recipe at about 91-94%.
    nuisance: float = 0.7
    #: evaluation suites (pair counts are totals over the 10 folds)
    lfw_pairs: int = 6000
    cplfw_pairs: int = 2000
    calfw_pairs: int = 2000
    agedb_pairs: int = 2000
    rfw_pairs_per_group: int = 1200
    afw_pairs_per_band: int = 1200
    blufr_identities: int = 300
    blufr_images_per_identity: int = 4
    megaface_identities: int = 100
    megaface_images_per_identity: int = 6
    megaface_distractors: int = 10000

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, WorldConfig] = {
    "smoke": WorldConfig(
        num_identities=40, min_images=3, max_images=30,
        lfw_pairs=200, cplfw_pairs=100, calfw_pairs=100, agedb_pairs=100,
        rfw_pairs_per_group=60, afw_pairs_per_band=60,
        blufr_identities=60, blufr_images_per_identity=3,
        megaface_identities=20, megaface_images_per_identity=3, megaface_distractors=200,
    ),
    "cpu": WorldConfig(),
    "paper": WorldConfig(
        image_size=112, supersample=1, num_identities=2000, min_images=4, max_images=300,
        lfw_pairs=6000, cplfw_pairs=6000, calfw_pairs=6000, agedb_pairs=6000,
        rfw_pairs_per_group=6000, afw_pairs_per_band=6000,
        blufr_identities=1000, blufr_images_per_identity=5,
        megaface_identities=530, megaface_images_per_identity=6, megaface_distractors=1_000_000,
    ),
}

_PAIR_FIELDS = ("lfw_pairs", "cplfw_pairs", "calfw_pairs", "agedb_pairs", "rfw_pairs_per_group", "afw_pairs_per_band")


def validate_config(cfg: WorldConfig) -> None:
    """Raise ``ValueError`` naming the field and its allowed range for anything unusable."""
    def need(ok: bool, field: str, allowed: str) -> None:
        if not ok:
            raise ValueError(f"WorldConfig.{field} = {getattr(cfg, field)!r}: must be {allowed}")

    need(isinstance(cfg.image_size, int) and cfg.image_size >= MIN_IMAGE_SIZE, "image_size",
         f"an integer >= {MIN_IMAGE_SIZE} (smaller images cannot show a face)")
    need(isinstance(cfg.supersample, int) and 1 <= cfg.supersample <= 4, "supersample", "an integer in [1, 4]")
    need(isinstance(cfg.num_identities, int) and cfg.num_identities >= 2, "num_identities", "an integer >= 2")
    need(isinstance(cfg.min_images, int) and cfg.min_images >= 2, "min_images", "an integer >= 2")
    need(isinstance(cfg.max_images, int) and cfg.max_images >= cfg.min_images, "max_images", f"an integer >= min_images ({cfg.min_images})")
    need(cfg.class_size_exponent > 0, "class_size_exponent", "> 0")
    for name, n in (("group_freqs", len(GROUPS)), ("age_band_freqs", len(AGE_BANDS))):
        freqs = getattr(cfg, name)
        need(len(freqs) == n, name, f"{n} frequencies (one per {'group' if n == len(GROUPS) else 'age band'})")
        need(all(f > 0 for f in freqs), name, "positive frequencies")
        need(abs(sum(freqs) - 1.0) < 1e-6, name, f"frequencies summing to 1 (they sum to {sum(freqs):.6g})")
    need(cfg.identity_spread > 0, "identity_spread", "> 0")
    need(cfg.nuisance >= 0, "nuisance", ">= 0")
    for name in _PAIR_FIELDS:
        n = getattr(cfg, name)
        need(isinstance(n, int) and n >= 20 and n % 20 == 0, name,
             "a positive multiple of 20 (10 folds, each half matched)")
    need(isinstance(cfg.blufr_identities, int) and cfg.blufr_identities >= 2, "blufr_identities", "an integer >= 2")
    need(isinstance(cfg.blufr_images_per_identity, int) and cfg.blufr_images_per_identity >= 2,
         "blufr_images_per_identity", "an integer >= 2")
    need(isinstance(cfg.megaface_identities, int) and cfg.megaface_identities >= 1, "megaface_identities", "an integer >= 1")
    need(isinstance(cfg.megaface_images_per_identity, int) and cfg.megaface_images_per_identity >= 2,
         "megaface_images_per_identity", "an integer >= 2 (one gallery image and at least one probe)")
    need(isinstance(cfg.megaface_distractors, int) and cfg.megaface_distractors >= 1, "megaface_distractors", "an integer >= 1")


def world_config(profile: str = "cpu", config: WorldConfig | Mapping[str, Any] | None = None) -> WorldConfig:
    """The world of a profile: its ``world["preset"]`` with the profile's other ``world`` keys
    and then ``config`` (a mapping of field overrides, or a whole :class:`WorldConfig`) applied."""
    if isinstance(config, WorldConfig):
        validate_config(config)
        return config
    prof = get_profile(profile)
    world = dict(prof.world)
    preset = world.pop("preset", "cpu")
    return preset_config(preset, {**world, **dict(config or {})}, where=f" in profile {prof.name!r}")


def preset_config(preset: str, overrides: Mapping[str, Any] | None = None, where: str = "") -> WorldConfig:
    """``PRESETS[preset]`` with field ``overrides`` (lists, as JSON gives them, become tuples), validated."""
    if preset not in PRESETS:
        raise ValueError(f"unknown world preset {preset!r}{where}: choose one of {', '.join(PRESETS)}")
    overrides = dict(overrides or {})
    fields = {f.name for f in dataclasses.fields(WorldConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown WorldConfig field(s) {unknown}: known fields are {sorted(fields)}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    cfg = dataclasses.replace(PRESETS[preset], **overrides)
    validate_config(cfg)
    return cfg


def class_sizes(cfg: WorldConfig) -> np.ndarray:
    """Images per training identity, largest first: quantiles of a Pareto law clipped to
    ``[min_images, max_images]`` (deterministic, so every world has exactly this shape)."""
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
    return pd.DataFrame({"group": groups, "age_band": bands, "domain": [f"{g}/{a}" for g, a in zip(groups, bands)],
                         "frequency": p, "identities": n})


# ----------------------------------------------------------------------------------------------
# the identity model


@dataclass(frozen=True)
class Trait:
    """A facial trait with its range ``[low, high]`` (face units, or 0..1 for colours).

    Traits of :data:`PARTS` are linear in their latent ``z`` (clipped to the range, see
    :data:`Z_RANGE`) with group-dependent mean and spread; colour traits have group means in
    value units; the others follow the same distribution in every group."""

    name: str
    part: str
    low: float
    high: float


#: Facial parts whose identity variation differs by group (see TRAIT_OWNER).
PARTS = ("shape", "eyes", "brows", "nose", "mouth", "hair")

TRAITS: tuple[Trait, ...] = (
    Trait("face_width", "shape", 0.645, 0.715), Trait("jaw_square", "shape", 1.5, 4.5),
    Trait("chin", "shape", 0.93, 1.12), Trait("crown", "shape", 0.88, 1.12), Trait("cheek", "shape", 0.0, 2.0),
    Trait("eye_size", "eyes", 0.08, 0.17), Trait("eye_open", "eyes", 0.45, 1.3),
    Trait("eye_tilt", "eyes", -0.25, 0.35), Trait("eye_spacing", "eyes", 0.25, 0.37),
    Trait("brow_thick", "brows", 0.015, 0.08), Trait("brow_arch", "brows", 0.0, 0.12),
    Trait("brow_height", "brows", 0.08, 0.27), Trait("brow_slant", "brows", -0.14, 0.16),
    Trait("brow_len", "brows", 0.08, 0.23),
    Trait("nose_len", "nose", 0.32, 0.60), Trait("nose_width", "nose", 0.05, 0.20),
    Trait("nose_tip", "nose", 0.02, 0.11), Trait("nose_bridge", "nose", 0.02, 0.11),
    Trait("mouth_width", "mouth", 0.12, 0.36), Trait("mouth_gap", "mouth", 0.12, 0.32),
    Trait("lip_upper", "mouth", 0.008, 0.075), Trait("lip_lower", "mouth", 0.012, 0.10),
    Trait("mouth_curve", "mouth", -0.07, 0.07),
    Trait("hairline", "hair", -0.80, -0.40), Trait("hair_recess", "hair", 0.0, 0.3),
    Trait("hair_volume", "hair", 0.04, 0.17), Trait("hair_length", "hair", -0.1, 1.0),
    Trait("fringe", "hair", -1.5, 1.0), Trait("parting", "hair", -1.0, 1.0),
    # colours: group means differ (COLOUR_MEANS), spreads (COLOUR_SPREAD) do not
    Trait("skin_tone", "colour", 0.0, 1.0), Trait("skin_warmth", "colour", -1.0, 1.0),
    Trait("hair_tone", "colour", 0.0, 1.0), Trait("hair_red", "colour", 0.0, 1.0),
    Trait("iris_hue", "colour", 0.0, 1.0), Trait("lip_red", "colour", 0.0, 1.0),
    # the same distribution in every group
    Trait("ear_size", "other", 0.20, 0.28), Trait("ear_y", "other", 0.14, 0.26),
    Trait("beard_density", "other", 0.0, 1.0), Trait("moustache_density", "other", 0.0, 1.0),
    Trait("mole", "other", 0.0, 1.0), Trait("mole_u", "other", -0.45, 0.45), Trait("mole_v", "other", -0.3, 0.75),
    Trait("blush", "other", 0.0, 1.0), Trait("glasses_habit", "other", 0.0, 1.0),
    Trait("wrinkle_rate", "other", 0.0, 1.0), Trait("grey_onset", "other", 38.0, 66.0),
    Trait("recede_rate", "other", 0.0, 1.0),
)

#: Each group's identity variation. Every trait of PARTS is *owned* by one group: a group's
#: identities vary a lot (latent sd HIGH_SD) in the traits it owns and less (LOW_SD) in the
#: others, so G0's people differ most in jaw, chin, eye tilt, brow thickness and hair length,
#: G3's in head shape, eye opening, nose and mouth width and hair volume; a network trained mostly on G0
#: learns to look at G0's traits and transfers imperfectly to G3. The traits were dealt so that
#: every group owns traits of at least five parts and about the same total *visibility* (the
#: sum over its traits of the squared pixel change per latent unit: :func:`trait_visibility`),
#: so that no group is intrinsically easier to tell apart.
TRAIT_OWNER: dict[str, str] = {
    "jaw_square": "G0", "chin": "G0", "eye_tilt": "G0", "brow_thick": "G0", "mouth_gap": "G0", "hair_length": "G0",
    "parting": "G0",
    "face_width": "G1", "eye_size": "G1", "brow_height": "G1", "nose_len": "G1", "nose_tip": "G1", "lip_upper": "G1",
    "lip_lower": "G1",
    "eye_spacing": "G2", "brow_arch": "G2", "brow_slant": "G2", "nose_bridge": "G2", "mouth_curve": "G2",
    "hairline": "G2", "fringe": "G2",
    "crown": "G3", "cheek": "G3", "eye_open": "G3", "brow_len": "G3", "nose_width": "G3", "mouth_width": "G3",
    "hair_recess": "G3", "hair_volume": "G3",
}
HIGH_SD, LOW_SD = 1.7, 0.3
#: A per-group factor on the latent spread, calibrated so that a model trained on a
#: *domain-balanced* world verifies every group about equally well (pixel visibility is only a
#: proxy for what a CNN finds easy). Balanced world, cpu recipe, CosFace s=32, 3 seeds, RFW
#: accuracy G0 / G1 / G2 / G3: factors (1.1, 1, 1, 1) gave 73.0 / 74.4 / 73.7 / 76.9%; these
#: factors give 74.2 / 76.7 / 75.4 / 76.0% (the seed-to-seed spread is about 1-2 points).
#: That calibration used the earlier cpu recipe (batches of 256, s = 32). With the current one
#: (batches of 64, s = 16) the balanced control leaves G0 about 5 points below G1 (81.8 vs 86.9%);
#: not recalibrated: the 00-synthetic-faces chapter prints the per-group spread of the control and
#: judges the domain-gap premise against it (long-tailed gap vs balanced gap).
GROUP_SPREAD: dict[str, float] = {"G0": 1.18, "G1": 1.0, "G2": 1.02, "G3": 0.92}


def _group_trait_sd() -> dict[str, dict[str, float]]:
    return {g: {t.name: GROUP_SPREAD[g] * (HIGH_SD if TRAIT_OWNER[t.name] == g else LOW_SD)
                for t in TRAITS if t.part in PARTS} for g in GROUPS}


#: latent sd per (group, trait) for the traits of PARTS (see HIGH_SD)
GROUP_TRAIT_SD: dict[str, dict[str, float]] = _group_trait_sd()


def _group_means() -> dict[str, dict[str, float]]:
    """Each group's average face: fixed latent offsets (sd GROUP_MEAN_SD, clipped to +-1.6 sd,
    drawn once with seed 2020) on every trait of PARTS. Colour means: COLOUR_MEANS."""
    rng = np.random.default_rng(2020)
    names = [t.name for t in TRAITS if t.part in PARTS]
    offsets = {g: np.clip(GROUP_MEAN_SD * rng.standard_normal(len(names)), -1.6 * GROUP_MEAN_SD, 1.6 * GROUP_MEAN_SD)
               for g in GROUPS}
    return {g: dict(zip(names, offsets[g])) for g in GROUPS}


GROUP_MEAN_SD = 0.8
#: Group means of the identity latent (z units); traits not listed have mean 0.
GROUP_MEANS: dict[str, dict[str, float]] = _group_means()
#: Colour traits in value units (0..1): each group's mean, and one spread for all groups.
COLOUR_MEANS: dict[str, dict[str, float]] = {
    "G0": {"skin_tone": 0.84, "hair_tone": 0.45, "iris_hue": 0.50},
    "G1": {"skin_tone": 0.66, "hair_tone": 0.18, "iris_hue": 0.15},
    "G2": {"skin_tone": 0.50, "hair_tone": 0.20, "iris_hue": 0.20},
    "G3": {"skin_tone": 0.34, "hair_tone": 0.16, "iris_hue": 0.12},
}
COLOUR_SPREAD = {"skin_tone": 0.11, "hair_tone": 0.16, "iris_hue": 0.15, "skin_warmth": 0.3, "lip_red": 0.25, "hair_red": 1.0}
#: latent units spanning half a trait's range: ``value = mid + half_range * clip(z / Z_RANGE, -1, 1)``
Z_RANGE = 2.5
#: Latent shift of a man's traits (a woman's is minus half of it, a man's plus half).
SEX_SHIFT = {
    "jaw_square": 0.8, "brow_thick": 0.8, "face_width": 0.4, "chin": 0.3, "hair_length": -1.8, "fringe": -0.4,
    "lip_upper": -0.4, "lip_lower": -0.3, "eye_size": -0.3, "hair_recess": 0.8, "nose_len": 0.3,
    "nose_width": 0.3, "brow_height": -0.4, "blush": -0.8,
}


class _Draws:
    """Named, independent random variables per row, from counter-based hashing of ``keys``.

    ``uniform(name)`` for row ``i`` depends only on ``(keys[i], name)``, so rows can be drawn in
    any order or chunk, and adding a new name never changes the existing ones."""

    def __init__(self, keys: np.ndarray):
        self.keys = np.asarray(keys, dtype=np.uint64)

    def uniform(self, name: str, low: float = 0.0, high: float = 1.0) -> np.ndarray:
        u = hash_uniform(hash_key(self.keys, zlib.crc32(name.encode())), 1)[:, 0]
        return low + (high - low) * u

    def normal(self, name: str) -> np.ndarray:
        return ndtri(np.clip(self.uniform(name), 1e-12, 1.0 - 1e-12))


def _stream(seed: int, name: str, index: np.ndarray) -> np.ndarray:
    """One uint64 key per index of a named stream (train images, a suite's images, ...)."""
    return hash_key(np.uint64(seed), zlib.crc32(name.encode()), np.asarray(index, dtype=np.uint64))


def sample_identities(seed: int, identity_ids: np.ndarray, groups: Iterable[str], age_bands: Iterable[str],
                      spread: float = 1.0) -> pd.DataFrame:
    """Traits of identities (one row each), a pure function of ``(seed, identity id)`` and domain."""
    ids = np.asarray(identity_ids, dtype=np.int64)
    groups = np.asarray(list(groups))
    bands = np.asarray(list(age_bands))
    d = _Draws(_stream(seed, "identity", ids))
    male = d.uniform("sex") < 0.5
    out: dict[str, Any] = {"identity": ids, "group": groups, "age_band": bands,
                           "domain": np.char.add(np.char.add(groups.astype(str), "/"), bands.astype(str)),
                           "sex": np.where(male, "M", "F")}
    lo = np.array([AGE_BAND_YEARS[b][0] for b in bands])
    hi = np.array([AGE_BAND_YEARS[b][1] for b in bands])
    out["base_age"] = lo + (hi - lo) * d.uniform("base_age")
    sex = np.where(male, 0.5, -0.5)
    for t in TRAITS:
        z = d.normal(t.name)
        if t.part in PARTS:  # linear in the latent, clipped to the trait's range
            sd = spread * np.array([GROUP_TRAIT_SD[g][t.name] for g in groups])
            mean = np.array([GROUP_MEANS[g][t.name] for g in groups]) + sex * SEX_SHIFT.get(t.name, 0.0)
            out[t.name] = t.low + (t.high - t.low) * np.clip(0.5 + (mean + sd * z) / (2 * Z_RANGE), 0.0, 1.0)
        elif t.part == "colour" and t.name != "hair_red":  # value units, one spread for every group
            mean = np.array([COLOUR_MEANS[g].get(t.name, 0.5) for g in groups])
            v = np.clip(mean + spread * COLOUR_SPREAD[t.name] * z, 0.0, 1.0)
            out[t.name] = t.low + (t.high - t.low) * v
        else:  # the same (uniform) distribution in every group
            mean = sex * SEX_SHIFT.get(t.name, 0.0)
            out[t.name] = t.low + (t.high - t.low) * ndtr(mean + z)
    df = pd.DataFrame(out)
    # thresholded traits: most people have no fringe / beard / mole / glasses habit
    df["fringe"] = df["fringe"].clip(lower=0.0)
    df["beard"] = np.where(male, np.clip((df["beard_density"] - 0.6) * 3.0, 0.0, 1.0), 0.0)
    df["moustache"] = np.where(male, np.clip((df["moustache_density"] - 0.7) * 4.0, 0.0, 1.0), 0.0)
    df["mole"] = (df["mole"] > 0.8).astype(np.float64)
    df["glasses_habit"] = np.clip((df["glasses_habit"] - 0.78) * 4.0, 0.0, 0.9)
    df["hair_red"] = np.clip((df["hair_red"] - 0.88) * 6.0, 0.0, 0.7)
    return df.drop(columns=["beard_density", "moustache_density"])


def trait_visibility(n_identities: int = 48, image_size: int = 32, nuisance: float = 1.0, seed: int = 5) -> pd.DataFrame:
    """How visible each trait of :data:`PARTS` is: the mean absolute pixel change (0-255 scale)
    when the trait's latent goes from -1 to +1, everything else fixed, averaged over
    ``n_identities`` random identities photographed with the given ``nuisance``.

    This is the yardstick by which :data:`TRAIT_OWNER` deals traits to groups (equal sums of
    squared visibility), so that every group is equally easy to tell apart."""
    groups = np.asarray(GROUPS)[np.arange(n_identities) % len(GROUPS)]
    bands = np.asarray(AGE_BANDS)[np.arange(n_identities) % len(AGE_BANDS)]
    base = sample_identities(seed, np.arange(n_identities), groups, bands)
    keys = _stream(seed, "visibility", np.arange(n_identities))
    rows = []
    for t in TRAITS:
        if t.part not in PARTS:
            continue
        mid, half = (t.low + t.high) / 2, (t.high - t.low) / 2
        pair = []
        for sign in (-1.0, 1.0):
            ident = base.copy()
            ident[t.name] = mid + sign * half / Z_RANGE
            params, _ = image_parameters(ident, keys, nuisance)
            pair.append(render(params, keys, image_size, 2).float())
        rows.append({"trait": t.name, "part": t.part, "owner": TRAIT_OWNER[t.name],
                     "visibility": float((pair[0] - pair[1]).abs().mean())})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# the image model

_SKIN_RAMP = (np.array([0.0, 0.33, 0.66, 1.0]),
              np.array([[0.32, 0.20, 0.13], [0.52, 0.35, 0.24], [0.76, 0.56, 0.42], [0.96, 0.80, 0.69]]))
_HAIR_RAMP = (np.array([0.0, 0.25, 0.5, 0.75, 1.0]),
              np.array([[0.05, 0.04, 0.04], [0.22, 0.15, 0.10], [0.40, 0.28, 0.17], [0.60, 0.46, 0.29], [0.82, 0.70, 0.46]]))
_IRIS_RAMP = (np.array([0.0, 0.5, 0.75, 1.0]),
              np.array([[0.18, 0.10, 0.06], [0.40, 0.30, 0.14], [0.32, 0.45, 0.30], [0.35, 0.52, 0.72]]))
_GREY_HAIR = np.array([0.80, 0.79, 0.77])
_RED_HAIR = np.array([0.55, 0.22, 0.10])


def _ramp_rgb(ramp, x: np.ndarray) -> np.ndarray:
    knots, colours = ramp
    return np.stack([np.interp(x, knots, colours[:, c]) for c in range(3)], axis=1)


#: conditions a suite slot can impose (see dbrepro.data.suites)
FRONTAL_YAW = 8.0
PROFILE_YAW = (45.0, 62.0)

#: per-image meta columns written for every image (angles in degrees, ages in years)
NUISANCE_COLUMNS = (
    "age", "yaw", "pitch", "roll", "smile", "mouth_open", "brow_raise",
    "light_azimuth", "light_elevation", "light_ambient", "light_intensity", "light_temperature",
    "glasses", "sunglasses", "occluder", "blur", "noise",
)


def image_parameters(
    ident: pd.DataFrame,
    keys: np.ndarray,
    nuisance: float = 1.0,
    yaw_mode: np.ndarray | None = None,
    age: np.ndarray | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Renderer parameters and meta for one image per row of ``ident`` (identity traits).

    ``keys`` seed each image's nuisances. ``yaw_mode`` ("frontal" / "profile" / "") and ``age``
    (years, NaN = free) are suite conditions; ``overrides`` fixes any column of
    :data:`NUISANCE_COLUMNS` (broadcast), e.g. ``{"yaw": np.linspace(-60, 60, 7)}``.
    Returns ``(params, meta)``: float arrays for :func:`~dbrepro.data.synth_render.render_faces`
    and a DataFrame with the nuisance values in readable units.
    """
    n = len(ident)
    d = _Draws(keys)
    s = float(nuisance)
    col = {k: ident[k].to_numpy(dtype=np.float64) for k in ident.columns if k not in
           ("identity", "group", "age_band", "domain", "sex", "split", "n_images")}
    meta: dict[str, np.ndarray] = {}

    # --- pose (degrees in meta, radians to the renderer)
    wide = d.uniform("yaw_wide") < 0.3
    yaw = np.where(wide, 32.0, 14.0) * s * d.normal("yaw")
    yaw = np.clip(yaw, -70.0, 70.0)
    if yaw_mode is not None:
        yaw_mode = np.asarray(yaw_mode)
        frontal = d.uniform("frontal_yaw", -FRONTAL_YAW, FRONTAL_YAW)
        side = np.where(d.uniform("profile_side") < 0.5, -1.0, 1.0)
        profile = side * d.uniform("profile_yaw", *PROFILE_YAW)
        yaw = np.where(yaw_mode == "frontal", frontal, np.where(yaw_mode == "profile", profile, yaw))
    meta["yaw"] = yaw
    meta["pitch"] = np.clip(8.0 * s * d.normal("pitch"), -25.0, 25.0)
    meta["roll"] = np.clip(4.0 * s * d.normal("roll"), -12.0, 12.0)

    # --- age
    img_age = col["base_age"] + 4.0 * s * d.normal("age")
    if age is not None:
        age = np.asarray(age, dtype=np.float64)
        img_age = np.where(np.isnan(age), img_age, age)
    meta["age"] = np.clip(img_age, *AGE_LIMITS)

    # --- expression
    meta["smile"] = np.clip(0.2 + 0.35 * s * d.normal("smile"), 0.0, 1.0)
    meta["mouth_open"] = np.where(d.uniform("mouth_opens") < 0.2 * min(s, 1.0), d.uniform("mouth_open", 0.2, 1.0), 0.0)
    meta["brow_raise"] = np.clip(0.45 * s * d.normal("brow_raise"), -1.0, 1.0)

    # --- light
    meta["light_azimuth"] = 55.0 * s * d.uniform("light_azimuth", -1.0, 1.0)
    meta["light_elevation"] = 15.0 + 25.0 * s * d.uniform("light_elevation", -1.0, 1.0)
    meta["light_ambient"] = np.clip(0.55 + 0.2 * s * d.uniform("light_ambient", -1.0, 1.0), 0.2, 1.0)
    meta["light_intensity"] = np.exp(0.2 * s * d.normal("light_intensity"))
    meta["light_temperature"] = np.clip(s * d.uniform("light_temperature", -1.0, 1.0), -1.5, 1.5)

    # --- occlusion
    p_glasses = np.clip(col["glasses_habit"] * min(s, 1.0) + 0.03 * s, 0.0, 1.0)
    meta["glasses"] = (d.uniform("glasses") < p_glasses).astype(np.float64)
    meta["sunglasses"] = meta["glasses"] * (d.uniform("sunglasses") < 0.12)
    u_occ = d.uniform("occluder")
    meta["occluder"] = np.select([u_occ < 0.04 * s, u_occ < 0.07 * s, u_occ < 0.12 * s], ["hat", "mask", "patch"], "none")

    # --- photo
    meta["blur"] = np.where(d.uniform("blurred") < 0.3 * min(s, 1.0), d.uniform("blur", 0.3, 0.8) * max(s, 1.0), 0.0)
    meta["noise"] = 0.02 * s * d.uniform("noise")

    for k, v in (overrides or {}).items():
        if k not in NUISANCE_COLUMNS:
            raise ValueError(f"cannot override {k!r}: choose among {', '.join(NUISANCE_COLUMNS)}")
        meta[k] = np.broadcast_to(np.asarray(v), (n,)).copy()

    # --- what the renderer draws
    a = meta["age"]
    youth = np.clip((22.0 - a) / 8.0, 0.0, 1.0)
    old = np.clip((a - 40.0) / 40.0, 0.0, 1.0)
    male = (ident["sex"].to_numpy() == "M").astype(np.float64)
    p: dict[str, np.ndarray] = {}
    p["yaw"], p["pitch"], p["roll"] = np.radians(meta["yaw"]), np.radians(meta["pitch"]), np.radians(meta["roll"])
    p["shift_x"] = 0.025 * s * d.normal("shift_x")
    p["shift_y"] = 0.025 * s * d.normal("shift_y")
    p["scale"] = np.exp(0.04 * s * d.normal("scale"))
    p["face_width"] = col["face_width"] * (1.0 + 0.02 * youth)
    p["jaw_square"] = np.maximum(col["jaw_square"] + 0.6 * old - 0.3 * youth, 1.5)
    p["chin"] = col["chin"] + 0.03 * old - 0.04 * youth
    p["crown"] = col["crown"]
    p["cheek"] = np.clip(col["cheek"] + 0.4 * old, 0.0, 1.3)
    p["eye_size"] = col["eye_size"] * (1.0 + 0.12 * youth)
    p["eye_open"] = col["eye_open"] * (1.0 - 0.12 * old) * np.where(d.uniform("blink") < 0.04 * s, 0.3, 1.0)
    p["eye_tilt"] = col["eye_tilt"]
    p["eye_spacing"] = col["eye_spacing"]
    p["eye_y"] = np.zeros(n)
    p["gaze_x"] = np.clip(0.35 * s * d.normal("gaze_x"), -1.0, 1.0)
    p["gaze_y"] = np.clip(0.3 * s * d.normal("gaze_y"), -1.0, 1.0)
    p["brow_thick"] = col["brow_thick"] * (1.0 - 0.25 * old)
    for k in ("brow_arch", "brow_height", "brow_slant", "brow_len", "nose_tip", "nose_bridge", "mouth_width", "ear_y",
              "mole_u", "mole_v", "blush"):
        p[k] = col[k]
    p["nose_len"] = col["nose_len"] + 0.03 * old - 0.03 * youth
    p["nose_width"] = col["nose_width"] * (1.0 + 0.12 * old)
    p["mouth_gap"] = col["mouth_gap"] + 0.02 * old
    p["lip_upper"] = col["lip_upper"] * (1.0 - 0.25 * old)
    p["lip_lower"] = col["lip_lower"] * (1.0 - 0.2 * old)
    p["mouth_curve"] = col["mouth_curve"] - 0.015 * old
    p["smile"], p["mouth_open"], p["brow_raise"] = meta["smile"], meta["mouth_open"], meta["brow_raise"]
    p["ear_size"] = col["ear_size"] * (1.0 + 0.12 * old)
    recede = col["recede_rate"] * old * (0.4 + 0.6 * male)
    p["hairline"] = col["hairline"] - 0.3 * recede
    p["hair_recess"] = col["hair_recess"] + 0.15 * recede
    # haircuts change between photos: length, volume, fringe and parting side
    p["hair_volume"] = np.clip(col["hair_volume"] + 0.03 * s * d.normal("hair_volume"), 0.0, 0.35)
    p["hair_length"] = col["hair_length"] + 0.12 * s * d.normal("hair_length")
    p["fringe"] = np.clip(col["fringe"] + 0.1 * s * d.normal("fringe"), 0.0, 1.0)
    p["parting"] = col["parting"] * np.where(d.uniform("parting_flip") < 0.1 * min(s, 1.0), -1.0, 1.0)
    p["beard"] = col["beard"] * (0.8 + 0.2 * d.uniform("beard"))
    p["moustache"] = col["moustache"]
    p["mole_on"] = col["mole"]
    p["wrinkles"] = np.clip(old * (0.3 + 1.2 * col["wrinkle_rate"]), 0.0, 1.0)
    p["eye_bags"] = np.clip(old * 1.2 * (0.5 + col["wrinkle_rate"]), 0.0, 1.0)
    p["glasses"] = meta["glasses"]
    p["glasses_dark"] = meta["sunglasses"]
    occ = meta["occluder"]
    p["hat"] = (occ == "hat").astype(np.float64)
    p["hat_line"] = d.uniform("hat_line", -0.55, -0.3)
    p["mask"] = (occ == "mask").astype(np.float64)
    p["patch"] = (occ == "patch").astype(np.float64)
    p["patch_x"] = d.uniform("patch_x", -0.5, 0.5)
    p["patch_y"] = d.uniform("patch_y", -0.4, 0.6)
    p["patch_r"] = d.uniform("patch_r", 0.15, 0.3)
    p["light_azimuth"] = np.radians(meta["light_azimuth"])
    p["light_elevation"] = np.radians(meta["light_elevation"])
    p["light_ambient"] = meta["light_ambient"]
    p["light_intensity"] = meta["light_intensity"]
    p["blur"] = meta["blur"]
    p["noise"] = meta["noise"]
    p["bg_angle"] = d.uniform("bg_angle", 0.0, 2 * math.pi)

    # --- colours
    skin = _ramp_rgb(_SKIN_RAMP, col["skin_tone"])
    skin = skin * (1.0 + np.outer(col["skin_warmth"], [0.05, 0.0, -0.06]))
    skin = skin * (1.0 - 0.1 * old[:, None]) + 0.05 * old[:, None]
    p["skin_rgb"] = skin
    hair = _ramp_rgb(_HAIR_RAMP, col["hair_tone"])
    hair = hair + col["hair_red"][:, None] * (_RED_HAIR * (0.5 + hair.mean(axis=1, keepdims=True)) - hair)
    grey = 0.55 * np.clip((a - col["grey_onset"]) / 25.0, 0.0, 1.0)
    p["hair_rgb"] = hair + grey[:, None] * (_GREY_HAIR - hair)
    p["iris_rgb"] = _ramp_rgb(_IRIS_RAMP, col["iris_hue"])
    lip_base = skin * np.array([0.95, 0.7, 0.7])
    lip_red = np.array([0.75, 0.36, 0.38]) * (0.5 + 0.5 * skin.mean(axis=1, keepdims=True))
    p["lip_rgb"] = lip_base + 0.6 * col["lip_red"][:, None] * (lip_red - lip_base)
    t = meta["light_temperature"][:, None]
    p["light_rgb"] = 1.0 + t * np.array([0.10, 0.01, -0.12])
    p["glasses_rgb"] = np.repeat(d.uniform("glasses_tone", 0.05, 0.6)[:, None], 3, axis=1) * np.array([1.0, 0.9, 0.8])
    p["hat_rgb"] = np.stack([d.uniform(f"hat_{c}", 0.1, 0.9) for c in "rgb"], axis=1)
    p["mask_rgb"] = np.where(d.uniform("mask_dark")[:, None] < 0.25, 0.12, np.array([0.78, 0.86, 0.92]))
    patch_skin = d.uniform("patch_is_hand")[:, None] < 0.5
    p["patch_rgb"] = np.where(patch_skin, skin * 0.95, np.stack([d.uniform(f"patch_{c}") for c in "rgb"], axis=1))
    p["clothes_rgb"] = np.stack([d.uniform(f"clothes_{c}", 0.08, 0.8) for c in "rgb"], axis=1)
    grey_bg = d.uniform("bg_grey")[:, None]
    for name in ("bg_rgb_a", "bg_rgb_b"):
        c = np.stack([d.uniform(f"{name}_{ch}", 0.15, 0.9) for ch in "rgb"], axis=1)
        p[name] = c + grey_bg * (c.mean(axis=1, keepdims=True) - c)
    # --- clutter
    p["clutter_x"] = np.stack([d.uniform(f"clutter_x{k}", -1.1, 1.1) for k in range(N_CLUTTER)], axis=1)
    p["clutter_y"] = np.stack([d.uniform(f"clutter_y{k}", -1.1, 1.1) for k in range(N_CLUTTER)], axis=1)
    p["clutter_rx"] = np.stack([d.uniform(f"clutter_rx{k}", 0.05, 0.45) for k in range(N_CLUTTER)], axis=1)
    p["clutter_ry"] = np.stack([d.uniform(f"clutter_ry{k}", 0.05, 0.45) for k in range(N_CLUTTER)], axis=1)
    p["clutter_alpha"] = np.stack([d.uniform(f"clutter_a{k}", 0.3, 1.0) * (d.uniform(f"clutter_on{k}") < 0.8)
                                   for k in range(N_CLUTTER)], axis=1)
    p["clutter_box"] = np.stack([(d.uniform(f"clutter_box{k}") < 0.5).astype(np.float64) for k in range(N_CLUTTER)], axis=1)
    p["clutter_rgb"] = np.stack([np.stack([d.uniform(f"clutter_{c}{k}", 0.05, 0.95) for c in "rgb"], axis=1)
                                 for k in range(N_CLUTTER)], axis=1)
    return p, pd.DataFrame(meta)


def render(params: Mapping[str, np.ndarray], keys: np.ndarray, image_size: int, supersample: int,
           start: int = 0) -> torch.Tensor:
    """Render rows of ``params`` in aligned blocks of :data:`RENDER_BLOCK` counted from ``start``.

    Rows ``i`` and ``j`` of the same block are always rendered together, so the bytes of an
    image never depend on how a caller chunks its requests (see :class:`DistractorSource`)."""
    n = len(keys)
    out = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
    names = SCALAR_PARAMS + COLOUR_PARAMS + CLUTTER_PARAMS + ("clutter_rgb",)
    pos = 0
    with _one_thread():
        while pos < n:
            stop = min(n, pos + RENDER_BLOCK - (start + pos) % RENDER_BLOCK)
            batch = {k: torch.from_numpy(np.ascontiguousarray(params[k][pos:stop], dtype=np.float32)) for k in names}
            out[pos:stop] = render_faces(batch, keys[pos:stop], image_size, supersample)
            pos = stop
    return out


@contextlib.contextmanager
def _one_thread():
    """Render on one torch thread. The renderer is hundreds of element-wise ops on tensors of
    about a million floats; splitting each over OpenMP threads gains little on an idle machine
    and costs 10x or more when another process holds the cores (each op waits at a barrier).
    The previous thread count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------
# the world


@dataclass
class World:
    """A rendered synthetic world (see the module docstring)."""

    config: WorldConfig
    seed: int
    train: TensorFaces
    suites: dict[str, Suite]
    #: one row per identity, train and test: split, group, age_band, domain, sex, base_age, n_images, traits
    identities: pd.DataFrame
    #: per suite, one row per image: identity, slot/role and the nuisance values it was rendered with
    suite_images: dict[str, pd.DataFrame]

    def domain_table(self) -> pd.DataFrame:
        """Training identities and images per domain, most frequent first (with shares)."""
        meta = self.train.meta
        ids = self.identities[self.identities["split"] == "train"]
        table = domain_counts(self.config)[["domain", "group", "age_band"]].copy()
        table["identities"] = table["domain"].map(ids.groupby("domain").size()).fillna(0).astype(int)
        table["images"] = table["domain"].map(meta.groupby("domain").size()).fillna(0).astype(int)
        table["identity_share"] = table["identities"] / max(1, table["identities"].sum())
        table["image_share"] = table["images"] / max(1, table["images"].sum())
        return table.sort_values(["identities", "domain"], ascending=[False, True]).reset_index(drop=True)

    def render(self, identities: Iterable[int], overrides: Mapping[str, Any] | None = None,
               nuisance: float | None = None, stream: str = "gallery") -> torch.Tensor:
        """Render new images of existing identities (one per entry of ``identities``), e.g. a pose
        sweep: ``world.render([7] * 5, {"yaw": [-60, -30, 0, 30, 60]}, nuisance=0)``."""
        ids = np.asarray(list(identities), dtype=np.int64)
        table = self.identities.set_index("identity")
        missing = sorted(set(ids) - set(table.index))
        if missing:
            raise ValueError(f"unknown identities {missing[:5]}")
        ident = table.loc[ids].reset_index()
        keys = _stream(self.seed, stream, np.arange(len(ids)))
        params, _ = image_parameters(ident, keys, self.config.nuisance if nuisance is None else nuisance,
                                     overrides=overrides)
        return render(params, keys, self.config.image_size, self.config.supersample)


def _split_identities(cfg: WorldConfig, seed: int) -> pd.DataFrame:
    """Training identities: domain counts from :func:`domain_counts`, class sizes from
    :func:`class_sizes`, both assigned in independent random orders (class size is independent
    of the domain)."""
    rng = np.random.default_rng([seed, zlib.crc32(b"train-identities")])
    counts = domain_counts(cfg)
    groups = np.repeat(counts["group"].to_numpy(), counts["identities"].to_numpy())
    bands = np.repeat(counts["age_band"].to_numpy(), counts["identities"].to_numpy())
    order = rng.permutation(cfg.num_identities)
    sizes = rng.permutation(class_sizes(cfg))
    return pd.DataFrame({"group": groups[order], "age_band": bands[order], "n_images": sizes})


def _plans(cfg: WorldConfig, seed: int) -> list[suite_plans.SuitePlan]:
    rng = np.random.default_rng([seed, zlib.crc32(b"suites")])
    gf, af = cfg.group_freqs, cfg.age_band_freqs
    return [
        suite_plans.plan_lfw(rng, cfg.lfw_pairs, gf, af, GROUPS, AGE_BANDS),
        suite_plans.plan_cplfw(rng, cfg.cplfw_pairs, gf, af, GROUPS, AGE_BANDS),
        suite_plans.plan_calfw(rng, cfg.calfw_pairs, gf, af, GROUPS, AGE_BANDS, AGE_BAND_YEARS),
        suite_plans.plan_agedb(rng, cfg.agedb_pairs, gf, af, GROUPS, AGE_BANDS, AGE_BAND_YEARS),
        suite_plans.plan_rfw(rng, cfg.rfw_pairs_per_group, GROUPS, AGE_BANDS),
        suite_plans.plan_afw(rng, cfg.afw_pairs_per_band, GROUPS, AGE_BANDS),
        suite_plans.plan_blufr(rng, cfg.blufr_identities, cfg.blufr_images_per_identity, gf, af, GROUPS, AGE_BANDS),
        suite_plans.plan_megaface(rng, cfg.megaface_identities, cfg.megaface_images_per_identity, gf, af, GROUPS,
                                  AGE_BANDS, cfg.megaface_distractors),
    ]


def _suite_ages(plan_ids: pd.DataFrame, images: pd.DataFrame) -> np.ndarray:
    """Image ages imposed by a suite: ``age_young`` for "younger" slots, ``age_young + age_gap``
    for "older" ones, NaN (free) otherwise."""
    mode = images["age_mode"].to_numpy()
    local = images["identity"].to_numpy()
    young = plan_ids["age_young"].to_numpy(dtype=np.float64)[local]
    gap = plan_ids["age_gap"].to_numpy(dtype=np.float64)[local]
    return np.where(mode == "younger", young, np.where(mode == "older", young + gap, np.nan))


def _build_world(cfg: WorldConfig, seed: int) -> World:
    train_ids = _split_identities(cfg, seed)
    plans = _plans(cfg, seed)
    # identity table: train first (identity == label), then each suite's identities
    frames = [train_ids.assign(split="train")]
    for plan in plans:
        frames.append(plan.identities[["group", "age_band"]].assign(split=plan.name, n_images=0))
    ids = pd.concat(frames, ignore_index=True)
    ids.insert(0, "identity", np.arange(len(ids), dtype=np.int64))
    traits = sample_identities(seed, ids["identity"], ids["group"], ids["age_band"], cfg.identity_spread)
    identities = pd.concat([ids[["identity", "split", "n_images"]], traits.drop(columns=["identity"])], axis=1)
    first = dict(zip(*np.unique(identities["split"], return_index=True)))

    # training images
    train = identities.iloc[: cfg.num_identities]
    img_ids = np.repeat(train["identity"].to_numpy(), train["n_images"].to_numpy())
    keys = _stream(seed, "train", np.arange(len(img_ids)))
    ident = identities.iloc[img_ids].reset_index(drop=True)
    params, nuis = image_parameters(ident, keys, cfg.nuisance)
    images = render(params, keys, cfg.image_size, cfg.supersample)
    meta = pd.concat([ident[["identity", "group", "age_band", "domain", "sex"]], nuis], axis=1)
    meta.insert(1, "label", img_ids)
    train_set = TensorFaces(images=images, labels=img_ids, num_classes=cfg.num_identities, meta=meta, name="synth-train")

    suites: dict[str, Suite] = {}
    suite_images: dict[str, pd.DataFrame] = {}
    for plan in plans:
        offset = first[plan.name]
        local = plan.images["identity"].to_numpy()
        ident = identities.iloc[offset + local].reset_index(drop=True)
        keys = _stream(seed, plan.name, np.arange(len(local)))
        ages = _suite_ages(plan.identities, plan.images)
        params, nuis = image_parameters(ident, keys, cfg.nuisance, yaw_mode=plan.images["yaw_mode"].to_numpy(), age=ages)
        pixels = render(params, keys, cfg.image_size, cfg.supersample)
        img_meta = pd.concat([ident[["identity", "group", "age_band", "domain", "sex"]],
                              plan.images[["slot", "role"]].reset_index(drop=True), nuis], axis=1)
        suite_images[plan.name] = img_meta
        suites[plan.name] = _make_suite(plan, pixels, img_meta, offset, cfg, seed)
    return World(config=cfg, seed=seed, train=train_set, suites=suites, identities=identities, suite_images=suite_images)


def _make_suite(plan: suite_plans.SuitePlan, pixels: torch.Tensor, img_meta: pd.DataFrame, offset: int,
                cfg: WorldConfig, seed: int) -> Suite:
    ids = img_meta["identity"].to_numpy()
    if plan.kind == "pairs":
        meta = plan.pair_meta.copy()
        meta["id_a"] = meta["id_a"] + offset
        meta["id_b"] = meta["id_b"] + offset
        a, b = plan.pairs[:, 0], plan.pairs[:, 1]
        for col in ("yaw", "age"):
            va, vb = img_meta[col].to_numpy()[a], img_meta[col].to_numpy()[b]
            meta[f"{col}_a"], meta[f"{col}_b"], meta[f"{col}_gap"] = va, vb, np.abs(va - vb)
        return PairSuite(name=plan.name, images=pixels, pairs=plan.pairs, issame=plan.issame, folds=plan.folds,
                         meta=meta, stands_for=plan.stands_for, description=plan.description)
    if plan.kind == "all_vs_all":
        return AllVsAllSuite(name=plan.name, images=pixels, identities=ids, meta=img_meta,
                             stands_for=plan.stands_for, description=plan.description)
    gallery = (img_meta["role"] == "gallery").to_numpy()
    g_idx = torch.from_numpy(np.flatnonzero(gallery))
    p_idx = torch.from_numpy(np.flatnonzero(~gallery))
    return IdentificationSuite(
        name=plan.name, probes=pixels[p_idx], probe_ids=ids[~gallery],
        gallery=pixels[g_idx], gallery_ids=ids[gallery],
        distractors=distractor_source(cfg, seed), probe_meta=img_meta[~gallery].reset_index(drop=True),
        stands_for=plan.stands_for, description=plan.description)


# ----------------------------------------------------------------------------------------------
# distractors (MegaFace): rendered on demand, one new identity per image


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
    d = _Draws(_stream(seed, "distractor-domain", index))
    g = np.searchsorted(np.cumsum(cfg.group_freqs), d.uniform("group") * sum(cfg.group_freqs), side="right")
    a = np.searchsorted(np.cumsum(cfg.age_band_freqs), d.uniform("age_band") * sum(cfg.age_band_freqs), side="right")
    g = np.minimum(g, len(GROUPS) - 1)
    a = np.minimum(a, len(AGE_BANDS) - 1)
    ident = sample_identities(seed, DISTRACTOR_ID_BASE + index, np.asarray(GROUPS)[g], np.asarray(AGE_BANDS)[a],
                              cfg.identity_spread)
    keys = _stream(seed, "distractor", index)
    params, _ = image_parameters(ident, keys, cfg.nuisance)
    out = render(params, keys, cfg.image_size, cfg.supersample, start=lo)
    return out[start - lo: stop - lo]


def distractor_source(cfg: WorldConfig, seed: int) -> DistractorSource:
    return DistractorSource(count=cfg.megaface_distractors, render=functools.partial(render_distractors, cfg, seed))


# ----------------------------------------------------------------------------------------------
# entry point and cache


def world_key(cfg: WorldConfig, seed: int) -> str:
    """Cache key: a hash of the config, the seed and :data:`WORLD_VERSION`."""
    return config_hash({"config": cfg.to_dict(), "seed": int(seed)}, version=f"world-{WORLD_VERSION}")


def make_world(profile: str = "cpu", seed: int = 0, config: WorldConfig | Mapping[str, Any] | None = None,
               cache: bool = True) -> World:
    """The synthetic world of ``profile`` (its ``world`` preset and overrides) and ``seed``.

    ``config`` overrides fields (a mapping) or replaces the config (a :class:`WorldConfig`).
    With ``cache`` (default) a world rendered before is loaded from
    ``cache_dir("worlds")/<key>.pt``; a new one is rendered and written there atomically.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    cfg = world_config(profile, config)
    seed = int(seed)
    path = cache_dir("worlds") / f"{world_key(cfg, seed)}.pt" if cache else None
    if path is not None and path.exists():
        try:
            return _load(path, cfg, seed)
        except Exception as err:  # a stale or damaged cache file is re-rendered, never trusted
            path.unlink(missing_ok=True)
            warnings.warn(f"discarded unreadable world cache {path}: {err}", stacklevel=2)
    world = _build_world(cfg, seed)
    if path is not None:
        _save(world, path)
    return world


def _save(world: World, path) -> None:
    suites = {}
    for name, s in world.suites.items():
        fields = {f.name: getattr(s, f.name) for f in dataclasses.fields(s) if f.name != "distractors"}
        suites[name] = (type(s).__name__, fields)
    state = {
        "version": WORLD_VERSION, "config": world.config.to_dict(), "seed": world.seed,
        "train": {"images": world.train.images, "labels": world.train.labels, "meta": world.train.meta},
        "suites": suites, "identities": world.identities, "suite_images": world.suite_images,
    }
    atomic_torch_save(path, state)


_SUITE_TYPES = {"PairSuite": PairSuite, "AllVsAllSuite": AllVsAllSuite, "IdentificationSuite": IdentificationSuite}


def _load(path, cfg: WorldConfig, seed: int) -> World:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("version") != WORLD_VERSION or state.get("config") != cfg.to_dict() or state.get("seed") != seed:
        raise ValueError("cache entry was written for another config, seed or world version")
    t = state["train"]
    train = TensorFaces(images=t["images"], labels=t["labels"], num_classes=cfg.num_identities, meta=t["meta"],
                        name="synth-train")
    suites: dict[str, Suite] = {}
    for name, (kind, fields) in state["suites"].items():
        if kind == "IdentificationSuite":
            fields = {**fields, "distractors": distractor_source(cfg, seed)}
        suites[name] = _SUITE_TYPES[kind](**fields)
    return World(config=cfg, seed=seed, train=train, suites=suites, identities=state["identities"],
                 suite_images=state["suite_images"])
