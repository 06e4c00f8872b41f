"""The image model: how one photograph of an identity varies.

:func:`image_parameters` turns identity traits and one key per image into

- the **conditions** of the photograph, in readable units (:data:`NUISANCE_COLUMNS`: pose in
  degrees, age in years, expression, light, glasses and occluders, blur, noise), which go into
  every image's meta and can be imposed (a suite's frontal / profile slot or age, or any column
  through ``overrides``);
- the **renderer parameters** (:data:`~dbrepro.data.synth.render.SCALAR_PARAMS` and friends),
  which add the identity's traits as the photograph shows them (aged, with today's haircut),
  colours and the background.

Each kind of variation is one small function below, a pure function of the identity, the image's
:class:`~dbrepro.data.synth.rng.Draws` and ``nuisance`` (``s``): the scale of every per-image
nuisance, 0 for canonical frontal, neutral, evenly lit photos, 1 for the widest variation the
generator draws. Every random variable is drawn by name, so the order of the functions does not
change a single value.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .domains import AGE_MAX, AGE_MIN
from .render import N_CLUTTER
from .rng import Draws

#: yaw of a suite's "frontal" slot (|yaw| below this, degrees) and of its "profile" slot (|yaw| in this range)
FRONTAL_YAW = 8.0
PROFILE_YAW = (45.0, 62.0)
#: |yaw| limit (degrees) of a training photograph: the pose mixture is clipped there, so a suite's profile photo
#: beyond it (the default ``profile_yaw`` reaches 80) shows a pose the training set never does
TRAIN_YAW_LIMIT = 70.0
#: share of photographs drawn from the wide component of the yaw mixture (:func:`pose`; a world's ``wide_pose_share``)
WIDE_POSE_SHARE = 0.3
#: |yaw| range (degrees) of a training set's profile photographs (:func:`pose`; a world's ``profile_pose_share``):
#: from the suites' "profile" slot up to beyond the cross-pose suite's widest profile photo
TRAIN_PROFILE_YAW = (45.0, 85.0)

#: per-image meta columns written for every image (angles in degrees, ages in years)
NUISANCE_COLUMNS = (
    "age", "yaw", "pitch", "roll", "smile", "mouth_open", "brow_raise",
    "light_azimuth", "light_elevation", "light_ambient", "light_intensity", "light_temperature",
    "glasses", "sunglasses", "occluder", "blur", "noise",
)

#: identity-table columns that are not numeric traits
_LABEL_COLUMNS = ("identity", "group", "age_band", "domain", "sex", "split", "n_images")


def image_parameters(
    ident: pd.DataFrame,
    keys: np.ndarray,
    nuisance: float = 1.0,
    yaw_mode: np.ndarray | None = None,
    age: np.ndarray | None = None,
    overrides: Mapping[str, Any] | None = None,
    profile_yaw: tuple[float, float] = PROFILE_YAW,
    ageing: float = 1.0,
    wide_pose_share: float = WIDE_POSE_SHARE,
    profile_pose_share: float = 0.0,
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Renderer parameters and meta for one image per row of ``ident`` (identity traits).

    ``keys`` seed each image's nuisances. ``yaw_mode`` ("frontal" / "profile" / "") and ``age``
    (years, NaN = free) are suite conditions; ``overrides`` fixes any column of
    :data:`NUISANCE_COLUMNS` (broadcast), e.g. ``{"yaw": np.linspace(-60, 60, 7)}``.
    ``profile_yaw`` is the |yaw| range of a "profile" slot and ``ageing`` scales every effect of age
    on a face (proportions, texture, hair; :func:`age_effects`): the world's two knobs of how hard the
    cross-pose and the cross-age suites are; ``wide_pose_share`` is the share of photographs drawn from
    the wide component of the yaw mixture and ``profile_pose_share`` the share shown in profile (:func:`pose`).
    Returns ``(params, meta)``: float arrays for :func:`~dbrepro.data.synth.render.render_faces`
    and a DataFrame with the nuisance values in readable units.
    """
    n = len(ident)
    d = Draws(keys)
    s = float(nuisance)
    trait = {k: ident[k].to_numpy(dtype=np.float64) for k in ident.columns if k not in _LABEL_COLUMNS}
    meta = {
        **pose(d, s, yaw_mode, profile_yaw, wide_pose_share, profile_pose_share),
        "age": image_age(d, s, trait["base_age"], age),
        **expression(d, s),
        **light(d, s),
        **occlusion(d, s, trait["glasses_habit"]),
        **photo(d, s),
    }
    for k, v in (overrides or {}).items():
        if k not in NUISANCE_COLUMNS:
            raise ValueError(f"cannot override {k!r}: choose among {', '.join(NUISANCE_COLUMNS)}")
        meta[k] = np.broadcast_to(np.asarray(v), (n,)).copy()

    male = (ident["sex"].to_numpy() == "M").astype(np.float64)
    youth, old = age_effects(meta["age"], ageing)
    p: dict[str, np.ndarray] = {
        **pose_params(meta, d, s),
        **face_params(trait, youth, old, d, s),
        **expression_params(meta),
        **hair_params(trait, old, male, d, s),
        **skin_marks_params(trait, old),
        **occluder_params(meta, d),
        **light_params(meta),
        **colour_params(trait, meta, old, d, ageing),
        **background_params(d),
    }
    return p, pd.DataFrame(meta)


# ----------------------------------------------------------------------------------------------
# the conditions of a photograph (meta, readable units)


def pose(d: Draws, s: float, yaw_mode: np.ndarray | None = None,
         profile_yaw: tuple[float, float] = PROFILE_YAW,
         wide_pose_share: float = WIDE_POSE_SHARE, profile_pose_share: float = 0.0) -> dict[str, np.ndarray]:
    """Head pose in degrees. Yaw is a mixture (most photos near frontal, ``wide_pose_share`` of them with a
    wider spread, clipped at :data:`TRAIN_YAW_LIMIT`), or a suite's slot: "frontal" (|yaw| <= :data:`FRONTAL_YAW`)
    or "profile" (|yaw| in ``profile_yaw``). A share ``profile_pose_share`` of the free photographs (where
    ``nuisance`` > 0) is a profile instead, |yaw| uniform in :data:`TRAIN_PROFILE_YAW`: the mixture's normal tails
    alone put almost none there (0.1 % of the cpu world's training photos beyond 62 degrees). Its draws have
    their own names, so a share of 0 leaves every other value as it was."""
    wide = d.uniform("yaw_wide") < wide_pose_share
    yaw = np.where(wide, 32.0, 14.0) * s * d.normal("yaw")
    yaw = np.clip(yaw, -TRAIN_YAW_LIMIT, TRAIN_YAW_LIMIT)
    if profile_pose_share > 0 and s > 0:
        in_profile = d.uniform("yaw_profile") < profile_pose_share
        side = np.where(d.uniform("yaw_profile_side") < 0.5, -1.0, 1.0)
        yaw = np.where(in_profile, side * d.uniform("yaw_profile_angle", *TRAIN_PROFILE_YAW), yaw)
    if yaw_mode is not None:
        yaw_mode = np.asarray(yaw_mode)
        frontal = d.uniform("frontal_yaw", -FRONTAL_YAW, FRONTAL_YAW)
        side = np.where(d.uniform("profile_side") < 0.5, -1.0, 1.0)
        profile = side * d.uniform("profile_yaw", *profile_yaw)
        yaw = np.where(yaw_mode == "frontal", frontal, np.where(yaw_mode == "profile", profile, yaw))
    return {
        "yaw": yaw,
        "pitch": np.clip(8.0 * s * d.normal("pitch"), -25.0, 25.0),
        "roll": np.clip(4.0 * s * d.normal("roll"), -12.0, 12.0),
    }


def image_age(d: Draws, s: float, base_age: np.ndarray, age: np.ndarray | None = None) -> np.ndarray:
    """The age a photograph shows: the identity's base age +- a few years, or a suite's imposed
    age where ``age`` is not NaN; clipped to ``[AGE_MIN, AGE_MAX]``."""
    img_age = base_age + 4.0 * s * d.normal("age")
    if age is not None:
        age = np.asarray(age, dtype=np.float64)
        img_age = np.where(np.isnan(age), img_age, age)
    return np.clip(img_age, AGE_MIN, AGE_MAX)


def expression(d: Draws, s: float) -> dict[str, np.ndarray]:
    """Smile (0..1), an open mouth in a fifth of the photos, raised or frowning brows (-1..1)."""
    return {
        "smile": np.clip(0.2 + 0.35 * s * d.normal("smile"), 0.0, 1.0),
        "mouth_open": np.where(d.uniform("mouth_opens") < 0.2 * min(s, 1.0), d.uniform("mouth_open", 0.2, 1.0), 0.0),
        "brow_raise": np.clip(0.45 * s * d.normal("brow_raise"), -1.0, 1.0),
    }


def light(d: Draws, s: float) -> dict[str, np.ndarray]:
    """Light direction (degrees), ambient share, intensity and colour temperature (-1 warm .. 1 cold)."""
    return {
        "light_azimuth": 55.0 * s * d.uniform("light_azimuth", -1.0, 1.0),
        "light_elevation": 15.0 + 25.0 * s * d.uniform("light_elevation", -1.0, 1.0),
        "light_ambient": np.clip(0.55 + 0.2 * s * d.uniform("light_ambient", -1.0, 1.0), 0.2, 1.0),
        "light_intensity": np.exp(0.2 * s * d.normal("light_intensity")),
        "light_temperature": np.clip(s * d.uniform("light_temperature", -1.0, 1.0), -1.5, 1.5),
    }


def occlusion(d: Draws, s: float, glasses_habit: np.ndarray) -> dict[str, np.ndarray]:
    """Glasses (likelier for people with the habit), sunglasses among them, and at most one of a
    hat, a mask or a patch (a hand, a microphone, a passer-by)."""
    p_glasses = np.clip(glasses_habit * min(s, 1.0) + 0.03 * s, 0.0, 1.0)
    glasses = (d.uniform("glasses") < p_glasses).astype(np.float64)
    u_occ = d.uniform("occluder")
    return {
        "glasses": glasses,
        "sunglasses": glasses * (d.uniform("sunglasses") < 0.12),
        "occluder": np.select([u_occ < 0.04 * s, u_occ < 0.07 * s, u_occ < 0.12 * s], ["hat", "mask", "patch"], "none"),
    }


def photo(d: Draws, s: float) -> dict[str, np.ndarray]:
    """Camera defects: Gaussian blur (sigma in output pixels) in some photos, sensor noise in all."""
    return {
        "blur": np.where(d.uniform("blurred") < 0.3 * min(s, 1.0), d.uniform("blur", 0.3, 0.8) * max(s, 1.0), 0.0),
        "noise": 0.02 * s * d.uniform("noise"),
    }


# ----------------------------------------------------------------------------------------------
# what the renderer draws


def age_effects(age: np.ndarray, ageing: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(youth, old)``, each in [0, ``ageing``]: how far a face is below 22 years (childlike proportions)
    and above 40 (heavier jaw, longer nose, thinner lips, wrinkles, greying), scaled by ``ageing``."""
    youth = np.clip((22.0 - age) / 8.0, 0.0, 1.0)
    old = np.clip((age - 40.0) / 40.0, 0.0, 1.0)
    if ageing != 1.0:
        youth, old = ageing * youth, ageing * old
    return youth, old


def pose_params(meta: Mapping[str, np.ndarray], d: Draws, s: float) -> dict[str, np.ndarray]:
    """Pose in radians, and the small shift and scale error a landmark alignment leaves."""
    return {
        "yaw": np.radians(meta["yaw"]), "pitch": np.radians(meta["pitch"]), "roll": np.radians(meta["roll"]),
        "shift_x": 0.025 * s * d.normal("shift_x"),
        "shift_y": 0.025 * s * d.normal("shift_y"),
        "scale": np.exp(0.04 * s * d.normal("scale")),
    }


def face_params(trait: Mapping[str, np.ndarray], youth: np.ndarray, old: np.ndarray, d: Draws,
                s: float) -> dict[str, np.ndarray]:
    """Head, eyes, brows, nose, mouth and ears as the photo shows them: the identity's traits
    changed by age, plus a blink and the gaze direction."""
    p = {
        "face_width": trait["face_width"] * (1.0 + 0.02 * youth),
        "jaw_square": np.maximum(trait["jaw_square"] + 0.6 * old - 0.3 * youth, 1.5),
        "chin": trait["chin"] + 0.03 * old - 0.04 * youth,
        "crown": trait["crown"],
        "cheek": np.clip(trait["cheek"] + 0.4 * old, 0.0, 1.3),
        "eye_size": trait["eye_size"] * (1.0 + 0.12 * youth),
        "eye_open": trait["eye_open"] * (1.0 - 0.12 * old) * np.where(d.uniform("blink") < 0.04 * s, 0.3, 1.0),
        "eye_tilt": trait["eye_tilt"],
        "eye_spacing": trait["eye_spacing"],
        "eye_y": np.zeros(len(old)),
        "gaze_x": np.clip(0.35 * s * d.normal("gaze_x"), -1.0, 1.0),
        "gaze_y": np.clip(0.3 * s * d.normal("gaze_y"), -1.0, 1.0),
        "brow_thick": trait["brow_thick"] * (1.0 - 0.25 * old),
        "nose_len": trait["nose_len"] + 0.03 * old - 0.03 * youth,
        "nose_width": trait["nose_width"] * (1.0 + 0.12 * old),
        "mouth_gap": trait["mouth_gap"] + 0.02 * old,
        "lip_upper": trait["lip_upper"] * (1.0 - 0.25 * old),
        "lip_lower": trait["lip_lower"] * (1.0 - 0.2 * old),
        "mouth_curve": trait["mouth_curve"] - 0.015 * old,
        "ear_size": trait["ear_size"] * (1.0 + 0.12 * old),
    }
    for k in ("brow_arch", "brow_height", "brow_slant", "brow_len", "nose_tip", "nose_bridge", "mouth_width", "ear_y"):
        p[k] = trait[k]
    return p


def expression_params(meta: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: meta[k] for k in ("smile", "mouth_open", "brow_raise")}


def hair_params(trait: Mapping[str, np.ndarray], old: np.ndarray, male: np.ndarray, d: Draws,
                s: float) -> dict[str, np.ndarray]:
    """Hairline receding with age (mostly in men), today's haircut (length, volume, fringe and
    parting side change between photos), beard and moustache."""
    recede = trait["recede_rate"] * old * (0.4 + 0.6 * male)
    return {
        "hairline": trait["hairline"] - 0.3 * recede,
        "hair_recess": trait["hair_recess"] + 0.15 * recede,
        "hair_volume": np.clip(trait["hair_volume"] + 0.03 * s * d.normal("hair_volume"), 0.0, 0.35),
        "hair_length": trait["hair_length"] + 0.12 * s * d.normal("hair_length"),
        "fringe": np.clip(trait["fringe"] + 0.1 * s * d.normal("fringe"), 0.0, 1.0),
        "parting": trait["parting"] * np.where(d.uniform("parting_flip") < 0.1 * min(s, 1.0), -1.0, 1.0),
        "beard": trait["beard"] * (0.8 + 0.2 * d.uniform("beard")),
        "moustache": trait["moustache"],
    }


def skin_marks_params(trait: Mapping[str, np.ndarray], old: np.ndarray) -> dict[str, np.ndarray]:
    """A mole, blush, and the age texture: wrinkles and eye bags."""
    return {
        "mole_on": trait["mole"], "mole_u": trait["mole_u"], "mole_v": trait["mole_v"], "blush": trait["blush"],
        "wrinkles": np.clip(old * (0.3 + 1.2 * trait["wrinkle_rate"]), 0.0, 1.0),
        "eye_bags": np.clip(old * 1.2 * (0.5 + trait["wrinkle_rate"]), 0.0, 1.0),
    }


def occluder_params(meta: Mapping[str, np.ndarray], d: Draws) -> dict[str, np.ndarray]:
    """Glasses, and the hat line or the patch's place and size (drawn for every photo, used where there is one)."""
    occ = meta["occluder"]
    return {
        "glasses": meta["glasses"], "glasses_dark": meta["sunglasses"],
        "hat": (occ == "hat").astype(np.float64), "hat_line": d.uniform("hat_line", -0.55, -0.3),
        "mask": (occ == "mask").astype(np.float64),
        "patch": (occ == "patch").astype(np.float64),
        "patch_x": d.uniform("patch_x", -0.5, 0.5),
        "patch_y": d.uniform("patch_y", -0.4, 0.6),
        "patch_r": d.uniform("patch_r", 0.15, 0.3),
    }


def light_params(meta: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Light direction in radians; ambient share, intensity, blur and noise as drawn."""
    return {
        "light_azimuth": np.radians(meta["light_azimuth"]),
        "light_elevation": np.radians(meta["light_elevation"]),
        "light_ambient": meta["light_ambient"],
        "light_intensity": meta["light_intensity"],
        "blur": meta["blur"],
        "noise": meta["noise"],
    }


# ----------------------------------------------------------------------------------------------
# colours


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


def colour_params(trait: Mapping[str, np.ndarray], meta: Mapping[str, np.ndarray], old: np.ndarray,
                  d: Draws, ageing: float = 1.0) -> dict[str, np.ndarray]:
    """RGB colours: skin (tone, warmth, paler with age), hair (tone, red, greying after the
    identity's onset age, scaled by ``ageing`` like every effect of age), iris, lips; the light's colour
    temperature; glasses, hat, mask, patch (a hand half the time) and clothes."""
    p: dict[str, np.ndarray] = {}
    skin = _ramp_rgb(_SKIN_RAMP, trait["skin_tone"])
    skin = skin * (1.0 + np.outer(trait["skin_warmth"], [0.05, 0.0, -0.06]))
    skin = skin * (1.0 - 0.1 * old[:, None]) + 0.05 * old[:, None]
    p["skin_rgb"] = skin
    hair = _ramp_rgb(_HAIR_RAMP, trait["hair_tone"])
    hair = hair + trait["hair_red"][:, None] * (_RED_HAIR * (0.5 + hair.mean(axis=1, keepdims=True)) - hair)
    grey = ageing * 0.55 * np.clip((meta["age"] - trait["grey_onset"]) / 25.0, 0.0, 1.0)
    p["hair_rgb"] = hair + grey[:, None] * (_GREY_HAIR - hair)
    p["iris_rgb"] = _ramp_rgb(_IRIS_RAMP, trait["iris_hue"])
    lip_base = skin * np.array([0.95, 0.7, 0.7])
    lip_red = np.array([0.75, 0.36, 0.38]) * (0.5 + 0.5 * skin.mean(axis=1, keepdims=True))
    p["lip_rgb"] = lip_base + 0.6 * trait["lip_red"][:, None] * (lip_red - lip_base)
    t = meta["light_temperature"][:, None]
    p["light_rgb"] = 1.0 + t * np.array([0.10, 0.01, -0.12])
    p["glasses_rgb"] = np.repeat(d.uniform("glasses_tone", 0.05, 0.6)[:, None], 3, axis=1) * np.array([1.0, 0.9, 0.8])
    p["hat_rgb"] = np.stack([d.uniform(f"hat_{c}", 0.1, 0.9) for c in "rgb"], axis=1)
    p["mask_rgb"] = np.where(d.uniform("mask_dark")[:, None] < 0.25, 0.12, np.array([0.78, 0.86, 0.92]))
    patch_skin = d.uniform("patch_is_hand")[:, None] < 0.5
    p["patch_rgb"] = np.where(patch_skin, skin * 0.95, np.stack([d.uniform(f"patch_{c}") for c in "rgb"], axis=1))
    p["clothes_rgb"] = np.stack([d.uniform(f"clothes_{c}", 0.08, 0.8) for c in "rgb"], axis=1)
    return p


def background_params(d: Draws) -> dict[str, np.ndarray]:
    """A two-colour gradient (partly desaturated) at a random angle, and :data:`N_CLUTTER`
    ellipses or boxes of scene clutter, each present four times in five."""
    p: dict[str, np.ndarray] = {"bg_angle": d.uniform("bg_angle", 0.0, 2 * math.pi)}
    grey_bg = d.uniform("bg_grey")[:, None]
    for name in ("bg_rgb_a", "bg_rgb_b"):
        c = np.stack([d.uniform(f"{name}_{ch}", 0.15, 0.9) for ch in "rgb"], axis=1)
        p[name] = c + grey_bg * (c.mean(axis=1, keepdims=True) - c)

    def per_shape(draw) -> np.ndarray:
        return np.stack([draw(k) for k in range(N_CLUTTER)], axis=1)

    p["clutter_x"] = per_shape(lambda k: d.uniform(f"clutter_x{k}", -1.1, 1.1))
    p["clutter_y"] = per_shape(lambda k: d.uniform(f"clutter_y{k}", -1.1, 1.1))
    p["clutter_rx"] = per_shape(lambda k: d.uniform(f"clutter_rx{k}", 0.05, 0.45))
    p["clutter_ry"] = per_shape(lambda k: d.uniform(f"clutter_ry{k}", 0.05, 0.45))
    p["clutter_alpha"] = per_shape(lambda k: d.uniform(f"clutter_a{k}", 0.3, 1.0) * (d.uniform(f"clutter_on{k}") < 0.8))
    p["clutter_box"] = per_shape(lambda k: (d.uniform(f"clutter_box{k}") < 0.5).astype(np.float64))
    p["clutter_rgb"] = per_shape(lambda k: np.stack([d.uniform(f"clutter_{c}{k}", 0.05, 0.95) for c in "rgb"], axis=1))
    return p
