"""RecordIO: files written byte by byte in the real layout, and the writer's round trip.

The helpers below build records with ``struct`` from the format's definition (magic
0xced7230a, lrecord = cflag << 29 | length, 4-byte padding, IRHeader ``<IfQQ``), independently
of ``dbrepro.data.formats.recordio``.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dbrepro.data.base import FaceDataset
from dbrepro.data.formats import FormatError, ImageDecodeError, RecordIODataset, frame_record, write_recordio
from dbrepro.data.formats import recordio

MAGIC = 0xCED7230A
MAGIC_LE = b"\x0a\x23\xd7\xce"


# -- an independent writer of the real format --------------------------------------------------


def raw_part(data: bytes, cflag: int = 0) -> bytes:
    return struct.pack("<II", MAGIC, (cflag << 29) | len(data)) + data + b"\0" * (-len(data) % 4)


def ir_header(label: float = 0.0, id_: int = 0, labels: tuple[float, ...] = ()) -> bytes:
    if labels:
        return struct.pack("<IfQQ", len(labels), 0.0, id_, 0) + struct.pack(f"<{len(labels)}f", *labels)
    return struct.pack("<IfQQ", 0, label, id_, 0)


def write_raw(root: Path, records: list[tuple[int, bytes]], prop: str | None = None) -> Path:
    """``records`` = (key, record bytes) in file order."""
    root.mkdir(parents=True, exist_ok=True)
    blob, lines = b"", []
    for key, rec in records:
        lines.append(f"{key}\t{len(blob)}\n")
        blob += rec
    (root / "train.rec").write_bytes(blob)
    (root / "train.idx").write_text("".join(lines))
    if prop is not None:
        (root / "property").write_text(prop)
    return root


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def pixel_image(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1)


def insightface_layout(root: Path, image_labels: list[int] | None = None) -> tuple[Path, list[np.ndarray]]:
    """3 identities with 2, 1, 2 images: keys 1..5 images, 6..8 identity records, key 0 header.

    ``image_labels`` overrides the labels written in the image records themselves.
    """
    classes = [0, 0, 1, 2, 2]
    stored = image_labels if image_labels is not None else classes
    pixels = [pixel_image(k) for k in range(5)]
    records = [(0, raw_part(ir_header(labels=(6.0, 9.0))))]
    records += [(k + 1, raw_part(ir_header(float(stored[k]), k + 1) + png(pixels[k]))) for k in range(5)]
    records += [(6, raw_part(ir_header(labels=(1.0, 3.0), id_=6))),
                (7, raw_part(ir_header(labels=(3.0, 4.0), id_=7))),
                (8, raw_part(ir_header(labels=(4.0, 6.0), id_=8)))]
    return write_raw(root, records, "3,6,5"), pixels


# -- reading the two layouts ---------------------------------------------------------------------


def test_reads_insightface_layout(tmp_path: Path) -> None:
    root, pixels = insightface_layout(tmp_path / "rec")
    ds = RecordIODataset(root)
    assert isinstance(ds, FaceDataset)
    assert ds.layout == "insightface"
    assert len(ds) == 5 and ds.num_classes == 3 and ds.stored_size == (6, 5)
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [0, 0, 1, 2, 2]
    assert ds.meta["key"].tolist() == [1, 2, 3, 4, 5] and ds.meta["identity"].tolist() == [0, 0, 1, 2, 2]
    for i in range(5):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and torch.equal(image, chw(pixels[i]))
        assert label == ds.labels[i]
    assert torch.equal(ds[-1][0], chw(pixels[4]))
    with pytest.raises(IndexError):
        ds[5]


def test_labels_come_from_identity_records_without_reading_images(tmp_path: Path) -> None:
    # the image records claim label 7; the identity ranges say 0, 0, 1, 2, 2: the ranges win,
    # which shows the image records were not read to get the labels
    root, _ = insightface_layout(tmp_path / "rec", image_labels=[7, 7, 7, 7, 7])
    (root / "property").unlink()
    ds = RecordIODataset(root)
    assert ds.labels.tolist() == [0, 0, 1, 2, 2]
    assert ds.scan_labels().tolist() == [7, 7, 7, 7, 7]


def test_reads_im2rec_layout_with_any_keys_and_multi_labels(tmp_path: Path) -> None:
    pixels = [pixel_image(10 + k) for k in range(3)]
    records = [
        (10, raw_part(ir_header(2.0, 10) + png(pixels[0]))),
        (3, raw_part(ir_header(labels=(4.0, 0.5), id_=3) + png(pixels[1]))),  # first label is the class
        (7, raw_part(ir_header(0.0, 7) + png(pixels[2]))),
    ]
    root = write_raw(tmp_path / "rec", records)
    ds = RecordIODataset(root)
    assert ds.layout == "im2rec"
    assert ds.meta["key"].tolist() == [10, 3, 7]  # index order
    assert ds.labels.tolist() == [2, 4, 0] and ds.num_classes == 5 and ds.stored_size is None
    for i in range(3):
        assert torch.equal(ds[i][0], chw(pixels[i]))
    header, data = ds.read_record(1)
    assert header.flag == 2 and header.labels == (4.0, 0.5) and header.id == 3 and data == png(pixels[1])


def test_a_rec_file_path_is_accepted(tmp_path: Path) -> None:
    records = [(0, raw_part(ir_header(1.0, 0) + png(pixel_image(0))))]
    write_raw(tmp_path, records)
    os.rename(tmp_path / "train.rec", tmp_path / "faces.rec")
    os.rename(tmp_path / "train.idx", tmp_path / "faces.idx")
    assert RecordIODataset(tmp_path / "faces.rec").labels.tolist() == [1]


def test_vectorised_header_scan_matches_record_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recordio, "_SCAN_CHUNK", 3)  # several chunks
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 11).tolist()
    records = [(k, raw_part(ir_header(float(lab), k) + png(pixel_image(k, 2, 2)))) for k, lab in enumerate(labels)]
    root = write_raw(tmp_path / "rec", records)
    ds = RecordIODataset(root)
    assert ds.labels.tolist() == labels
    assert [ds.read_record(i)[0].label for i in range(11)] == labels


# -- split records --------------------------------------------------------------------------------


def test_frame_record_splits_at_aligned_magic_words_only() -> None:
    # magic at offsets 4 and 12 (aligned) and at 17 (unaligned: stays in the data)
    payload = b"abcd" + MAGIC_LE + b"efgh" + MAGIC_LE + b"i" + MAGIC_LE + b"jk"
    expected = (
        struct.pack("<II", MAGIC, (1 << 29) | 4) + b"abcd"
        + struct.pack("<II", MAGIC, (2 << 29) | 4) + b"efgh"
        + struct.pack("<II", MAGIC, (3 << 29) | 7) + b"i" + MAGIC_LE + b"jk" + b"\0"
    )
    assert frame_record(payload) == expected
    assert frame_record(b"xyz") == struct.pack("<II", MAGIC, 3) + b"xyz\0"
    # a magic word at offset 0 gives an empty first part
    assert frame_record(MAGIC_LE + b"ab") == (
        struct.pack("<II", MAGIC, 1 << 29) + struct.pack("<II", MAGIC, (3 << 29) | 2) + b"ab\0\0"
    )


def test_reader_rejoins_a_record_split_by_the_magic_word(tmp_path: Path) -> None:
    pixels = pixel_image(3)
    payload = struct.pack("<IfQQ", 0, 1.0, MAGIC, MAGIC) + png(pixels)  # id and id2 hold the magic word
    parts = [payload[:8], payload[12:16], payload[20:]]
    split = raw_part(parts[0], 1) + raw_part(parts[1], 2) + raw_part(parts[2], 3)
    odd = raw_part(ir_header(0.0, 1) + png(pixel_image(4)))
    root = write_raw(tmp_path / "rec", [(0, split), (1, odd)])
    ds = RecordIODataset(root)
    assert ds.labels.tolist() == [1, 0]
    header, data = ds.read_record(0)
    assert header.id == MAGIC and header.id2 == MAGIC and data == png(pixels)
    assert torch.equal(ds[0][0], chw(pixels)) and torch.equal(ds[1][0], chw(pixel_image(4)))


def test_writer_splits_a_payload_holding_the_magic_word(tmp_path: Path) -> None:
    # a 4x4 8-bit PGM: 11 header bytes, then pixels. In the payload (24-byte IRHeader first)
    # the pixels start at byte 35, so pixels 1..4 and 9..12 sit at aligned offsets 36 and 44.
    grey = np.arange(16, dtype=np.uint8) * 5
    grey[1:5] = np.frombuffer(MAGIC_LE, np.uint8)
    grey[9:13] = np.frombuffer(MAGIC_LE, np.uint8)
    pgm = b"P5\n4 4\n255\n" + grey.tobytes()
    write_recordio([(pgm, 0), (png(pixel_image(1, 4, 4)), 1)], tmp_path, header=False)

    blob = (tmp_path / "train.rec").read_bytes()
    flags, pos = [], 0
    while pos < len(blob):
        magic, lrec = struct.unpack_from("<II", blob, pos)
        assert magic == MAGIC
        flags.append(lrec >> 29)
        pos += 8 + (lrec & (2**29 - 1)) + (-(lrec & (2**29 - 1)) % 4)
    assert flags == [1, 2, 3, 0]
    ds = RecordIODataset(tmp_path)
    image, label = ds[0]
    assert label == 0 and torch.equal(image, torch.from_numpy(grey.reshape(4, 4)).expand(3, 4, 4))


# -- the writer -------------------------------------------------------------------------------------


def test_round_trip_from_an_image_folder(tmp_path: Path) -> None:
    src = tmp_path / "faces"
    pixels = {}
    for k, (name, n) in enumerate([("bob", 2), ("alice", 3), ("carol", 1)]):
        (src / name).mkdir(parents=True)
        for j in range(n):
            pixels[name, j] = pixel_image(10 * k + j, 8, 8)
            (src / name / f"{j}.png").write_bytes(png(pixels[name, j]))
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(grey).save(src / "carol" / "1.pgm")  # re-encoded (as PNG here), not stored as PGM
    pixels["carol", 1] = np.repeat(grey[:, :, None], 3, axis=2)
    write_recordio(src, tmp_path / "rec", encoding="png")
    assert (tmp_path / "rec" / "property").read_text().strip() == "3,8,8"
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["property", "train.idx", "train.rec"]
    offsets = [int(line.split("\t")[1]) for line in (tmp_path / "rec" / "train.idx").read_text().splitlines()]
    assert all(o % 4 == 0 for o in offsets)
    ds = RecordIODataset(tmp_path / "rec")
    assert ds.layout == "insightface" and ds.num_classes == 3
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 2, 2]  # alice, bob, carol
    expected = [pixels["alice", 0], pixels["alice", 1], pixels["alice", 2], pixels["bob", 0], pixels["bob", 1],
                pixels["carol", 0], pixels["carol", 1]]
    for i, px in enumerate(expected):
        assert torch.equal(ds[i][0], chw(px))
    assert ds.read_record(0)[1] == (src / "alice" / "0.png").read_bytes()  # PNG stored byte for byte
    assert ds.read_record(6)[1].startswith(b"\x89PNG")
    assert np.array_equal(ds.scan_labels(), ds.labels)


def test_round_trip_pixels_with_resize_and_empty_classes(tmp_path: Path) -> None:
    items = [(chw(pixel_image(k, 8, 8)), lab) for k, lab in enumerate([0, 0, 2, 2, 2])]
    write_recordio(items, tmp_path, encoding="png", num_classes=4)
    ds = RecordIODataset(tmp_path)
    assert ds.labels.tolist() == [0, 0, 2, 2, 2] and ds.num_classes == 4
    assert all(torch.equal(ds[i][0], items[i][0]) for i in range(5))
    small = RecordIODataset(tmp_path, image_size=4)
    assert small[0][0].shape == (3, 4, 4)
    # JPEG (the default encoding) of a smooth image: close to the pixels
    ramp = torch.arange(16, dtype=torch.uint8).mul(16).expand(3, 16, 16).contiguous()
    write_recordio([(ramp, 0)], tmp_path / "jpg", quality=95)
    jpg = RecordIODataset(tmp_path / "jpg")
    assert (jpg[0][0].float() - ramp.float()).abs().mean() < 3


def test_writer_requires_sorted_labels_for_the_header_layout_and_leaves_nothing(tmp_path: Path) -> None:
    items = [(chw(pixel_image(k, 4, 4)), lab) for k, lab in enumerate([1, 0])]
    with pytest.raises(ValueError, match="item 1: label 0 comes after label 1"):
        write_recordio(items, tmp_path / "a", encoding="png")
    assert list((tmp_path / "a").iterdir()) == []
    write_recordio(items, tmp_path / "b", header=False, encoding="png")
    assert RecordIODataset(tmp_path / "b").labels.tolist() == [1, 0]

    def failing():
        yield chw(pixel_image(0, 4, 4)), 0
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        write_recordio(failing(), tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []
    with pytest.raises(ValueError, match="item 1: image is 5x4"):
        write_recordio([(chw(pixel_image(0, 4, 4)), 0), (chw(pixel_image(0, 5, 4)), 0)], tmp_path / "d")


def test_writer_refuses_a_truncated_jpeg_naming_the_item_and_its_record(tmp_path: Path) -> None:
    jpeg = io.BytesIO()
    Image.fromarray(pixel_image(0, 32, 32)).save(jpeg, format="JPEG", quality=90)
    whole = jpeg.getvalue()
    truncated = whole[: len(whole) // 2]  # the header (and the size it declares) survive, the scan does not
    items = [(whole, 0), (whole, 0), (truncated, 1)]
    with pytest.raises(ImageDecodeError, match=r"item 2 \(record key 3\): cannot decode image"):
        write_recordio(items, tmp_path / "bytes")
    assert list((tmp_path / "bytes").iterdir()) == []  # nothing half-written is left behind
    src = tmp_path / "faces"
    (src / "ann").mkdir(parents=True)
    (src / "bob").mkdir()
    (src / "ann" / "0.jpg").write_bytes(whole)
    (src / "bob" / "0.jpg").write_bytes(truncated)
    with pytest.raises(ImageDecodeError, match=r"bob/0\.jpg \(record key 2\): cannot decode image"):
        write_recordio(src, tmp_path / "folder")
    assert list((tmp_path / "folder").iterdir()) == []


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_recordio([(chw(pixel_image(0, 4, 4)), 0)], tmp_path / "rec", encoding="png")
    finally:
        os.umask(old)
    for name in ("train.rec", "train.idx", "property"):
        assert (tmp_path / "rec" / name).stat().st_mode & 0o777 == 0o644, name


# -- workers and pickling ---------------------------------------------------------------------------


def test_dataloader_with_two_forked_workers(tmp_path: Path) -> None:
    items = [(chw(pixel_image(k, 6, 6)), k % 3) for k in range(12)]
    write_recordio(sorted(items, key=lambda t: t[1]), tmp_path, encoding="png")
    ds = RecordIODataset(tmp_path)
    first = ds[0][0]  # the parent opens its descriptor before forking
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    images, labels = zip(*loader)
    assert torch.equal(torch.cat(images), torch.stack([ds[i][0] for i in range(12)]))
    assert torch.cat(labels).tolist() == ds.labels.tolist()
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.file._fd is None and torch.equal(clone[0][0], first)


# -- bad input --------------------------------------------------------------------------------------


def test_truncated_rec_is_reported_at_open(tmp_path: Path) -> None:
    root, _ = insightface_layout(tmp_path / "rec")
    blob = (root / "train.rec").read_bytes()
    (root / "train.rec").write_bytes(blob[:-10])
    with pytest.raises(FormatError, match=r"train\.rec: record key 8 at offset \d+: the file ends inside the record"):
        RecordIODataset(root)


def test_wrong_magic_names_the_record(tmp_path: Path) -> None:
    root, _ = insightface_layout(tmp_path / "rec")
    idx = dict(line.split("\t") for line in (root / "train.idx").read_text().splitlines())
    blob = bytearray((root / "train.rec").read_bytes())
    off = int(idx["3"])
    blob[off : off + 4] = b"\0\0\0\0"
    (root / "train.rec").write_bytes(bytes(blob))
    ds = RecordIODataset(root)  # labels come from the identity records
    with pytest.raises(FormatError, match=rf"train\.rec: record key 3 at offset {off}: bad magic 0x00000000"):
        ds[2]
    assert torch.equal(ds[3][0], chw(pixel_image(3)))  # nothing broken by the failed read
    with pytest.raises(FormatError, match="record key 3 at offset"):
        RecordIODataset(root, header=False)  # the im2rec scan reads every header


def test_idx_offset_past_the_end(tmp_path: Path) -> None:
    root, _ = insightface_layout(tmp_path / "rec")
    size = (root / "train.rec").stat().st_size
    with open(root / "train.idx", "a") as f:
        f.write(f"9\t{size + 100}\n")
    with pytest.raises(FormatError, match=rf"record key 9 has offset {size + 100}, past the end of .*train\.rec"):
        RecordIODataset(root)


def test_malformed_idx_line_and_property(tmp_path: Path) -> None:
    root, _ = insightface_layout(tmp_path / "rec")
    text = (root / "train.idx").read_text().splitlines()
    text[2] = "2 oops"
    (root / "train.idx").write_text("\n".join(text) + "\n")
    with pytest.raises(FormatError, match=r"train\.idx, line 3: expected 'key<TAB>offset'"):
        RecordIODataset(root)
    root, _ = insightface_layout(tmp_path / "rec2")
    (root / "property").write_text("4,6,5")
    with pytest.raises(FormatError, match="says 4 classes, but .* has 3 identity records"):
        RecordIODataset(root)
    (root / "property").write_text("3;6;5")
    with pytest.raises(FormatError, match="property: expected 'num_classes,height,width'"):
        RecordIODataset(root)


def test_corrupt_image_inside_a_record(tmp_path: Path) -> None:
    jpeg = io.BytesIO()
    Image.fromarray(pixel_image(0, 32, 32)).save(jpeg, format="JPEG")
    broken = jpeg.getvalue()[:40] + b"\x00" * 8  # header intact, image data gone
    root = write_raw(tmp_path, [(0, raw_part(ir_header(0.0) + broken)), (1, raw_part(ir_header(0.0) + b"junk"))])
    ds = RecordIODataset(root)
    with pytest.raises(ImageDecodeError, match=r"train\.rec: record key 0 at offset 0: cannot decode image"):
        ds[0]
    with pytest.raises(ImageDecodeError, match=r"record key 1 at offset \d+: cannot decode image"):
        ds[1]


def test_bad_labels_and_forced_header(tmp_path: Path) -> None:
    root = write_raw(tmp_path, [(0, raw_part(ir_header(1.5) + png(pixel_image(0))))])
    with pytest.raises(FormatError, match="record key 0 has label 1.5; expected an integer >= 0"):
        RecordIODataset(root)
    root = write_raw(tmp_path / "b", [(0, raw_part(ir_header(1.0) + png(pixel_image(0))))])
    with pytest.raises(FormatError, match="header=True, but key 0 is not an InsightFace header record"):
        RecordIODataset(root, header=True)
