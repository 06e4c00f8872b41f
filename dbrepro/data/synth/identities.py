"""The identity model: what a person looks like, and how that depends on their domain.

Every identity has a group, an age band, a sex, a base age and about 50 facial traits
(:data:`TRAITS`: head shape, eyes, brows, nose, mouth, hair, colours, ears, marks, ageing rates).
A trait is drawn as a latent ``z`` and mapped into its range. Groups differ

- in their **mean** face: fixed latent offsets of every shape trait (:data:`GROUP_MEANS`) and
  mean skin, hair and eye colours (:data:`COLOUR_MEANS`);
- and in their **covariance**: every shape trait is *owned* by one group (:data:`TRAIT_OWNER`),
  whose people vary a lot in it (latent sd :data:`HIGH_SD`) while the other groups vary little
  (:data:`LOW_SD`).

So a model trained mostly on ``G0`` learns to look at ``G0``'s traits and transfers imperfectly
to the rare groups. Age bands set the base age, from which every photograph's age is drawn
(:mod:`~dbrepro.data.synth.nuisance` turns age into proportions and texture).

:func:`sample_identities` is a pure function of ``(seed, identity id, domain)``. The tables here
name the four groups of :data:`~dbrepro.data.synth.domains.GROUPS` one by one
(:data:`TRAIT_OWNER`, :data:`GROUP_SPREAD`, :data:`COLOUR_MEANS`); a world with other groups
needs entries for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy.special import ndtr

from .domains import AGE_BAND_YEARS, GROUPS
from .rng import Draws, stream_keys


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
#: G3's in head shape, eye opening, nose and mouth width and hair volume; a network trained
#: mostly on G0 learns to look at G0's traits and transfers imperfectly to G3. The traits were dealt so that
#: every group owns traits of at least five parts and about the same total *visibility* (the
#: sum over its traits of the squared pixel change per latent unit, see
#: :func:`~dbrepro.data.synth.visibility.trait_visibility`), so that no group is intrinsically
#: easier to tell apart.
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
#: A per-group factor on the latent spread, set so that a model trained on a *domain-balanced*
#: world verifies every group about equally well (the pixel visibility that TRAIT_OWNER balances is
#: only a proxy for what a CNN finds easy). It was calibrated once, with an earlier cpu recipe, and
#: is not re-tuned to each recipe: the calibration chapter trains the balanced control with the current
#: recipe and prints its per-group spread, against which it judges the domain gap (control C4).
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


def sample_identities(seed: int, identity_ids: np.ndarray, groups: Iterable[str], age_bands: Iterable[str],
                      spread: float = 1.0) -> pd.DataFrame:
    """Traits of identities (one row each), a pure function of ``(seed, identity id)`` and domain."""
    ids = np.asarray(identity_ids, dtype=np.int64)
    groups = np.asarray(list(groups))
    bands = np.asarray(list(age_bands))
    d = Draws(stream_keys(seed, "identity", ids))
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

