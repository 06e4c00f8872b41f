"""The dataset seam: what every data source hands to the trainer and to the evaluation.

Training data
    Anything with ``labels`` (int64 array, one per image, in ``[0, num_classes)``),
    ``num_classes``, ``meta`` (a DataFrame with one row per image and at least an
    ``identity`` column), ``__len__`` and ``__getitem__(i) -> (uint8 image 3xHxW, label)``.
    :class:`TensorFaces` is the in-memory implementation (synthetic worlds, small real sets);
    on-disk readers (RecordIO, image folders) implement the same attributes. The trainer
    batches a :class:`TensorFaces` by indexing its ``images`` tensor directly (no workers),
    and anything else through a ``DataLoader``.

Evaluation suites
    :class:`PairSuite` (verification pairs, 10 contiguous folds),
    :class:`AllVsAllSuite` (every pair of a set of images, for TAR at low FAR) and
    :class:`IdentificationSuite` (probes, gallery and a distractor source that yields
    chunks so 10^6 distractors never sit in memory at once).

Images are always ``uint8`` RGB tensors shaped ``N x 3 x H x W``; models normalise them with
:func:`dbrepro.models.normalize_images`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch


@runtime_checkable
class FaceDataset(Protocol):
    """What the trainer needs from a labelled set of face images."""

    labels: np.ndarray
    num_classes: int
    meta: pd.DataFrame

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]: ...


def _check_images(images: torch.Tensor, what: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        dtype = getattr(images, "dtype", None)
        raise ValueError(f"{what}: expected a uint8 tensor N x 3 x H x W, got {shape} of dtype {dtype}")


def _check_labels(labels: np.ndarray, n: int, num_classes: int, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{what}: expected {n} labels, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what}: labels must be integers, got dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{what}: labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64, copy=False)


@dataclass
class TensorFaces:
    """An in-memory labelled face set: ``images`` uint8 N x 3 x H x W, ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: np.ndarray
    num_classes: int
    meta: pd.DataFrame
    name: str = "faces"

    def __post_init__(self) -> None:
        _check_images(self.images, self.name)
        if len(self.images) == 0:
            raise ValueError(f"{self.name}: the dataset is empty")
        self.labels = _check_labels(self.labels, len(self.images), self.num_classes, self.name)
        if len(self.meta) != len(self.images):
            raise ValueError(f"{self.name}: meta has {len(self.meta)} rows for {len(self.images)} images")
        if "identity" not in self.meta.columns:
            raise ValueError(f"{self.name}: meta needs an 'identity' column")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, indices: np.ndarray, name: str | None = None) -> "TensorFaces":
        """The images at ``indices``, with labels renumbered 0..C-1 in order of first identity label."""
        indices = np.asarray(indices, dtype=np.int64)
        labels, num_classes = renumber(self.labels[indices])
        return TensorFaces(
            images=self.images[torch.from_numpy(indices)],
            labels=labels,
            num_classes=num_classes,
            meta=self.meta.iloc[indices].reset_index(drop=True),
            name=name or self.name,
        )


def renumber(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered 0..C-1 in the order of the original labels, and C."""
    kept = np.unique(labels)
    return np.searchsorted(kept, labels).astype(np.int64), len(kept)


class IndexSubset:
    """Some images of an on-disk face set (a Range Loss split of CASIA-WebFace, say), labels renumbered.

    Only the index is kept: nothing is decoded until an image is asked for, so a split of MS1MV2 costs a
    few megabytes, not the 200 GB that decoding it would. ``subset(indices)`` composes.
    """

    def __init__(self, base: Any, indices: np.ndarray, name: str | None = None) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.ndim != 1 or len(self.indices) == 0:
            raise ValueError(f"{name or 'subset'}: indices must be a non-empty 1-D array")
        if self.indices.min() < 0 or self.indices.max() >= len(base):
            raise ValueError(f"{name or 'subset'}: indices outside [0, {len(base)})")
        self.labels, self.num_classes = renumber(np.asarray(base.labels)[self.indices])
        self.name = name or f"{getattr(base, 'name', 'faces')} subset"
        base_meta = getattr(base, "meta", None)
        self.meta = (base_meta.iloc[self.indices].reset_index(drop=True) if isinstance(base_meta, pd.DataFrame)
                     else pd.DataFrame({"identity": np.asarray(base.labels)[self.indices]}))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, _ = self.base[int(self.indices[i])]
        return image, int(self.labels[i])

    def subset(self, indices: np.ndarray, name: str | None = None) -> "IndexSubset":
        return IndexSubset(self.base, self.indices[np.asarray(indices, dtype=np.int64)], name=name or self.name)

    def decode(self) -> TensorFaces:
        """The subset decoded into memory (for a few thousand images, e.g. a t-SNE sample)."""
        images = torch.stack([self[i][0] for i in range(len(self))])
        return TensorFaces(images, self.labels, self.num_classes, self.meta, name=self.name)


@dataclass
class PairSuite:
    """A verification suite: pairs of images, same identity or not, in 10 contiguous folds.

    ``pairs[i] = (a, b)`` index ``images``; ``issame[i]`` says whether they show one identity;
    ``folds[i]`` is the pair's fold (pairs are stored in pair-list order, folds contiguous).
    ``meta`` has one row per pair (e.g. ``group``, ``age_band``, ``yaw_gap``) for per-domain
    grouping of any metric.
    """

    name: str
    images: torch.Tensor
    pairs: np.ndarray
    issame: np.ndarray
    folds: np.ndarray
    meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: the real benchmark it stands in for, e.g. "LFW", "CPLFW", "RFW"
    stands_for: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        _check_images(self.images, self.name)
        self.pairs = np.asarray(self.pairs, dtype=np.int64)
        self.issame = np.asarray(self.issame, dtype=bool)
        self.folds = np.asarray(self.folds, dtype=np.int64)
        n = len(self.issame)
        if self.pairs.shape != (n, 2):
            raise ValueError(f"{self.name}: pairs must be ({n}, 2), got {self.pairs.shape}")
        if self.folds.shape != (n,):
            raise ValueError(f"{self.name}: folds must be ({n},), got {self.folds.shape}")
        if n and (self.pairs.min() < 0 or self.pairs.max() >= len(self.images)):
            raise ValueError(f"{self.name}: pair indices outside [0, {len(self.images)})")
        if len(self.meta) not in (0, n):
            raise ValueError(f"{self.name}: meta has {len(self.meta)} rows for {n} pairs")

    def __len__(self) -> int:
        return len(self.issame)


@dataclass
class AllVsAllSuite:
    """Every pair among ``images`` (BLUFR-style): for TAR at low FAR and open-set identification."""

    name: str
    images: torch.Tensor
    identities: np.ndarray
    meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    stands_for: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        _check_images(self.images, self.name)
        self.identities = np.asarray(self.identities, dtype=np.int64)
        if self.identities.shape != (len(self.images),):
            raise ValueError(f"{self.name}: one identity per image expected")


@dataclass
class DistractorSource:
    """``count`` distractor images produced ``chunk`` at a time by ``render(start, stop)``.

    ``render`` returns uint8 ``(stop - start) x 3 x H x W`` and must be deterministic, so the
    same distractors come back every time; nothing keeps all of them in memory.
    """

    count: int
    render: Callable[[int, int], torch.Tensor]

    def chunks(self, chunk: int = 4096) -> Iterator[torch.Tensor]:
        for start in range(0, self.count, chunk):
            yield self.render(start, min(start + chunk, self.count))

    def __len__(self) -> int:
        return self.count


@dataclass
class IdentificationSuite:
    """MegaFace-style identification: each probe searched in gallery + distractors."""

    name: str
    probes: torch.Tensor
    probe_ids: np.ndarray
    gallery: torch.Tensor
    gallery_ids: np.ndarray
    distractors: DistractorSource | None = None
    probe_meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    stands_for: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        _check_images(self.probes, f"{self.name} probes")
        _check_images(self.gallery, f"{self.name} gallery")
        self.probe_ids = np.asarray(self.probe_ids, dtype=np.int64)
        self.gallery_ids = np.asarray(self.gallery_ids, dtype=np.int64)
        if self.probe_ids.shape != (len(self.probes),) or self.gallery_ids.shape != (len(self.gallery),):
            raise ValueError(f"{self.name}: one id per probe and per gallery image expected")


Suite = PairSuite | AllVsAllSuite | IdentificationSuite
