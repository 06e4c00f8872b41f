"""Range loss (Zhang et al., ICCV 2017, Eq. 2-4, 7-8): hand-computed values, the rules where the paper is
silent, gradients, and where the printed gradients disagree with the derivative of the loss."""

from __future__ import annotations

import itertools

import pytest
import torch

from dbrepro.losses.range import RangeLoss, paper_gradients


def sq(a, b) -> float:
    return float(sum((u - v) ** 2 for u, v in zip(a, b)))


def reference_parts(x: torch.Tensor, labels: torch.Tensor, k: int, margin: float) -> tuple[float, float]:
    """Eq. 3-4 with Python loops over classes and pairs (the rules of the module docstring)."""
    pts = x.tolist()
    classes = sorted(set(labels.tolist()))
    members = {c: [i for i, y in enumerate(labels.tolist()) if y == c] for c in classes}
    intra = 0.0
    for c in classes:
        dists = sorted((sq(pts[i], pts[j]) for i, j in itertools.combinations(members[c], 2)), reverse=True)
        top = dists[:k]
        if top and min(top) > 0:
            intra += len(top) / sum(1.0 / d for d in top)
    if len(classes) < 2:
        return intra, 0.0
    centres = {c: [sum(pts[i][d] for i in members[c]) / len(members[c]) for d in range(x.shape[1])] for c in classes}
    closest = min(sq(centres[a], centres[b]) for a, b in itertools.combinations(classes, 2))
    return intra, max(margin - closest, 0.0)


def test_hand_computed_two_dimensional_example():
    # class 0: a 3-4-5 right triangle; class 1: two points 1 apart; class 2: one point.
    pts = [(0.0, 0.0), (3.0, 0.0), (0.0, 4.0), (10.0, 0.0), (10.0, 1.0), (20.0, 20.0)]
    x = torch.tensor(pts, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    # class 0: squared distances 9, 16, 25 -> the two largest 25 and 16 -> harmonic mean 2 / (1/25 + 1/16)
    h0 = 2.0 / (1.0 / sq(pts[0], pts[2]) + 1.0 / sq(pts[1], pts[2]))
    # class 1: n = 2 -> a single distance, its harmonic mean is itself; class 2 (n = 1) adds nothing
    h1 = sq(pts[3], pts[4])
    c0, c1, c2 = (1.0, 4.0 / 3.0), (10.0, 0.5), (20.0, 20.0)
    d_center = min(sq(c0, c1), sq(c0, c2), sq(c1, c2))
    assert d_center == pytest.approx(81.0 + (4.0 / 3.0 - 0.5) ** 2)
    loss = RangeLoss(k=2, margin=100.0, intra_weight=0.3, inter_weight=0.7)
    intra, inter = loss.components(x, y)
    assert float(intra) == pytest.approx(h0 + h1, rel=1e-12)
    assert float(inter) == pytest.approx(100.0 - d_center, rel=1e-12)
    assert float(loss(x, y)) == pytest.approx(0.3 * (h0 + h1) + 0.7 * (100.0 - d_center), rel=1e-12)
    assert float(loss.last_parts["center_distance"]) == pytest.approx(d_center)


def test_hinge_is_zero_beyond_the_margin():
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    intra, inter = RangeLoss(margin=25.0).components(x, y)  # centres exactly 25 apart
    assert inter.item() == 0.0
    inter_grad = torch.autograd.grad(inter, x)[0]
    assert torch.equal(inter_grad, torch.zeros_like(x))


def test_class_with_two_samples_uses_its_single_distance_for_any_k():
    x = torch.tensor([[0.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([7, 7])
    for k in (1, 2, 5):
        intra, _ = RangeLoss(k=k, margin=1.0).components(x, y)
        assert float(intra) == pytest.approx(5.0)


def test_fewer_pairs_than_k_uses_all_of_them():
    # n = 3 -> 3 pairs; k = 5 -> harmonic mean over the 3 distances 9, 16, 25
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    intra, _ = RangeLoss(k=5, margin=1.0).components(x, torch.zeros(3, dtype=torch.long))
    assert float(intra) == pytest.approx(3.0 / (1 / 9 + 1 / 16 + 1 / 25))


def test_singletons_add_nothing_to_intra():
    x = torch.randn(5, 3, dtype=torch.float64)
    intra, inter = RangeLoss(margin=1e6).components(x, torch.arange(5))
    assert float(intra) == 0.0
    assert float(inter) > 0.0


def test_single_class_has_no_inter_term_and_still_backpropagates():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(4, dtype=torch.long)
    loss = RangeLoss(margin=10.0)
    intra, inter = loss.components(x, y)
    assert inter.item() == 0.0
    assert torch.isnan(loss.last_parts["center_distance"])
    # one sample of one class: both parts are 0, and backward() works (the zeros are in the graph)
    lone = x[:1]
    total = loss(lone, y[:1])
    total.backward()
    assert total.item() == 0.0
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_identical_samples_give_zero_range_and_finite_zero_gradient():
    base = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [4.0, 6.0], [4.0, 7.0]], dtype=torch.float64)
    x = base.clone().requires_grad_(True)
    y = torch.tensor([0, 0, 0, 1, 1])
    intra, _ = RangeLoss(k=2, margin=1.0).components(x, y)
    assert intra.item() == pytest.approx(1.0)  # class 0 contributes 0; class 1 its single distance 1
    (grad,) = torch.autograd.grad(intra, x)
    assert torch.isfinite(grad).all()
    assert torch.equal(grad[:3], torch.zeros(3, 2, dtype=torch.float64))
    # a zero among the selected distances (k = 3: distances a, a, 0) also makes the mean 0, gradient 0
    x3 = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    intra3, _ = RangeLoss(k=3, margin=1.0).components(x3, torch.zeros(3, dtype=torch.long))
    (grad3,) = torch.autograd.grad(intra3, x3)
    assert intra3.item() == 0.0
    assert torch.equal(grad3, torch.zeros_like(x3))
    # in float32, too
    x32 = base.float().requires_grad_(True)
    RangeLoss(margin=1.0)(x32, y).backward()
    assert torch.isfinite(x32.grad).all()


def test_near_coincident_samples_stay_finite():
    x = torch.tensor([[0.0, 0.0], [1e-30, 0.0], [1.0, 1.0], [2.0, 1.0]], dtype=torch.float32, requires_grad=True)
    loss = RangeLoss(margin=100.0)(x, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_gradcheck_float64(k):
    gen = torch.Generator().manual_seed(k)
    x = torch.randn(11, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3])
    loss = RangeLoss(k=k, margin=50.0, intra_weight=0.5, inter_weight=2.0)
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x,))


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_equals_reference_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    b = 40
    y = torch.randint(0, 9, (b,), generator=gen) * 3 - 5  # arbitrary, non-contiguous label values
    x = torch.randn(b, 4, dtype=torch.float64, generator=gen)
    for k in (1, 2, 4):
        margin = 3.0
        intra, inter = RangeLoss(k=k, margin=margin).components(x, y)
        ref_intra, ref_inter = reference_parts(x, y, k, margin)
        assert float(intra) == pytest.approx(ref_intra, rel=1e-10)
        assert float(inter) == pytest.approx(ref_inter, rel=1e-10, abs=1e-12)


def test_default_margin_is_twice_the_embedding_width_and_weights_are_the_papers():
    loss = RangeLoss()
    assert (loss.k, loss.intra_weight, loss.inter_weight) == (2, 5e-5, 1e-4)
    x = torch.zeros(4, 6)
    x[2:, 0] = 1.0  # two classes with centres 1 apart (squared)
    _, inter = loss.components(x, torch.tensor([0, 0, 1, 1]))
    assert float(inter) == pytest.approx(2 * 6.0 - 1.0)  # M = 2D: two unrelated unit-variance embeddings
    assert float(loss.last_parts["margin"]) == 12.0


def test_half_precision_inputs_are_computed_in_float32():
    x = torch.randn(8, 4).half()
    out = RangeLoss(margin=1.0)(x, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    assert out.dtype == torch.float32 and torch.isfinite(out)


@pytest.mark.parametrize(
    ("embeddings", "labels", "match"),
    [
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), "embeddings must be"),
        (torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long), "floating-point"),
        (torch.zeros(4, 2), torch.zeros(4), "labels must be an integer"),
        (torch.zeros(4, 2), torch.zeros(3, dtype=torch.long), "4 embeddings but 3 labels"),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), "empty"),
    ],
)
def test_bad_batches_are_rejected(embeddings, labels, match):
    with pytest.raises(ValueError, match=match):
        RangeLoss(margin=1.0)(embeddings, labels)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"k": 0}, "k must be"), ({"k": 1.5}, "k must be"), ({"margin": -1.0}, "margin"), ({"intra_weight": -1.0}, "intra_weight")],
)
def test_bad_parameters_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RangeLoss(**kwargs)


# --- Eq. 7-8 as printed versus the derivative of Eq. 3-4 -------------------------------------------


def _autograd_parts(x: torch.Tensor, y: torch.Tensor, k: int, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    intra, inter = RangeLoss(k=k, margin=margin).components(x, y)
    g_intra = torch.autograd.grad(intra, x, retain_graph=True)[0]
    g_inter = torch.autograd.grad(inter, x)[0]
    return g_intra, g_inter


def test_eq7_has_the_right_factor_but_no_sign():
    # k = 1: each class's single most distant pair; every sample is in at most one selected pair.
    x = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.5, 0.5], [9.0, 1.0], [8.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1])
    true_intra, _ = _autograd_parts(x, y, k=1, margin=1.0)
    printed = paper_gradients(x, y, k=1, margin=1.0).intra
    # class 0's farthest pair is (1, 2): D = 0.25 + 6.25; class 1's is (3, 4): D = 1 + 4
    for j1, j2 in ((1, 2), (3, 4)):
        d = sq(x[j1].tolist(), x[j2].tolist())
        expected_true = 2.0 * 1 / (d * (1.0 / d)) ** 2 * (x[j1] - x[j2])  # 2k/(D S)^2 (x_j1 - x_j2), S = 1/D
        assert torch.allclose(true_intra[j1], expected_true)
        assert torch.allclose(true_intra[j2], -expected_true)  # the true gradients are opposite ...
        assert torch.allclose(printed[j1], expected_true.abs())  # ... the printed ones are |.| of them
        assert torch.allclose(printed[j2], printed[j1])  # ... and equal at both ends
    assert torch.equal(printed[0], torch.zeros(2, dtype=torch.float64))  # not in a selected pair
    # a step along the printed gradient translates the pair: its distance does not change
    step = x - 0.1 * printed
    assert sq(step[1].tolist(), step[2].tolist()) == pytest.approx(sq(x[1].tolist(), x[2].tolist()))


def test_eq7_factor_with_two_distances_matches_autograd_in_magnitude():
    # n = 4 points on a line, k = 2: pairs (0, 3) and (0, 2) or (1, 3) selected; use one where samples repeat
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [7.0, 0.0]], dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    true_intra, _ = _autograd_parts(x, y, k=2, margin=1.0)
    printed = paper_gradients(x, y, k=2, margin=1.0).intra
    # selected: (0, 3) with D = 49 and (1, 3) with D = 36; S = 1/49 + 1/36
    s = 1 / 49 + 1 / 36
    c49, c36 = 2 * 2 / (49 * s) ** 2, 2 * 2 / (36 * s) ** 2
    assert float(true_intra[0, 0]) == pytest.approx(c49 * (0 - 7))
    assert float(true_intra[1, 0]) == pytest.approx(c36 * (1 - 7))
    assert float(true_intra[3, 0]) == pytest.approx(c49 * 7 + c36 * 6)
    assert float(printed[3, 0]) == pytest.approx(c49 * 7 + c36 * 6)  # same sign only for x_j2 here
    assert float(printed[0, 0]) == pytest.approx(c49 * 7)  # opposite sign to the true one


def test_eq8_is_a_quarter_of_the_true_magnitude_with_swapped_counts_and_no_sign():
    # class Q = 0 with 3 samples, class R = 1 with 2 samples, class 2 far away
    x = torch.tensor(
        [[0.0, 0.0], [1.0, 0.0], [2.0, 3.0], [2.0, -1.0], [3.0, -2.0], [50.0, 50.0]], dtype=torch.float64
    )
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    margin = 100.0
    _, true_inter = _autograd_parts(x, y, k=2, margin=margin)
    printed = paper_gradients(x, y, k=2, margin=margin).inter
    c_q, c_r = x[:3].mean(0), x[3:5].mean(0)
    n_q, n_r = 3, 2
    assert torch.allclose(true_inter[:3], (2.0 * (c_r - c_q) / n_q).expand(3, 2))
    assert torch.allclose(true_inter[3:5], (2.0 * (c_q - c_r) / n_r).expand(2, 2))
    assert torch.allclose(printed[:3], ((c_r - c_q).abs() / (2 * n_r)).expand(3, 2))
    assert torch.allclose(printed[:3], true_inter[:3].abs() * n_q / (4 * n_r))
    assert torch.allclose(printed[3:5], true_inter[3:5].abs() * n_r / (4 * n_q))
    # c_R - c_Q = (1.5, -2.5): the printed gradient of Q has the wrong sign in the second coordinate
    assert float(true_inter[0, 1]) < 0 < float(printed[0, 1])
    assert torch.equal(printed[5], torch.zeros(2, dtype=torch.float64))
    # beyond the margin both are zero
    assert torch.equal(paper_gradients(x, y, k=2, margin=1.0).inter, torch.zeros_like(x))


# -- what the loss selects, and the parts of the module a chapter shows by name -----------------------


def test_selection_names_the_pairs_and_the_closest_identities_by_hand():
    # identity 7: a 3-4-5 triangle (pairs by squared distance: (1,2) 25, (0,2) 16, (0,1) 9); identity 3: two
    # points; identity 9: one point far away. Centres: 7 at (1, 4/3), 3 at (10, 0.5), 9 at (20, 20).
    x = torch.tensor([(0.0, 0.0), (3.0, 0.0), (0.0, 4.0), (10.0, 0.0), (10.0, 1.0), (20.0, 20.0)], dtype=torch.float64)
    y = torch.tensor([7, 7, 7, 3, 3, 9])
    sel = RangeLoss(k=2).selection(x, y)
    # identities in label order (3 before 7), each identity's pairs most distant first; 9 has none
    assert list(zip(sel.first.tolist(), sel.second.tolist(), sel.label.tolist())) == [(3, 4, 3), (1, 2, 7), (0, 2, 7)]
    assert sel.closest == (3, 7)
    assert RangeLoss(k=1).selection(x, y).first.tolist() == [3, 1]
    assert RangeLoss().selection(x[:3], y[:3]).closest is None


def test_selection_is_what_the_loss_differentiates():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(24, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (24,), generator=gen)
    loss = RangeLoss(k=2, margin=1e3)
    intra, inter = loss.components(x, y)
    g_intra, = torch.autograd.grad(intra, x)
    g_inter, = torch.autograd.grad(inter, x)
    sel = loss.selection(x, y)
    in_pairs = torch.zeros(24, dtype=torch.bool)
    in_pairs[sel.first] = in_pairs[sel.second] = True
    assert torch.equal(g_intra.abs().sum(1) > 0, in_pairs)  # only the selected pairs get an intra gradient
    q, r = sel.closest
    assert torch.equal(g_inter.abs().sum(1) > 0, (y == q) | (y == r))  # only Q and R get an inter gradient


def test_the_sections_and_regions_the_range_loss_chapter_shows_exist():
    from dbrepro import show
    from dbrepro.losses import range as range_module

    assert "an identity with one sample adds nothing" in show.doc(range_module, "Rules where the paper is silent").text
    assert "Algorithm 1" in show.doc(range_module, "Vectorised").text
    assert "def _largest_intra_pairs(" in show.source(range_module, region="pair selection").text
    assert "def _intra_class_range(" in show.source(range_module, region="Eq. 3").text
    eq4 = show.source(range_module, region="Eq. 4").text
    assert "def _closest_centre_pair(" in eq4 and "def _closest_centre_distance(" in eq4
    assert "1. Eq. 7's factor" in show.doc(paper_gradients, "Where they disagree with the derivative of Eq. 3-4").text


def test_the_sampler_matched_control_differs_from_range_loss_only_in_the_range_term():
    from dbrepro import recipes

    for profile in ("smoke", "cpu"):
        control, ranged = recipes.softmax_pk(profile, seed=1), recipes.range_loss(profile, seed=1)
        assert control.to_dict() == {**ranged.to_dict(), "terms": {}}
        assert control.key() != recipes.softmax(profile, seed=1).key()  # shuffled batches are another run
    wide = recipes.softmax_pk("cpu", pk=(16, 16))
    assert wide.sampler == "pk" and tuple(wide.pk) == (16, 16) and wide.batch_size == 256
