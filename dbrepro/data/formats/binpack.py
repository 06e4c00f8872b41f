"""InsightFace ``.bin`` verification packs (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...).

A pack is a pickle of ``(bins, issame)``: ``bins`` is a list of 2N encoded images, ``issame``
a list of N bools, and pair ``i`` is images ``2i`` and ``2i + 1``. InsightFace's packs were
written by Python 2, so they are loaded with ``encoding="bytes"``.

Channel order. The encoded images are ordinary JPEGs (112 x 112): any standard decoder,
Pillow here, gives them in RGB order, the order the training images of a ``.rec`` decode to.
OpenCV's ``cv2.imdecode`` returns BGR; feeding such arrays to a model trained on RGB is a
silent error that once cost a project about 5 points on CFP-FP. Nothing here swaps channels,
and ``tests/test_formats_binpack.py`` checks it on a pack of known red and blue images.

Safety. Unpickling can run code, so packs are loaded by an unpickler that only accepts the
built-in containers and the few numpy names a pack of arrays or numpy bools needs.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ...paths import atomic_write_bytes
from ..base import PairSuite
from .errors import FormatError
from .images import ImageSize, decode_image, decode_many, encode_image

#: Display names of InsightFace's usual packs, by file stem.
KNOWN_PACKS = {
    "lfw": "LFW",
    "cfp_fp": "CFP-FP",
    "cfp_ff": "CFP-FF",
    "agedb_30": "AgeDB-30",
    "calfw": "CALFW",
    "cplfw": "CPLFW",
    "vgg2_fp": "VGGFace2-FP",
}

_NUMPY_GLOBALS = {
    (module, name)
    for module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")
    for name in ("ndarray", "dtype", "_reconstruct", "scalar", "_frombuffer")
}
_SAFE_GLOBALS = _NUMPY_GLOBALS | {("_codecs", "encode"), ("builtins", "bytearray"), ("__builtin__", "bytearray")}


class _PackUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global but containers, bytes and numpy arrays/scalars."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a .bin pack holds only images and bools")


def _load(path: Path) -> tuple[list[bytes], np.ndarray]:
    try:
        with open(path, "rb") as f:
            obj = _PackUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: .bin pack not found") from None
    except Exception as e:  # any unpickling failure means "not a pack"
        raise FormatError(f"{path}: not a .bin pair pack, i.e. a pickle of (images, issame) ({e})") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise FormatError(f"{path}: expected a pickled pair (images, issame), got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple, np.ndarray)):
        raise FormatError(
            f"{path}: expected (list of encoded images, list of bools), got "
            f"({type(bins).__name__}, {type(issame).__name__})"
        )
    if len(issame) == 0:
        raise FormatError(f"{path}: the pack has no pairs")
    if len(bins) != 2 * len(issame):
        raise FormatError(
            f"{path}: {len(bins)} images for {len(issame)} pairs; a pack holds exactly two images per pair"
        )
    blobs: list[bytes] = []
    for i, b in enumerate(bins):
        if isinstance(b, np.ndarray) and b.dtype == np.uint8 and b.ndim == 1:
            b = b.tobytes()
        if not isinstance(b, (bytes, bytearray)):
            raise FormatError(f"{path}: pair {i // 2} image {'ab'[i % 2]} is a {type(b).__name__}, not encoded bytes")
        blobs.append(bytes(b))
    for i, v in enumerate(issame):
        if not (isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1))):
            raise FormatError(f"{path}: issame[{i}] = {v!r} is not a bool")
    flags = np.asarray([bool(v) for v in issame], dtype=bool)
    return blobs, flags


def read_bin_pairs(
    path: str | os.PathLike, image_size: ImageSize | None = None, num_workers: int = 0
) -> tuple[torch.Tensor, np.ndarray]:
    """Read a ``.bin`` pack: ``(images uint8 2N x 3 x H x W RGB, issame bool (N,))``.

    Pair ``i`` is ``images[2i]`` and ``images[2i + 1]``. ``image_size`` resizes on decode;
    ``num_workers`` decodes in threads.

    Raises
    ------
    FormatError
        Not a pickle of ``(list of 2N images, list of N bools)``, image count not twice the
        pair count, or an image that does not decode (the message names its pair index).
    """
    path = Path(path)
    blobs, issame = _load(path)

    def describe(i: int) -> str:
        return f"{path}: pair {i // 2} image {'ab'[i % 2]}"

    def decode(i: int) -> torch.Tensor:
        return decode_image(blobs[i], image_size, what=describe(i))

    return decode_many(decode, len(blobs), num_workers, describe=describe), issame


def contiguous_folds(n: int, n_folds: int = 10) -> np.ndarray:
    """Fold of each of ``n`` items in ``n_folds`` contiguous blocks.

    Block sizes follow ``sklearn.model_selection.KFold(n_folds, shuffle=False)``, which
    InsightFace's evaluation uses: ``n // n_folds`` each, the first ``n % n_folds`` blocks one
    larger. So a pack whose pair count is not a multiple of 10 still gets 10 folds.
    """
    if n < n_folds:
        raise ValueError(f"{n} pairs cannot be split into {n_folds} folds")
    sizes = np.full(n_folds, n // n_folds, dtype=np.int64)
    sizes[: n % n_folds] += 1
    return np.repeat(np.arange(n_folds, dtype=np.int64), sizes)


def bin_suite(
    path: str | os.PathLike,
    name: str | None = None,
    image_size: ImageSize | None = None,
    num_workers: int = 0,
) -> PairSuite:
    """A :class:`~dbrepro.data.base.PairSuite` from a ``.bin`` pack, with 10 contiguous folds.

    ``name`` defaults to the file stem (``lfw``, ``cfp_fp``); ``stands_for`` is the benchmark's
    usual name when the stem is a known one. Folds: see :func:`contiguous_folds`; a pack of fewer
    than 10 pairs is a :class:`FormatError` naming the file.
    """
    path = Path(path)
    images, issame = read_bin_pairs(path, image_size, num_workers)
    n = len(issame)
    if n < 10:
        raise FormatError(
            f"{path}: {n} pair(s); the verification protocol averages over 10 folds, so a pack needs at least 10 pairs"
        )
    stem = path.stem
    return PairSuite(
        name=name or stem,
        images=images,
        pairs=np.arange(2 * n, dtype=np.int64).reshape(n, 2),
        issame=issame,
        folds=contiguous_folds(n),
        meta=pd.DataFrame({"pair": np.arange(n)}),
        stands_for=KNOWN_PACKS.get(stem.lower(), stem),
        description=f"{n} pairs from the InsightFace pack {path.name}",
    )


def write_bin_pairs(
    path: str | os.PathLike,
    images: torch.Tensor | Sequence[Any],
    issame: Sequence[bool] | np.ndarray,
    *,
    format: str = "jpeg",
    quality: int = 95,
) -> Path:
    """Write a ``.bin`` pack (atomically): ``images`` holds 2N items, ``issame`` N bools.

    An item is encoded bytes (stored as they are) or pixels (a uint8 tensor ``3 x H x W``,
    an array ``H x W x 3``; a uint8 ``2N x 3 x H x W`` tensor is a sequence of those), encoded
    as ``format`` (``"jpeg"`` at ``quality``, or ``"png"``).
    """
    path = Path(path)
    flags = [bool(v) for v in np.asarray(issame).tolist()]
    if len(images) != 2 * len(flags):
        raise ValueError(f"write_bin_pairs: {len(images)} images for {len(flags)} pairs; need two per pair")
    bins = [
        bytes(im) if isinstance(im, (bytes, bytearray)) else encode_image(im, format, quality) for im in images
    ]
    buf = io.BytesIO()
    pickle.dump((bins, flags), buf, protocol=4)
    atomic_write_bytes(path, buf.getvalue())
    return path
