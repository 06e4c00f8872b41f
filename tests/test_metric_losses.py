"""Contrastive (DeepID2), triplet (FaceNet) and center (Wen et al.) losses: hand-computed values,
the paper's split pair construction, gradients, the centre update rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dbrepro.data.splits import half_split_identities
from dbrepro.losses.center import CenterLoss
from dbrepro.losses.contrastive import ContrastiveLoss
from dbrepro.losses.triplet import TripletLoss

# --- contrastive -------------------------------------------------------------------------------


def test_contrastive_by_hand_when_every_negative_is_used():
    # labels 0,0,0,1: three positive pairs and three negative pairs -> all six are used
    pts = [(0.0, 0.0), (1.0, 0.0), (0.0, 2.0), (0.5, 0.5)]
    x = torch.tensor(pts, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1])
    m = 1.5
    pos = [0.5 * ((pts[i][0] - pts[j][0]) ** 2 + (pts[i][1] - pts[j][1]) ** 2) for i, j in ((0, 1), (0, 2), (1, 2))]
    neg = [0.5 * max(0.0, m - math.dist(pts[i], pts[3])) ** 2 for i in (0, 1, 2)]
    loss = ContrastiveLoss(margin=m, normalize=False, weight=2.0)
    assert float(loss(x, y)) == pytest.approx(2.0 * sum(pos + neg) / 6)


def test_contrastive_default_draws_as_many_negatives_as_positives():
    y = torch.tensor([0, 0, 1, 1, 2, 3, 4])  # 2 positive pairs, 19 negative pairs
    first, second, same = ContrastiveLoss().pairs(y)
    assert int(same.sum()) == 2 and int((~same).sum()) == 2
    assert torch.equal(y[first] == y[second], same)
    assert bool((first < second).all())


def test_contrastive_negatives_are_reproducible_from_the_seed():
    y = torch.arange(10).repeat_interleave(2)
    a = ContrastiveLoss(seed=3).pairs(y)
    b = ContrastiveLoss(seed=3).pairs(y)
    c = ContrastiveLoss(seed=4).pairs(y)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))


def test_contrastive_split_takes_positives_from_the_first_part_and_negatives_from_the_second():
    mask = np.array([True, True, False, False, False])
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 4])
    first, second, same = ContrastiveLoss(positive_classes=mask).pairs(y)
    pos_classes = set(y[first[same]].tolist()) | set(y[second[same]].tolist())
    neg_members = set(y[first[~same]].tolist()) | set(y[second[~same]].tolist())
    assert pos_classes <= {0, 1}
    assert neg_members <= {2, 3, 4}
    assert int(same.sum()) == 1 + 3 and int((~same).sum()) == 4
    # and the value is DeepID2's formula on exactly those pairs
    x = torch.randn(10, 3, dtype=torch.float64)
    loss = ContrastiveLoss(margin=0.7, normalize=True, weight=1.0, positive_classes=mask, seed=1)
    f, s, same = ContrastiveLoss(positive_classes=mask, seed=1).pairs(y)
    z = F.normalize(x, dim=1)
    d = (z[f] - z[s]).norm(dim=1)
    expected = torch.where(same, 0.5 * d**2, 0.5 * torch.relu(0.7 - d) ** 2).mean()
    assert float(loss(x, y)) == pytest.approx(float(expected), rel=1e-12)


def test_contrastive_with_half_split_identities():
    mask = half_split_identities(8, seed=0)
    assert mask.sum() == 4
    y = torch.arange(8).repeat_interleave(4)
    _, _, same = ContrastiveLoss(positive_classes=mask).pairs(y)
    assert int(same.sum()) == 4 * 6 and int((~same).sum()) == 4 * 6


@pytest.mark.parametrize("normalize", [False, True])
def test_contrastive_gradcheck(normalize):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(9, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 4])
    margin = 1.0 if normalize else 3.0
    assert torch.autograd.gradcheck(lambda e: ContrastiveLoss(margin=margin, normalize=normalize, seed=5)(e, y), (x,))


def test_contrastive_coinciding_negatives_give_finite_gradients():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], requires_grad=True)
    loss = ContrastiveLoss(normalize=False)(x, torch.tensor([0, 0, 1]))
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(x.grad).all()


def test_contrastive_without_positive_pairs_is_zero_and_backpropagates():
    x = torch.randn(4, 3, requires_grad=True)
    loss = ContrastiveLoss()(x, torch.arange(4))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


def test_contrastive_errors():
    with pytest.raises(ValueError, match="margin"):
        ContrastiveLoss(margin=0.0)
    with pytest.raises(ValueError, match="positive_classes must be a 1-D boolean"):
        ContrastiveLoss(positive_classes=np.array([1, 0, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        ContrastiveLoss(positive_classes=np.array([True, False]))(torch.randn(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="3 embeddings but 2 labels"):
        ContrastiveLoss()(torch.randn(3, 2), torch.tensor([0, 1]))


# --- triplet ---------------------------------------------------------------------------------


def _unit(deg: float) -> tuple[float, float]:
    return (math.cos(math.radians(deg)), math.sin(math.radians(deg)))


def test_triplet_by_hand_on_the_unit_circle():
    # a, p of class 0 at 0 and 50 degrees, n of class 1 at 80 degrees; points are scaled (normalised inside)
    scale = torch.tensor([[2.0], [0.5], [3.0]], dtype=torch.float64)
    x = torch.tensor([_unit(0), _unit(50), _unit(80)], dtype=torch.float64) * scale
    y = torch.tensor([0, 0, 1])

    def d2(a, b):  # squared chord length between two angles
        return 2.0 - 2.0 * math.cos(math.radians(a - b))

    alpha = 0.2
    t1 = max(d2(0, 50) - d2(0, 80) + alpha, 0.0)  # anchor 0, positive 1
    t2 = max(d2(50, 0) - d2(50, 80) + alpha, 0.0)  # anchor 1, positive 0
    assert t1 == 0.0 < t2  # one easy triplet, one active
    assert float(TripletLoss(margin=alpha, weight=3.0)(x, y)) == pytest.approx(3.0 * (t1 + t2) / 2)


def test_triplet_averages_over_all_valid_triplets_including_easy_ones():
    # class 0 tight at 0 degrees, class 1 far at 180: every triplet is easy -> 0, not NaN
    x = torch.tensor([_unit(0), _unit(1), _unit(180), _unit(181)], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    assert float(TripletLoss()(x, y)) == 0.0
    # move one negative next to the anchors: one of the 8 triplets becomes active (a=0, p=1, n=2 ...)
    x2 = torch.tensor([_unit(0), _unit(10), _unit(5), _unit(181)], dtype=torch.float64)

    def d2(a, b):
        return 2.0 - 2.0 * math.cos(math.radians(a - b))

    angles = [0, 10, 5, 181]
    terms = []
    for a in range(4):
        for p in range(4):
            if a != p and y[a] == y[p]:
                for n in range(4):
                    if y[n] != y[a]:
                        terms.append(max(d2(angles[a], angles[p]) - d2(angles[a], angles[n]) + 0.2, 0.0))
    assert len(terms) == 8
    assert float(TripletLoss()(x2, y)) == pytest.approx(sum(terms) / 8)


def test_triplet_split_uses_first_part_anchors_and_second_part_negatives():
    angles = [0, 20, 40, 60, 100, 200]
    x = torch.tensor([_unit(a) for a in angles], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 3])
    # anchors/positives from the mask's classes (only class 0 has two samples); negatives only from
    # classes outside it: class 1 (samples 2, 3), not the closer-to-nothing classes 2 and 3
    mask = np.array([True, False, True, True])
    loss = TripletLoss(margin=0.5, positive_classes=mask)

    def d2(a, b):
        return 2.0 - 2.0 * math.cos(math.radians(a - b))

    terms = [max(d2(angles[a], angles[p]) - d2(angles[a], angles[n]) + 0.5, 0.0) for a, p in ((0, 1), (1, 0)) for n in (2, 3)]
    assert float(loss(x, y)) == pytest.approx(sum(terms) / 4)


def test_triplet_gradcheck():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3])
    assert torch.autograd.gradcheck(lambda e: TripletLoss(margin=0.5)(e, y), (x,))


def test_triplet_without_valid_triplets_is_zero_and_backpropagates():
    x = torch.randn(3, 2, requires_grad=True)
    loss = TripletLoss()(x, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


def test_triplet_errors():
    with pytest.raises(ValueError, match="margin"):
        TripletLoss(margin=-0.1)
    with pytest.raises(ValueError, match="labels must be an integer"):
        TripletLoss()(torch.randn(3, 2), torch.tensor([0.0, 1.0, 1.0]))


# --- center ----------------------------------------------------------------------------------


def test_center_loss_value_and_update_rule_by_hand():
    loss = CenterLoss(num_classes=3, embedding_size=2, alpha=0.5, weight=0.1)
    c = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    loss.centers.copy_(c)
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]])
    y = torch.tensor([0, 0, 1])
    expected = 0.1 * 0.5 * (1.0 + 9.0 + 2.0) / 3  # ||x - c_y||^2 = 1, 9, 2; mean over the batch
    assert float(loss(x, y)) == pytest.approx(expected)
    # c_0 -= 0.5 * ((c_0 - x_0) + (c_0 - x_1)) / (1 + 2); c_1 -= 0.5 * (c_1 - x_2) / (1 + 1); c_2 unchanged
    c0 = c[0] - 0.5 * ((c[0] - x[0]) + (c[0] - x[1])) / 3
    c1 = c[1] - 0.5 * (c[1] - x[2]) / 2
    assert torch.allclose(loss.centers, torch.stack([c0, c1, c[2]]))
    assert torch.allclose(c0, torch.tensor([1.0 / 6, 0.5]))


def test_center_loss_does_not_update_in_eval_mode_and_centres_are_a_buffer():
    loss = CenterLoss(4, 3)
    assert "centers" in dict(loss.named_buffers()) and not list(loss.parameters())
    before = loss.centers.clone()
    loss.eval()
    loss(torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 0]))
    assert torch.equal(loss.centers, before)


def test_center_loss_gradient_and_backward_after_the_update():
    loss = CenterLoss(3, 4, weight=1.0)
    x = torch.randn(6, 4, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    expected_grad = (x.detach() - loss.centers[y]) / 6
    loss(x, y).backward()  # centres were updated in place inside forward; backward still works
    assert torch.allclose(x.grad, expected_grad, atol=1e-6)
    loss.eval()
    x64 = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x64,))


def test_center_loss_errors():
    with pytest.raises(ValueError, match="alpha"):
        CenterLoss(3, 2, alpha=1.5)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        CenterLoss(3, 2)(torch.randn(2, 2), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="embeddings have 5 dimensions, the centres 2"):
        CenterLoss(3, 2)(torch.randn(2, 5), torch.tensor([0, 1]))
