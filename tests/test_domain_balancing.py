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
    dfi = torch.tensor([2.0, 0.1])
    x, y = torch.tensor([[4.0, 0.0]], dtype=torch.float64), torch.tensor([0])
    # cos = (1, 0); margin = 2 * 0.5 = 1; logits = (2 * (1 - 1), 0) = (0, 0); loss = log 2
    torch.testing.assert_close(head.logits(x, y, dfi=dfi), torch.zeros(1, 2, dtype=torch.float64))
    assert head(x, y, dfi=dfi).item() == pytest.approx(math.log(2.0), rel=1e-12)


def test_dbm_matches_eq5_with_per_class_margins():
    dfi = np.array([0.2, 1.7, 0.9])
    head = make_head()
    assert head(*inputs(), dfi=torch.from_numpy(dfi)).item() == pytest.approx(dbm_by_numpy(3.0, 0.35, dfi), rel=1e-12)
    # each call uses the DFI it is given, nothing carried over from the last one
    other = np.array([1.0, 0.0, 3.0])
    assert head(*inputs(), dfi=torch.from_numpy(other)).item() == pytest.approx(
        dbm_by_numpy(3.0, 0.35, other), rel=1e-12
    )
    assert head(*inputs(), dfi=torch.from_numpy(dfi)).item() == pytest.approx(dbm_by_numpy(3.0, 0.35, dfi), rel=1e-12)


def test_dbm_with_unit_dfi_equals_cosface_exactly():
    torch.manual_seed(0)
    cosface = CosFace(8, 5, s=64.0, m=0.35)
    dbm = DomainBalancingMargin(8, 5, s=64.0, m=0.35)
    dbm.load_state_dict(cosface.state_dict())  # the same keys: DBM holds nothing CosFace does not
    emb, labels = torch.randn(16, 8), torch.randint(0, 5, (16,))
    ones = torch.ones(5)
    assert torch.equal(dbm.logits(emb, labels, dfi=ones), cosface.logits(emb, labels))
    assert torch.equal(dbm(emb, labels, dfi=ones), cosface(emb, labels))
    emb.requires_grad_(True)
    grads = [torch.autograd.grad(loss, (emb, head.weight)) for loss, head in
             ((dbm(emb, labels, dfi=ones), dbm), (cosface(emb, labels), cosface))]
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_dbm_is_cosface_with_a_per_class_margin():
    assert issubclass(DomainBalancingMargin, CosFace) and DomainBalancingMargin.needs_dfi
    head = make_head()
    labels = torch.tensor([2, 0, 2, 1])
    dfi = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(head.margin(labels, dfi), 0.35 * torch.tensor([2.0, 0.5, 2.0, 1.0], dtype=torch.float64))


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


def test_dfi_from_the_heads_own_prototypes_sets_eq5_margins():
    torch.manual_seed(0)
    head = DomainBalancingMargin(16, 40, s=64.0, m=0.35)
    dfi = domain_frequency_indicator(head.weight.detach(), k=5, s=64.0, eps=5.5)
    emb, labels = torch.randn(12, 16), torch.randint(0, 40, (12,))
    cos = head.cosine(emb)
    rows = torch.arange(12)
    expected = 64.0 * cos
    expected[rows, labels] = 64.0 * (cos[rows, labels] - 0.35 * dfi[labels])
    torch.testing.assert_close(head.logits(emb, labels, dfi=dfi), expected)
    assert "dfi" not in head.state_dict()  # the trainer's objective keeps the one copy


def test_dbm_rejects_a_missing_or_bad_dfi():
    head = DomainBalancingMargin(2, 3)
    emb, labels = torch.randn(2, 2), torch.tensor([0, 2])
    with pytest.raises(ValueError, match=r"DomainBalancingMargin needs the per-class DFI .*shape \(3,\)"):
        head(emb, labels)
    with pytest.raises(ValueError, match=r"DomainBalancingMargin: dfi must have shape \(3,\)"):
        head(emb, labels, dfi=torch.ones(4))
    with pytest.raises(ValueError, match="class 1 has -0.5"):
        head(emb, labels, dfi=torch.tensor([1.0, -0.5, 1.0]))
    with pytest.raises(ValueError, match="class 2 has inf"):
        head.logits(emb, labels, dfi=torch.tensor([1.0, 1.0, float("inf")]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        head(emb, torch.tensor([0, 3]), dfi=torch.ones(3))


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


def test_the_rbm_docstring_states_its_choices_in_a_named_section():
    from dbrepro import show
    from dbrepro.models import rbm

    choices = show.doc(rbm, section="Choices the paper leaves open").text
    assert choices.startswith("- `R(x) = FC(D -> H)") and "softplus" in choices and 'gate="ungated"' in choices
