"""InsightFace ``.bin`` packs: packs pickled here as InsightFace does, channel order, folds, errors."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dbrepro.data.base import PairSuite
from dbrepro.data.formats import FormatError, bin_suite, contiguous_folds, read_bin_pairs, write_bin_pairs


def encoded(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def solid(rgb: tuple[int, int, int], size: int = 16) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (size, size, 3)).copy()


def pack(path: Path, bins: list, issame: list, protocol: int = 2) -> Path:
    with open(path, "wb") as f:
        pickle.dump((bins, issame), f, protocol=protocol)
    return path


def test_channel_order_is_rgb(tmp_path: Path) -> None:
    """InsightFace's packs hold ordinary JPEGs: a standard decoder gives RGB, as here.

    (cv2.imdecode would give BGR; mixing the two cost a project about 5 points on CFP-FP.)
    A pure red and a pure blue JPEG must come back red in channel 0 and blue in channel 2.
    """
    red, blue = encoded(solid((255, 0, 0)), "JPEG"), encoded(solid((0, 0, 255)), "JPEG")
    path = pack(tmp_path / "rb.bin", [red, blue], [False])
    images, issame = read_bin_pairs(path)
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    r, b = images[0].float().mean(dim=(1, 2)), images[1].float().mean(dim=(1, 2))
    assert r[0] > 240 and r[1] < 15 and r[2] < 15
    assert b[2] > 240 and b[0] < 15 and b[1] < 15
    assert issame.dtype == bool and issame.tolist() == [False]


def test_reads_pairs_in_order_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(6)]
    path = pack(tmp_path / "p.bin", [encoded(p) for p in pixels], [True, False, True])
    images, issame = read_bin_pairs(path)
    for i, p in enumerate(pixels):
        assert torch.equal(images[i], torch.from_numpy(p).permute(2, 0, 1))
    assert issame.tolist() == [True, False, True]
    resized, _ = read_bin_pairs(path, image_size=4, num_workers=2)
    assert resized.shape == (6, 3, 4, 4)


def test_numpy_issame_and_numpy_byte_arrays(tmp_path: Path) -> None:
    blobs = [np.frombuffer(encoded(solid((v, v, v), 4)), dtype=np.uint8) for v in (0, 50, 100, 150)]
    path = pack(tmp_path / "np.bin", blobs, list(np.array([True, False])))
    images, issame = read_bin_pairs(path)
    assert images[:, 0, 0, 0].tolist() == [0, 50, 100, 150] and issame.tolist() == [True, False]


def test_bin_suite_has_ten_contiguous_folds(tmp_path: Path) -> None:
    bins = [encoded(solid((i, 0, 0), 4)) for i in range(40)]
    path = pack(tmp_path / "lfw.bin", bins, [i % 2 == 0 for i in range(20)])
    suite = bin_suite(path)
    assert isinstance(suite, PairSuite)
    assert suite.name == "lfw" and suite.stands_for == "LFW" and len(suite) == 20
    assert suite.pairs.tolist() == [[2 * i, 2 * i + 1] for i in range(20)]
    assert suite.folds.tolist() == [i // 2 for i in range(20)]
    assert suite.images[suite.pairs[7, 1], 0, 0, 0] == 15
    # 25 pairs: sklearn KFold's blocks (3 x 5, then 2 x 5), as InsightFace's evaluation uses
    assert np.bincount(contiguous_folds(25)).tolist() == [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="9 pairs cannot be split into 10 folds"):
        contiguous_folds(9)


def test_a_pack_of_fewer_than_ten_pairs_names_the_file_and_the_protocol(tmp_path: Path) -> None:
    bins = [encoded(solid((i, 0, 0), 4)) for i in range(18)]
    path = pack(tmp_path / "tiny.bin", bins, [i % 2 == 0 for i in range(9)])
    assert len(read_bin_pairs(path)[1]) == 9  # reading is fine; only the 10-fold protocol needs 10 pairs
    with pytest.raises(FormatError, match=r"tiny\.bin: 9 pair\(s\); the verification protocol averages over 10 folds"):
        bin_suite(path)
    path = pack(tmp_path / "ten.bin", bins + bins[:2], [i % 2 == 0 for i in range(10)])
    assert bin_suite(path).folds.tolist() == list(range(10))


def test_write_then_read(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8)
    path = write_bin_pairs(tmp_path / "out.bin", images, [True, False], format="png")
    got, issame = read_bin_pairs(path)
    assert torch.equal(got, images) and issame.tolist() == [True, False]
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    with pytest.raises(ValueError, match="3 images for 2 pairs"):
        write_bin_pairs(tmp_path / "bad.bin", images[:3], [True, False])


def test_image_count_must_be_twice_the_pair_count(tmp_path: Path) -> None:
    path = pack(tmp_path / "odd.bin", [encoded(solid((0, 0, 0), 4))] * 5, [True, False, True])
    with pytest.raises(FormatError, match=r"odd\.bin: 5 images for 3 pairs"):
        read_bin_pairs(path)


def test_not_a_pack(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(64))
    with pytest.raises(FormatError, match=r"junk\.bin: not a \.bin pair pack"):
        read_bin_pairs(junk)
    wrong = tmp_path / "dict.bin"
    wrong.write_bytes(pickle.dumps({"images": []}))
    with pytest.raises(FormatError, match=r"dict\.bin: expected a pickled pair"):
        read_bin_pairs(wrong)
    strings = pack(tmp_path / "str.bin", ["a", "b"], [True])
    with pytest.raises(FormatError, match="pair 0 image a is a str, not encoded bytes"):
        read_bin_pairs(strings)
    flags = pack(tmp_path / "flags.bin", [b"a", b"b"], ["yes"])
    with pytest.raises(FormatError, match=r"issame\[0\] = 'yes' is not a bool"):
        read_bin_pairs(flags)


def test_refuses_pickles_that_run_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([Evil(), b""], [True])))
    with pytest.raises(FormatError, match="refusing to load posix.system|refusing to load os.system"):
        read_bin_pairs(path)


def test_corrupt_image_names_the_pair(tmp_path: Path) -> None:
    good = encoded(solid((9, 9, 9), 4))
    path = pack(tmp_path / "bad.bin", [good] * 5 + [b"\xff\xd8 not a jpeg"], [True, True, False])
    with pytest.raises(FormatError, match=r"bad\.bin: pair 2 image b: cannot decode image"):
        read_bin_pairs(path)
