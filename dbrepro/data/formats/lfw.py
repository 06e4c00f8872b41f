"""Labeled Faces in the Wild: the standard pair lists and the people folders.

Images live at ``lfw_root/<name>/<name>_<NNNN>.<ext>`` (4-digit, 1-based index).

The pair lists
--------------
View 2, ``pairs.txt``
    First line ``10 300``; then 10 folds, each 300 matched pairs ``name i j`` followed by 300
    mismatched pairs ``name1 i name2 j``. Fold ``k`` is the ``k``-th block of 600 lines.
View 1, ``pairsDevTrain.txt`` / ``pairsDevTest.txt``
    First line ``N`` (1100 / 500); then N matched pairs followed by N mismatched pairs.

Folds of View 1
---------------
The original protocol has no folds in View 1. So that the same 10-fold evaluation runs on it,
each half is cut into 10 contiguous chunks and fold ``k`` is the ``k``-th chunk of the matched
half plus the ``k``-th chunk of the mismatched half: every fold has equal shares of matched and
mismatched pairs (cutting the file itself into 10 blocks would give all-matched and
all-mismatched folds, on which no threshold can be tuned). :func:`lfw_pair_suite` stores the
pairs fold by fold (matched then mismatched within a fold, like View 2), so folds are contiguous
as :class:`~dbrepro.data.base.PairSuite` wants.

The crop
--------
LFW-a (the aligned greyscale 250 x 250 variant) has the face in the middle ~110-130 pixels:
:data:`LFW_CROP` takes the central 128 x 128 before resizing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..base import PairSuite, TensorFaces
from .errors import FormatError
from .folders import ImageFolderFaces
from .images import Crop, ImageSize, decode_image, decode_many

#: Centre crop (source pixels) that keeps the face of an LFW-a 250 x 250 image.
LFW_CROP = 128
N_FOLDS = 10


@dataclass(frozen=True)
class _PairLine:
    line: int
    name_a: str
    index_a: int
    name_b: str
    index_b: int
    issame: bool
    fold: int


def lfw_image_path(lfw_root: str | os.PathLike, name: str, index: int, ext: str = "jpg") -> Path:
    """``lfw_root/<name>/<name>_<NNNN>.<ext>``."""
    return Path(lfw_root) / name / f"{name}_{index:04d}.{ext}"


def _index(token: str, pairs_file: Path, lineno: int) -> int:
    try:
        value = int(token)
    except ValueError:
        raise FormatError(f"{pairs_file}, line {lineno}: image number {token!r} is not an integer") from None
    if value < 1:
        raise FormatError(f"{pairs_file}, line {lineno}: image number {value} must be >= 1")
    return value


def _parse_pairs(pairs_file: Path) -> tuple[list[_PairLine], int]:
    """The pairs of a View 1 or View 2 list, in file order, and the view (1 or 2)."""
    try:
        lines = pairs_file.read_text().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{pairs_file}: pairs file not found") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise FormatError(f"{pairs_file}: the file is empty")
    head = lines[0].split()
    try:
        counts = [int(t) for t in head]
        if len(counts) not in (1, 2) or min(counts) < 1:
            raise ValueError
    except ValueError:
        raise FormatError(
            f"{pairs_file}, line 1: expected 'folds pairs_per_half' (View 2) or 'pairs_per_half' (View 1), "
            f"got {lines[0]!r}"
        ) from None
    view = 2 if len(counts) == 2 else 1
    n_blocks, per_half = (counts[0], counts[1]) if view == 2 else (1, counts[0])
    if view == 1 and per_half < N_FOLDS:
        raise FormatError(f"{pairs_file}, line 1: {per_half} pairs per half cannot make {N_FOLDS} folds")
    expected = n_blocks * 2 * per_half
    body = lines[1:]
    if len(body) < expected:
        raise FormatError(
            f"{pairs_file}: ends at line {len(lines)}, but line 1 promises {expected} pairs ({len(body)} found)"
        )
    if len(body) > expected:
        raise FormatError(
            f"{pairs_file}, line {expected + 2}: unexpected extra line; line 1 promises {expected} pairs"
        )

    out: list[_PairLine] = []
    for k, text in enumerate(body):
        lineno = k + 2
        block, r = divmod(k, per_half)
        matched = block % 2 == 0
        fold = block // 2 if view == 2 else r * N_FOLDS // per_half
        t = text.split()
        if matched and len(t) == 3:
            out.append(_PairLine(lineno, t[0], _index(t[1], pairs_file, lineno), t[0],
                                 _index(t[2], pairs_file, lineno), True, fold))
        elif not matched and len(t) == 4:
            out.append(_PairLine(lineno, t[0], _index(t[1], pairs_file, lineno), t[2],
                                 _index(t[3], pairs_file, lineno), False, fold))
        else:
            want = "a matched pair 'name i j'" if matched else "a mismatched pair 'name1 i name2 j'"
            raise FormatError(f"{pairs_file}, line {lineno}: expected {want}, got {text!r}")
    return out, view


def people_in_pairs(pairs_file: str | os.PathLike) -> set[str]:
    """Every name that appears in a pairs list (e.g. to train on the other LFW people)."""
    rows, _ = _parse_pairs(Path(pairs_file))
    return {r.name_a for r in rows} | {r.name_b for r in rows}


def read_lfw_pairs(
    pairs_file: str | os.PathLike, lfw_root: str | os.PathLike, ext: str = "jpg", check_files: bool = True
) -> pd.DataFrame:
    """The pairs of an LFW list (View 1 or View 2) as a DataFrame, in file order.

    Columns: ``path_a``, ``path_b``, ``issame``, ``fold``, ``name_a``, ``name_b``,
    ``index_a``, ``index_b``, ``line`` (1-based line in the file). ``df.attrs["view"]`` is
    1 or 2. Folds: see the module docstring.

    Raises
    ------
    FormatError
        A malformed line (naming the file and line), a count that disagrees with line 1, or
        (with ``check_files``) an image that does not exist, naming the pairs file, the line
        and the missing path.
    """
    pairs_file = Path(pairs_file)
    rows, view = _parse_pairs(pairs_file)
    path_a = [str(lfw_image_path(lfw_root, r.name_a, r.index_a, ext)) for r in rows]
    path_b = [str(lfw_image_path(lfw_root, r.name_b, r.index_b, ext)) for r in rows]
    if check_files:
        seen: set[str] = set()
        for r, pa, pb in zip(rows, path_a, path_b):
            for p in (pa, pb):
                if p not in seen:
                    if not os.path.isfile(p):
                        raise FormatError(f"{pairs_file}, line {r.line}: image {p} does not exist")
                    seen.add(p)
    df = pd.DataFrame(
        {
            "path_a": path_a,
            "path_b": path_b,
            "issame": np.array([r.issame for r in rows], dtype=bool),
            "fold": np.array([r.fold for r in rows], dtype=np.int64),
            "name_a": [r.name_a for r in rows],
            "name_b": [r.name_b for r in rows],
            "index_a": np.array([r.index_a for r in rows], dtype=np.int64),
            "index_b": np.array([r.index_b for r in rows], dtype=np.int64),
            "line": np.array([r.line for r in rows], dtype=np.int64),
        }
    )
    df.attrs["view"] = view
    return df


def lfw_pair_suite(
    pairs_file: str | os.PathLike,
    lfw_root: str | os.PathLike,
    image_size: ImageSize | None = 32,
    crop: Crop | None = LFW_CROP,
    ext: str = "jpg",
    num_workers: int = 0,
    name: str | None = None,
) -> PairSuite:
    """A :class:`~dbrepro.data.base.PairSuite` from an LFW pairs list.

    Each distinct image is decoded once (``crop`` in source pixels, then resized to
    ``image_size``); pairs are stored fold by fold, and ``meta`` has ``name_a``, ``name_b``
    and ``line`` per pair.
    """
    pairs_file = Path(pairs_file)
    df = read_lfw_pairs(pairs_file, lfw_root, ext)
    view = df.attrs["view"]
    df = df.sort_values("fold", kind="stable").reset_index(drop=True)
    codes, unique = pd.factorize(pd.concat([df["path_a"], df["path_b"]], ignore_index=True))
    n = len(df)
    images = decode_many(
        lambda i: decode_image(unique[i], image_size, crop, what=unique[i]), len(unique), num_workers,
        describe=lambda i: unique[i],
    )
    return PairSuite(
        name=name or pairs_file.stem,
        images=images,
        pairs=np.stack([codes[:n], codes[n:]], axis=1),
        issame=df["issame"].to_numpy(),
        folds=df["fold"].to_numpy(),
        meta=df[["name_a", "name_b", "line"]].copy(),
        stands_for="LFW",
        description=f"LFW View {view} ({pairs_file.name}): {n} pairs, {len(unique)} images",
    )


def lfw_people(
    lfw_root: str | os.PathLike,
    exclude_names: Iterable[str] = (),
    image_size: ImageSize | None = 32,
    crop: Crop | None = LFW_CROP,
    min_images: int = 1,
    num_workers: int = 0,
    name: str = "lfw-people",
) -> TensorFaces:
    """The LFW people (all, or all but ``exclude_names``) as an in-memory :class:`TensorFaces`.

    ``lfw_people(root, exclude_names=people_in_pairs("pairsDevTest.txt"))`` is a training
    set whose people never appear in the View 1 test pairs.
    """
    folder = ImageFolderFaces(lfw_root, image_size, crop, min_images, exclude=exclude_names)
    return folder.to_tensor_faces(num_workers=num_workers, name=name)
