"""Batched procedural face renderer: explicit per-image parameters in, uint8 RGB images out.

This module only *draws*: a pure function of its inputs. It knows nothing about identities,
domains or how the numbers were chosen: every image is described by a row of numbers (see
:data:`SCALAR_PARAMS` and :data:`COLOUR_PARAMS`) and a key for its sensor noise, and the same
numbers always give the same pixels. The generative model that decides those numbers (who looks
like whom, how people age, how photos vary) is the rest of :mod:`dbrepro.data.synth`
(:mod:`~dbrepro.data.synth.identities`, :mod:`~dbrepro.data.synth.nuisance`).

How a face is drawn
-------------------
Everything is vectorised over the batch: each layer is a soft mask ``(B, S, S)`` computed from
approximate signed distances, composited over the image with ``lerp`` (painter's algorithm).
The image is rendered at ``supersample`` times the output size and area-downsampled, which
antialiases the edges.

Three coordinate systems, all in *face units* (the eye centres sit at ``v = 0``, about
``u = +-0.3``; ``u`` points right, ``v`` down):

- screen: the pixel grid in ``[-1, 1]^2``;
- flat face frame ``(xf, yf)``: screen coordinates after undoing the alignment similarity
  (shift, scale, in-plane roll). Hair volume, ears, neck and clothes are drawn here;
- surface frame ``(u, v)``: the flat frame after undoing the head's out-of-plane rotation.
  The head is a vertical cylinder of radius ``face_width`` (yaw) and a horizontal one of
  radius :data:`PITCH_RADIUS` (pitch): ``u = a * sin(asin(xf / a) - yaw)``. Features drawn in
  ``(u, v)`` therefore foreshorten correctly: under yaw the far half of the face is compressed
  and every feature moves towards it; pitch moves the features vertically. Features that
  stand off the surface (nose, lips) are drawn in coordinates shifted by their depth times
  ``sin(yaw)`` / ``sin(pitch)``, so the nose tip swings out further than the cheeks.

Lighting is Lambertian on the head ellipsoid's normal (direction, ambient share, intensity,
colour); the side of the nose away from the light is shaded. Photographic nuisances come last:
Gaussian blur (per image sigma, in output pixels) and sensor noise (deterministic per image,
a counter-based hash of ``noise_key``, :func:`~dbrepro.data.synth.rng.hash_uniform`).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .rng import hash_uniform

#: smallest output resolution at which the face still has recognisable parts
MIN_IMAGE_SIZE = 16

#: radius of the pitch cylinder (face units) and the height of its axis
PITCH_RADIUS = 1.6
PITCH_AXIS_V = 0.25
#: how far the nose tip and the lips stand off the face surface (face units)
NOSE_DEPTH = 0.32
LIP_DEPTH = 0.10
#: share of the yaw / pitch displacement of the eyes that the alignment undoes
ALIGN = 0.85
#: depth of the ears and the skull's centre behind the eyes (face units), for pitch parallax
BEHIND_DEPTH = 0.7
#: face units per screen unit at scale 1 (the framing of the aligned crop)
FRAME_SCALE = 0.78
#: screen position of the face-frame origin (between the eyes)
FRAME_CENTER_Y = -0.16
#: number of background clutter shapes per image
N_CLUTTER = 5

#: Per-image scalar parameters (one float each), grouped by what they control.
SCALAR_PARAMS: tuple[str, ...] = (
    # pose and alignment
    "yaw", "pitch", "roll", "shift_x", "shift_y", "scale",
    # head shape
    "face_width", "jaw_square", "chin", "crown", "cheek",
    # eyes
    "eye_size", "eye_open", "eye_tilt", "eye_spacing", "eye_y", "gaze_x", "gaze_y",
    # brows
    "brow_thick", "brow_arch", "brow_height", "brow_slant", "brow_len",
    # nose
    "nose_len", "nose_width", "nose_tip", "nose_bridge",
    # mouth
    "mouth_width", "mouth_gap", "lip_upper", "lip_lower", "mouth_curve",
    # expression
    "smile", "mouth_open", "brow_raise",
    # ears, hair, facial hair, marks
    "ear_size", "ear_y",
    "hairline", "hair_recess", "hair_volume", "hair_length", "fringe", "parting",
    "beard", "moustache", "mole_on", "mole_u", "mole_v", "blush",
    # age texture
    "wrinkles", "eye_bags",
    # occluders
    "glasses", "glasses_dark", "hat", "hat_line", "mask", "patch", "patch_x", "patch_y", "patch_r",
    # light
    "light_azimuth", "light_elevation", "light_ambient", "light_intensity",
    # photo
    "blur", "noise",
    # background
    "bg_angle",
)

#: Per-image RGB colours in [0, 1] (three floats each).
COLOUR_PARAMS: tuple[str, ...] = (
    "skin_rgb", "hair_rgb", "iris_rgb", "lip_rgb", "light_rgb", "glasses_rgb", "hat_rgb",
    "mask_rgb", "patch_rgb", "clothes_rgb", "bg_rgb_a", "bg_rgb_b",
)

#: Clutter shapes: ``clutter_{x,y,rx,ry,alpha,box}`` (B, N_CLUTTER) and ``clutter_rgb`` (B, N_CLUTTER, 3).
CLUTTER_PARAMS: tuple[str, ...] = ("clutter_x", "clutter_y", "clutter_rx", "clutter_ry", "clutter_alpha", "clutter_box")


def render_faces(
    params: Mapping[str, torch.Tensor],
    noise_key: np.ndarray,
    image_size: int,
    supersample: int = 2,
) -> torch.Tensor:
    """Draw a batch of faces.

    Parameters
    ----------
    params
        Per-image parameters: every name in :data:`SCALAR_PARAMS` as a float tensor ``(B,)``,
        every name in :data:`COLOUR_PARAMS` as ``(B, 3)``, and the clutter arrays.
    noise_key
        ``uint64`` array ``(B,)``: the seed of each image's sensor noise (the noise of image
        ``i`` depends on ``noise_key[i]`` only, so batches can be split anywhere).
    image_size
        Output side in pixels (>= :data:`MIN_IMAGE_SIZE`).
    supersample
        Render at ``supersample * image_size`` and area-downsample.

    Returns
    -------
    torch.Tensor
        ``uint8`` images ``(B, 3, image_size, image_size)``.
    """
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE} pixels, got {image_size}")
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    p = _unpack(params)
    batch = p["yaw"].shape[0]
    if len(noise_key) != batch:
        raise ValueError(f"noise_key has {len(noise_key)} entries for a batch of {batch}")
    size = image_size * supersample
    with torch.no_grad():
        img = _draw(p, size)
        if supersample > 1:
            img = F.avg_pool2d(img, supersample)
        img = _blur(img, p["blur"][:, 0, 0])
        img = _add_noise(img, p["noise"][:, 0, 0], noise_key)
        return (img.clamp_(0.0, 1.0) * 255.0).round_().to(torch.uint8)


# ----------------------------------------------------------------------------------------------
# parameter handling


def _unpack(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Check names and shapes; scalars become (B, 1, 1), colours (B, 3, 1, 1)."""
    missing = [k for k in SCALAR_PARAMS + COLOUR_PARAMS + CLUTTER_PARAMS + ("clutter_rgb",) if k not in params]
    if missing:
        raise ValueError(f"render_faces: missing parameters {missing}")
    batch = int(torch.as_tensor(params["yaw"]).shape[0])
    out: dict[str, torch.Tensor] = {}
    for k in SCALAR_PARAMS:
        t = torch.as_tensor(params[k], dtype=torch.float32)
        if t.shape != (batch,):
            raise ValueError(f"render_faces: parameter {k!r} must have shape ({batch},), got {tuple(t.shape)}")
        out[k] = t.view(batch, 1, 1)
    for k in COLOUR_PARAMS:
        t = torch.as_tensor(params[k], dtype=torch.float32)
        if t.shape != (batch, 3):
            raise ValueError(f"render_faces: colour {k!r} must have shape ({batch}, 3), got {tuple(t.shape)}")
        out[k] = t.view(batch, 3, 1, 1)
    for k in CLUTTER_PARAMS:
        t = torch.as_tensor(params[k], dtype=torch.float32)
        if t.shape != (batch, N_CLUTTER):
            raise ValueError(f"render_faces: {k!r} must have shape ({batch}, {N_CLUTTER}), got {tuple(t.shape)}")
        out[k] = t
    t = torch.as_tensor(params["clutter_rgb"], dtype=torch.float32)
    if t.shape != (batch, N_CLUTTER, 3):
        raise ValueError(f"render_faces: 'clutter_rgb' must have shape ({batch}, {N_CLUTTER}, 3), got {tuple(t.shape)}")
    out["clutter_rgb"] = t
    return out


# ----------------------------------------------------------------------------------------------
# soft shapes


def _ramp(d: torch.Tensor, width: float | torch.Tensor) -> torch.Tensor:
    """Coverage of a shape whose signed distance is ``d`` (negative inside), edge ``width`` wide."""
    return (0.5 - d / width).clamp_(0.0, 1.0)


def _bump(r2: torch.Tensor) -> torch.Tensor:
    """A smooth compact bump of the squared normalised radius: ``(1 - r2)^2`` inside, 0 outside.

    Used instead of a Gaussian for soft shading blobs (``exp`` is the slowest op on a CPU)."""
    return (1.0 - r2).clamp_(min=0.0).square_()


def _ellipse(du: torch.Tensor, dv: torch.Tensor, rx, ry) -> torch.Tensor:
    """Approximate signed distance to an axis-aligned ellipse with radii ``rx``, ``ry``."""
    r = torch.sqrt((du / rx).square_() + (dv / ry).square_())
    return (r - 1.0) * torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry))


def _segment(du: torch.Tensor, dv: torch.Tensor, ax, ay, bx, by) -> torch.Tensor:
    """Distance from (du, dv) to the segment (ax, ay)-(bx, by)."""
    px, py = du - ax, dv - ay
    ex, ey = bx - ax, by - ay
    t = ((px * ex + py * ey) / (ex * ex + ey * ey + 1e-9)).clamp_(0.0, 1.0)
    return torch.sqrt((px - t * ex).square_() + (py - t * ey).square_())


def _paint(img: torch.Tensor, alpha: torch.Tensor, rgb: torch.Tensor) -> None:
    """Composite colour ``rgb`` ((B,3,1,1) or (B,3,S,S)) over ``img`` with coverage ``alpha`` (B,S,S)."""
    img.lerp_(rgb.expand_as(img), alpha.unsqueeze(1).expand_as(img))


def _darken(img: torch.Tensor, alpha: torch.Tensor, amount: float | torch.Tensor) -> None:
    """Multiply ``img`` by ``1 - amount * alpha`` (shadows, wrinkles, creases)."""
    img.mul_((1.0 - alpha * amount).unsqueeze(1))


_WHITE = torch.tensor([0.93, 0.91, 0.88]).view(1, 3, 1, 1)
_BLACK = torch.full((1, 3, 1, 1), 0.05)
_ONE = torch.ones(1, 3, 1, 1)
_MOUTH_INSIDE = torch.tensor([0.25, 0.08, 0.08]).view(1, 3, 1, 1)
_TEETH = torch.tensor([0.92, 0.9, 0.84]).view(1, 3, 1, 1)


# ----------------------------------------------------------------------------------------------
# the drawing
#
# The coordinate maps of a batch live in a dict ``f`` of (B, S, S) tensors (``u``, ``v``, ...).
# Small features are drawn only on the band of rows where they can appear, and rare ones
# (glasses, hats, masks, beards, wrinkles, ...) only on the images that have them: see _layer.

def _layer(fn, img, p, f, active: torch.Tensor | None = None, rows_of: str | None = None, lo=None, hi=None) -> None:
    """Run ``fn(img, p, f)`` on the images where ``active > 0`` (all if None), restricted to the
    rows where the map ``f[rows_of]`` takes a value in ``[lo, hi]`` for some image."""
    idx = None
    if active is not None:
        on = active.view(-1) > 0
        if not bool(on.any()):
            return
        if not bool(on.all()):
            idx = on.nonzero().view(-1)
    rows = slice(None)
    if rows_of is not None:
        m, l, h = f[rows_of], lo, hi
        if idx is not None:
            m = m.index_select(0, idx) if m.shape[0] > 1 else m
            l = l.index_select(0, idx) if torch.is_tensor(l) else l
            h = h.index_select(0, idx) if torch.is_tensor(h) else h
        where = ((m >= l) & (m <= h)).any(dim=2).any(dim=0).nonzero().view(-1)
        if where.numel() == 0:
            return
        rows = slice(int(where[0]), int(where[-1]) + 1)

    def cut(t: torch.Tensor) -> torch.Tensor:
        if idx is not None and t.shape[0] > 1:
            t = t.index_select(0, idx)
        return t[:, rows] if t.ndim == 3 and t.shape[1] > 1 else t

    fs = {k: cut(t) for k, t in f.items()}
    ps = p if idx is None else {k: t.index_select(0, idx) for k, t in p.items()}
    if idx is None:
        fn(img[:, :, rows], ps, fs)
    else:
        sub = img.index_select(0, idx)
        fn(sub[:, :, rows], ps, fs)
        img.index_copy_(0, idx, sub)


def _draw(p: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    batch = p["yaw"].shape[0]
    pix = 2.0 / size  # one pixel, in screen units
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) * pix - 1.0
    xs = lin.view(1, 1, size)
    ys = lin.view(1, size, 1)

    # ---- flat face frame: undo shift, scale and roll
    scale = FRAME_SCALE * p["scale"]
    cr, sr = torch.cos(p["roll"]), torch.sin(p["roll"])
    dx = (xs - p["shift_x"]) / scale
    dy = (ys - FRAME_CENTER_Y - p["shift_y"]) / scale
    xf = cr * dx + sr * dy
    yf = -sr * dx + cr * dy
    edge = 1.2 * pix / scale  # antialiasing width: a bit more than one pixel, in face units
    p["edge"] = edge

    # ---- surface frame: the head is a surface of revolution of radius r(v) (yaw) on a
    # horizontal cylinder (pitch). A landmark alignment keeps the eyes in place: shift the
    # flat frame so that the surface point between the eyes stays at the origin.
    yaw, pitch = p["yaw"], p["pitch"]
    syaw, spitch = torch.sin(yaw), torch.sin(pitch)
    c, rp = PITCH_AXIS_V, PITCH_RADIUS
    eyes_y = c + rp * torch.sin(math.asin(-c / rp) + pitch)
    xf = xf + ALIGN * _head_radius(p, torch.zeros_like(yaw)) * syaw
    yf = yf + ALIGN * eyes_y
    v = c + rp * torch.sin(torch.asin(((yf - c) / rp).clamp(-1.0, 1.0)) - pitch)
    r = _head_radius(p, v)
    theta = torch.asin((xf / r.clamp(min=1e-3)).clamp(-1.0, 1.0)) - yaw
    cos_t = torch.cos(theta)
    silhouette = torch.maximum(xf.abs() - r, torch.maximum(-p["crown"] - v, v - p["chin"]))
    face_d = torch.maximum(silhouette, -cos_t * r)  # the face half of the head
    back_d = torch.maximum(silhouette, torch.maximum(cos_t * r, v - 0.45))  # the back half, seen under yaw
    on_face = (cos_t > -0.05) & (xf.abs() < r + 4 * edge)
    u = torch.where(on_face, r * torch.sin(theta), torch.full_like(theta, 9.0))  # 9 = far from every feature
    # what is drawn in the flat frame (ears, hair mass, neck, hat) sits BEHIND_DEPTH behind the
    # eyes: under pitch it moves by that depth times sin(pitch) relative to them
    yb = yf - (rp - BEHIND_DEPTH) * spitch
    face = _ramp(face_d, edge)
    rise = ((v + 0.05) / (p["nose_len"] + 0.05)).clamp(0.0, 1.0)  # the nose stands off more towards its tip
    f = {
        "u": u, "v": v, "xf": xf, "yb": yb, "face": face, "face_d": face_d,
        "near_face": _ramp(face_d - 0.05, edge),
        "nose_u": u - NOSE_DEPTH * syaw * rise, "nose_v": v - NOSE_DEPTH * spitch * rise,
        "mouth_u": u - LIP_DEPTH * syaw, "mouth_v": v - LIP_DEPTH * spitch,
        "xs": xs.expand(1, size, size), "ys": ys.expand(1, size, size),
    }

    img = _background(p, xs, ys, batch, size)
    neck = _clothes_and_neck(img, p, xf, yb, edge)
    hair_back = _hair_back(p, xf, yb, edge)
    _paint(img, hair_back, p["hair_rgb"])
    ear_behind, ear_front, ear_inner = _ears(p, xf, yb, edge)
    _paint(img, ear_behind, p["skin_rgb"] * 0.93)
    _darken(img, ear_inner * (ear_behind > 0), 0.15)

    # ---- the back of the head (hair down to the nape, skin below) and the face
    back = _ramp(back_d, edge)
    nape = 0.5 * ((theta.abs() - math.pi / 2) / (math.pi / 2)).clamp(0.0, 1.0)
    back_hair = _ramp(v - nape, edge)
    _paint(img, back * (1.0 - back_hair), p["skin_rgb"] * 0.9)
    _paint(img, back * back_hair, p["hair_rgb"])
    _paint(img, face, p["skin_rgb"])
    chin_shadow = face * ((v - p["chin"] + 0.15) / 0.1).clamp(0, 1) * ((u.abs() - 0.05) / 0.1).clamp(0, 1)
    _darken(img, chin_shadow, 0.12)

    top = p["eye_y"] - p["brow_height"] - 0.45
    _layer(_blush, img, p, f, p["blush"], "v", 0.12, 0.48)
    _layer(_beard, img, p, f, torch.maximum(p["beard"], p["moustache"]), "v", p["nose_len"], p["chin"] + 0.05)
    _layer(_front_hair, img, p, f, None, "v", -10.0, 0.1)
    _layer(_wrinkles, img, p, f, p["wrinkles"] - 0.02, "v", top, p["nose_len"] + p["mouth_gap"] + 0.2)
    _layer(_eyes, img, p, f, None, "v", p["eye_y"] - 0.2, p["eye_y"] + 0.14)
    _layer(_brows, img, p, f, None, "v", p["eye_y"] - p["brow_height"] - 0.16, p["eye_y"] - p["brow_height"] + 0.1)
    _layer(_nose, img, p, f, None, "nose_v", 0.05, p["nose_len"] + 0.09)
    my = p["nose_len"] + p["mouth_gap"]
    _layer(_mouth, img, p, f, None, "mouth_v", my - 0.12, my + 0.14)
    _layer(_mole, img, p, f, p["mole_on"], "v", p["mole_v"] - 0.05, p["mole_v"] + 0.05)
    _paint(img, ear_front, p["skin_rgb"] * 0.93)
    _darken(img, ear_inner * (ear_front > 0), 0.15)

    # ---- occluders
    _layer(_glasses, img, p, f, p["glasses"], "v", p["eye_y"] - 0.2, p["eye_y"] + 0.2)
    _layer(_mask, img, p, f, p["mask"], "v", p["nose_len"] - 0.2, p["chin"] + 0.1)
    _layer(_hat, img, p, f, p["hat"], "yb", -10.0, p["hat_line"] + 0.1)
    _layer(_patch, img, p, f, p["patch"], "ys", p["patch_y"] - p["patch_r"], p["patch_y"] + p["patch_r"])

    # ---- light
    head = torch.maximum(torch.maximum(face, hair_back), torch.maximum(neck, torch.maximum(ear_front, ear_behind)))
    img.mul_(_shading(p, xf, yb, head).unsqueeze(1))
    img.mul_(p["light_rgb"] * p["light_intensity"].unsqueeze(1))
    return img


def _background(p, xs, ys, batch: int, size: int) -> torch.Tensor:
    """A two-colour gradient plus random ellipses / boxes (scene clutter)."""
    t = (xs * torch.cos(p["bg_angle"]) + ys * torch.sin(p["bg_angle"])).mul_(0.5).add_(0.5).clamp_(0, 1)
    img = p["bg_rgb_a"] + (p["bg_rgb_b"] - p["bg_rgb_a"]) * t.unsqueeze(1)
    img = img.expand(batch, 3, size, size).contiguous()
    pix = 2.0 / size
    for k in range(N_CLUTTER):
        cx = p["clutter_x"][:, k].view(-1, 1, 1)
        cy = p["clutter_y"][:, k].view(-1, 1, 1)
        rx = p["clutter_rx"][:, k].view(-1, 1, 1)
        ry = p["clutter_ry"][:, k].view(-1, 1, 1)
        box = p["clutter_box"][:, k].view(-1, 1, 1)
        d_box = torch.maximum((xs - cx).abs() - rx, (ys - cy).abs() - ry)
        d_ell = _ellipse(xs - cx, ys - cy, rx, ry)
        d = torch.where(box > 0.5, d_box, d_ell)
        alpha = _ramp(d, 2 * pix).mul_(p["clutter_alpha"][:, k].view(-1, 1, 1))
        _paint(img, alpha, p["clutter_rgb"][:, k].view(-1, 3, 1, 1))
    return img


def _clothes_and_neck(img, p, xf, yf, edge) -> torch.Tensor:
    chin = p["chin"]
    shoulders = _ramp(_ellipse(xf, yf - chin - 1.05, 1.55, 0.8), edge)
    _paint(img, shoulders, p["clothes_rgb"])
    neck_w = 0.42 * p["face_width"]
    neck_d = torch.maximum(xf.abs() - neck_w, torch.maximum(chin - 0.35 - yf, yf - chin - 0.42))
    neck_d = torch.minimum(neck_d, _ellipse(xf, yf - chin - 0.40, neck_w * 1.05, 0.12))
    neck = _ramp(neck_d, edge)
    _paint(img, neck, p["skin_rgb"] * 0.78)
    return neck


def _head_radius(p, v) -> torch.Tensor:
    """Half-width of the head at height ``v`` (face units): the radius of the surface of revolution.

    Above the cheekbone line ``v0`` the cranium is a superellipse reaching up to ``-crown``;
    below it the jaw is a superellipse of exponent ``jaw_square`` (2 = oval, 3+ = square),
    tapering to the chin at ``v = chin``; ``cheek`` (0..1) fills the lower face out.
    """
    a = p["face_width"]
    v0 = 0.12
    t_up = ((v0 - v) / (v0 + p["crown"])).clamp(0.0, 1.0)
    w_up = a * (1.0 - t_up.pow(2.4)).clamp(min=0.0).pow(1.0 / 2.4)
    n = p["jaw_square"]
    t_lo = ((v - v0) / (p["chin"] - v0)).clamp(0.0, 1.0)
    w_lo = a * (1.0 - t_lo.pow(n)).clamp(min=0.0).pow(1.0 / n)
    bulge = 4.0 * t_lo * (1.0 - t_lo)  # a parabola standing in for sin(pi t)
    w_lo = w_lo * (1.0 - 0.22 * t_lo.pow(1.5)) * (1.0 + p["cheek"] * 0.12 * bulge)
    return torch.where(v < v0, w_up, w_lo)


def _hair_back(p, xf, yf, edge) -> torch.Tensor:
    """Coverage of the hair mass behind the head: a cap over the cranium down to the ears, or,
    for long hair (``hair_length`` > 0.15), a mass falling to ``hair_length`` beside the face."""
    a = p["face_width"]
    vol = p["hair_volume"]
    length = p["hair_length"]
    bottom = torch.maximum(length, torch.full_like(length, 0.05))
    cap = torch.maximum(_ellipse(xf, yf - 0.12, a + vol, 0.12 + p["crown"] + vol), yf - bottom)
    half_w = a + 0.6 * vol + 0.04
    fall = torch.maximum(xf.abs() - half_w, torch.maximum(-yf, yf - length))
    fall = torch.minimum(fall, _ellipse(xf, yf - length, half_w, 0.12))  # rounded tips
    fall = torch.where(length > 0.15, fall, torch.full_like(fall, 1.0))
    return _ramp(torch.minimum(cap, fall), edge)


def _ears(p, xf, yf, edge):
    """Ears on a cylinder slightly behind the face limb: (behind-face coverage, in-front coverage, inner-ear)."""
    a = p["face_width"]
    behind = torch.zeros_like(xf)
    front = torch.zeros_like(xf)
    inner = torch.zeros_like(xf)
    size = p["ear_size"]
    for side in (-1.0, 1.0):
        ang = side * (math.pi / 2 + 0.12) + p["yaw"]
        cx = (a + 0.03) * torch.sin(ang) + side * 0.05 * torch.cos(p["yaw"])
        depth = torch.cos(ang)
        width = size * (0.45 + 0.55 * torch.abs(torch.sin(p["yaw"]))) * 0.55
        cy = p["ear_y"]
        cov = _ramp(_ellipse(xf - cx, yf - cy, width, size), edge)
        inn = _ramp(_ellipse(xf - cx + side * 0.15 * width, yf - cy + 0.1 * size, width * 0.35, size * 0.5), edge)
        visible = (0.5 + depth / 0.1).clamp(0.0, 1.0)
        front = torch.maximum(front, cov * visible)
        behind = torch.maximum(behind, cov * (1 - visible))
        inner = torch.maximum(inner, inn)
    return behind, front, inner


def _blush(img, p, f) -> None:
    u, v = f["u"], f["v"]
    for side in (-1.0, 1.0):
        blob = _bump(((u - side * 0.36) / 0.2).square() + ((v - 0.30) / 0.16).square())
        _paint(img, blob * f["face"] * (0.25 * p["blush"]), p["lip_rgb"])


def _front_hair(img, p, f) -> None:
    """Hair on the face half above the hairline: rounded down to the temples, with temple
    recession (``hair_recess``), a fringe pulling it down to the brows, and a side parting."""
    u, v = f["u"], f["v"]
    a = p["face_width"]
    ua = (u.abs() / a).clamp(0.0, 1.2)
    line = p["hairline"] + (0.02 - p["hairline"]) * ua.pow(4.0)
    line = line - p["hair_recess"] * _bump(((ua - 0.5) / 0.3).square())
    fringe_line = -p["brow_height"] - 0.10 + 0.02 * torch.sin(u * 40.0) + 0.5 * (0.02 + p["brow_height"]) * ua.pow(3.0)
    line = line + p["fringe"] * (fringe_line - line)
    line = line - 0.05 * _bump(((u - p["parting"] * 0.35 * a) / 0.07).square()) * (1 - p["fringe"])
    cov = _ramp(torch.maximum(v - line, f["face_d"] - 0.015), p["edge"])
    _paint(img, cov, p["hair_rgb"])
    # strands: a faint texture, visible at high resolution only
    _darken(img, cov * (0.5 + 0.5 * torch.sin(u * 60.0 + v * 12.0)), 0.08)


def _eyes(img, p, f) -> None:
    """Almond eyes: socket shadow, sclera, iris, pupil, lash line, crease, lower lid, age bags."""
    u, v, edge = f["u"], f["v"], p["edge"]
    ew = p["eye_size"]
    openness = (p["eye_open"] * (1.0 - 0.35 * p["smile"])).clamp(0.05, 1.0)
    eh_up = ew * 0.55 * openness
    eh_lo = ew * 0.32 * openness.sqrt()
    for side in (-1.0, 1.0):
        du = u - side * p["eye_spacing"]
        dv = v - p["eye_y"]
        tilt = -side * p["eye_tilt"]
        ct, st = torch.cos(tilt), torch.sin(tilt)
        x = ct * du + st * dv
        y = ct * dv - st * du
        socket = _bump((x / (ew * 1.9)).square() + ((y + 0.2 * ew) / (ew * 1.2)).square())
        _darken(img, socket, 0.22)
        q = (1.0 - (x / ew).square()).clamp(min=0.0)
        upper = -eh_up * q.pow(0.7)
        lower = eh_lo * q
        sclera = _ramp(torch.maximum(torch.maximum(upper - y, y - lower), x.abs() - ew), edge)
        _paint(img, sclera, _WHITE)
        ri = ew * 0.5
        ix = p["gaze_x"] * ew * 0.35
        iy = p["gaze_y"] * ew * 0.12 - 0.15 * ri * (1 - openness)
        dist = torch.sqrt((x - ix).square() + (y - iy).square())
        _paint(img, _ramp(dist - ri, edge) * sclera, p["iris_rgb"])
        _paint(img, _ramp(dist - ri * 0.45, edge) * sclera, _BLACK)
        thick = 0.014 + 0.008 * (side * x / ew).clamp(0, 1)
        lash = _ramp(torch.maximum((y - upper + 0.3 * thick).abs() - thick, x.abs() - ew * 1.04), edge)
        _paint(img, lash, p["hair_rgb"] * 0.3 + 0.02)
        crease = _ramp(torch.maximum((y - upper * 1.1 + 0.35 * ew * openness.sqrt()).abs() - 0.006, x.abs() - ew * 0.9), edge)
        _darken(img, crease, 0.18)
        lid_lo = _ramp(torch.maximum((y - lower - 0.004).abs() - 0.004, x.abs() - ew * 0.9), edge)
        _darken(img, lid_lo, 0.15)
        bag = _ramp(torch.maximum((y - lower - 0.035 - 0.02 * p["eye_bags"]).abs() - 0.005, x.abs() - ew * 0.8), edge)
        _darken(img, bag, 0.3 * p["eye_bags"])


def _brows(img, p, f) -> None:
    u, v = f["u"], f["v"]
    raise_ = p["brow_raise"]
    colour = p["hair_rgb"] * 0.75 + 0.25 * p["skin_rgb"] * 0.5
    for side in (-1.0, 1.0):
        x = (u - side * (p["eye_spacing"] + 0.02)) * side  # positive towards the outer end
        t = (x / p["brow_len"]).clamp(-1.2, 1.2)
        centre = p["eye_y"] - p["brow_height"] - 0.04 * raise_ - p["brow_arch"] * (1 - t.square()) - p["brow_slant"] * t
        centre = centre + 0.015 * torch.relu(-raise_) * (1 - t)  # frown: inner ends down
        thick = p["brow_thick"] * (1.0 - 0.225 * (t + 1.0))
        d = torch.maximum((v - centre).abs() - thick, x.abs() - p["brow_len"])
        _paint(img, _ramp(d, p["edge"]) * 0.92, colour)


def _nose(img, p, f) -> None:
    """Bridge shading on the side away from the light, alae, nostrils, tip highlight, base shadow."""
    u, v, face, edge = f["nose_u"], f["nose_v"], f["near_face"], p["edge"]
    tip_v = p["nose_len"]
    nw = p["nose_width"]
    light_x = torch.sin(p["light_azimuth"])
    along = ((v - 0.08) / (tip_v - 0.08)).clamp(0, 1)
    for side in (-1.0, 1.0):
        off = p["nose_bridge"] + 0.3 * (nw - p["nose_bridge"]) * along
        strip = _bump(((u - side * off) / 0.05).square()) * (along * 4.0).clamp(max=1.0) * ((tip_v - 0.03 - v) / 0.03).clamp(0, 1)
        _darken(img, strip * face, 0.04 + 0.22 * torch.relu(-side * light_x))
    base = _bump((u / (nw * 1.6)).square() + ((v - tip_v - 0.045) / 0.04).square())
    _darken(img, base * face, 0.30)
    for side in (-1.0, 1.0):
        cx = side * nw * 0.78
        ala = _ramp(_ellipse(u - cx, v - tip_v + 0.005, nw * 0.45, 0.05), edge)
        rim = ala * (1.0 - _ramp(_ellipse(u - cx, v - tip_v + 0.012, nw * 0.38, 0.042), edge))
        _darken(img, rim * face, 0.35)
        nostril = _ramp(_ellipse(u - side * nw * 0.42, v - tip_v - 0.012, nw * 0.28, 0.017), edge)
        _paint(img, nostril * face * 0.85, p["skin_rgb"] * 0.28)
    tip_r = p["nose_tip"]
    tip = _bump(((u - 0.15 * light_x * tip_r) / (1.4 * tip_r)).square() + ((v - tip_v + 0.035) / (1.1 * tip_r)).square())
    _paint(img, tip * face * 0.22, _ONE)


def _mouth(img, p, f) -> None:
    u, v, face, edge = f["mouth_u"], f["mouth_v"], f["near_face"], p["edge"]
    smile = p["smile"]
    mw = p["mouth_width"] * (1.0 + 0.18 * smile)
    my = p["nose_len"] + p["mouth_gap"]
    t = u / mw
    sq = (1.0 - t.square()).clamp(min=0.0).sqrt()
    curve = p["mouth_curve"] + 0.07 * smile
    line = my - curve * t.square()
    gap = p["mouth_open"] * 0.08 * sq
    bow = 1.0 - 0.35 * _bump((t / 0.3).square())
    top = line - p["lip_upper"] * sq * bow
    bottom = line + gap + p["lip_lower"] * sq
    lips = _ramp(torch.maximum(torch.maximum(top - v, v - bottom), t.abs() - 1.0), edge) * face
    _paint(img, lips, p["lip_rgb"])
    hl = _bump((t / 0.7).square() + ((v - line - gap - 0.45 * p["lip_lower"]) / (0.45 * p["lip_lower"] + 1e-3)).square())
    _paint(img, hl * lips * 0.18, _ONE)
    # the opening (teeth at its top) or the line between closed lips
    open_ = (gap > 0.004).float()
    inside = _ramp(torch.maximum(torch.maximum(line - v, v - line - gap), t.abs() - 0.95), edge) * open_ * face
    _paint(img, inside, _MOUTH_INSIDE)
    _paint(img, inside * _ramp(v - line - 0.45 * gap - 0.012, edge) * 0.9, _TEETH)
    lipline = _ramp(torch.maximum((v - line).abs() - 0.006, t.abs() - 1.02), edge) * face
    _darken(img, lipline, 0.45)
    for side in (-1.0, 1.0):
        corner = _bump(((u - side * mw) / 0.035).square() + ((v - line + curve) / 0.03).square()) * face
        _darken(img, corner, 0.35)


def _mole(img, p, f) -> None:
    mole = _ramp(_ellipse(f["u"] - p["mole_u"], f["v"] - p["mole_v"], 0.022, 0.022), p["edge"]) * f["face"]
    _paint(img, mole, p["skin_rgb"] * 0.35)


def _beard(img, p, f) -> None:
    u, v, face, edge = f["u"], f["v"], f["face"], p["edge"]
    my = p["nose_len"] + p["mouth_gap"]
    ua = u.abs() / p["face_width"]
    top = my - 0.02 + 0.25 * ua.clamp(0, 1) - 0.3 * (ua - 0.75).clamp(min=0)
    beard = ((v - top) / 0.06 + 0.5).clamp(0, 1) * face * p["beard"]
    _paint(img, beard * 0.9, p["hair_rgb"] * 0.9)
    tache_top = p["nose_len"] + 0.05
    tache_bot = my - p["lip_upper"] * 0.4
    d = torch.maximum(torch.maximum(tache_top - v, v - tache_bot), u.abs() - p["mouth_width"] * 1.05)
    _paint(img, _ramp(d, edge) * p["moustache"] * 0.9, p["hair_rgb"] * 0.9)


def _wrinkles(img, p, f) -> None:
    """Age texture: forehead lines, nasolabial folds, marionette lines, crow's feet."""
    u, v, edge = f["u"], f["v"], p["edge"]
    lines = torch.zeros_like(u)
    for k in range(3):
        centre = p["eye_y"] - p["brow_height"] - 0.13 - 0.07 * k + 0.015 * torch.cos(u * 7.0)
        lines = torch.maximum(lines, _ramp(torch.maximum((v - centre).abs() - 0.005, u.abs() - 0.3 + 0.05 * k), edge))
    my = p["nose_len"] + p["mouth_gap"]
    mw = p["mouth_width"]
    for side in (-1.0, 1.0):
        fold = _segment(u, v, side * p["nose_width"] * 1.2, p["nose_len"] - 0.02, side * (mw + 0.07), my + 0.06)
        lines = torch.maximum(lines, _ramp(fold - 0.007, edge))
        marionette = _segment(u, v, side * (mw + 0.02), my + 0.04, side * (mw + 0.05), my + 0.18)
        lines = torch.maximum(lines, _ramp(marionette - 0.005, edge) * 0.8)
        ex = side * (p["eye_spacing"] + p["eye_size"] + 0.03)
        for dy in (-0.03, 0.0, 0.03):
            crow = _segment(u, v, ex, p["eye_y"] + dy * 0.3, ex + side * 0.06, p["eye_y"] + dy)
            lines = torch.maximum(lines, _ramp(crow - 0.004, edge) * 0.7)
    _darken(img, lines * f["face"], 0.25 * p["wrinkles"])


def _glasses(img, p, f) -> None:
    u, v, edge = f["u"], f["v"], p["edge"]
    gw = p["eye_size"] * 1.55
    gh = p["eye_size"] * 1.05
    thick = 0.022
    frame = torch.zeros_like(u)
    lens = torch.zeros_like(u)
    for side in (-1.0, 1.0):
        du = (u - side * p["eye_spacing"]).abs()
        dv = (v - p["eye_y"] - 0.01).abs()
        qx, qy = du - gw + 0.04, dv - gh + 0.04
        rounded = torch.sqrt(qx.clamp(min=0).square() + qy.clamp(min=0).square()) + torch.maximum(qx, qy).clamp(max=0.0) - 0.04
        frame = torch.maximum(frame, _ramp(rounded.abs() - thick / 2, edge))
        lens = torch.maximum(lens, _ramp(rounded, edge))
        temple = _segment(u, v, side * (p["eye_spacing"] + gw), p["eye_y"] - 0.02, side * 1.2, p["eye_y"] + 0.02)
        frame = torch.maximum(frame, _ramp(temple - thick / 2, edge))
    bridge = torch.maximum(u.abs() - (p["eye_spacing"] - gw + 0.01), (v - p["eye_y"] + 0.03).abs() - thick / 2)
    frame = torch.maximum(frame, _ramp(bridge, edge))
    _paint(img, lens * p["glasses"] * (0.12 + 0.78 * p["glasses_dark"]), torch.full((1, 3, 1, 1), 0.06))
    _paint(img, frame * p["glasses"], p["glasses_rgb"])


def _mask(img, p, f) -> None:
    u, v = f["u"], f["v"]
    top = p["nose_len"] - 0.1 + 0.08 * (u / p["face_width"]).square()
    cov = _ramp(torch.maximum(top - v, f["face_d"] - 0.015), p["edge"]) * p["mask"]
    _paint(img, cov, p["mask_rgb"])
    _darken(img, cov * (0.5 + 0.5 * torch.cos((v - top) * 70.0)), 0.08)


def _hat(img, p, f) -> None:
    xf, yf, edge = f["xf"], f["yb"], p["edge"]
    a = p["face_width"]
    line = p["hat_line"]
    crown = _ellipse(xf, yf - line, a + 0.14, p["crown"] + line + 0.22)
    d = torch.maximum(crown, yf - line)
    brim = torch.maximum((yf - line + 0.03).abs() - 0.05, xf.abs() - a - 0.28)
    cov = _ramp(torch.minimum(d, brim), edge) * p["hat"]
    _paint(img, cov, p["hat_rgb"])
    band = _ramp(torch.maximum((yf - line + 0.03).abs() - 0.012, xf.abs() - a - 0.28), edge)
    _darken(img, band * p["hat"], 0.3)


def _patch(img, p, f) -> None:
    """A hand, a microphone, a passer-by: an ellipse of random colour over the picture."""
    xs, ys = f["xs"], f["ys"]
    pix = 2.0 / img.shape[-1]
    cov = _ramp(_ellipse(xs - p["patch_x"], ys - p["patch_y"], p["patch_r"], p["patch_r"] * 0.8), 2 * pix)
    _paint(img, cov * p["patch"], p["patch_rgb"])


def _shading(p, xf, yf, head) -> torch.Tensor:
    """Lambertian light on the head ellipsoid's normal; the background gets a flat share."""
    az, el = p["light_azimuth"], p["light_elevation"]
    lx = torch.cos(el) * torch.sin(az)
    ly = -torch.sin(el)
    lz = torch.cos(el) * torch.cos(az)
    nx = (xf / (p["face_width"] + 0.12)).clamp(-1, 1)
    ny = ((yf - 0.15) / 1.5).clamp(-1, 1)
    nz = (1.0 - nx.square() - ny.square()).clamp(min=0.0).sqrt()
    lambert = (nx * lx + ny * ly + nz * lz).clamp(min=0.0)
    amb = p["light_ambient"]
    shade = (amb + (1.0 - amb) * lambert / lz.clamp(min=0.3)).clamp(max=1.25)
    flat = amb + (1.0 - amb) * 0.8
    return flat + (shade - flat) * head


# ----------------------------------------------------------------------------------------------
# photographic nuisances


def _blur(img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur, one sigma (output pixels) per image; sigma <= 0.05 leaves it sharp.

    Each pass is a weighted sum of shifted copies, tap by tap in a fixed order: elementwise products and sums
    give the same bytes on every CPU. (A grouped ``conv2d`` went through oneDNN, whose depthwise kernels sum in an
    order that depends on the machine: on an AMD EPYC it put pixels one level away from a Xeon's.)"""
    if bool((sigma <= 0.05).all()):
        return img
    batch, ch, h, w = img.shape
    radius = 3
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    s = sigma.clamp(min=0.05).view(-1, 1)
    k = torch.exp(-0.5 * (x.view(1, -1) / s).square())
    k = (k / k.sum(dim=1, keepdim=True)).view(batch, 1, 1, 1, 2 * radius + 1)  # (B, 1, 1, 1, 2r+1)
    padded = F.pad(img, (radius, radius, radius, radius), mode="replicate")
    rows = padded[..., 0:w] * k[..., 0]
    for t in range(1, 2 * radius + 1):
        rows = rows + padded[..., t:t + w] * k[..., t]
    out = rows[:, :, 0:h] * k[..., 0]
    for t in range(1, 2 * radius + 1):
        out = out + rows[:, :, t:t + h] * k[..., t]
    return out


def _add_noise(img: torch.Tensor, std: torch.Tensor, noise_key: np.ndarray) -> torch.Tensor:
    """Zero-mean sensor noise with per-image ``std`` (in [0, 1] units), a pure function of ``noise_key``."""
    if bool((std <= 0).all()):
        return img
    batch = img.shape[0]
    n = int(np.prod(img.shape[1:]))
    u = hash_uniform(np.asarray(noise_key, dtype=np.uint64), n)  # (B, n) in [0, 1)
    noise = torch.from_numpy((u - 0.5).astype(np.float32) * math.sqrt(12.0)).view(img.shape)
    return img + noise * std.view(batch, 1, 1, 1)
