"""A fingerprint of a rendered world: one sha256 over everything it stores.

:func:`world_digest` hashes, in a fixed order, the training set (images, labels, meta, name and
class count), the identity table, every suite (its kind and every field: images, pairs, labels,
folds, ids, tables, texts) and every suite's image table. Two worlds with the same digest hold
the same bytes; the on-disk cache records the digest and checks it on load, and the tests pin it
per :data:`~dbrepro.data.synth.config.WORLD_VERSION`.

The hash is defined on values, not on a file format: numeric arrays by dtype, shape and bytes,
tables by column names, dtypes and values (strings as UTF-8), so it does not depend on how the
world was stored or on the pandas version's own hashing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch


def world_digest(world: Any) -> str:
    """The sha256 (hex) of a world's stored content; the distractor source (rendered on demand) is not part of it."""
    return content_digest(world.train, world.identities, world.suites, world.suite_images)


def content_digest(train: Any, identities: pd.DataFrame, suites: Mapping[str, Any],
                   suite_images: Mapping[str, pd.DataFrame]) -> str:
    """:func:`world_digest` of the parts of a world (as the cache rebuilds them before they make a World)."""
    h = hashlib.sha256()
    _put_value(h, "train.images", train.images)
    _put_value(h, "train.labels", train.labels)
    _put_value(h, "train.meta", train.meta)
    _put_value(h, "train.name", train.name)
    _put(h, "train.num_classes", str(int(train.num_classes)).encode())
    _put_value(h, "identities", identities)
    for name in sorted(suites):
        suite = suites[name]
        _put_value(h, f"suites.{name}", type(suite).__name__)
        for f in dataclasses.fields(suite):
            if f.name != "distractors":
                _put_value(h, f"suites.{name}.{f.name}", getattr(suite, f.name))
    for name in sorted(suite_images):
        _put_value(h, f"suite_images.{name}", suite_images[name])
    return h.hexdigest()


def _put(h, tag: str, data: bytes) -> None:
    """A tagged, length-prefixed record, so that no two different sequences of records hash alike."""
    head = tag.encode("utf-8")
    h.update(len(head).to_bytes(8, "little") + head + len(data).to_bytes(8, "little"))
    h.update(data)


def _put_value(h, tag: str, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, str):
        _put(h, f"{tag}:str", value.encode("utf-8"))
    elif isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{tag}: object arrays have no defined digest")
        arr = np.ascontiguousarray(value)
        _put(h, f"{tag}:{arr.dtype.str}:{arr.shape}", arr.tobytes())
    elif isinstance(value, pd.DataFrame):
        _put_frame(h, tag, value)
    else:
        raise TypeError(f"{tag}: no digest for a {type(value).__name__}")


def _put_frame(h, tag: str, df: pd.DataFrame) -> None:
    _put(h, f"{tag}:frame", f"{len(df)} rows".encode())
    if not df.index.equals(pd.RangeIndex(len(df))):
        _put_value(h, f"{tag}.index", df.index.to_numpy())
    for col in df.columns:
        series = df[col]
        ctag = f"{tag}[{col}]:{series.dtype}"
        if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            _put_value(h, ctag, series.to_numpy())
        else:
            _put(h, ctag, _strings(series, ctag))


def _strings(series: pd.Series, tag: str) -> bytes:
    """A string column: each value length-prefixed UTF-8, missing values as a length of 2**64 - 1."""
    out = bytearray()
    for v in series.tolist():
        if isinstance(v, str):
            b = v.encode("utf-8")
            out += len(b).to_bytes(8, "little") + b
        elif v is None or (isinstance(v, float) and v != v):
            out += b"\xff" * 8
        else:
            raise TypeError(f"{tag}: a {type(v).__name__} in a text column has no defined digest")
    return bytes(out)
