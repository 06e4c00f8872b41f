"""The on-disk world cache: plain arrays and a JSON manifest, never a pickle.

A rendered world is stored as one file, ``cache_dir("worlds")/<world_key>.npz``: a zip of
``.npy`` arrays (images, labels, pairs, ids, and every table column: numbers as numbers, text as
fixed-width unicode) and a ``manifest`` array holding UTF-8 JSON (format, world version, config,
seed, the layout of the training set, tables and suites, and the world's
:func:`~dbrepro.data.synth.digest.world_digest`). It is read with
``numpy.load(allow_pickle=False)``, which refuses pickled objects outright, so no file in the
world cache can run code, whoever wrote it.

:func:`load_world` trusts nothing: the file must be a readable zip of plain arrays (zip CRCs
checked), its manifest this format and this world (version, config, seed), every array it lists
present with the dtype and shape it records, and the rebuilt content must hash to the recorded
digest. Anything else raises :class:`WorldCacheError` naming the file and what is wrong;
:func:`~dbrepro.data.synth.world.make_world` then renders the world again and replaces the file.
Files are written beside their final name and renamed into place (:func:`dbrepro.paths.atomic_write`),
so a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dbrepro.data.base import AllVsAllSuite, DistractorSource, IdentificationSuite, PairSuite, TensorFaces
from dbrepro.paths import atomic_write, cache_dir, config_hash

from .config import WORLD_VERSION, WorldConfig
from .digest import content_digest

#: what the manifest's "format" says; bump FORMAT_VERSION when the layout below changes
FORMAT = "dbrepro-synthetic-world"
FORMAT_VERSION = 1
_SUITE_TYPES = {cls.__name__: cls for cls in (PairSuite, AllVsAllSuite, IdentificationSuite)}
#: column dtypes a table may have (text is pandas' ``str``)
_COLUMN_DTYPES = ("int64", "float64", "bool", "str")


class WorldCacheError(ValueError):
    """A world cache file that cannot be used (unreadable, foreign, stale or damaged)."""


def world_key(cfg: WorldConfig, seed: int, version: str = WORLD_VERSION) -> str:
    """Cache key: a hash of the config, the seed and the generator's ``version``."""
    return config_hash({"config": cfg.to_dict(), "seed": int(seed)}, version=f"world-{version}")


def world_path(cfg: WorldConfig, seed: int) -> Path:
    """Where the world of ``(cfg, seed)`` is cached."""
    return cache_dir("worlds") / f"{world_key(cfg, seed)}.npz"


# ----------------------------------------------------------------------------------------------
# writing


def save_world(world: Any, path: str | Path) -> None:
    """Write ``world`` (a :class:`~dbrepro.data.synth.world.World`) to ``path`` atomically."""
    arrays: dict[str, np.ndarray] = {}
    layout = _Layout(arrays)
    train = world.train
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "world_version": WORLD_VERSION,
        "config": _jsonable_config(world.config), "seed": int(world.seed),
        "digest": content_digest(world.train, world.identities, world.suites, world.suite_images),
        "train": {"images": layout.array("train.images", train.images), "labels": layout.array("train.labels", train.labels),
                  "meta": layout.table("train.meta", train.meta), "num_classes": int(train.num_classes),
                  "name": train.name},
        "identities": layout.table("identities", world.identities),
        "suites": {name: {"kind": type(s).__name__, "fields": _suite_fields(layout, name, s)}
                   for name, s in world.suites.items()},
        "suite_images": {name: layout.table(f"suite_images.{name}", df) for name, df in world.suite_images.items()},
    }
    manifest["arrays"] = {key: [a.dtype.str, list(a.shape)] for key, a in arrays.items()}
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, allow_pickle=False, **arrays))


class _Layout:
    """Collects the arrays of a world and says, in the manifest, where each value went."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def array(self, key: str, value: np.ndarray | torch.Tensor) -> str:
        arr = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"world cache: {key} is an object array; only plain arrays are stored")
        self.arrays[key] = arr
        return key

    def table(self, key: str, df: pd.DataFrame) -> dict[str, Any]:
        if not df.index.equals(pd.RangeIndex(len(df))):
            raise ValueError(f"world cache: table {key} must have the index 0..{len(df) - 1}")
        columns = []
        for i, col in enumerate(df.columns):
            series = df[col]
            dtype = str(series.dtype)
            if dtype not in _COLUMN_DTYPES:
                raise TypeError(f"world cache: column {col!r} of {key} has dtype {dtype}; storable: {_COLUMN_DTYPES}")
            if dtype == "str":
                if series.isna().any():
                    raise ValueError(f"world cache: text column {col!r} of {key} has missing values")
                values = np.array(series.tolist(), dtype=str) if len(series) else np.zeros(0, dtype="<U1")
            else:
                values = series.to_numpy()
            columns.append([str(col), dtype, self.array(f"{key}.{i}", values)])
        return {"rows": len(df), "columns": columns}


def _suite_fields(layout: _Layout, name: str, suite: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(suite):
        value, key = getattr(suite, f.name), f"suites.{name}.{f.name}"
        if f.name == "distractors":
            continue  # rendered on demand; rebuilt from the config on load
        if isinstance(value, torch.Tensor):
            fields[f.name] = {"tensor": layout.array(key, value)}
        elif isinstance(value, np.ndarray):
            fields[f.name] = {"array": layout.array(key, value)}
        elif isinstance(value, pd.DataFrame):
            fields[f.name] = {"table": layout.table(key, value)}
        elif isinstance(value, str):
            fields[f.name] = {"text": value}
        else:
            raise TypeError(f"world cache: cannot store field {f.name!r} of suite {name!r} ({type(value).__name__})")
    return fields


def _jsonable_config(cfg: WorldConfig) -> dict[str, Any]:
    """The config as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(cfg.to_dict()))


# ----------------------------------------------------------------------------------------------
# reading


def load_world(path: str | Path, cfg: WorldConfig, seed: int, distractors: DistractorSource) -> dict[str, Any]:
    """The stored content of the world of ``(cfg, seed)`` at ``path``: the keyword arguments of
    :class:`~dbrepro.data.synth.world.World` besides ``config`` and ``seed``, the MegaFace-like
    suite given ``distractors``. Raises :class:`WorldCacheError` for any file that is not exactly
    that world."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            members = set(npz.files)
            if "manifest" not in members:
                raise WorldCacheError(f"world cache {path}: no manifest, not a world cache file")
            manifest = _manifest(npz["manifest"], path)
            _check_identity(manifest, cfg, seed, path)
            arrays = _read_arrays(npz, members, manifest, path)
    except WorldCacheError:
        raise
    except Exception as err:  # zip, npy or JSON damage of any kind
        raise WorldCacheError(f"world cache {path} is unreadable ({type(err).__name__}: {err})") from err
    try:
        parts = _rebuild(manifest, arrays, distractors)
    except Exception as err:  # a manifest that names arrays in the wrong places
        raise WorldCacheError(f"world cache {path} does not describe a world ({type(err).__name__}: {err})") from err
    digest = content_digest(parts["train"], parts["identities"], parts["suites"], parts["suite_images"])
    if digest != manifest.get("digest"):
        raise WorldCacheError(f"world cache {path}: content does not match its recorded digest (damaged or edited)")
    return parts


def _manifest(raw: np.ndarray, path: Path) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise WorldCacheError(f"world cache {path}: the manifest is not UTF-8 bytes")
    manifest = json.loads(raw.tobytes().decode("utf-8"))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WorldCacheError(f"world cache {path}: not a {FORMAT} file")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise WorldCacheError(f"world cache {path}: format version {manifest.get('format_version')!r}, "
                              f"this code reads {FORMAT_VERSION}")
    return manifest


def _check_identity(manifest: dict[str, Any], cfg: WorldConfig, seed: int, path: Path) -> None:
    """The file must hold the world asked for, not another one stored under its name."""
    for field, want in (("world_version", WORLD_VERSION), ("config", _jsonable_config(cfg)), ("seed", int(seed))):
        if manifest.get(field) != want:
            raise WorldCacheError(f"world cache {path} was written for another {field.replace('_', ' ')} "
                                  f"({manifest.get(field)!r}, expected {want!r})")


def _read_arrays(npz, members: set[str], manifest: dict[str, Any], path: Path) -> dict[str, np.ndarray]:
    listed = manifest.get("arrays")
    if not isinstance(listed, dict):
        raise WorldCacheError(f"world cache {path}: the manifest lists no arrays")
    if set(listed) != members - {"manifest"}:
        extra, lost = sorted(members - {"manifest"} - set(listed)), sorted(set(listed) - members)
        raise WorldCacheError(f"world cache {path}: arrays missing {lost[:5]} or unexpected {extra[:5]}")
    arrays = {}
    for key, (dtype, shape) in listed.items():
        arr = npz[key]
        if arr.dtype.str != dtype or list(arr.shape) != list(shape):
            raise WorldCacheError(f"world cache {path}: array {key} is {arr.dtype.str} {list(arr.shape)}, "
                                  f"the manifest says {dtype} {shape}")
        arrays[key] = arr
    return arrays


def _rebuild(manifest: dict[str, Any], arrays: dict[str, np.ndarray], distractors: DistractorSource) -> dict[str, Any]:
    t = manifest["train"]
    train = TensorFaces(images=torch.from_numpy(arrays[t["images"]]), labels=arrays[t["labels"]],
                        num_classes=int(t["num_classes"]), meta=_table(t["meta"], arrays), name=t["name"])
    suites = {}
    for name, entry in manifest["suites"].items():
        kind = entry["kind"]
        if kind not in _SUITE_TYPES:
            raise ValueError(f"suite {name!r} of unknown kind {kind!r}")
        fields = {field: _field(spec, arrays) for field, spec in entry["fields"].items()}
        if kind == "IdentificationSuite":
            fields["distractors"] = distractors
        suites[name] = _SUITE_TYPES[kind](**fields)
    return {"train": train, "suites": suites, "identities": _table(manifest["identities"], arrays),
            "suite_images": {name: _table(spec, arrays) for name, spec in manifest["suite_images"].items()}}


def _field(spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    (how, value), = spec.items()
    if how == "tensor":
        return torch.from_numpy(arrays[value])
    if how == "array":
        return arrays[value]
    if how == "table":
        return _table(value, arrays)
    if how == "text":
        return str(value)
    raise ValueError(f"unknown field encoding {how!r}")


def _table(spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    columns = {}
    for name, dtype, key in spec["columns"]:
        if dtype not in _COLUMN_DTYPES:
            raise ValueError(f"column {name!r} of unknown dtype {dtype!r}")
        values = arrays[key]
        if values.shape != (spec["rows"],):
            raise ValueError(f"column {name!r} has {values.shape} values for {spec['rows']} rows")
        columns[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(columns, index=pd.RangeIndex(spec["rows"]))
