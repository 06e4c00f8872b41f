"""dbrepro.paths: what results.json and the evaluation cache hold (jsonable), and file hashes."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pytest
import torch

from dbrepro.paths import file_sha256, jsonable
from dbrepro.train import TrainConfig


def strict_json(value) -> str:
    return json.dumps(value, allow_nan=False)  # raises on NaN or an infinity


def test_containers_become_dicts_with_str_keys_and_lists():
    assert jsonable({1e-05: 0.5, 3: (1, [2, 3])}) == {"1e-05": 0.5, "3": [1, [2, 3]]}
    assert jsonable({"b", "a"}) == ["a", "b"]
    assert jsonable(None) is None and jsonable("x") == "x" and jsonable(True) is True


def test_numpy_and_torch_become_python_numbers():
    out = jsonable({"f": np.float32(0.5), "i": np.int64(3), "b": np.bool_(True), "a": np.arange(4).reshape(2, 2),
                    "t": torch.tensor([[1.5, 2.0]], requires_grad=True), "n": torch.tensor([1, 2])})
    assert out == {"f": 0.5, "i": 3, "b": True, "a": [[0, 1], [2, 3]], "t": [[1.5, 2.0]], "n": [1, 2]}
    assert type(out["f"]) is float and type(out["i"]) is int and type(out["b"]) is bool
    assert type(out["a"][0][0]) is int


def test_nan_and_infinities_become_none_wherever_they_stand():
    value = {"x": float("nan"), "inf": -math.inf, "np": np.float64("nan"), "arr": np.array([1.0, np.inf, np.nan]),
             "t": torch.tensor([[0.5, float("nan")]]), "list": [1.0, float("inf")]}
    out = jsonable(value)
    assert out == {"x": None, "inf": None, "np": None, "arr": [1.0, None, None], "t": [[0.5, None]],
                   "list": [1.0, None]}
    strict_json(out)


def test_frames_series_and_objects_with_to_dict():
    frame = pd.DataFrame({"acc": [0.9, np.nan]}, index=["A-0", "A-2"])
    assert jsonable(frame) == {"acc": {"A-0": 0.9, "A-2": None}}
    assert jsonable(frame["acc"]) == {"A-0": 0.9, "A-2": None}
    assert jsonable(pd.Index(["x", "y"])) == ["x", "y"]
    cfg = TrainConfig(head="cosface", data={"kind": "synth", "preset": "smoke"})
    assert jsonable(cfg) == json.loads(json.dumps(cfg.to_dict()))


def test_paths_become_strings_and_other_objects_are_refused_by_where_they_stand():
    assert jsonable({"root": Path("/data/casia"), "p": PurePosixPath("a/b")}) == {"root": "/data/casia", "p": "a/b"}
    with pytest.raises(TypeError, match=r"value\['table'\]\[1\]: cannot write a value of type complex as JSON"):
        jsonable({"table": [1, 2j]})
    with pytest.raises(TypeError, match=r"^run: cannot write a value of type object"):
        jsonable(object(), "run")


def test_file_sha256_streams_the_file(tmp_path):
    path = tmp_path / "model.pt"
    data = bytes(range(256)) * 9000  # more than one 1 MiB block
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "missing")
