"""Encoded image -> uint8 RGB tensor (3 x H x W): crop, resize, greyscale -> RGB.

Every reader in :mod:`dbrepro.data.formats` decodes through :func:`decode_image`, so a JPEG
gives the same pixels whether it comes from a ``.rec`` record, a ``.bin`` pack or a file.

Decoding is Pillow's: a standard JPEG/PNG decodes to RGB in RGB order (no BGR anywhere).
The geometry is applied in this order:

1. ``crop`` - a region of the *source* image, in source pixels (see :func:`crop_box`);
2. if ``image_size`` is given, the region is shrunk about its centre to the target aspect
   ratio, then resized to ``image_size`` with Pillow's antialiased bilinear filter.

For JPEGs that are reduced by 2x or more, the decoder's DCT scaling (``Image.draft``) does
the first power-of-two reduction while decoding, which is several times faster than
decoding at full size; the antialiased resize does the rest.

Greyscale images (8- or 16-bit) are replicated to three channels; alpha is dropped.
"""

from __future__ import annotations

import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch
from PIL import Image

from .errors import ImageDecodeError

#: ``int`` (square) or ``(height, width)``.
ImageSize = Union[int, tuple[int, int]]
#: ``int`` (centre square of that many source pixels), ``float`` in (0, 1] (centre region,
#: that fraction of each side), ``(height, width)`` (centre rectangle) or
#: ``(left, top, right, bottom)`` (a box).
Crop = Union[int, float, tuple[int, int], tuple[int, int, int, int]]

Box = tuple[float, float, float, float]

_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def as_size(image_size: ImageSize | None, what: str = "image_size") -> tuple[int, int] | None:
    """``image_size`` as ``(height, width)``; ``None`` stays ``None``."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(f"{what}: expected an int or (height, width), got {image_size!r}")
    if min(size) < 1:
        raise ValueError(f"{what}: sizes must be >= 1, got {image_size!r}")
    return size


def crop_box(width: int, height: int, crop: Crop | None, what: str = "image") -> Box:
    """The ``(left, top, right, bottom)`` region of a ``width x height`` source that ``crop`` names.

    ``None`` is the whole image. A region that does not fit in the image is an error
    (``what`` names the image in the message).
    """
    if crop is None:
        return (0.0, 0.0, float(width), float(height))
    if isinstance(crop, bool):
        raise ValueError(f"crop: expected an int, float or tuple, got {crop!r}")
    if isinstance(crop, (float, np.floating)):
        if not 0.0 < crop <= 1.0:
            raise ValueError(f"crop: a fraction must lie in (0, 1], got {crop}")
        ch, cw = crop * height, crop * width
    elif isinstance(crop, (int, np.integer)):
        ch = cw = float(crop)
    elif isinstance(crop, (tuple, list)) and len(crop) == 2:
        ch, cw = float(crop[0]), float(crop[1])
    elif isinstance(crop, (tuple, list)) and len(crop) == 4:
        left, top, right, bottom = (float(v) for v in crop)
        if not (0 <= left < right <= width and 0 <= top < bottom <= height):
            raise ValueError(f"{what}: crop box {tuple(crop)} does not fit in a {width}x{height} image")
        return (left, top, right, bottom)
    else:
        raise ValueError(f"crop: expected an int, float, (h, w) or (left, top, right, bottom), got {crop!r}")
    if ch <= 0 or cw <= 0:
        raise ValueError(f"crop: sizes must be positive, got {crop!r}")
    if ch > height or cw > width:
        raise ValueError(f"{what}: a {cw:g}x{ch:g} centre crop does not fit in a {width}x{height} image")
    left, top = (width - cw) / 2, (height - ch) / 2
    return (left, top, left + cw, top + ch)


def fit_aspect(box: Box, size: tuple[int, int]) -> Box:
    """Shrink ``box`` about its centre to the aspect ratio of ``size`` = (height, width)."""
    left, top, right, bottom = box
    bw, bh = right - left, bottom - top
    th, tw = size
    if abs(bw * th - bh * tw) < 1e-9 * max(bw * th, 1.0):
        return box
    if bw * th > bh * tw:  # too wide
        nw = bh * tw / th
        left += (bw - nw) / 2
        return (left, top, left + nw, bottom)
    nh = bw * th / tw
    top += (bh - nh) / 2
    return (left, top, right, top + nh)


def _draft_jpeg(im: Image.Image, box: Box, size: tuple[int, int]) -> Box:
    """Let the JPEG decoder reduce by a power of two while keeping ``box`` >= ``size``."""
    if im.format != "JPEG":
        return box
    left, top, right, bottom = box
    reduction = min((right - left) / size[1], (bottom - top) / size[0])
    p = next((s for s in (8, 4, 2) if s <= reduction), 1)
    if p == 1:
        return box
    width, height = im.size
    request = (max(1, width // p), max(1, height // p))
    # Pillow picks min(W // w, H // h) rounded down to a power of two; only draft if that is p.
    chosen = min(width // request[0], height // request[1])
    if next((s for s in (8, 4, 2, 1) if s <= chosen), 1) != p:
        return box
    if im.draft(None, request) is None:
        return box
    return (left / p, top / p, right / p, bottom / p)


def _to_grey_or_rgb(im: Image.Image) -> Image.Image:
    """An ``L`` or ``RGB`` image from any Pillow mode (16-bit grey scaled to 8 bits)."""
    if im.mode in ("L", "RGB"):
        return im
    if im.mode.startswith("I"):  # 16-bit PGM/PNG: Pillow gives I or I;16 on a 0..65535 scale
        arr = np.asarray(im).astype(np.int64)
        return Image.fromarray((np.clip(arr, 0, 65535) >> 8).astype(np.uint8), mode="L")
    if im.mode == "F":
        return Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8), mode="L")
    if im.mode in _GREY_MODES:
        return im.convert("L")
    return im.convert("RGB")


def _crop_hull(im: Image.Image, box: Box) -> tuple[Image.Image, Box]:
    """Crop to the whole pixels covering ``box``; return the image and ``box`` relative to it.

    Resizing with a ``box`` alone would let the filter read pixels outside the box.
    """
    left, top = math.floor(box[0] + 1e-6), math.floor(box[1] + 1e-6)
    right, bottom = math.ceil(box[2] - 1e-6), math.ceil(box[3] - 1e-6)
    right, bottom = min(max(right, left + 1), im.size[0]), min(max(bottom, top + 1), im.size[1])
    hull = im.crop((left, top, right, bottom))
    return hull, (box[0] - left, box[1] - top, box[2] - left, box[3] - top)


def _open(source: bytes | str | os.PathLike) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(source))
    return Image.open(Path(source))


def decode_image(
    source: bytes | str | os.PathLike,
    image_size: ImageSize | None = None,
    crop: Crop | None = None,
    *,
    grayscale_ok: bool = True,
    what: str | None = None,
) -> torch.Tensor:
    """Decode an encoded image (bytes or a file path) to a uint8 RGB tensor ``3 x H x W``.

    Parameters
    ----------
    source
        The encoded bytes (JPEG, PNG, PGM, anything Pillow reads) or a path to such a file.
    image_size
        Output size (int or (height, width)); ``None`` keeps the (cropped) source size.
    crop
        A region of the source, in source pixels, taken before resizing (see :func:`crop_box`).
    grayscale_ok
        When False a greyscale source is an error instead of being replicated to RGB.
    what
        How to name the image in error messages (record key, pair index); default: the path,
        or "image" for bytes.

    Raises
    ------
    ImageDecodeError
        The bytes are not a decodable image (corrupt, truncated, unknown format).
    ValueError
        The crop does not fit, or a greyscale image where ``grayscale_ok`` is False.
    """
    size = as_size(image_size)
    if what is None:
        what = "image" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    try:
        im = _open(source)
    except FileNotFoundError:
        raise ImageDecodeError(f"{what}: file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(f"{what}: cannot decode image ({e})") from None
    with im:
        if not grayscale_ok and im.mode in _GREY_MODES:
            raise ValueError(f"{what}: greyscale image (mode {im.mode}) but grayscale_ok=False")
        box = crop_box(im.size[0], im.size[1], crop, what=what)
        if size is not None:
            box = fit_aspect(box, size)
        try:
            if size is not None:
                box = _draft_jpeg(im, box, size)
            im.load()
            out = _to_grey_or_rgb(im)
            full = (0.0, 0.0, float(out.size[0]), float(out.size[1]))
            if size is not None:
                if box != full:
                    out, box = _crop_hull(out, box)
                if out.size != (size[1], size[0]) or box != (0.0, 0.0, float(out.size[0]), float(out.size[1])):
                    out = out.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box)
            elif box != full:
                out = out.crop(tuple(int(round(v)) for v in box))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise ImageDecodeError(f"{what}: cannot decode image ({e})") from None
        arr = np.array(out, dtype=np.uint8)
    if arr.ndim == 2:
        return torch.from_numpy(arr).unsqueeze(0).expand(3, -1, -1).contiguous()
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def image_to_pil(image: torch.Tensor | np.ndarray | Image.Image) -> Image.Image:
    """A Pillow image from a uint8 tensor ``3 x H x W`` / ``H x W`` or an array ``H x W x 3`` / ``H x W``."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        arr = image.detach().cpu().numpy()
        if arr.ndim == 3:
            arr = arr.transpose(1, 2, 0)
    else:
        arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image: expected uint8 pixels, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr), mode="L")
    if arr.ndim == 3 and arr.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")
    raise ValueError(f"image: expected a tensor 3xHxW or an array HxWx3 / HxW, got shape {tuple(image.shape)}")


def encode_image(
    image: torch.Tensor | np.ndarray | Image.Image, format: str = "jpeg", quality: int = 95
) -> bytes:
    """Encode an image (tensor ``3 x H x W``, array ``H x W x 3``, or greyscale) as JPEG or PNG bytes."""
    fmt = format.lower()
    if fmt in ("jpg", "jpeg"):
        kwargs: dict = {"format": "JPEG", "quality": int(quality)}
    elif fmt == "png":
        kwargs = {"format": "PNG"}
    else:
        raise ValueError(f"format: expected 'jpeg' or 'png', got {format!r}")
    buf = io.BytesIO()
    image_to_pil(image).save(buf, **kwargs)
    return buf.getvalue()


def image_size_of(source: bytes | str | os.PathLike, what: str = "image") -> tuple[int, int]:
    """``(height, width)`` of an encoded image, read from its header only."""
    try:
        with _open(source) as im:
            return (im.size[1], im.size[0])
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"{what}: cannot read image header ({e})") from None


def decode_many(
    decode_one: Callable[[int], torch.Tensor],
    count: int,
    num_workers: int = 0,
    describe: Callable[[int], str] = lambda i: f"image {i}",
) -> torch.Tensor:
    """Stack ``decode_one(i)`` for ``i < count`` into one uint8 ``count x 3 x H x W`` tensor.

    ``num_workers > 1`` decodes in that many threads (Pillow releases the GIL while it
    decodes and resizes, so threads use several cores). All images must share one size;
    the first one that does not is an error named by ``describe(i)``.
    """
    if count < 1:
        raise ValueError("decode_many: nothing to decode")
    first = decode_one(0)
    out = torch.empty((count, *first.shape), dtype=torch.uint8)
    out[0] = first

    def put(i: int) -> None:
        image = decode_one(i)
        if image.shape != first.shape:
            raise ValueError(
                f"{describe(i)}: decoded to {tuple(image.shape)}, but {describe(0)} is "
                f"{tuple(first.shape)}; pass image_size to resize them to one size"
            )
        out[i] = image

    if num_workers <= 1:
        for i in range(1, count):
            put(i)
    else:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            for _ in pool.map(put, range(1, count)):
                pass
    return out


__all__ = [
    "Crop",
    "ImageSize",
    "as_size",
    "crop_box",
    "decode_image",
    "decode_many",
    "encode_image",
    "fit_aspect",
    "image_size_of",
    "image_to_pil",
]
