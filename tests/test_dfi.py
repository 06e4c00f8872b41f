"""Inter-class compactness (DB Eq. 1) and the Domain Frequency Indicator (DB Eq. 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dbrepro import dfi as dfi_module
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


def full_matrix_ic(weight: np.ndarray, k: int, s: float) -> np.ndarray:
    """Eq. 1 the direct way, in float64: the whole cosine matrix, each row sorted, the top k log-sum-exp'ed."""
    unit = weight / np.linalg.norm(weight, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    nearest = -np.sort(-cos, axis=1)[:, :k]
    top = nearest[:, :1]
    return (s * top + np.log(np.exp(s * (nearest - top)).sum(axis=1, keepdims=True)))[:, 0]


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


@pytest.mark.parametrize(
    "classes,dim,k,chunk",
    [
        (1000, 16, 10, 128),  # 8 blocks: after the diagonal tiles, only the cosines above the thresholds
        (1000, 16, 100, 128),  # k near the block size: most tiles are not sparse, a plain top-k
        (999, 16, 10, 100),  # a short last block; tiles whose size is not a multiple of 8
        (300, 8, 150, 64),  # k > chunk: blocks hold fewer than k cosines for a while
        (257, 512, 256, 4096),  # k = num_classes - 1, one tile
    ],
)
def test_ic_matches_the_full_matrix(classes, dim, k, chunk):
    weight = torch.randn(classes, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(classes + k))
    ic = inter_class_compactness(weight, k=k, s=30.0, chunk=chunk)
    np.testing.assert_allclose(ic.numpy(), full_matrix_ic(weight.numpy(), k, 30.0), rtol=1e-6)
    ic32 = inter_class_compactness(weight.float(), k=k, s=30.0, chunk=chunk)
    np.testing.assert_allclose(ic32.numpy(), full_matrix_ic(weight.numpy(), k, 30.0), rtol=2e-6)


def test_the_thresholded_path_is_taken_and_exact(monkeypatch):
    # clustered prototypes (tight groups of 40 classes, several per block) so that thresholds matter
    gen = torch.Generator().manual_seed(7)
    centres = torch.randn(25, 32, dtype=torch.float64, generator=gen)
    weight = centres.repeat_interleave(40, dim=0) + 0.3 * torch.randn(1000, 32, dtype=torch.float64, generator=gen)
    weight = weight[torch.randperm(1000, generator=gen)]
    offered = []  # per thresholded offer: how many cosines passed the thresholds
    set_flags = dfi_module._set_flags

    def counting(mask, limit):
        flat = set_flags(mask, limit)
        if flat is not None:
            offered.append(len(flat))
        return flat

    monkeypatch.setattr(dfi_module, "_set_flags", counting)
    ic = inter_class_compactness(weight, k=10, s=64.0, chunk=128)
    # 8 blocks: 28 off-diagonal tiles, offered by rows and by columns; most offers go through the
    # thresholds, which let through a few percent of a tile's 128 x 128 cosines
    assert len(offered) > 28 and sum(offered) < 0.05 * len(offered) * 128 * 128
    np.testing.assert_allclose(ic.numpy(), full_matrix_ic(weight.numpy(), 10, 64.0), rtol=1e-6)


def test_ties_and_duplicates_are_exact():
    # 30 distinct prototypes, each repeated 12 times: every class has 11 neighbours at cos = 1 exactly
    base = torch.randn(30, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    weight = base.repeat(12, 1)
    for k in (5, 11, 12, 40):
        ic = inter_class_compactness(weight, k=k, s=10.0, chunk=64)
        np.testing.assert_allclose(ic.numpy(), full_matrix_ic(weight.numpy(), k, 10.0), rtol=1e-6)
    assert torch.allclose(inter_class_compactness(weight, k=11, s=10.0, chunk=64), torch.tensor(10.0 + math.log(11)))
    same = torch.ones(200, 3)  # all cosines 1: IC = s + log k for everyone
    torch.testing.assert_close(inter_class_compactness(same, k=50, s=2.0, chunk=32), torch.full((200,), 2.0 + math.log(50)))


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
    assert code.startswith("_check_weight_and_k(") and "logsumexp(s * nearest" in code
    assert "torch.mm(" in code and "fill_diagonal_" in code and "offer(" in code  # tiles, self excluded, top K
    assert '"""' not in code and "region" not in code  # the body only, markers left out
