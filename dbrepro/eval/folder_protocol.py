"""Evaluating on a labelled image folder (``root/<identity>/<image>``): verification pairs and rank-1.

A lab's own photographs, one sub-folder per person, read by :class:`~dbrepro.data.formats.ImageFolderFaces`
(any format Pillow reads, greyscale or colour, any size; an optional centre crop, then the model's size).
Two protocols are built from the folder, both deterministic:

**Verification, 10 folds, LFW View 2 style** (:func:`draw_pairs`). Fold ``f`` holds ``m`` matched and
``m`` mismatched pairs; ``m = min(max_pairs / 20, matched pairs possible / 10, mismatched pairs possible
/ 10)``, so a large folder gets LFW's 10 x (300 + 300) = 6,000 pairs and a small one as many as it has.
Matched pairs are drawn uniformly, without replacement, among all pairs of two different images of one
identity; mismatched pairs among all pairs of images of two different identities (an identity with a
single image only ever appears in mismatched pairs). Both draws come from ``numpy.random.default_rng(seed)``;
within a fold the pairs are listed in folder order. The folds share identities (LFW's are
person-disjoint, which a folder of a few dozen people cannot afford): the threshold tuned on nine folds
has seen pairs of some of the people of the tenth, which can only make the accuracy slightly optimistic.

The pairs are written in LFW's ``pairs.txt`` format (:func:`write_pairs`): first line ``10 m``, then fold
by fold ``m`` lines ``name i j`` (matched) and ``m`` lines ``name1 i name2 j`` (mismatched), tab-separated.
Image number ``i`` is 1-based and counts the images of ``root/name`` in file-name order (the order of
:func:`~dbrepro.data.formats.list_image_folder`): in LFW's own folders, where ``name_0003.jpg`` is the
third file, that is LFW's numbering. :func:`~dbrepro.data.formats.read_lfw_pairs` reads the file, and
:func:`read_pairs` reads it (or any LFW pairs list) back against a folder, so a written file *is* the
protocol: another lab, another model, or a numpy whose random streams changed gets the same pairs.
Adding or renaming images renumbers the images after them; a reused file then names other images, or
images the folder lacks (an error naming the line).

**Closed-set identification, rank 1** (:func:`identification_split`). Every identity with at least two
images contributes its first image (file-name order) to the gallery and its other images as probes; the
images of identities with a single image are distractors: gallery entries that no probe matches (as
MegaFace adds its distractors to the gallery). Rank-1 is reported with and without them.

:func:`folder_protocol` decodes the folder once and returns both as evaluation suites
(:class:`~dbrepro.data.base.PairSuite`, :class:`~dbrepro.data.base.IdentificationSuite`) for
:func:`dbrepro.experiments.evaluate`; ``dbrepro eval --run KEY --folder DIR`` is its command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dbrepro.data.base import DistractorSource, IdentificationSuite, PairSuite
from dbrepro.data.formats import FormatError, ImageFolderFaces, read_lfw_pairs
from dbrepro.data.formats.images import Crop, ImageSize
from dbrepro.paths import atomic_write_text

__all__ = [
    "FOLDS",
    "MAX_PAIRS",
    "FolderPairs",
    "FolderProtocol",
    "HeldDistractors",
    "IdentificationSplit",
    "draw_pairs",
    "folder_protocol",
    "identification_split",
    "pairs_text",
    "read_pairs",
    "write_pairs",
]

#: folds of the verification protocol (LFW View 2)
FOLDS = 10
#: pairs drawn at most: LFW View 2's 10 folds x (300 matched + 300 mismatched)
MAX_PAIRS = 6000


@dataclass(frozen=True)
class FolderPairs:
    """Verification pairs of one folder's images, in LFW View 2 order.

    ``pairs[p] = (a, b)`` index the folder's images (``a < b`` when drawn); folds are contiguous. Drawn
    pairs (and a View 2 file's) put fold ``f`` at ``2 m f .. 2 m (f + 1)``: its ``m`` matched pairs, then
    its ``m`` mismatched ones.
    """

    pairs: np.ndarray
    issame: np.ndarray
    folds: np.ndarray
    #: matched (= mismatched) pairs per fold, the ``300`` of LFW's ``10 300``
    per_fold: int

    def __len__(self) -> int:
        return len(self.issame)


def _identity_blocks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The images sorted by identity (stable), and each identity's first position and image count there."""
    order = np.argsort(labels, kind="stable")
    _, counts = np.unique(labels, return_counts=True)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return order, starts.astype(np.int64), counts.astype(np.int64)


def _check_enough(counts: np.ndarray, where: str) -> None:
    multi = int((counts >= 2).sum())
    if multi < 2:
        raise ValueError(
            f"{where}: {multi} of {len(counts)} identities hold two or more images; matched pairs and a gallery "
            "need at least 2 such identities (one sub-folder per person, two or more images in each)"
        )


def _pair_in_block(rank: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``rank``-th pair ``(i, j)``, ``i < j < n``, of ``n`` items in row-major order (vectorised)."""
    # row i starts at S(i) = i (2n - i - 1) / 2; invert the quadratic, then correct float rounding
    disc = (2.0 * n - 1.0) ** 2 - 8.0 * rank
    i = np.floor(((2 * n - 1) - np.sqrt(np.maximum(disc, 0.0))) / 2).astype(np.int64)
    i = np.clip(i, 0, n - 2)
    start = i * (2 * n - i - 1) // 2
    i = np.where(start > rank, i - 1, i)
    i = np.where((i + 1) * (2 * n - i - 2) // 2 <= rank, i + 1, i)
    start = i * (2 * n - i - 1) // 2
    return i, i + 1 + (rank - start)


def _matched(k: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Matched pair number ``k`` -> positions ``(a, b)`` in identity order (identities in order, then pairs)."""
    per = counts * (counts - 1) // 2
    ends = np.cumsum(per)
    c = np.searchsorted(ends, k, side="right")
    i, j = _pair_in_block(k - (ends[c] - per[c]), counts[c])
    return np.stack((starts[c] + i, starts[c] + j), axis=1)


def _mismatched(k: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mismatched pair number ``k`` -> positions ``(a, b)``: ``a`` of identity c, ``b`` of a later identity."""
    after = counts.sum() - (starts + counts)  # images of the identities after c
    per = counts * after
    ends = np.cumsum(per)
    c = np.searchsorted(ends, k, side="right")
    r = k - (ends[c] - per[c])
    return np.stack((starts[c] + r // after[c], starts[c] + counts[c] + r % after[c]), axis=1)


def draw_pairs(labels: np.ndarray, max_pairs: int = MAX_PAIRS, seed: int = 0, where: str = "labels") -> FolderPairs:
    """10 folds of matched and mismatched pairs of the images with identity ``labels`` (module docstring).

    Raises ``ValueError`` (naming ``where``) when fewer than 2 identities have two images, or when the
    images allow fewer than 10 matched or 10 mismatched pairs (one of each per fold).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: expected a 1-D integer array of identity labels, got {labels.dtype} {labels.shape}")
    if not isinstance(max_pairs, (int, np.integer)) or max_pairs < 2 * FOLDS:
        raise ValueError(f"max_pairs must be an integer >= {2 * FOLDS} (one matched and one mismatched pair a fold), "
                         f"got {max_pairs!r}")
    order, starts, counts = _identity_blocks(labels)
    _check_enough(counts, where)
    possible_matched = int((counts * (counts - 1) // 2).sum())
    possible_mismatched = int((counts * (counts.sum() - starts - counts)).sum())
    per_fold = min(int(max_pairs) // (2 * FOLDS), possible_matched // FOLDS, possible_mismatched // FOLDS)
    if per_fold < 1:
        raise ValueError(f"{where}: {possible_matched} matched and {possible_mismatched} mismatched pairs possible; "
                         f"{FOLDS} folds need at least {FOLDS} of each")
    rng = np.random.default_rng(seed)
    total = FOLDS * per_fold
    matched = order[_matched(rng.choice(possible_matched, total, replace=False), starts, counts)]
    mismatched = order[_mismatched(rng.choice(possible_mismatched, total, replace=False), starts, counts)]
    blocks = []
    for f in range(FOLDS):
        for drawn in (matched, mismatched):
            block = np.sort(drawn[f * per_fold : (f + 1) * per_fold], axis=1)  # a < b within a pair
            blocks.append(block[np.lexsort((block[:, 1], block[:, 0]))])  # folder order within the fold
    return FolderPairs(
        pairs=np.concatenate(blocks),
        issame=np.tile(np.repeat([True, False], per_fold), FOLDS),
        folds=np.repeat(np.arange(FOLDS), 2 * per_fold),
        per_fold=per_fold,
    )


def _names_and_numbers(folder: ImageFolderFaces) -> tuple[np.ndarray, np.ndarray]:
    """Each image's identity name and 1-based number among its identity's images (file-name order)."""
    labels = np.asarray(folder.labels)
    order, starts, _ = _identity_blocks(labels)
    position = np.empty(len(labels), dtype=np.int64)
    position[order] = np.arange(len(labels))
    first = starts[np.searchsorted(np.unique(labels), labels)]
    names = np.asarray(folder.identities, dtype=object)[labels]
    return names, position - first + 1


def pairs_text(pairs: FolderPairs, folder: ImageFolderFaces) -> str:
    """``pairs`` of ``folder``'s images as the text of an LFW View 2 ``pairs.txt`` (module docstring).

    A name with white space cannot be written in that format: the error names the folder.
    """
    expected = np.tile(np.repeat([True, False], pairs.per_fold), FOLDS)
    if len(pairs) != 2 * FOLDS * pairs.per_fold or not np.array_equal(pairs.issame, expected):
        raise ValueError(f"pairs of {folder.root}: not in LFW View 2 order ({FOLDS} folds of {pairs.per_fold} matched "
                         f"then {pairs.per_fold} mismatched pairs)")
    names, numbers = _names_and_numbers(folder)
    for name in {names[i] for i in np.unique(pairs.pairs)}:
        if len(name.split()) != 1:
            raise ValueError(f"{folder.root / name}: the identity folder's name holds white space, which the LFW "
                             "pairs format cannot write; rename the folder")
    lines = [f"{FOLDS}\t{pairs.per_fold}"]
    for (a, b), same in zip(pairs.pairs, pairs.issame):
        if same:
            lines.append(f"{names[a]}\t{numbers[a]}\t{numbers[b]}")
        else:
            lines.append(f"{names[a]}\t{numbers[a]}\t{names[b]}\t{numbers[b]}")
    return "\n".join(lines) + "\n"


def write_pairs(path: str | os.PathLike, pairs: FolderPairs, folder: ImageFolderFaces) -> Path:
    """Write :func:`pairs_text` to ``path`` (atomically) and return the path."""
    path = Path(path)
    atomic_write_text(path, pairs_text(pairs, folder))
    return path


def read_pairs(pairs_file: str | os.PathLike, folder: ImageFolderFaces) -> FolderPairs:
    """An LFW pairs list (View 2, or View 1 cut into 10 folds as :mod:`~dbrepro.data.formats.lfw` does) as
    pairs of ``folder``'s images, fold by fold (in file order within a fold: a View 2 file's own order).

    Raises :class:`~dbrepro.data.formats.FormatError` naming the file and the line for a malformed line,
    a name that is not an identity folder, an image number the folder lacks, a mismatched pair of one
    identity or a matched pair of one image with itself.
    """
    pairs_file = Path(pairs_file)
    df = read_lfw_pairs(pairs_file, folder.root, check_files=False)
    label_of = {name: k for k, name in enumerate(folder.identities)}
    _, starts, counts = _identity_blocks(np.asarray(folder.labels))
    order = np.argsort(folder.labels, kind="stable")
    pairs = np.empty((len(df), 2), dtype=np.int64)
    for p, row in enumerate(df.itertuples(index=False)):
        where = f"{pairs_file}, line {row.line}"
        for side, (name, number) in enumerate(((row.name_a, row.index_a), (row.name_b, row.index_b))):
            if name not in label_of:
                raise FormatError(f"{where}: {name!r} is not an identity folder of {folder.root}")
            c = label_of[name]
            if number > counts[c]:
                raise FormatError(f"{where}: image {number} of {name!r}, but {folder.root / name} holds "
                                  f"{counts[c]} image(s)")
            pairs[p, side] = order[starts[c] + number - 1]
        if row.issame and pairs[p, 0] == pairs[p, 1]:
            raise FormatError(f"{where}: a matched pair of image {row.index_a} of {row.name_a!r} with itself")
        if not row.issame and row.name_a == row.name_b:
            raise FormatError(f"{where}: a mismatched pair names one identity twice ({row.name_a!r})")
    by_fold = np.argsort(df["fold"].to_numpy(), kind="stable")  # View 1 interleaves its folds
    issame, folds = df["issame"].to_numpy()[by_fold], df["fold"].to_numpy()[by_fold]
    return FolderPairs(pairs=pairs[by_fold], issame=issame, folds=folds, per_fold=int(issame.sum()) // FOLDS)


@dataclass(frozen=True)
class IdentificationSplit:
    """Indices of a folder's images: gallery (one per identity with two or more), probes, distractors."""

    gallery: np.ndarray
    probes: np.ndarray
    distractors: np.ndarray


def identification_split(labels: np.ndarray, where: str = "labels") -> IdentificationSplit:
    """Each identity with at least two images: its first image to the gallery, the others to the probes;
    the images of one-image identities are the distractors. Fewer than 2 identities with two images is an error.
    """
    labels = np.asarray(labels)
    order, starts, counts = _identity_blocks(labels)
    _check_enough(counts, where)
    multi = counts >= 2
    gallery = order[starts[multi]]
    in_multi = np.repeat(multi, counts)
    first = np.zeros(len(labels), dtype=bool)
    first[starts] = True
    return IdentificationSplit(gallery=gallery, probes=order[in_multi & ~first], distractors=order[~in_multi])


class HeldDistractors(DistractorSource):
    """Distractor images already decoded in memory (a folder's one-image identities).

    :func:`dbrepro.experiments.suite_digest` hashes ``images`` whole (a rendered source is hashed by its
    count and first images), so a cached result is never served for a folder whose distractors changed.
    """

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__(count=len(images), render=self._slice)
        self.images = images

    def _slice(self, start: int, stop: int) -> torch.Tensor:
        return self.images[start:stop]


@dataclass
class FolderProtocol:
    """Both protocols of one folder (module docstring), as suites, with what they were built from."""

    folder: ImageFolderFaces
    pairs: FolderPairs
    split: IdentificationSplit
    verification: PairSuite
    identification: IdentificationSuite
    #: the pairs file the pairs were read from, or None when they were drawn
    pairs_file: Path | None = None

    @property
    def name(self) -> str:
        return self.folder.root.name

    def suites(self) -> dict[str, PairSuite | IdentificationSuite]:
        """``name -> suite`` for :func:`dbrepro.experiments.evaluate`."""
        return {self.verification.name: self.verification, self.identification.name: self.identification}

    def describe(self) -> str:
        f, s = self.folder, self.split
        source = f"read from {self.pairs_file}" if self.pairs_file else "drawn"
        return (f"{f.root}: {len(f)} images of {f.num_classes} identities; {len(self.pairs)} pairs in {FOLDS} folds "
                f"of {self.pairs.per_fold} matched + {self.pairs.per_fold} mismatched ({source}); identification: "
                f"{len(s.gallery)} gallery images, {len(s.probes)} probes, {len(s.distractors)} distractor(s)")


def folder_protocol(
    root: str | os.PathLike,
    image_size: ImageSize | None = 112,
    crop: Crop | None = None,
    *,
    pairs_file: str | os.PathLike | None = None,
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
    num_workers: int = 0,
) -> FolderProtocol:
    """Decode the folder ``root`` once and build its verification and identification suites.

    The pairs are read from ``pairs_file`` when given (:func:`read_pairs`), else drawn with ``seed``
    (:func:`draw_pairs`; write them with :func:`write_pairs` to reuse them). ``image_size`` and ``crop``
    are :class:`~dbrepro.data.formats.ImageFolderFaces`'s; ``num_workers`` threads decode. An unreadable
    image is an error naming its file.
    """
    folder = ImageFolderFaces(root, image_size=image_size, crop=crop)
    where = str(folder.root)
    split = identification_split(folder.labels, where)
    pairs = read_pairs(pairs_file, folder) if pairs_file is not None else draw_pairs(folder.labels, max_pairs, seed, where)
    images = folder.to_tensor_faces(num_workers=num_workers).images
    names, numbers = _names_and_numbers(folder)

    used, inverse = np.unique(pairs.pairs, return_inverse=True)
    a, b = pairs.pairs[:, 0], pairs.pairs[:, 1]
    verification = PairSuite(
        name=f"{folder.root.name} (verification)",
        images=images[torch.from_numpy(used)],
        pairs=inverse.reshape(pairs.pairs.shape),
        issame=pairs.issame,
        folds=pairs.folds,
        meta=pd.DataFrame({"name_a": names[a], "number_a": numbers[a], "name_b": names[b], "number_b": numbers[b]}),
        stands_for=f"folder {folder.root.name}",
        description=f"{len(pairs)} pairs of {len(used)} images of {folder.root}, {FOLDS} folds",
    )
    labels = np.asarray(folder.labels)
    distractors = HeldDistractors(images[torch.from_numpy(split.distractors)]) if len(split.distractors) else None
    identification = IdentificationSuite(
        name=f"{folder.root.name} (identification)",
        probes=images[torch.from_numpy(split.probes)],
        probe_ids=labels[split.probes],
        gallery=images[torch.from_numpy(split.gallery)],
        gallery_ids=labels[split.gallery],
        distractors=distractors,
        probe_meta=pd.DataFrame({"identity": names[split.probes], "number": numbers[split.probes]}),
        stands_for=f"folder {folder.root.name}",
        description=f"{len(split.probes)} probes against {len(split.gallery)} gallery images and "
                    f"{len(split.distractors)} distractors of {folder.root}",
    )
    return FolderProtocol(folder, pairs, split, verification, identification,
                          Path(pairs_file) if pairs_file is not None else None)
