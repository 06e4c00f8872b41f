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
"""

from __future__ import annotations

import functools
import json
from typing import Any

from .base import FaceDataset, TensorFaces

KINDS = ("synth", "recordio", "folder", "lfw")


def _key(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True)


def world_for(spec: dict[str, Any]):
    """The synthetic world a ``synth`` spec names (memoised)."""
    return _world(_key({k: spec[k] for k in ("preset", "seed", "overrides") if k in spec}))


@functools.lru_cache(maxsize=4)
def _world(key: str):
    from . import synth

    spec = json.loads(key)
    config = synth.preset_config(spec.get("preset", "cpu"), spec.get("overrides"))
    return synth.make_world(config=config, seed=int(spec.get("seed", 0)))


def training_set(spec: dict[str, Any]) -> FaceDataset:
    """Load the training set a spec names (see the module docstring)."""
    return _training_set(_key(spec))


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
    return apply_split(data, split, seed=int(spec.get("split_seed", 0)), b_subset=spec.get("b_subset"))


def apply_split(data: FaceDataset, split: str, seed: int = 0, b_subset: float | int | None = None) -> FaceDataset:
    """The Range Loss split ``split`` (A-0..A-4 or B-0..B-3) of ``data``, labels renumbered."""
    from . import splits

    if split.startswith("A-"):
        table = splits.range_loss_a_splits(data.labels, seed=seed)
    elif split.startswith("B-"):
        kwargs = {} if b_subset is None else {"subset_identities": b_subset}
        table = splits.range_loss_b_splits(data.labels, seed=seed, **kwargs)
    else:
        raise ValueError(f"split {split!r} is unknown: use A-0..A-4 or B-0..B-3 (Range Loss §3.1)")
    if split not in table:
        raise ValueError(f"split {split!r} is unknown: choose one of {', '.join(table)}")
    if not isinstance(data, TensorFaces):
        raise ValueError("splits of on-disk datasets are not supported yet: decode to a TensorFaces first")
    return data.subset(table[split], name=f"{getattr(data, 'name', 'faces')} {split}")


def _path(spec: dict[str, Any], field: str) -> str:
    value = spec.get(field)
    if not value:
        raise ValueError(f"data spec of kind {spec.get('kind')!r} needs a {field!r} path (spec: {spec})")
    return str(value)
