"""Data specs: a small JSON-able dict that names a training set, and the function that loads it.

A training config carries its data as a spec, so the run cache key covers the data too::

    {"kind": "synth", "preset": "cpu", "seed": 0}                          # the default world
    {"kind": "synth", "preset": "cpu", "seed": 0, "split": "A-2"}          # a Range Loss split of it
    {"kind": "synth", "preset": "cpu", "seed": 0, "split": "B-1", "split_seed": 0}
    {"kind": "recordio", "root": "/data/faces_webface_112x112", "image_size": 112}
    {"kind": "folder", "root": "/data/casia", "image_size": 112}
    {"kind": "lfw", "root": "/data/lfw", "exclude_pairs": "/data/pairsDevTest.txt", "image_size": 32, "crop": 120}

``split`` (A-0..A-4, B-0..B-3, Range Loss §3.1) applies to any kind: the splits are built by
:mod:`dbrepro.data.splits` from the labels alone. Loaded sets are memoised per process, so the
many runs of a notebook share one copy in memory.

Content, not just a path
------------------------
An on-disk spec names a path, and what lies at a path can change. :func:`with_fingerprint` adds a
cheap fingerprint of the data to the spec (``{"files"/"records", "bytes", "sha256"}``), and the run
key is computed from that (:func:`dbrepro.runs.get_run`), so replacing the data at a path means a new
run, never a stale one. The memo of loaded sets is keyed by the fingerprint too. What it covers:

``recordio``
    The whole ``.idx`` (every record's key and offset, hence every record's size) and ``property``
    files, and the ``.rec`` file's size and mtime. The ``.rec`` itself is not read: MS1MV2's 5.8 M
    images cost one stat. The ``.idx`` (about 18 bytes a record, so some 100 MB for MS1MV2, which
    :class:`~dbrepro.data.formats.RecordIODataset` reads whole at open anyway) is hashed once per
    process and again only when its stat changes. The mtime is there because a relabelled or re-encoded set can
    keep every record's size; the price is that a copy of the data that does not keep mtimes
    (``cp`` without ``-p``) trains its runs again.
``folder``
    The sorted list of ``identity/image`` names with each image's size and mtime (the files the
    reader reads: :data:`~dbrepro.data.formats.IMAGE_EXTENSIONS`, no hidden ones). That is one
    ``stat`` per image, every time a key is computed: instant for LFW's 13 K images, but for a
    CASIA/MS1MV2-sized folder (0.5-5.8 M images) tens of seconds on a local disk and minutes on
    network storage, each time. Pack a set of that size as RecordIO
    (:func:`~dbrepro.data.formats.write_recordio`), whose fingerprint reads its index only.
``lfw``
    The folder fingerprint of the LFW root and the sha256 of the ``exclude_pairs`` file.

Synthetic specs are rendered from their config and carry the world version: they get no fingerprint,
so their keys never change. A spec passed to :func:`training_set` with a fingerprint (a run's stored
config) must still match its data: loading data that changed since the key was computed is an error.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..paths import file_sha256
from .base import FaceDataset, IndexSubset, TensorFaces

KINDS = ("synth", "recordio", "folder", "lfw")


def _key(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True)


def world_key(spec: dict[str, Any]) -> str:
    """What names the world of a ``synth`` spec (its preset, seed and overrides; not a split of it)."""
    return _key({k: spec[k] for k in ("preset", "seed", "overrides") if k in spec})


def world_for(spec: dict[str, Any]):
    """The synthetic world a ``synth`` spec names (memoised)."""
    return _world(world_key(spec))


@functools.lru_cache(maxsize=4)
def _world(key: str):
    from . import synth

    spec = json.loads(key)
    config = synth.preset_config(spec.get("preset", "cpu"), spec.get("overrides"))
    return synth.make_world(config=config, seed=int(spec.get("seed", 0)))


def training_set(spec: dict[str, Any]) -> FaceDataset:
    """Load the training set a spec names (see the module docstring).

    Raises ``ValueError`` when ``spec`` carries a fingerprint that its data no longer has.
    """
    current = with_fingerprint(spec)
    if "fingerprint" in spec and current.get("fingerprint") != spec["fingerprint"]:
        raise ValueError(
            f"the data at {spec.get('root')} changed since this run's key was computed (fingerprint "
            f"{spec['fingerprint']} is now {current.get('fingerprint')}); train the config again to get "
            "the run for the current data")
    return _training_set(_key(current))


# -- fingerprints ------------------------------------------------------------------------------------

def with_fingerprint(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with ``"fingerprint"`` set to its data's current fingerprint; a synthetic spec itself, unchanged."""
    fp = fingerprint(spec)
    if fp is None:
        return spec
    return {**{k: v for k, v in spec.items() if k != "fingerprint"}, "fingerprint": fp}


def fingerprint(spec: dict[str, Any]) -> dict[str, Any] | None:
    """A cheap fingerprint of the data an on-disk spec names (``None`` for other kinds); see the module docstring."""
    kind = spec.get("kind")
    if kind == "recordio":
        return recordio_fingerprint(_path(spec, "root"))
    if kind == "folder":
        return folder_fingerprint(_path(spec, "root"))
    if kind == "lfw":
        fp = folder_fingerprint(_path(spec, "root"))
        if spec.get("exclude_pairs"):
            pairs = Path(spec["exclude_pairs"])
            if not pairs.is_file():
                raise FileNotFoundError(f"{pairs}: pairs file not found (exclude_pairs of the data spec)")
            fp["sha256"] = _digest(fp["sha256"], "exclude_pairs", file_sha256(pairs))
        return fp
    return None


def recordio_fingerprint(root: str | os.PathLike) -> dict[str, Any]:
    """``{"records", "bytes", "sha256"}`` of a RecordIO set: its ``.idx`` and ``property`` hashed, the ``.rec`` stat-ed."""
    from .formats.recordio import recordio_paths

    rec, idx, prop = recordio_paths(root)
    for path, what in ((rec, "RecordIO file"), (idx, "RecordIO index")):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {what} not found (data spec root {root})")
    rec_st = rec.stat()
    stats = (str(idx), _stat_key(idx), str(prop), _stat_key(prop) if prop.is_file() else None)
    cached = _INDEX_DIGESTS.get(stats)
    if cached is None:
        index = idx.read_bytes()
        prop_bytes = prop.read_bytes() if prop.is_file() else b""
        cached = (index.count(b"\n"), _digest(hashlib.sha256(index).hexdigest(), hashlib.sha256(prop_bytes).hexdigest()))
        _INDEX_DIGESTS[stats] = cached
    records, index_digest = cached
    return {"records": records, "bytes": rec_st.st_size,
            "sha256": _digest(index_digest, "rec", rec_st.st_size, rec_st.st_mtime_ns)}


def folder_fingerprint(root: str | os.PathLike) -> dict[str, Any]:
    """``{"files", "bytes", "sha256"}`` of an identity-folder tree: every image's name, size and mtime (one stat each)."""
    from .formats.folders import IMAGE_EXTENSIONS

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found (expected root/<identity>/<image>)")
    h = hashlib.sha256()
    files = total = 0
    with os.scandir(root) as entries:
        folders = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    for name in folders:
        with os.scandir(root / name) as entries:
            images = sorted((e.name, e.stat()) for e in entries
                            if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file())
        h.update(f"{name}/\n".encode())
        for image, st in images:
            h.update(f"{image}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
            total += st.st_size
        files += len(images)
    return {"files": files, "bytes": total, "sha256": h.hexdigest()[:16]}


#: ``.idx`` + ``property`` digests by their paths and stats: rehashed only when a stat changes.
_INDEX_DIGESTS: dict[tuple, tuple[int, str]] = {}


def _stat_key(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _digest(*parts: Any) -> str:
    return hashlib.sha256("\n".join(str(p) for p in parts).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=16)
def _training_set(key: str) -> FaceDataset:
    spec = json.loads(key)
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"data spec kind {kind!r} is unknown: choose one of {', '.join(KINDS)} (spec: {spec})")
    if kind == "synth":
        data: FaceDataset = world_for(spec).train
    elif kind == "recordio":
        from .formats import RecordIODataset

        data = RecordIODataset(_path(spec, "root"), image_size=spec.get("image_size"))
    elif kind == "folder":
        from .formats import ImageFolderFaces

        data = ImageFolderFaces(_path(spec, "root"), image_size=spec.get("image_size", 112), crop=spec.get("crop"))
    else:  # lfw: the people of an LFW folder who are not in a pairs file, decoded into memory
        from .formats import LFW_CROP, lfw_people, people_in_pairs

        exclude = people_in_pairs(spec["exclude_pairs"]) if spec.get("exclude_pairs") else ()
        data = lfw_people(_path(spec, "root"), exclude_names=exclude, image_size=spec.get("image_size", 32),
                          crop=spec.get("crop", LFW_CROP), min_images=spec.get("min_images", 1))
    split = spec.get("split")
    if split is None:
        return data
    return apply_split(data, split, seed=int(spec.get("split_seed", 0)), b_subset=spec.get("b_subset"),
                       allow_head=bool(spec.get("b_allow_head", False)))


def apply_split(data: FaceDataset, split: str, seed: int = 0, b_subset: float | int | None = None,
                allow_head: bool = False) -> FaceDataset:
    """The Range Loss split ``split`` (A-0..A-4 or B-0..B-3) of ``data``, labels renumbered.

    ``b_subset`` and ``allow_head`` are those of :func:`dbrepro.data.splits.range_loss_b_splits`."""
    from . import splits

    if split.startswith("A-"):
        table = splits.range_loss_a_splits(data.labels, seed=seed)
    elif split.startswith("B-"):
        kwargs: dict = {"allow_head": allow_head}
        if b_subset is not None:
            kwargs["subset_identities"] = b_subset
        table = splits.range_loss_b_splits(data.labels, seed=seed, **kwargs)
    else:
        raise ValueError(f"split {split!r} is unknown: use A-0..A-4 or B-0..B-3 (Range Loss §3.1)")
    if split not in table:
        raise ValueError(f"split {split!r} is unknown: choose one of {', '.join(table)}")
    name = f"{getattr(data, 'name', 'faces')} {split}"
    if isinstance(data, TensorFaces):
        return data.subset(table[split], name=name)
    return IndexSubset(data, table[split], name=name)  # on disk: an index, nothing decoded


def _path(spec: dict[str, Any], field: str) -> str:
    value = spec.get(field)
    if not value:
        raise ValueError(f"data spec of kind {spec.get('kind')!r} needs a {field!r} path (spec: {spec})")
    return str(value)
