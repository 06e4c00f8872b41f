"""InsightFace / MXNet RecordIO face data (``train.rec``, ``train.idx``, ``property``), without MXNet.

The format
----------
``train.rec`` is a sequence of records. Each record is::

    uint32 magic = 0xced7230a
    uint32 lrecord: length = lrecord & (2**29 - 1), cflag = lrecord >> 29
    length bytes of data, then zero padding to a multiple of 4 bytes

A writer that finds the magic word at a 4-byte-aligned position of a payload splits the
payload there: the parts are written as records with cflag 1 (first), 2 (middle) and 3 (last),
the magic word itself left out; a reader rejoins the parts with the magic word between them.
cflag 0 is a whole record. ``train.idx`` has one text line ``key<TAB>offset`` per record.

Each payload starts with an ``IRHeader`` (struct ``<IfQQ``: flag uint32, label float32, id
uint64, id2 uint64; 24 bytes). ``flag > 0`` means ``flag`` float32 labels follow the header
(the header's own label is then 0); the rest is the encoded image.

Two layouts:

InsightFace (``header=True``)
    Key 0 is a header record without an image whose two labels are ``[first, end)``, the
    keys of the identity records. Keys ``1 .. first-1`` are images; identity record ``first + c``
    has labels ``[start, stop)``, the image keys of class ``c``. ``property`` holds
    ``num_classes,H,W``. Labels are read from the identity records alone, so opening
    MS1MV2 (5.8M images, 85K identities) touches 85K tiny records, not 5.8M images.
im2rec (``header=False``)
    Every key is an image whose header carries its label (the first one when ``flag > 0``,
    as InsightFace's reader does). Labels are read from the 24-byte headers only (one
    vectorised gather over a memory map), never from the images.
"""

from __future__ import annotations

import mmap
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ...paths import temp_file_beside
from .errors import FormatError
from .folders import list_image_folder
from .images import Crop, ImageSize, as_size, decode_image, encode_image

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
#: IRHeader: flag (uint32), label (float32), id (uint64), id2 (uint64), little-endian.
IR_HEADER = struct.Struct("<IfQQ")
_LREC = struct.Struct("<II")
_LENGTH_BITS = 29
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1
#: bytes read in one go when a record's extent is unknown or very long
_READ_AHEAD = 1 << 20
#: records gathered per step by the vectorised header scan
_SCAN_CHUNK = 1 << 18


# ---------------------------------------------------------------------------------------------
# records and headers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IRHeader:
    """The header at the start of every payload. ``labels`` holds the ``flag`` extra labels."""

    flag: int
    label: float
    id: int
    id2: int
    labels: tuple[float, ...] = ()

    @property
    def first_label(self) -> float:
        """The image's label as InsightFace reads it: ``label``, or ``labels[0]`` when ``flag > 0``."""
        return self.labels[0] if self.flag > 0 else self.label


def pack_payload(label: float | Iterable[float], data: bytes = b"", id: int = 0, id2: int = 0) -> bytes:
    """An IRHeader followed by ``data``; a sequence ``label`` is stored as ``flag`` extra labels."""
    if isinstance(label, (int, float, np.integer, np.floating)):
        return IR_HEADER.pack(0, float(label), id, id2) + data
    labels = np.asarray(list(label), dtype="<f4")
    return IR_HEADER.pack(len(labels), 0.0, id, id2) + labels.tobytes() + data


def unpack_payload(payload: bytes, what: str = "record") -> tuple[IRHeader, bytes]:
    """Split a payload into its :class:`IRHeader` and the encoded image bytes."""
    if len(payload) < IR_HEADER.size:
        raise FormatError(f"{what}: payload of {len(payload)} bytes is shorter than the 24-byte IRHeader")
    flag, label, id_, id2 = IR_HEADER.unpack_from(payload)
    start = IR_HEADER.size + 4 * flag
    if len(payload) < start:
        raise FormatError(f"{what}: IRHeader says {flag} labels follow, but the payload has {len(payload)} bytes")
    labels = tuple(float(v) for v in np.frombuffer(payload, dtype="<f4", count=flag, offset=IR_HEADER.size))
    return IRHeader(flag, float(label), id_, id2, labels), payload[start:]


def frame_record(payload: bytes) -> bytes:
    """The bytes of one record holding ``payload``, split at 4-byte-aligned magic words.

    Each occurrence of the magic word at an offset that is a multiple of 4 ends a part
    (cflag 1 for the first, 2 for the next ones) and is dropped; the last part has cflag 3
    (or 0 when there was no split) and is zero-padded to 4 bytes. Parts before the last
    have lengths that are multiples of 4, so they need no padding.
    """
    n = len(payload)
    if n > _LENGTH_MASK:
        raise ValueError(f"record payload of {n} bytes exceeds the RecordIO limit of {_LENGTH_MASK}")
    words = np.frombuffer(payload, dtype="<u4", count=n // 4)
    cuts = np.flatnonzero(words == MAGIC) * 4
    out: list[bytes] = []
    start = 0
    for k, cut in enumerate(cuts.tolist()):
        cflag = 1 if k == 0 else 2
        out += [MAGIC_BYTES, struct.pack("<I", cflag << _LENGTH_BITS | (cut - start)), payload[start:cut]]
        start = cut + 4
    last = payload[start:]
    cflag = 3 if len(cuts) else 0
    out += [MAGIC_BYTES, struct.pack("<I", cflag << _LENGTH_BITS | len(last)), last, b"\0" * (-len(last) % 4)]
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# index, property and the indexed record file
# ---------------------------------------------------------------------------------------------


def read_index(idx_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, offsets)`` (int64, file order) from a ``.idx`` file of ``key<TAB>offset`` lines."""
    idx_path = Path(idx_path)
    try:
        table = pd.read_csv(
            idx_path, sep="\t", header=None, names=["key", "offset"], dtype=np.int64, engine="c"
        )
    except FileNotFoundError:
        raise FileNotFoundError(f"{idx_path}: RecordIO index not found") from None
    except pd.errors.EmptyDataError:
        raise FormatError(f"{idx_path}: the index is empty") from None
    except (ValueError, pd.errors.ParserError) as e:
        _raise_bad_index_line(idx_path)
        raise FormatError(f"{idx_path}: cannot parse the index ({e})") from None
    keys = table["key"].to_numpy(np.int64)
    offsets = table["offset"].to_numpy(np.int64)
    if len(keys) == 0:
        raise FormatError(f"{idx_path}: the index is empty")
    return keys, offsets


def _raise_bad_index_line(idx_path: Path) -> None:
    with open(idx_path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.strip().split(b"\t")
            try:
                if len(fields) != 2:
                    raise ValueError
                int(fields[0]), int(fields[1])
            except ValueError:
                raise FormatError(
                    f"{idx_path}, line {lineno}: expected 'key<TAB>offset', got {line.rstrip()!r}"
                ) from None


def read_property(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(num_classes, height, width)`` from an InsightFace ``property`` file (``C,H,W``)."""
    text = Path(path).read_text().strip()
    try:
        values = tuple(int(v) for v in text.split(","))
        if len(values) != 3 or min(values) < 1:
            raise ValueError
    except ValueError:
        raise FormatError(f"{path}: expected 'num_classes,height,width' (positive ints), got {text!r}") from None
    return values  # type: ignore[return-value]


class IndexedRecordFile:
    """Random access to the payloads of a ``.rec`` file through its ``.idx``.

    Reads use ``os.pread`` on a descriptor opened lazily in each process (tracked by
    ``os.getpid()``), so DataLoader workers never share one; the object pickles without it.
    Every error names the ``.rec`` file, the record key and its offset.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path)
        if not self.rec_path.is_file():
            raise FileNotFoundError(f"{self.rec_path}: RecordIO file not found")
        self.keys, self.offsets = read_index(self.idx_path)
        self.file_size = self.rec_path.stat().st_size
        self._check_offsets()
        order = np.argsort(self.offsets, kind="stable")
        ends = np.empty_like(self.offsets)
        ends[order[:-1]] = self.offsets[order[1:]]
        ends[order[-1]] = self.file_size
        #: where the next indexed record starts (or the file ends): one read gets a record
        self.ends = ends
        first = int(self.keys[0])
        self._contiguous = bool(np.array_equal(self.keys, np.arange(first, first + len(self.keys))))
        self._sorter: np.ndarray | None = None
        self._fd: int | None = None
        self._pid: int | None = None

    def _check_offsets(self) -> None:
        bad = np.flatnonzero((self.offsets < 0) | (self.offsets + 8 > self.file_size))
        if len(bad):
            i = int(bad[0])
            raise FormatError(
                f"{self.idx_path}: record key {self.keys[i]} has offset {self.offsets[i]}, past the end of "
                f"{self.rec_path} ({self.file_size} bytes); truncated .rec or .idx of another file?"
            )
        sorted_keys = np.sort(self.keys)
        dup = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        if len(dup):
            raise FormatError(f"{self.idx_path}: record key {sorted_keys[dup[0]]} appears more than once")

    def __len__(self) -> int:
        return len(self.keys)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fd"] = None
        state["_pid"] = None
        return state

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close this process's descriptor (a later read reopens it)."""
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)  # type: ignore[arg-type]
        self._fd = None
        self._pid = None

    def _descriptor(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            self._fd = os.open(self.rec_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._pid = pid
        return self._fd

    def positions(self, keys: np.ndarray | Iterable[int]) -> np.ndarray:
        """Rows of the index holding ``keys``; a key that is not indexed is an error."""
        keys = np.asarray(keys, dtype=np.int64)
        if self._contiguous:
            pos = keys - self.keys[0]
            missing = np.flatnonzero((pos < 0) | (pos >= len(self.keys)))
        else:
            if self._sorter is None:
                self._sorter = np.argsort(self.keys, kind="stable")
            sorted_keys = self.keys[self._sorter]
            at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
            missing = np.flatnonzero(sorted_keys[at] != keys)
            pos = self._sorter[at]
        if len(missing):
            raise FormatError(f"{self.idx_path}: record key {keys[missing[0]]} is not in the index")
        return pos

    def describe(self, row: int) -> str:
        return f"{self.rec_path}: record key {self.keys[row]} at offset {self.offsets[row]}"

    def read(self, row: int) -> bytes:
        """The payload of the record in index row ``row`` (split parts rejoined)."""
        fd = self._descriptor()
        start, end = int(self.offsets[row]), int(self.ends[row])
        buf = os.pread(fd, max(0, min(end - start, _READ_AHEAD)), start)

        def get(pos: int, n: int) -> bytes:
            rel = pos - start
            if rel + n <= len(buf):
                return buf[rel : rel + n]
            return os.pread(fd, n, pos)

        parts: list[bytes] = []
        pos = start
        while True:
            head = get(pos, 8)
            if len(head) < 8:
                raise FormatError(f"{self.describe(row)}: the file ends inside a record header (truncated .rec?)")
            magic, lrec = _LREC.unpack(head)
            if magic != MAGIC:
                raise FormatError(
                    f"{self.describe(row)}: bad magic 0x{magic:08x} at byte {pos} (expected 0x{MAGIC:08x}); "
                    "corrupt file, or an .idx that belongs to another .rec?"
                )
            cflag, length = lrec >> _LENGTH_BITS, lrec & _LENGTH_MASK
            if cflag not in ((0, 1) if not parts else (2, 3)):
                expected = "0 or 1 (a record's start)" if not parts else "2 or 3 (a continuation)"
                raise FormatError(f"{self.describe(row)}: part at byte {pos} has cflag {cflag}, expected {expected}")
            data = get(pos + 8, length)
            if len(data) < length:
                raise FormatError(
                    f"{self.describe(row)}: the file ends inside the record ({len(data)} of {length} bytes "
                    "present; truncated .rec?)"
                )
            parts.append(data)
            pos += 8 + length + (-length % 4)
            if cflag in (0, 3):
                break
        return parts[0] if len(parts) == 1 else MAGIC_BYTES.join(parts)

    def read_header(self, row: int) -> tuple[IRHeader, bytes]:
        """The :class:`IRHeader` and image bytes of the record in index row ``row``."""
        return unpack_payload(self.read(row), self.describe(row))

    def scan_headers(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(flag, label, extra)`` for the records in ``rows``, reading their first 40 bytes only.

        ``extra`` (n x 2, float32) holds the first two labels after the header where
        ``flag >= 1`` / ``2`` (NaN otherwise). The headers are gathered from a memory map in
        vectorised chunks; records that are split at the start, near the end of the file or
        not 4-byte aligned fall back to :meth:`read_header`.
        """
        rows = np.asarray(rows, dtype=np.int64)
        n = len(rows)
        flag = np.zeros(n, dtype=np.int64)
        label = np.zeros(n, dtype=np.float64)
        extra = np.full((n, 2), np.nan, dtype=np.float64)
        if n == 0:
            return flag, label, extra
        slow: list[np.ndarray] = []
        n_words = self.file_size // 4
        with open(self.rec_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            words = np.frombuffer(mm, dtype="<u4", count=n_words)
            try:
                for lo in range(0, n, _SCAN_CHUNK):
                    chunk = np.arange(lo, min(lo + _SCAN_CHUNK, n))
                    off = self.offsets[rows[chunk]]
                    fast = (off % 4 == 0) & (off // 4 + 10 <= n_words)
                    w = words[(off[fast] // 4)[:, None] + np.arange(10)]
                    length = w[:, 1] & _LENGTH_MASK
                    f_flag = w[:, 2].astype(np.int64)
                    ok = (w[:, 0] == MAGIC) & (w[:, 1] >> _LENGTH_BITS == 0)
                    ok &= length >= IR_HEADER.size + 4 * np.minimum(f_flag, 2)
                    idx = chunk[fast][ok]
                    w = w[ok]
                    flag[idx] = f_flag[ok]
                    label[idx] = w[:, 3].view("<f4")
                    floats = w[:, 8:10].view("<f4").astype(np.float64)
                    has = np.stack([w[:, 2] >= 1, w[:, 2] >= 2], axis=1)
                    extra[idx] = np.where(has, floats, np.nan)
                    slow.append(np.concatenate([chunk[~fast], chunk[fast][~ok]]))
            finally:
                del words
        for i in np.concatenate(slow).tolist():
            header, _ = self.read_header(int(rows[i]))
            flag[i], label[i] = header.flag, header.label
            extra[i, : min(2, header.flag)] = header.labels[:2]
        return flag, label, extra

    def check_last_record(self) -> None:
        """Read the record that ends the file: a truncated ``.rec`` fails here, at open."""
        self.read(int(np.argmax(self.offsets)))


# ---------------------------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------------------------


def recordio_paths(root: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``(.rec, .idx, property)`` of a RecordIO folder (``train.*``) or of a ``.rec`` path (``.idx`` beside it)."""
    root = Path(root)
    if root.suffix == ".rec":
        return root, root.with_suffix(".idx"), root.parent / "property"
    return root / "train.rec", root / "train.idx", root / "property"


def _integral_labels(values: np.ndarray, keys: np.ndarray, what: str) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0) | (values != np.round(values)))
    if len(bad):
        i = int(bad[0])
        raise FormatError(f"{what}: record key {keys[i]} has label {float(values[i])}; expected an integer >= 0")
    return values.astype(np.int64)


class RecordIODataset:
    """A :class:`~dbrepro.data.base.FaceDataset` over InsightFace/MXNet RecordIO files.

    Parameters
    ----------
    root
        A folder with ``train.rec``, ``train.idx`` and (optionally) ``property``, or the path
        of a ``.rec`` file (its ``.idx`` beside it).
    image_size
        Output size (int or (height, width)); ``None`` keeps the stored size. A different
        aspect ratio is centre-cropped to before resizing.
    transform
        Applied to the uint8 ``3 x H x W`` tensor by ``__getitem__``.
    header
        ``None`` detects the layout: InsightFace when key 0 is a record with labels and no
        image, im2rec otherwise. ``True``/``False`` force it.

    Attributes
    ----------
    labels : int64 array, one per image, read once at open
    num_classes : from ``property`` when present, else the identity records / ``max + 1``
    meta : DataFrame with ``identity`` (the label) and ``key`` (the record key)
    keys : the image record keys, in dataset order
    layout : ``"insightface"`` or ``"im2rec"``
    stored_size : ``(height, width)`` from ``property``, or ``None``
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: ImageSize | None = None,
        transform: Callable[[torch.Tensor], object] | None = None,
        *,
        header: bool | None = None,
    ) -> None:
        rec_path, idx_path, property_path = recordio_paths(root)
        self.root = Path(root)
        self.image_size = as_size(image_size)
        self.transform = transform
        self.file = IndexedRecordFile(rec_path, idx_path)
        prop = read_property(property_path) if property_path.is_file() else None
        self.stored_size = prop[1:] if prop else None

        header_record = self._header_record() if header is not False else None
        if header and header_record is None:
            raise FormatError(f"{rec_path}: header=True, but key 0 is not an InsightFace header record")
        if header_record is not None:
            self.layout = "insightface"
            self.keys, self.labels, num_classes = self._insightface_labels(header_record)
        else:
            self.layout = "im2rec"
            self.keys = self.file.keys.copy()
            self.labels = self._scan_labels(self.keys)
            num_classes = int(self.labels.max()) + 1
        if len(self.keys) == 0:
            raise FormatError(f"{rec_path}: the header record lists no image records")
        self.file.check_last_record()
        self._rows = self.file.positions(self.keys)

        if prop is not None:
            if self.layout == "insightface" and prop[0] != num_classes:
                raise FormatError(
                    f"{property_path}: says {prop[0]} classes, but {rec_path} has {num_classes} identity records"
                )
            if prop[0] <= int(self.labels.max()):
                raise FormatError(f"{property_path}: says {prop[0]} classes, but a label is {self.labels.max()}")
            num_classes = prop[0]
        self.num_classes = num_classes
        self.meta = pd.DataFrame({"identity": self.labels, "key": self.keys})

    # -- layout -------------------------------------------------------------------------------

    def _header_record(self) -> tuple[int, int] | None:
        """``(first, end)`` from an InsightFace header record at key 0, or ``None``."""
        if not np.any(self.file.keys == 0):
            return None
        row = int(self.file.positions([0])[0])
        head, image = self.file.read_header(row)
        if head.flag < 2 or len(image) > 0:
            return None
        first, end = head.labels[0], head.labels[1]
        if not (np.isfinite([first, end]).all() and first == int(first) and end == int(end) and 1 <= first <= end):
            raise FormatError(f"{self.file.describe(row)}: header record labels {head.labels[:2]} are not a key range")
        return int(first), int(end)

    def _insightface_labels(self, header: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
        first, end = header
        image_keys = np.arange(1, first, dtype=np.int64)
        id_keys = np.arange(first, end, dtype=np.int64)
        self.file.positions(image_keys)  # every image key must be indexed
        flag, _, extra = self.file.scan_headers(self.file.positions(id_keys))
        bad = np.flatnonzero(flag < 2)
        if len(bad):
            raise FormatError(
                f"{self.file.describe(int(self.file.positions(id_keys[bad[:1]])[0]))}: identity record "
                "without a [start, end) label pair"
            )
        starts, stops = extra[:, 0], extra[:, 1]
        tiles = (
            len(id_keys) > 0
            and starts[0] == 1
            and stops[-1] == first
            and np.array_equal(stops[:-1], starts[1:])
            and bool(np.all(stops >= starts))
        )
        if tiles:
            sizes = (stops - starts).astype(np.int64)
            labels = np.repeat(np.arange(len(id_keys), dtype=np.int64), sizes)
        else:
            warnings.warn(
                f"{self.file.rec_path}: identity records do not tile keys [1, {first}); "
                "reading every image header for its label instead",
                stacklevel=3,
            )
            labels = self._scan_labels(image_keys)
        return image_keys, labels, len(id_keys)

    def _scan_labels(self, keys: np.ndarray) -> np.ndarray:
        flag, label, extra = self.file.scan_headers(self.file.positions(keys))
        values = np.where(flag > 0, extra[:, 0], label)
        return _integral_labels(values, keys, str(self.file.rec_path))

    def scan_labels(self) -> np.ndarray:
        """The labels stored in each image record's own header (to cross-check :attr:`labels`)."""
        return self._scan_labels(self.keys)

    # -- access -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.keys)

    def read_record(self, i: int) -> tuple[IRHeader, bytes]:
        """Image ``i``'s :class:`IRHeader` and encoded bytes, undecoded."""
        return self.file.read_header(int(self._rows[i]))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        n = len(self.keys)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        i %= n
        row = int(self._rows[i])
        _, data = self.file.read_header(row)
        image = decode_image(data, self.image_size, what=self.file.describe(row))
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])

    def __repr__(self) -> str:
        return (
            f"RecordIODataset({str(self.file.rec_path)!r}, {len(self)} images, {self.num_classes} classes, "
            f"layout={self.layout})"
        )


# ---------------------------------------------------------------------------------------------
# the writer
# ---------------------------------------------------------------------------------------------

_PASS_THROUGH = (".jpg", ".jpeg", ".png")


def _folder_items(root: Path) -> Iterator[tuple[Path, int]]:
    paths, labels, _ = list_image_folder(root)
    for path, label in zip(paths, labels.tolist()):
        yield Path(path), label


def _encoded(
    image: Any, what: str, image_size: tuple[int, int] | None, crop: Crop | None, encoding: str, quality: int
) -> tuple[bytes, tuple[int, int]]:
    """``(encoded bytes, (height, width))`` for one item, re-encoding only when needed.

    Encoded inputs stored byte for byte are decoded once here, by the decoder the reader uses, so
    that a truncated or corrupt image is refused now (naming ``what``) rather than at training time.
    """
    if isinstance(image, Path):
        data = image.read_bytes()
        if image_size is None and crop is None and image.suffix.lower() in _PASS_THROUGH:
            return data, _decoded_size(data, what)
        image = decode_image(data, image_size, crop, what=what)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        if image_size is None and crop is None:
            data = bytes(image)
            return data, _decoded_size(data, what)
        image = decode_image(bytes(image), image_size, crop, what=what)
    elif image_size is not None or crop is not None:
        image = decode_image(encode_image(image, "png"), image_size, crop, what=what)
    if isinstance(image, Image.Image):
        size = (image.size[1], image.size[0])
    elif isinstance(image, torch.Tensor):
        size = (int(image.shape[-2]), int(image.shape[-1]))
    else:
        size = (int(np.shape(image)[0]), int(np.shape(image)[1]))
    return encode_image(image, encoding, quality), size


def _decoded_size(data: bytes, what: str) -> tuple[int, int]:
    """``(height, width)`` of encoded bytes after decoding them whole (a header alone hides a truncation)."""
    pixels = decode_image(data, what=what)
    return int(pixels.shape[-2]), int(pixels.shape[-1])


def write_recordio(
    source: str | os.PathLike | Iterable[tuple[Any, int]],
    root: str | os.PathLike,
    *,
    header: bool = True,
    image_size: ImageSize | None = None,
    crop: Crop | None = None,
    quality: int = 95,
    encoding: str = "jpeg",
    num_classes: int | None = None,
    prefix: str = "train",
) -> Path:
    """Pack images into ``root/{prefix}.rec``, ``root/{prefix}.idx`` and ``root/property``.

    Parameters
    ----------
    source
        An identity-folder tree (``root/<identity>/<image>``, labels = sorted folder order)
        or an iterable of ``(image, label)``. Folder JPEGs/PNGs and encoded bytes are stored
        as they are (other files are re-encoded as ``encoding``); an image may also be a uint8 tensor ``3 x H x W``, an array ``H x W x 3`` / ``H x W`` or a
        PIL image (encoded as ``encoding``). With ``header=True`` all images of a label must
        come together (the InsightFace layout stores each identity as one key range).
    root
        Output folder (created).
    header
        ``True``: InsightFace layout (header record at key 0, images at keys 1..n, one
        identity record per class). ``False``: im2rec layout (images at keys 0..n-1).
    image_size, crop
        Resize (and crop) every image before encoding; without them encoded inputs are
        stored byte for byte.
    quality, encoding
        JPEG quality, and ``"jpeg"`` or ``"png"`` for images given as pixels.
    num_classes
        Written to ``property``; default ``max(label) + 1``.

    All images must end up one size (``property`` records one ``H,W``). Every image is decoded
    once while packing (stored bytes too), so a truncated or corrupt image fails here, with an
    :class:`~dbrepro.data.formats.ImageDecodeError` naming the item (or file) and its record key,
    not later at training time. Files are written to temporary names in ``root`` (mode per the
    umask) and renamed into place only when complete; a failure leaves nothing behind.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    size = as_size(image_size)
    items: Iterable[tuple[Any, int]] = _folder_items(Path(source)) if isinstance(source, (str, os.PathLike)) else source
    temps: list[str] = []

    def temp(name: str) -> tuple[int, str]:
        fd, path = temp_file_beside(root / name)  # mode follows the umask, unlike tempfile.mkstemp
        temps.append(path)
        return fd, path

    try:
        rec_fd, rec_tmp = temp(f"{prefix}.rec")
        index: list[tuple[int, int]] = []
        labels: list[int] = []
        stored_size: tuple[int, int] | None = None
        with os.fdopen(rec_fd, "wb") as rec:
            offset = 0

            def put(key: int, payload: bytes) -> None:
                nonlocal offset
                record = frame_record(payload)
                rec.write(record)
                index.append((key, offset))
                offset += len(record)

            key0 = 1 if header else 0
            for n, (image, label) in enumerate(items):
                what = str(image) if isinstance(image, Path) else f"item {n}"
                key = key0 + len(labels)
                try:
                    label = int(label)
                except (TypeError, ValueError):
                    raise ValueError(f"{what}: label must be an integer, got {label!r}") from None
                if label < 0:
                    raise ValueError(f"{what}: label must be >= 0, got {label}")
                if header and labels and label < labels[-1]:
                    raise ValueError(
                        f"{what}: label {label} comes after label {labels[-1]}; with header=True the items "
                        "must be sorted by label (InsightFace stores each identity as one key range)"
                    )
                data, hw = _encoded(image, f"{what} (record key {key})", size, crop, encoding, quality)
                if stored_size is None:
                    stored_size = hw
                elif hw != stored_size:
                    raise ValueError(
                        f"{what}: image is {hw[0]}x{hw[1]}, the first one {stored_size[0]}x{stored_size[1]}; "
                        "pass image_size to store one size"
                    )
                put(key, pack_payload(float(label), data, id=key))
                labels.append(label)
            if not labels:
                raise ValueError("write_recordio: no images to write")
            classes = max(labels) + 1 if num_classes is None else int(num_classes)
            if classes <= max(labels):
                raise ValueError(f"num_classes={classes} but a label is {max(labels)}")
            if header:
                # image keys 1..n sorted by label: class c holds keys [starts[c], stops[c])
                first = 1 + len(labels)
                starts = 1 + np.searchsorted(labels, np.arange(classes), side="left")
                stops = 1 + np.searchsorted(labels, np.arange(classes), side="right")
                for c in range(classes):
                    put(first + c, pack_payload([float(starts[c]), float(stops[c])], id=first + c))
                put(0, pack_payload([float(first), float(first + classes)]))
            rec.flush()
            os.fsync(rec.fileno())

        idx_fd, idx_tmp = temp(f"{prefix}.idx")
        with os.fdopen(idx_fd, "w") as f:
            f.write("".join(f"{k}\t{o}\n" for k, o in sorted(index)))
        prop_fd, prop_tmp = temp("property")
        with os.fdopen(prop_fd, "w") as f:
            assert stored_size is not None
            f.write(f"{classes},{stored_size[0]},{stored_size[1]}\n")
        os.replace(rec_tmp, root / f"{prefix}.rec")
        os.replace(idx_tmp, root / f"{prefix}.idx")
        os.replace(prop_tmp, root / "property")
        temps.clear()
    finally:
        for path in temps:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    return root

