"""Image folders and the shared decoder: greyscale/colour, formats, crop then resize, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dbrepro.data.base import FaceDataset, TensorFaces
from dbrepro.data.formats import FormatError, ImageDecodeError, ImageFolderFaces, crop_box, decode_image


def save(path: Path, pixels: np.ndarray, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt, **kw)
    return path


def framed(size: int, inner: int, value: int = 255) -> np.ndarray:
    """A black ``size`` square with a centred ``inner`` square of ``value``."""
    a = np.zeros((size, size), dtype=np.uint8)
    lo = (size - inner) // 2
    a[lo : lo + inner, lo : lo + inner] = value
    return a


def test_crop_box_forms() -> None:
    assert crop_box(250, 250, None) == (0, 0, 250, 250)
    assert crop_box(250, 250, 128) == (61, 61, 189, 189)
    assert crop_box(200, 100, 0.5) == (50, 25, 150, 75)
    assert crop_box(200, 100, (20, 40)) == (80, 40, 120, 60)
    assert crop_box(200, 100, (1, 2, 3, 4)) == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="a.png: a 300x300 centre crop does not fit in a 250x250 image"):
        crop_box(250, 250, 300, what="a.png")
    with pytest.raises(ValueError, match="crop box"):
        crop_box(10, 10, (0, 0, 11, 5))


def test_crop_then_resize_on_known_pixels(tmp_path: Path) -> None:
    path = save(tmp_path / "f.png", framed(16, 8))
    assert torch.all(decode_image(path, crop=8) == 255)  # exactly the white square
    assert torch.all(decode_image(path, crop=0.5) == 255)
    full = decode_image(path)
    assert full.shape == (3, 16, 16) and full.sum() == 255 * 3 * 64
    assert torch.equal(decode_image(path, image_size=4, crop=8), torch.full((3, 4, 4), 255, dtype=torch.uint8))
    # a 2:1 image resized to a square keeps the centre square
    wide = np.zeros((8, 16), dtype=np.uint8)
    wide[:, 4:12] = 200
    assert torch.all(decode_image(save(tmp_path / "w.png", wide), image_size=(4, 4)) == 200)


def test_greyscale_colour_and_16_bit(tmp_path: Path) -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    g = decode_image(save(tmp_path / "g.png", grey))
    assert torch.equal(g, torch.from_numpy(grey).expand(3, 8, 8))  # replicated to RGB
    colour = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    c = decode_image(save(tmp_path / "c.png", colour))
    assert torch.equal(c, torch.from_numpy(colour).permute(2, 0, 1))
    pgm16 = tmp_path / "deep.pgm"
    values = (np.arange(16, dtype=np.uint16) * 4096).reshape(4, 4)
    pgm16.write_bytes(b"P5\n4 4\n65535\n" + values.astype(">u2").tobytes())
    assert decode_image(pgm16)[0].flatten().tolist() == (values >> 8).flatten().tolist()
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 1] = 77
    assert decode_image(save(tmp_path / "a.png", rgba)).shape == (3, 4, 4)
    with pytest.raises(ValueError, match=r"g\.png: greyscale image"):
        decode_image(tmp_path / "g.png", grayscale_ok=False)


def test_jpeg_draft_decoding_matches_a_full_decode(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:256, 0:256]
    smooth = ((np.sin(xx / 9.0) + np.cos(yy / 13.0)) * 60 + 128).astype(np.uint8)
    path = save(tmp_path / "s.jpg", smooth, quality=95)
    fast = decode_image(path, image_size=32, crop=128)
    with Image.open(path) as im:
        reference = np.array(im.convert("L").resize((32, 32), Image.Resampling.BILINEAR, box=(64, 64, 192, 192)))
    assert np.abs(fast[0].numpy().astype(int) - reference).mean() < 2.0


def test_folder_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    save(tmp_path / "zed" / "a.jpg", rng.integers(0, 256, (40, 30), dtype=np.uint8))  # grey JPEG
    save(tmp_path / "zed" / "b.PNG", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    save(tmp_path / "amy" / "x.pgm", rng.integers(0, 256, (10, 12), dtype=np.uint8))
    save(tmp_path / "amy" / "y.jpeg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    save(tmp_path / "kim" / "only.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (tmp_path / "kim" / "notes.txt").write_text("not an image")
    (tmp_path / "README").write_text("a file beside the identity folders")

    ds = ImageFolderFaces(tmp_path, image_size=16)
    assert isinstance(ds, FaceDataset)
    assert ds.identities == ["amy", "kim", "zed"] and ds.num_classes == 3
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [0, 0, 1, 2, 2]
    assert ds.meta["identity"].tolist() == ["amy", "amy", "kim", "zed", "zed"]
    assert [Path(p).name for p in ds.meta["path"]] == ["x.pgm", "y.jpeg", "only.png", "a.jpg", "b.PNG"]
    image, label = ds[3]
    assert image.shape == (3, 16, 16) and label == 2
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])  # grey replicated

    faces = ds.to_tensor_faces(num_workers=2)
    assert isinstance(faces, TensorFaces) and faces.images.shape == (5, 3, 16, 16)
    assert all(torch.equal(faces.images[i], ds[i][0]) for i in range(5))

    kept = ImageFolderFaces(tmp_path, image_size=16, min_images=2)
    assert kept.identities == ["amy", "zed"] and kept.labels.tolist() == [0, 0, 1, 1]
    other = ImageFolderFaces(tmp_path, image_size=16, exclude=["amy"])
    assert other.identities == ["kim", "zed"] and other.labels.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="exclude: 1 name"):
        ImageFolderFaces(tmp_path, exclude=["nobody"])
    with pytest.raises(ValueError, match="decoded to"):
        ImageFolderFaces(tmp_path, image_size=None).to_tensor_faces()


def test_empty_identity_folder_is_named(tmp_path: Path) -> None:
    save(tmp_path / "amy" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "Thumbs.db").write_bytes(b"")
    with pytest.raises(FormatError, match=r"bob: identity folder holds no images"):
        ImageFolderFaces(tmp_path)
    with pytest.raises(FormatError, match="no identity folders"):
        ImageFolderFaces(tmp_path / "amy")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolderFaces(tmp_path / "missing")


def test_corrupt_file_is_named(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
    (tmp_path / "amy").mkdir()
    (tmp_path / "amy" / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    ds = ImageFolderFaces(tmp_path, image_size=8)
    with pytest.raises(ImageDecodeError, match=r"amy/cut\.jpg: cannot decode image"):
        ds[0]
