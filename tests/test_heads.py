"""Heads by hand: losses and logits computed on paper, ArcFace's far branch, SphereFace's annealing, paper defaults.

What every registered head must satisfy (gradchecks, input checks, the DFI contract, autocast,
state) is tested on each entry of ``HEADS`` in ``test_head_registry.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from dbrepro.losses import HEADS, ArcFace, CosFace, DomainBalancingMargin, SoftmaxHead, SphereFace

# a tiny problem: 3 classes, 2-D embeddings
W = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
X = np.array([[2.0, 1.0], [0.0, -3.0], [-1.0, 0.5]])
Y = np.array([0, 2, 1])


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    top = logits.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float(np.mean(lse - logits[np.arange(len(labels)), labels]))


def with_weight(head: torch.nn.Module, weight: np.ndarray) -> torch.nn.Module:
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
    return head


def as_inputs(x: np.ndarray = X, y: np.ndarray = Y) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(x), torch.from_numpy(y).long()


def arcface_target(head: ArcFace, cos_y: torch.Tensor) -> torch.Tensor:
    """ArcFace's target cosine, for targets of class 0 (the rule is the same for every class)."""
    return head.target(cos_y, torch.zeros(len(cos_y), dtype=torch.long))


# ---------------------------------------------------------------- hand-computed values


def test_cosface_one_sample_by_hand():
    head = with_weight(CosFace(2, 2, s=2.0, m=0.5).double(), np.array([[3.0, 0.0], [0.0, 1.0]]))
    x, y = as_inputs(np.array([[5.0, 0.0]]), np.array([0]))
    # cos = (1, 0); logits = (2 * (1 - 0.5), 0) = (1, 0); loss = log(1 + e^-1)
    assert head(x, y).item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-12)
    torch.testing.assert_close(head.logits(x, y), torch.tensor([[1.0, 0.0]], dtype=torch.float64))


def test_softmax_one_sample_by_hand():
    head = with_weight(SoftmaxHead(2, 2).double(), np.eye(2))
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.5, 0.0]))
    x, y = as_inputs(np.array([[1.0, 2.0]]), np.array([0]))
    # logits = (1 + 0.5, 2 + 0) = (1.5, 2); loss = log(1 + e^(2 - 1.5))
    torch.testing.assert_close(head.logits(x, y), torch.tensor([[1.5, 2.0]], dtype=torch.float64))
    assert head(x, y).item() == pytest.approx(math.log(1 + math.exp(0.5)), rel=1e-12)


def test_arcface_one_sample_by_hand():
    s, m = 2.0, 0.5
    head = with_weight(ArcFace(2, 2, s=s, m=m).double(), np.eye(2))
    x, y = as_inputs(np.array([[math.cos(math.pi / 6), math.sin(math.pi / 6)]]), np.array([0]))
    # theta = (pi/6, pi/3); logits = (2 cos(pi/6 + 0.5), 2 cos(pi/3)) = (2 cos(pi/6 + 0.5), 1)
    target = s * math.cos(math.pi / 6 + m)
    torch.testing.assert_close(head.logits(x, y), torch.tensor([[target, 1.0]], dtype=torch.float64))
    assert head(x, y).item() == pytest.approx(math.log(1 + math.exp(1.0 - target)), rel=1e-12)


def test_sphereface_one_sample_by_hand_at_lambda_min():
    head = with_weight(SphereFace(2, 2, m=4).double(), np.eye(2))
    head.iteration.fill_(10_000)  # lambda = lambda_min = 5
    x, y = as_inputs(np.array([[2 * math.cos(math.pi / 3), 2 * math.sin(math.pi / 3)]]), np.array([0]))
    # ||x|| = 2, theta = (pi/3, pi/6); psi(pi/3) = -cos(4 pi/3) - 2 = -1.5 (k = 1)
    # logit_y = 2 (5 * 0.5 - 1.5) / 6 = 1/3; logit_1 = 2 cos(pi/6) = sqrt(3)
    torch.testing.assert_close(head.logits(x, y), torch.tensor([[1 / 3, math.sqrt(3)]], dtype=torch.float64))
    assert head(x, y).item() == pytest.approx(math.log(1 + math.exp(math.sqrt(3) - 1 / 3)), rel=1e-12)


def test_softmax_head_against_numpy():
    head = with_weight(SoftmaxHead(2, 3).double(), W)
    bias = np.array([0.1, -0.2, 0.3])
    with torch.no_grad():
        head.bias.copy_(torch.from_numpy(bias))
    expected = cross_entropy(X @ W.T + bias, Y)
    assert head(*as_inputs()).item() == pytest.approx(expected, rel=1e-12)


def test_cosface_against_numpy():
    s, m = 3.0, 0.35
    head = with_weight(CosFace(2, 3, s=s, m=m).double(), W)
    cos = unit(X) @ unit(W).T
    logits = s * cos
    logits[np.arange(3), Y] = s * (cos[np.arange(3), Y] - m)
    assert head(*as_inputs()).item() == pytest.approx(cross_entropy(logits, Y), rel=1e-12)


def test_arcface_against_numpy():
    s, m = 3.0, 0.5
    head = with_weight(ArcFace(2, 3, s=s, m=m).double(), W)
    cos = unit(X) @ unit(W).T
    theta = np.arccos(cos[np.arange(3), Y])
    assert (theta + m < np.pi).all()  # the ordinary branch for all three
    logits = s * cos
    logits[np.arange(3), Y] = s * np.cos(theta + m)
    assert head(*as_inputs()).item() == pytest.approx(cross_entropy(logits, Y), rel=1e-10)


def test_arcface_far_branch_when_theta_plus_m_exceeds_pi():
    s, m = 2.0, 0.5
    head = with_weight(ArcFace(2, 2, s=s, m=m).double(), np.array([[1.0, 0.0], [0.0, 1.0]]))
    x = np.array([[-1.0, 0.1]])  # theta_y = pi - 0.0997 > pi - m
    cos_y = float(unit(x)[0, 0])
    logits = head.logits(*as_inputs(x, np.array([0])))
    assert logits[0, 0].item() == pytest.approx(s * (cos_y - m * math.sin(m)), rel=1e-12)
    assert logits[0, 0].item() != pytest.approx(s * math.cos(math.acos(cos_y) + m), rel=1e-3)
    # at theta = pi - m the rule steps down from cos(pi) = -1 to -(cos m + m sin m) ...
    edge = math.cos(math.pi - m)
    near = arcface_target(head, torch.tensor([edge + 1e-9, edge - 1e-9], dtype=torch.float64))
    assert near[0].item() == pytest.approx(-1.0, abs=1e-7)
    assert near[1].item() == pytest.approx(-(math.cos(m) + m * math.sin(m)), abs=1e-7)
    # ... and the target cosine keeps falling as theta grows, unlike cos(theta + m)
    grid = torch.cos(torch.linspace(0.01, math.pi - 0.01, 500, dtype=torch.float64))
    assert (arcface_target(head, grid).diff() < 0).all()


def test_sphereface_psi_by_hand():
    head = SphereFace(2, 2, m=4).double()
    theta = torch.tensor([math.pi / 3, math.pi / 10, 0.9 * math.pi], dtype=torch.float64)
    psi = head.psi(torch.cos(theta))
    # pi/3: k = 1, psi = -cos(4 pi/3) - 2 = -1.5 ; pi/10: k = 0, cos(0.4 pi) ; 0.9 pi: k = 3, -cos(3.6 pi) - 6
    expected = [-1.5, math.cos(0.4 * math.pi), -math.cos(3.6 * math.pi) - 6]
    torch.testing.assert_close(psi, torch.tensor(expected, dtype=torch.float64))
    grid = torch.cos(torch.linspace(0.01, math.pi - 0.01, 500, dtype=torch.float64))
    assert (head.psi(grid).diff() < 0).all()  # psi is monotone decreasing in theta


def test_sphereface_against_numpy():
    head = with_weight(SphereFace(2, 3, m=4).double(), W)
    lam = 1000.0  # iteration 0
    cos = unit(X) @ unit(W).T
    theta = np.arccos(cos[np.arange(3), Y])
    k = np.floor(4 * theta / np.pi)
    psi = (-1) ** k * np.cos(4 * theta) - 2 * k
    norms = np.linalg.norm(X, axis=1)
    logits = norms[:, None] * cos
    logits[np.arange(3), Y] = norms * (lam * cos[np.arange(3), Y] + psi) / (1 + lam)
    assert head(*as_inputs()).item() == pytest.approx(cross_entropy(logits, Y), rel=1e-12)


def test_sphereface_lambda_annealing():
    head = SphereFace(2, 3)
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 2, 0])
    assert head.lambda_ == 1000.0
    for _ in range(10):
        head(x, y)
    assert int(head.iteration) == 10
    assert head.lambda_ == pytest.approx(1000.0 / (1 + 0.12 * 10))
    head.eval()
    head(x, y)
    head.logits(x, y)
    assert int(head.iteration) == 10  # eval calls and logits() do not advance it
    head.iteration.fill_(2000)  # 1000 / (1 + 240) < 5
    assert head.lambda_ == 5.0
    assert "iteration" in head.state_dict()


def test_sphereface_settle_moves_lambda_to_its_floor_and_no_further():
    head = SphereFace(2, 3)
    head.settle()
    assert head.lambda_ == 5.0
    floor = int(head.iteration)
    head.iteration.fill_(floor - 1)
    assert head.lambda_ > 5.0  # the first iteration at the floor, not a later one
    head.iteration.fill_(5000)
    head.settle()
    assert int(head.iteration) == 5000  # past the floor: left where it is
    flat = SphereFace(2, 3, base=5.0)  # starts at the floor: nothing to settle
    flat.settle()
    assert int(flat.iteration) == 0


def test_margin_logits_give_margin_accuracy():
    head = with_weight(CosFace(2, 2, s=1.0, m=0.5).double(), np.eye(2))
    x, y = as_inputs(np.array([[1.0, 0.8]]), np.array([0]))  # cos = (0.78, 0.62): right, but within the margin
    assert head.cosine(x).argmax(1).item() == 0
    assert head.logits(x, y).argmax(1).item() == 1


# ---------------------------------------------------------------- gradients where a generic batch does not reach


def test_arcface_gradcheck_on_the_far_branch():
    head = ArcFace(2, 2, s=2.0, m=0.5).double()
    emb = torch.tensor([[-1.0, 0.1], [0.3, 1.0]], dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1])
    assert arcface_target(head, torch.tensor([-0.995], dtype=torch.float64)).item() == pytest.approx(
        -0.995 - 0.5 * math.sin(0.5)
    )
    assert torch.autograd.gradcheck(lambda e, w: functional_call(head, {"weight": w}, (e, labels)), (emb, weight))


def test_sphereface_gradcheck_with_the_full_margin():
    # lambda = lambda_min, so psi weighs in the target (at iteration 0, lambda = 1000 all but hides it)
    head = SphereFace(2, 3, m=4).double().eval()
    head.iteration.fill_(10_000)
    emb = torch.tensor([[1.0, 0.4], [-0.3, 1.2], [0.2, -2.0]], dtype=torch.float64, requires_grad=True)
    weight = torch.from_numpy(W).clone().requires_grad_(True)
    labels = torch.tensor([0, 1, 2])
    theta = torch.acos(head.cosine(emb).gather(1, labels.unsqueeze(1)).squeeze(1))
    assert (4 * theta / math.pi).floor().unique().numel() > 1  # more than one branch k of psi
    assert torch.autograd.gradcheck(lambda e, w: functional_call(head, {"weight": w}, (e, labels)), (emb, weight))


# ---------------------------------------------------------------- the papers' values are the defaults


def test_defaults_are_the_papers_values():
    cosface, arcface, sphereface, dbm = CosFace(4, 3), ArcFace(4, 3), SphereFace(4, 3), DomainBalancingMargin(4, 3)
    assert (cosface.s, cosface.m) == (64.0, 0.35)  # Wang et al. 2018
    assert (arcface.s, arcface.m) == (64.0, 0.5)  # Deng et al. 2019
    annealing = (sphereface.base, sphereface.gamma, sphereface.power, sphereface.lambda_min)
    assert sphereface.m == 4 and annealing == (1000.0, 0.12, 1.0, 5.0)  # Liu et al. 2017 and their release
    assert (dbm.s, dbm.m) == (64.0, 0.35)  # DB Eq. 5: "m is a fixed parameter as defined in CosFace"
    assert HEADS["dbm"].needs_dfi
    assert not any(HEADS[name].needs_dfi for name in ("softmax", "sphereface", "cosface", "arcface"))


def test_bad_hyperparameters_raise_clear_errors():
    with pytest.raises(ValueError, match="CosFace: s must be positive, got 0"):
        CosFace(4, 3, s=0.0)
    with pytest.raises(ValueError, match="ArcFace: s must be positive"):
        ArcFace(4, 3, s=-1.0)
    with pytest.raises(ValueError, match=r"ArcFace: m must lie in \[0, pi\)"):
        ArcFace(4, 3, m=4.0)
    with pytest.raises(ValueError, match="SphereFace: m must be a positive integer"):
        SphereFace(4, 3, m=1.5)
    with pytest.raises(ValueError, match="DomainBalancingMargin: s must be positive"):
        DomainBalancingMargin(4, 3, s=0.0)
