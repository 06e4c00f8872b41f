"""The world cache: plain arrays that load to exactly the rendered world; anything else is refused and re-rendered."""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
import struct
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from dbrepro.data import synth
from dbrepro.data.base import PairSuite
from test_synth import TINY

SEED = 3


class _Marker:
    """A pickle that, if ever unpickled, creates ``path``: proof that loading ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """An empty cache root for the test, and the path of the TINY world's cache file in it."""
    monkeypatch.setenv("DBREPRO_CACHE", str(tmp_path / "cache"))
    return synth.world_path(synth.world_config("smoke", TINY), SEED)


@pytest.fixture(scope="module")
def rendered() -> synth.World:
    return synth.make_world("smoke", SEED, config=TINY, cache=False)


def _assert_same_world(a: synth.World, b: synth.World) -> None:
    assert synth.world_digest(a) == synth.world_digest(b)
    assert a.config == b.config and a.seed == b.seed
    assert torch.equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.train.labels, b.train.labels)
    assert a.train.num_classes == b.train.num_classes and a.train.name == b.train.name
    pd.testing.assert_frame_equal(a.train.meta, b.train.meta)
    pd.testing.assert_frame_equal(a.identities, b.identities)
    assert list(a.suites) == list(b.suites) and list(a.suite_images) == list(b.suite_images)
    for name in a.suites:
        pd.testing.assert_frame_equal(a.suite_images[name], b.suite_images[name])
        sa, sb = a.suites[name], b.suites[name]
        assert type(sa) is type(sb)
        for field in ("images", "probes", "gallery"):
            if hasattr(sa, field):
                assert torch.equal(getattr(sa, field), getattr(sb, field)), (name, field)
        for field in ("pairs", "issame", "folds", "identities", "probe_ids", "gallery_ids"):
            if hasattr(sa, field):
                np.testing.assert_array_equal(getattr(sa, field), getattr(sb, field), err_msg=f"{name}.{field}")
        for field in ("meta", "probe_meta"):
            if hasattr(sa, field):
                pd.testing.assert_frame_equal(getattr(sa, field), getattr(sb, field))
        assert (sa.stands_for, sa.description) == (sb.stands_for, sb.description)
    mf_a, mf_b = a.suites["megaface"].distractors, b.suites["megaface"].distractors
    assert len(mf_a) == len(mf_b) and torch.equal(mf_a.render(0, 4), mf_b.render(0, 4))


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _write(path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # numpy's defaults: it pickles object arrays


def _never_render(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the world was rendered although a good cache file was there")

    monkeypatch.setattr(synth.world, "build_world", fail)


# ----------------------------------------------------------------------------------------------
# a good cache file


def test_cached_world_loads_to_exactly_the_rendered_one(cache, rendered, monkeypatch):
    first = synth.make_world("smoke", SEED, config=TINY)
    _assert_same_world(first, rendered)
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name]  # written atomically, nothing beside it
    assert cache.stem == synth.world_key(rendered.config, SEED)
    _never_render(monkeypatch)
    again = synth.make_world("smoke", SEED, config=TINY)
    _assert_same_world(again, rendered)
    assert isinstance(again.suites["lfw"], PairSuite) and again.version == synth.WORLD_VERSION


def test_cache_file_holds_only_plain_arrays(cache, rendered):
    synth.save_world(rendered, cache)
    with zipfile.ZipFile(cache) as z:
        names = z.namelist()
    assert names and all(n.endswith(".npy") for n in names)
    with np.load(cache, allow_pickle=False) as npz:  # would raise on any pickled member
        assert all(npz[k].dtype != object for k in npz.files)
        assert {"manifest", "train.images", "train.labels", "suites.lfw.pairs"} <= set(npz.files)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_cache_files_follow_the_umask(cache, rendered, umask, mode):
    before = os.umask(umask)
    try:
        synth.save_world(rendered, cache)
    finally:
        os.umask(before)
    assert stat.S_IMODE(cache.stat().st_mode) == mode


def test_cache_key_depends_on_config_seed_and_version():
    cfg = synth.world_config("smoke", TINY)
    key = synth.world_key(cfg, 0)
    assert synth.world_key(cfg, 1) != key
    assert synth.world_key(synth.world_config("smoke", {**TINY, "nuisance": 0.5}), 0) != key
    assert synth.world_key(cfg, 0, version=synth.WORLD_VERSION + "-changed") != key
    assert synth.world_key(cfg, 0, version=synth.WORLD_VERSION) == key


# ----------------------------------------------------------------------------------------------
# files that must never be used


def _refused_then_rerendered(cache, rendered, match: str) -> None:
    """make_world warns (naming the file and the fault), renders again, and replaces the file."""
    with pytest.warns(UserWarning, match=re.escape(str(cache)) + ".*" + match):
        world = synth.make_world("smoke", SEED, config=TINY)
    _assert_same_world(world, rendered)
    parts = synth.load_world(cache, rendered.config, SEED, rendered.suites["megaface"].distractors)
    assert synth.world_digest(synth.World(config=rendered.config, seed=SEED, **parts)) == synth.world_digest(rendered)


def test_a_crafted_pickle_in_the_cache_never_runs(cache, rendered, tmp_path):
    marker = tmp_path / "pwned"
    cache.write_bytes(pickle.dumps(_Marker(marker)))
    # the old cache file name, which torch.load(weights_only=False) used to read, is never opened at all
    cache.with_suffix(".pt").write_bytes(pickle.dumps(_Marker(marker)))
    _refused_then_rerendered(cache, rendered, "unreadable")
    assert not marker.exists()


def test_a_pickle_inside_a_world_file_never_runs(cache, rendered, tmp_path):
    marker = tmp_path / "pwned"
    synth.save_world(rendered, cache)
    arrays = _arrays(cache)
    arrays["train.labels"] = np.array([_Marker(marker)], dtype=object)  # a pickled object array
    _write(cache, arrays)
    _refused_then_rerendered(cache, rendered, "unreadable")
    assert not marker.exists()


def test_a_truncated_cache_file_is_refused_and_the_world_rendered_again(cache, rendered):
    synth.save_world(rendered, cache)
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) // 2])
    _refused_then_rerendered(cache, rendered, "unreadable")


def test_flipped_bytes_are_caught(cache, rendered):
    synth.save_world(rendered, cache)
    with zipfile.ZipFile(cache) as z:
        info = z.getinfo("train.images.npy")
    data = bytearray(cache.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len  # the stored .npy (numpy header, then pixels)
    data[start + info.file_size // 2] ^= 0xFF  # one pixel of the training images
    cache.write_bytes(bytes(data))
    _refused_then_rerendered(cache, rendered, "unreadable")


def test_edited_content_with_valid_checksums_is_caught(cache, rendered):
    synth.save_world(rendered, cache)
    arrays = _arrays(cache)
    arrays["suites.lfw.issame"] = ~arrays["suites.lfw.issame"]  # a well-formed file with other labels
    _write(cache, arrays)
    _refused_then_rerendered(cache, rendered, "does not match its recorded digest")


def test_another_worlds_file_under_this_name_is_refused(cache, rendered):
    other = synth.make_world("smoke", SEED + 1, config=TINY, cache=False)
    synth.save_world(other, cache)
    _refused_then_rerendered(cache, rendered, "written for another seed")


def test_a_file_of_another_world_version_is_refused(cache, rendered):
    synth.save_world(rendered, cache)
    arrays = _arrays(cache)
    manifest = json.loads(arrays["manifest"].tobytes())
    manifest["world_version"] = "13"  # what an older generator would have written
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    _write(cache, arrays)
    with pytest.raises(synth.WorldCacheError, match=re.escape(str(cache)) + ".*another world version"):
        synth.load_world(cache, rendered.config, SEED, rendered.suites["megaface"].distractors)


@pytest.mark.parametrize("content,match", [
    (b"", "unreadable"),
    (b"not a world", "unreadable"),
    (None, "no manifest"),  # a zip of arrays, but not a world
])
def test_foreign_files_are_refused_with_a_message_naming_them(cache, rendered, content, match):
    if content is None:
        with open(cache, "wb") as f:
            np.savez(f, images=np.zeros((2, 3), dtype=np.uint8))
    else:
        cache.write_bytes(content)
    with pytest.raises(synth.WorldCacheError, match=re.escape(str(cache)) + ".*" + match):
        synth.load_world(cache, rendered.config, SEED, rendered.suites["megaface"].distractors)


def test_cache_write_leaves_no_partial_file_on_failure(cache, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        synth.make_world("smoke", SEED, config=TINY)
    assert list(cache.parent.iterdir()) == []
