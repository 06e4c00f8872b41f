"""Readers (and writers) for the face data formats users already have.

- :mod:`.recordio` - InsightFace / MXNet ``train.rec`` + ``train.idx`` + ``property``
  (:class:`RecordIODataset`, :func:`write_recordio`), pure Python + numpy, no MXNet.
- :mod:`.binpack` - InsightFace ``.bin`` verification packs (:func:`read_bin_pairs`,
  :func:`bin_suite`, :func:`write_bin_pairs`).
- :mod:`.folders` - ``root/<identity>/<image>`` trees (:class:`ImageFolderFaces`).
- :mod:`.lfw` - LFW pair lists (View 1 and 2) and people (:func:`read_lfw_pairs`,
  :func:`lfw_pair_suite`, :func:`lfw_people`).
- :mod:`.images` - the one decoder they share (Pillow, RGB, crop then resize).

Every reader returns uint8 RGB ``3 x H x W`` tensors and raises :class:`FormatError` /
:class:`ImageDecodeError` (both ``ValueError``) naming the file and the record, pair or line.
"""

from .binpack import bin_suite, contiguous_folds, read_bin_pairs, write_bin_pairs
from .errors import FormatError, ImageDecodeError
from .folders import IMAGE_EXTENSIONS, ImageFolderFaces, list_image_folder
from .images import crop_box, decode_image, encode_image
from .lfw import LFW_CROP, lfw_image_path, lfw_pair_suite, lfw_people, people_in_pairs, read_lfw_pairs
from .recordio import (
    MAGIC,
    IndexedRecordFile,
    IRHeader,
    RecordIODataset,
    frame_record,
    pack_payload,
    read_index,
    read_property,
    unpack_payload,
    write_recordio,
)

__all__ = [
    "FormatError",
    "IMAGE_EXTENSIONS",
    "ImageDecodeError",
    "ImageFolderFaces",
    "IndexedRecordFile",
    "IRHeader",
    "LFW_CROP",
    "MAGIC",
    "RecordIODataset",
    "bin_suite",
    "contiguous_folds",
    "crop_box",
    "decode_image",
    "encode_image",
    "frame_record",
    "lfw_image_path",
    "lfw_pair_suite",
    "lfw_people",
    "list_image_folder",
    "pack_payload",
    "people_in_pairs",
    "read_bin_pairs",
    "read_index",
    "read_lfw_pairs",
    "read_property",
    "unpack_payload",
    "write_bin_pairs",
    "write_recordio",
]
