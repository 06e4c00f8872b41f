"""Backbones, FaceModel, the Residual Balancing Module and image normalisation."""

from __future__ import annotations

import pytest
import torch

from dbrepro.models import (
    BACKBONES,
    FaceModel,
    IResNet,
    ResidualBalancingModule,
    SmallFaceNet,
    build_backbone,
    build_model,
    iresnet18,
    iresnet50,
    normalize_images,
)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def ir50_params_by_hand(embedding_size: int = 512, side: int = 7) -> int:
    """IR-50's parameter count from its layer list (InsightFace's iresnet50 has the same layers)."""

    def bn(c: int) -> int:
        return 2 * c

    def unit(cin: int, cout: int) -> int:  # BN conv BN PReLU conv BN
        return bn(cin) + 9 * cin * cout + bn(cout) + cout + 9 * cout * cout + bn(cout)

    def first_unit(cin: int, cout: int) -> int:  # plus the 1x1-conv + BN shortcut
        return unit(cin, cout) + cin * cout + bn(cout)

    total = 27 * 64 + bn(64) + 64  # stem
    cin = 64
    for units, width in zip((3, 4, 14, 3), (64, 128, 256, 512)):
        total += first_unit(cin, width) + (units - 1) * unit(width, width)
        cin = width
    total += bn(512) + 512 * side * side * embedding_size + embedding_size + bn(embedding_size)
    return total


def test_ir50_parameter_count_matches_insightface():
    model = iresnet50()
    assert n_params(model) == ir50_params_by_hand() == 43_590_848  # the "43.6M" of InsightFace
    assert n_params(iresnet18()) == 24_025_600


@pytest.mark.parametrize("constructor", [iresnet18, iresnet50])
def test_iresnet_embeds_112px(constructor):
    model = constructor().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 512)
    assert torch.isfinite(out).all()


def test_iresnet_other_sizes_and_embedding():
    model = IResNet((1, 1, 1, 1), embedding_size=64, image_size=48, widths=(8, 8, 16, 16)).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 3, 48, 48)).shape == (3, 64)
    assert model.head[3].in_features == 16 * 3 * 3  # 48 / 16 = 3
    with pytest.raises(ValueError, match="multiple of 16"):
        iresnet18(image_size=100)


def test_small_net_shapes_and_embedding_size():
    model = SmallFaceNet(embedding_size=32, image_size=32)
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 32)
    model48 = SmallFaceNet(embedding_size=128, image_size=48, width=(8, 16, 24))
    assert model48(torch.randn(2, 3, 48, 48)).shape == (2, 128)
    assert model48.head[2].in_features == 24 * 6 * 6
    with pytest.raises(ValueError, match="multiple of 8"):
        SmallFaceNet(image_size=30)


def test_small_net_residual_flag_changes_the_function():
    torch.manual_seed(0)
    plain = SmallFaceNet(16, 24, residual=False).eval()
    skip = SmallFaceNet(16, 24, residual=True).eval()
    skip.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        assert not torch.allclose(plain(x), skip(x))


def test_small_net_backward_reaches_every_parameter():
    model = SmallFaceNet(16, 24)
    model(torch.randn(4, 3, 24, 24)).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_build_backbone_and_model():
    assert set(BACKBONES) == {"small", "ir18", "ir50"}
    assert isinstance(build_backbone("small", 64, 32), SmallFaceNet)
    model = build_model("small", embedding_size=64, image_size=32)
    assert isinstance(model, FaceModel) and model.rbm is None and model.embedding_size == 64
    with pytest.raises(ValueError, match="unknown backbone 'ir101'"):
        build_backbone("ir101", 512, 112)
    with pytest.raises(ValueError, match="gate must be one of"):
        build_model("small", 64, 32, rbm="hard")


def test_face_model_aux_without_and_with_rbm():
    x = torch.randn(3, 3, 32, 32)
    plain = build_model("small", 16, 32).eval()
    emb, aux = plain(x, return_aux=True)
    assert emb.shape == (3, 16) and aux == {}
    assert torch.equal(plain(x), emb)

    gated = build_model("small", 16, 32, rbm="soft").eval()
    emb, aux = gated(x, return_aux=True)
    assert emb.shape == (3, 16)
    assert aux["gate"].shape == (3,) and (aux["gate"] > 0).all()
    assert aux["pre_rbm"].shape == (3, 16)

    ungated = build_model("small", 16, 32, rbm="ungated").eval()
    emb, aux = ungated(x, return_aux=True)
    assert "gate" not in aux and "pre_rbm" in aux


def test_face_model_rejects_uint8_input():
    model = build_model("small", 16, 32)
    with pytest.raises(ValueError, match="normalize_images"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_rbm_equation_3_by_hand():
    torch.manual_seed(0)
    rbm = ResidualBalancingModule(4, hidden=3, gate="soft").eval()
    for p in rbm.parameters():  # leave the zero start so R(x) is not trivially 0
        torch.nn.init.normal_(p)
    x = torch.randn(5, 4)
    out, gate = rbm(x)
    lin1, bn, prelu, lin2 = rbm.residual
    h = (x @ lin1.weight.T + lin1.bias - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    h = h * bn.weight + bn.bias
    h = torch.where(h > 0, h, prelu.weight * h)
    r = h @ lin2.weight.T + lin2.bias
    f = torch.log1p(torch.exp(x @ rbm.gate.weight.T + rbm.gate.bias)).squeeze(1)
    torch.testing.assert_close(gate, f)
    torch.testing.assert_close(out, x + f[:, None] * r)


def test_rbm_without_soft_gate_is_x_plus_residual():
    torch.manual_seed(1)
    rbm = ResidualBalancingModule(6, gate="ungated").eval()
    torch.nn.init.normal_(rbm.residual[-1].weight)
    x = torch.randn(4, 6)
    out, gate = rbm(x)
    assert gate is None
    torch.testing.assert_close(out, x + rbm.residual(x))


def test_rbm_starts_as_identity_and_default_hidden():
    rbm = ResidualBalancingModule(8)
    assert rbm.residual[0].out_features == 4
    x = torch.randn(5, 8)
    out, gate = rbm(x)
    assert torch.equal(out, x)
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        rbm(torch.randn(5, 7))
    with pytest.raises(ValueError, match="gate must be one of"):
        ResidualBalancingModule(8, gate="sigmoid")


def test_face_model_rejects_mismatched_rbm():
    with pytest.raises(ValueError, match="16-D"):
        FaceModel(SmallFaceNet(16, 32), ResidualBalancingModule(8))


def test_normalize_images():
    images = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1)
    out = normalize_images(images)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), torch.tensor([-1.0, 1.0, 51 / 127.5 - 1.0]))
    with pytest.raises(ValueError, match="uint8"):
        normalize_images(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        normalize_images(torch.zeros(3, 2, 2, dtype=torch.uint8))
