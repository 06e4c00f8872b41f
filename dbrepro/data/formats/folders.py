"""Face images in identity folders: ``root/<identity>/*.jpg|jpeg|png|pgm``.

The layout every face data set can be unpacked to (CASIA-WebFace crops, LFW, a user's own
photos). Identities are the sub-folders of ``root`` sorted by name; label ``k`` is the
``k``-th of them. Images may be greyscale or colour and of any size: each is decoded to
uint8 RGB, optionally centre-cropped in source pixels (``crop``) and resized
(``image_size``); see :mod:`dbrepro.data.formats.images`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from ..base import TensorFaces
from .errors import FormatError
from .images import Crop, ImageSize, as_size, decode_image, decode_many

#: File name endings read as images (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".pgm")


def list_image_folder(
    root: str | os.PathLike, min_images: int = 1, exclude: Iterable[str] = ()
) -> tuple[list[str], np.ndarray, list[str]]:
    """The images of an identity-folder tree: ``(paths, labels, identities)``.

    ``identities`` are the kept folder names, sorted; ``labels[i]`` indexes them. Folders
    named in ``exclude`` and folders with fewer than ``min_images`` images are left out
    (labels stay contiguous). Hidden entries (``.name``) and files of other types are ignored.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a folder.
    FormatError
        ``root`` has no identity folders, or an identity folder holds no image
        (the message names the folder).
    ValueError
        ``exclude`` names a folder that is not in ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found (expected root/<identity>/<image>)")
    if min_images < 1:
        raise ValueError(f"min_images must be >= 1, got {min_images}")
    with os.scandir(root) as entries:
        folders = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not folders:
        raise FormatError(f"{root}: no identity folders (expected root/<identity>/<image>)")
    excluded = set(exclude)
    unknown = excluded.difference(folders)
    if unknown:
        shown = ", ".join(sorted(unknown)[:5])
        raise ValueError(f"exclude: {len(unknown)} name(s) are not folders of {root}: {shown}")

    paths: list[str] = []
    labels: list[np.ndarray] = []
    identities: list[str] = []
    for name in folders:
        folder = root / name
        with os.scandir(folder) as entries:
            files = sorted(
                e.name
                for e in entries
                if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file()
            )
        if not files:
            raise FormatError(
                f"{folder}: identity folder holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "remove it or fill it"
            )
        if name in excluded or len(files) < min_images:
            continue
        labels.append(np.full(len(files), len(identities), dtype=np.int64))
        identities.append(name)
        paths.extend(str(folder / f) for f in files)
    if not identities:
        raise FormatError(f"{root}: no identity folder has at least {min_images} images")
    return paths, np.concatenate(labels), identities


class ImageFolderFaces:
    """A :class:`~dbrepro.data.base.FaceDataset` over ``root/<identity>/<image>``, decoded lazily.

    Parameters
    ----------
    root
        The folder of identity folders.
    image_size
        Output size (int or (height, width)); ``None`` keeps the (cropped) source size.
    crop
        A centre crop in *source* pixels taken before resizing: an int (square side), a
        float (fraction of each side), ``(h, w)`` or a ``(left, top, right, bottom)`` box.
        For LFW-a (250 x 250, face in the middle) ``crop=128`` keeps the face.
    min_images
        Identities with fewer images are left out.
    grayscale_ok
        Greyscale images are replicated to RGB; with ``False`` they are an error.
    exclude
        Identity folder names to leave out (e.g. the people of a test pairs list).
    transform
        Applied to the uint8 ``3 x H x W`` tensor by ``__getitem__`` (not by
        :meth:`to_tensor_faces`).

    Attributes
    ----------
    labels, num_classes, meta
        ``meta`` has ``identity`` (folder name), ``path`` and ``label``.
    identities
        The kept folder names; ``identities[k]`` is label ``k``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: ImageSize | None = 112,
        crop: Crop | None = None,
        min_images: int = 1,
        grayscale_ok: bool = True,
        *,
        exclude: Iterable[str] = (),
        transform: Callable[[torch.Tensor], object] | None = None,
    ) -> None:
        self.root = Path(root)
        self.image_size = as_size(image_size)
        self.crop = crop
        self.grayscale_ok = grayscale_ok
        self.transform = transform
        self.paths, self.labels, self.identities = list_image_folder(root, min_images, exclude)
        self.num_classes = len(self.identities)
        self.meta = pd.DataFrame(
            {
                "identity": np.asarray(self.identities, dtype=object)[self.labels],
                "path": self.paths,
                "label": self.labels,
            }
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.decode(i)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])

    def decode(self, i: int) -> torch.Tensor:
        """Image ``i`` as uint8 ``3 x H x W`` (cropped and resized, no transform)."""
        path = self.paths[i]
        return decode_image(path, self.image_size, self.crop, grayscale_ok=self.grayscale_ok, what=path)

    def to_tensor_faces(self, num_workers: int = 0, name: str | None = None) -> TensorFaces:
        """Decode every image into one in-memory :class:`TensorFaces` (``num_workers`` threads)."""
        images = decode_many(self.decode, len(self), num_workers, describe=lambda i: self.paths[i])
        return TensorFaces(
            images=images,
            labels=self.labels.copy(),
            num_classes=self.num_classes,
            meta=self.meta.copy(),
            name=name or self.root.name,
        )

    def __repr__(self) -> str:
        return (
            f"ImageFolderFaces({str(self.root)!r}, {len(self)} images, {self.num_classes} identities, "
            f"image_size={self.image_size}, crop={self.crop!r})"
        )
