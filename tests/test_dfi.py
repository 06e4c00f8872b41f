"""Inter-class compactness (DB Eq. 1) and the Domain Frequency Indicator (DB Eq. 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dbrepro.dfi import domain_frequency_indicator, inter_class_compactness


def brute_force_ic(weight: np.ndarray, k: int, s: float) -> np.ndarray:
    """Eq. 1 with two loops: for each class, sort the cosines to all others and log-sum-exp the top k."""
    n = len(weight)
    out = np.empty(n)
    for i in range(n):
        cosines = []
        for j in range(n):
            if j != i:
                a, b = weight[i], weight[j]
                cosines.append(float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)))
        nearest = sorted(cosines, reverse=True)[:k]
        out[i] = math.log(sum(math.exp(s * c) for c in nearest))
    return out


@pytest.mark.parametrize("k,s", [(1, 64.0), (5, 64.0), (29, 8.0)])
def test_ic_matches_brute_force(k, s):
    weight = torch.randn(30, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
    ic = inter_class_compactness(weight, k=k, s=s, chunk=7)
    assert ic.dtype == torch.float32 and ic.shape == (30,)
    np.testing.assert_allclose(ic.numpy(), brute_force_ic(weight.numpy(), k, s), rtol=1e-6)


def test_dfi_is_eps_over_ic():
    weight = torch.randn(20, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    dfi = domain_frequency_indicator(weight, k=3, s=64.0, eps=5.5)
    np.testing.assert_allclose(dfi.numpy(), 5.5 / brute_force_ic(weight.numpy(), 3, 64.0), rtol=1e-6)


def test_hand_example_and_self_excluded():
    # prototypes on the unit circle at 0, 90 and 180 degrees (scaled; scale must not matter)
    weight = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-3.0, 0.0]])
    ic = inter_class_compactness(weight, k=1, s=2.0)
    # k = 1: every class's nearest other class is the one at 90 degrees (cos 0), so IC = log(e^0) = 0
    torch.testing.assert_close(ic, torch.zeros(3))
    ic2 = inter_class_compactness(weight, k=2, s=2.0)  # the 180-degree class adds e^(2 * -1) at the ends
    expected = torch.tensor([math.log(1 + math.exp(-2)), math.log(2.0), math.log(1 + math.exp(-2))])
    torch.testing.assert_close(ic2, expected)
    # a duplicate prototype is a neighbour at cos = 1, but a class never counts itself
    dup = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(inter_class_compactness(dup, k=1, s=3.0), torch.tensor([3.0, 3.0, 0.0]))


def test_chunking_does_not_change_the_result():
    weight = torch.randn(103, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    reference = inter_class_compactness(weight, k=10, s=30.0, chunk=103)
    for chunk in (1, 10, 64, 102, 1000):
        chunked = inter_class_compactness(weight, k=10, s=30.0, chunk=chunk)
        torch.testing.assert_close(chunked, reference, rtol=0, atol=1e-6)


def test_float32_weight_agrees_with_float64():
    weight = torch.randn(50, 32, generator=torch.Generator().manual_seed(1))
    ic32 = inter_class_compactness(weight, k=8, s=64.0, chunk=16)
    ic64 = inter_class_compactness(weight.double(), k=8, s=64.0)
    torch.testing.assert_close(ic32, ic64, rtol=1e-5, atol=1e-5)


def test_k_zero_means_no_dfi():
    weight = torch.randn(10, 4)
    assert torch.isneginf(inter_class_compactness(weight, k=0, s=64.0)).all()
    dfi = domain_frequency_indicator(weight, k=0, s=64.0, eps=5.5)
    assert dfi.dtype == torch.float32 and torch.equal(dfi, torch.ones(10))


def test_non_positive_ic_is_refused_or_floored():
    # two opposite prototypes: with k = 1 each sees cos = -1, IC = -s < 0
    weight = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(inter_class_compactness(weight, k=1, s=1.0), torch.tensor([0.0, 0.0, 0.0]))
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    torch.testing.assert_close(inter_class_compactness(opposite, k=1, s=1.5), torch.tensor([-1.5, -1.5]))
    with pytest.raises(ValueError, match=r"IC <= 0 for 2 of 2 classes \(class 0: IC = -1.5\)"):
        domain_frequency_indicator(opposite, k=1, s=1.5, eps=5.5)
    with pytest.raises(ValueError, match=r"IC <= 0 for 3 of 3 classes"):  # IC = 0 exactly
        domain_frequency_indicator(weight, k=1, s=1.0, eps=5.5)
    dfi = domain_frequency_indicator(opposite, k=1, s=1.5, eps=5.5, ic_floor=0.5)
    torch.testing.assert_close(dfi, torch.tensor([11.0, 11.0]))
    assert torch.isfinite(dfi).all() and (dfi > 0).all()


def test_bad_arguments():
    weight = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, num_classes - 1 = 4\]"):
        inter_class_compactness(weight, k=5, s=64.0)
    with pytest.raises(ValueError, match="s must be positive"):
        inter_class_compactness(weight, k=2, s=0.0)
    with pytest.raises(ValueError, match="chunk"):
        inter_class_compactness(weight, k=2, s=1.0, chunk=0)
    with pytest.raises(ValueError, match="num_classes, embedding_size"):
        inter_class_compactness(torch.randn(5), k=2, s=1.0)
    with pytest.raises(ValueError, match="NaN"):
        inter_class_compactness(torch.full((5, 3), float("nan")), k=2, s=1.0)
    with pytest.raises(ValueError, match="eps must be positive"):
        domain_frequency_indicator(weight, k=2, s=64.0, eps=0.0)
    with pytest.raises(ValueError, match="ic_floor must be positive"):
        domain_frequency_indicator(weight, k=2, s=64.0, eps=5.5, ic_floor=0.0)


def test_runs_without_autograd_on_a_parameter():
    weight = torch.nn.Parameter(torch.randn(12, 4))
    dfi = domain_frequency_indicator(weight, k=3, s=64.0, eps=5.5)
    assert not dfi.requires_grad and dfi.device == weight.device


def test_the_named_region_shown_by_the_dfi_chapter_holds_eq1():
    from dbrepro import dfi, show

    code = show.source(dfi.inter_class_compactness, region="Eq. 1 in row blocks").text
    assert code.startswith("_check_weight_and_k(") and "topk(k" in code and "logsumexp(s * nearest" in code
    assert '"""' not in code and "region" not in code  # the body only, markers left out
