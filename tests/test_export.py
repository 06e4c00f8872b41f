"""ONNX export: onnxruntime reproduces PyTorch's embeddings; dynamic batch; runs; atomic writes; bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument
import pandas as pd
import pytest
import torch
from torch import nn

from dbrepro import runs
from dbrepro.data.base import TensorFaces
from dbrepro.export import INPUT_NAME, OUTPUT_NAME, IncompleteRunError, export_onnx
from dbrepro.models import build_model, normalize_images
from dbrepro.train import TrainConfig, fit, load_trained


def scramble(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights *and* batch-norm statistics, so that nothing is an identity at export time.

    A fresh RBM is exactly the identity (its last layer starts at zero) and fresh batch norms have
    mean 0 / variance 1: an export that dropped either would still match a fresh model.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model.eval()


def onnx_embed(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])


def images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return normalize_images(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g))


@pytest.mark.parametrize("rbm", [None, "soft", "ungated"])
def test_small_backbone_matches_pytorch_and_batch_is_dynamic(tmp_path, rbm):
    model = scramble(build_model("small", embedding_size=32, image_size=32, rbm=rbm))
    path = export_onnx(model, tmp_path / "small.onnx")  # traced at batch 2
    for n in (5, 1):
        x = images(n, 32, seed=n)
        with torch.no_grad():
            expected = model(x)
        got = onnx_embed(path, x)
        assert got.shape == (n, 32)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_ir18_at_112_matches_pytorch(tmp_path):
    model = scramble(build_model("ir18", embedding_size=64, image_size=112, rbm="soft"), seed=3)
    path = export_onnx(model, tmp_path / "ir18.onnx")
    x = images(2, 112)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(onnx_embed(path, x), expected, atol=1e-4, rtol=0)


def test_contract_is_in_the_graph_and_metadata(tmp_path):
    model = build_model("small", embedding_size=16, image_size=24)
    proto = onnx.load(export_onnx(model, tmp_path / "m.onnx"))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert (inp.name, dims(inp)) == ("images", ["batch", 3, 24, 24])
    assert (out.name, dims(out)) == ("embeddings", ["batch", 16])
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["dbrepro.image_size"] == "24" and meta["dbrepro.embedding_size"] == "16"
    assert "(x / 255 - 0.5) / 0.5" in meta["dbrepro.input"]


def test_static_batch_is_fixed_at_one(tmp_path):
    model = scramble(build_model("small", embedding_size=16, image_size=16))
    path = export_onnx(model, tmp_path / "static.onnx", dynamic_batch=False)
    assert [d.dim_value for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim] == [1, 3, 16, 16]
    x = images(1, 16)
    with torch.no_grad():
        torch.testing.assert_close(onnx_embed(path, x), model(x), atol=1e-4, rtol=0)
    with pytest.raises(InvalidArgument, match="index: 0 Got: 3 Expected: 1"):  # no other batch size
        onnx_embed(path, images(3, 16))


def test_exporting_leaves_the_callers_model_alone(tmp_path):
    model = build_model("small", embedding_size=16, image_size=16).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path / "m.onnx")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def tiny_run(cache: Path, epochs: int = 1, stop_after_epoch: int | None = None) -> runs.Run:
    g = torch.Generator().manual_seed(0)
    labels = np.repeat(np.arange(4), 8)
    faces = TensorFaces(torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=g), labels, 4,
                        pd.DataFrame({"identity": labels}), name="toy")
    cfg = TrainConfig(data={"kind": "toy"}, backbone="small", backbone_kwargs={"width": (8, 8, 16)},
                      embedding_size=16, image_size=16, head="softmax", epochs=epochs, batch_size=16, seed=0)
    run = runs.get_run(cfg.to_dict())
    fit(cfg, faces, run=run, progress=False, stop_after_epoch=stop_after_epoch)
    return run


def test_a_run_exports_its_trained_model(tmp_path, monkeypatch):
    monkeypatch.setenv("DBREPRO_CACHE", str(tmp_path / "cache"))
    run = tiny_run(tmp_path)
    path = export_onnx(run, tmp_path / "out" / "run.onnx")  # the folder is created
    module, _ = load_trained(run)
    x = images(3, 16)
    with torch.no_grad():
        expected = module.model(x)
    torch.testing.assert_close(onnx_embed(path, x), expected, atol=1e-4, rtol=0)
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta["dbrepro.run"] == run.key and meta["dbrepro.head"] == "softmax"


def test_an_incomplete_run_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("DBREPRO_CACHE", str(tmp_path / "cache"))
    run = tiny_run(tmp_path, epochs=2, stop_after_epoch=1)
    assert not run.complete
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IncompleteRunError, match=f"run {run.key} is not complete"):
        export_onnx(run, out / "run.onnx")
    assert list(out.iterdir()) == []


def test_a_failed_export_leaves_no_file(tmp_path):
    model = build_model("small", embedding_size=16, image_size=16)
    with pytest.raises(RuntimeError):  # 24 px into a network built for 16 px: the flatten layer does not fit
        export_onnx(model, tmp_path / "m.onnx", image_size=24)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        export_onnx(build_model("small", 16, 16), tmp_path / "m.onnx", image_size=0)
    with pytest.raises(ValueError, match="image_size is not known"):
        export_onnx(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)), tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="must be a dbrepro.runs.Run or a FaceModel"):
        export_onnx("3f2a", tmp_path / "m.onnx")
