"""Domain Balancing Margin (DB Eq. 5) and the RBM gate regression loss (DB Eq. 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from dbrepro.dfi import domain_frequency_indicator
from dbrepro.losses import CosFace, DomainBalancingMargin
from dbrepro.models import build_model, rbm_gate_loss

W = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
X = np.array([[2.0, 1.0], [0.0, -3.0], [-1.0, 0.5], [1.0, 1.0]])
Y = np.array([0, 2, 1, 0])


def dbm_by_numpy(s: float, m: float, dfi: np.ndarray) -> float:
    cos = (X / np.linalg.norm(X, axis=1, keepdims=True)) @ (W / np.linalg.norm(W, axis=1, keepdims=True)).T
    logits = s * cos
    rows = np.arange(len(Y))
    logits[rows, Y] = s * (cos[rows, Y] - dfi[Y] * m)
    lse = np.log(np.exp(logits).sum(axis=1))
    return float(np.mean(lse - logits[rows, Y]))


def make_head(s: float = 3.0, m: float = 0.35) -> DomainBalancingMargin:
    head = DomainBalancingMargin(2, 3, s=s, m=m).double()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(W))
    return head


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(X), torch.from_numpy(Y).long()


def test_dbm_one_sample_by_hand():
    head = DomainBalancingMargin(2, 2, s=2.0, m=0.5).double()
    with torch.no_grad():
        head.weight.copy_(torch.eye(2, dtype=torch.float64))
    head.set_dfi(torch.tensor([2.0, 0.1]))
    x, y = torch.tensor([[4.0, 0.0]], dtype=torch.float64), torch.tensor([0])
    # cos = (1, 0); margin = 2 * 0.5 = 1; logits = (2 * (1 - 1), 0) = (0, 0); loss = log 2
    assert head(x, y).item() == pytest.approx(math.log(2.0), rel=1e-12)


def test_dbm_matches_eq5_with_per_class_margins():
    dfi = np.array([0.2, 1.7, 0.9])
    head = make_head()
    head.set_dfi(torch.from_numpy(dfi))
    assert head(*inputs()).item() == pytest.approx(dbm_by_numpy(3.0, 0.35, dfi), rel=1e-12)
    # an explicit dfi overrides the buffer for one call and leaves the buffer alone
    other = np.array([1.0, 0.0, 3.0])
    assert head(*inputs(), dfi=torch.from_numpy(other)).item() == pytest.approx(
        dbm_by_numpy(3.0, 0.35, other), rel=1e-12
    )
    torch.testing.assert_close(head.dfi, torch.from_numpy(dfi))


def test_dbm_with_unit_dfi_equals_cosface_exactly():
    torch.manual_seed(0)
    cosface = CosFace(8, 5, s=64.0, m=0.35)
    dbm = DomainBalancingMargin(8, 5, s=64.0, m=0.35)
    dbm.load_state_dict({**cosface.state_dict(), "dfi": torch.ones(5)})
    emb, labels = torch.randn(16, 8), torch.randint(0, 5, (16,))
    assert torch.equal(dbm.logits(emb, labels), cosface.logits(emb, labels))  # fresh buffer: ones
    assert torch.equal(dbm(emb, labels), cosface(emb, labels))
    assert torch.equal(dbm(emb, labels, dfi=torch.ones(5)), cosface(emb, labels))


def test_dbm_gradcheck():
    head = make_head(s=2.0)
    dfi = torch.tensor([0.3, 1.4, 0.8], dtype=torch.float64)
    emb = torch.from_numpy(X).clone().requires_grad_(True)
    weight = torch.from_numpy(W).clone().requires_grad_(True)
    labels = torch.from_numpy(Y).long()
    assert torch.autograd.gradcheck(
        lambda e, w: functional_call(head, {"weight": w}, (e, labels), {"dfi": dfi}), (emb, weight)
    )


def test_no_gradient_flows_into_the_dfi():
    head = make_head()
    dfi = torch.tensor([0.3, 1.4, 0.8], dtype=torch.float64, requires_grad=True)
    head(*inputs(), dfi=dfi).backward()
    assert dfi.grad is None


def test_dfi_from_the_heads_own_prototypes_round_trips():
    head = DomainBalancingMargin(16, 40)
    dfi = domain_frequency_indicator(head.weight, k=5, s=64.0, eps=5.5)
    head.set_dfi(dfi)
    torch.testing.assert_close(head.dfi, dfi)
    assert "dfi" in head.state_dict()


def test_set_dfi_rejects_bad_values():
    head = DomainBalancingMargin(2, 3)
    with pytest.raises(ValueError, match=r"dfi must have shape \(3,\)"):
        head.set_dfi(torch.ones(4))
    with pytest.raises(ValueError, match="class 1 has -0.5"):
        head.set_dfi(torch.tensor([1.0, -0.5, 1.0]))
    with pytest.raises(ValueError, match="class 2 has inf"):
        head.set_dfi(torch.tensor([1.0, 1.0, float("inf")]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        head(torch.randn(2, 2), torch.tensor([0, 3]))


def test_rbm_gate_loss_by_hand():
    gate = torch.tensor([0.5, 1.0, 0.2], requires_grad=True)
    target = torch.tensor([0.3, 1.5, 0.2])
    loss = rbm_gate_loss(gate, target)
    # ((0.2)^2 + (-0.5)^2 + 0^2) / 3: a mean over the batch, not a sum
    assert loss.item() == pytest.approx((0.04 + 0.25 + 0.0) / 3)
    loss.backward()
    torch.testing.assert_close(gate.grad, 2 * (gate.detach() - target) / 3)
    with pytest.raises(ValueError, match="gate's shape"):
        rbm_gate_loss(gate, torch.ones(4))
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        rbm_gate_loss(gate.view(3, 1), target.view(3, 1))


def test_gate_regression_trains_the_model_gate():
    torch.manual_seed(0)
    model = build_model("small", embedding_size=16, image_size=24, rbm="soft")
    x = torch.randn(8, 3, 24, 24)
    _, aux = model(x, return_aux=True)
    rbm_gate_loss(aux["gate"], torch.full((8,), 0.25)).backward()
    assert model.rbm.gate.weight.grad.abs().sum() > 0
