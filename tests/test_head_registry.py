"""The head contract, checked on every entry of ``dbrepro.losses.HEADS``: register a head and it is tested here.

Each head is built as the trainer builds it, ``HEADS[name](embedding_size, num_classes)`` with its
paper defaults, and called with ``dfi=`` exactly when it declares ``needs_dfi``. The hand-computed
values of each head are in ``test_heads.py`` and ``test_domain_balancing.py``.
"""

from __future__ import annotations

import io

import pytest
import torch
from torch.func import functional_call

from dbrepro.losses import HEADS, Head, MarginHead

NAMES = sorted(HEADS)


def build(name: str, embedding_size: int = 8, num_classes: int = 5, seed: int = 0) -> Head:
    torch.manual_seed(seed)
    return HEADS[name](embedding_size, num_classes)


def dfi_for(head: Head, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The per-call inputs of ``head``: a non-trivial DFI if it needs one, nothing otherwise."""
    if not head.needs_dfi:
        return {}
    return {"dfi": torch.linspace(0.4, 1.8, head.num_classes, dtype=dtype)}


def batch(embedding_size: int = 8, num_classes: int = 5, size: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(size) % num_classes  # every class present
    return torch.randn(size, embedding_size, generator=g), labels


def state(head: Head) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in head.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_books_heads_are_registered():
    assert {"softmax", "sphereface", "cosface", "arcface", "dbm"} <= set(HEADS)


@pytest.mark.parametrize("name", NAMES)
def test_entry_builds_a_head_with_prototypes(name):
    head = build(name, embedding_size=8, num_classes=5)
    assert isinstance(head, Head)
    assert head.weight.shape == (5, 8) and head.weight.requires_grad
    assert isinstance(type(head).needs_dfi, bool)  # a class attribute the trainer reads
    with pytest.raises(ValueError, match="must be positive"):
        HEADS[name](0, 5)
    with pytest.raises(ValueError, match="must be positive"):
        HEADS[name](8, 0)


@pytest.mark.parametrize("name", NAMES)
def test_output_shapes_and_dtypes(name):
    head = build(name)
    emb, labels = batch()
    logits = head.logits(emb, labels, **dfi_for(head))
    loss = head(emb, labels, **dfi_for(head))
    assert logits.shape == (6, 5) and logits.dtype == torch.float32
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert head.weight.grad.shape == (5, 8) and head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_the_mean_cross_entropy_of_the_logits(name):
    head = build(name).eval()
    emb, labels = batch()
    logits = head.logits(emb, labels, **dfi_for(head))
    by_row = torch.logsumexp(logits, dim=1) - logits[torch.arange(6), labels]
    torch.testing.assert_close(head(emb, labels, **dfi_for(head)), by_row.mean())


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    # in eval mode, so that a head with a schedule (SphereFace's lambda) is one function during the check
    head = build(name, embedding_size=3, num_classes=4).double().eval()
    emb, labels = batch(embedding_size=3, num_classes=4, size=5, seed=2)
    names = [n for n, _ in head.named_parameters()]
    inputs = (emb.double().requires_grad_(), *(p.detach().clone().requires_grad_() for p in head.parameters()))
    extra = dfi_for(head, torch.float64)

    def loss(e: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return functional_call(head, dict(zip(names, params)), (e, labels), extra)

    assert torch.autograd.gradcheck(loss, inputs)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_clear_errors(name):
    head = build(name, embedding_size=3, num_classes=4)
    extra = dfi_for(head)
    good = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"embeddings must have shape \(B, 3\)"):
        head(torch.randn(2, 5), torch.tensor([0, 1]), **extra)
    with pytest.raises(ValueError, match=r"embeddings must have shape"):
        head(torch.randn(3), torch.tensor([0, 1]), **extra)
    with pytest.raises(ValueError, match="floating-point"):
        head(torch.ones(2, 3, dtype=torch.int64), torch.tensor([0, 1]), **extra)
    with pytest.raises(ValueError, match="int64"):
        head(good, torch.tensor([0, 1], dtype=torch.int32), **extra)
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        head(good, torch.tensor([0, 1, 2]), **extra)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        head(good, torch.tensor([0, 4]), **extra)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        head.logits(good, torch.tensor([-1, 0]), **extra)
    with pytest.raises(ValueError, match=type(head).__name__):  # the message names the head
        head(torch.randn(2, 5), torch.tensor([0, 1]), **extra)


@pytest.mark.parametrize("name", [n for n in NAMES if not HEADS[n].needs_dfi])
def test_a_head_without_needs_dfi_takes_no_dfi(name):
    head = build(name)
    emb, labels = batch()
    with pytest.raises(TypeError, match=rf"{type(head).__name__} takes no dfi"):
        head(emb, labels, dfi=torch.ones(5))
    with pytest.raises(TypeError, match="takes no dfi"):
        head.logits(emb, labels, dfi=torch.ones(5))


@pytest.mark.parametrize("name", [n for n in NAMES if HEADS[n].needs_dfi])
def test_a_head_with_needs_dfi_takes_it_per_call_and_stores_none(name):
    head = build(name)
    emb, labels = batch()
    with pytest.raises(ValueError, match=r"needs the per-class DFI.*dfi=<tensor of shape \(5,\)>"):
        head(emb, labels)
    with pytest.raises(ValueError, match="needs the per-class DFI"):
        head.logits(emb, labels)
    with pytest.raises(ValueError, match=r"dfi must have shape \(5,\), got \(4,\)"):
        head(emb, labels, dfi=torch.ones(4))
    with pytest.raises(ValueError, match=r"dfi must have shape \(5,\), got list"):
        head(emb, labels, dfi=[1.0] * 5)
    with pytest.raises(ValueError, match="class 3 has -0.5"):
        head(emb, labels, dfi=torch.tensor([1.0, 1.0, 1.0, -0.5, 1.0]))
    with pytest.raises(ValueError, match="class 1 has nan"):
        head(emb, labels, dfi=torch.tensor([1.0, float("nan"), 1.0, 1.0, 1.0]))
    # the DFI is a target: no gradient flows into it, and the head keeps no copy
    dfi = torch.linspace(0.4, 1.8, 5, requires_grad=True)
    head(emb, labels, dfi=dfi).backward()
    assert dfi.grad is None
    assert not any("dfi" in key for key in head.state_dict())
    # different DFIs give different losses: it is used, not ignored
    assert head(emb, labels, dfi=torch.ones(5)) != head(emb, labels, dfi=torch.full((5,), 2.0))


@pytest.mark.parametrize("name", NAMES)
def test_logits_stay_float32_under_autocast(name):
    head = build(name)
    emb, labels = batch()
    extra = dfi_for(head)
    expected = head.logits(emb, labels, **extra).detach()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits = head.logits(emb.bfloat16(), labels, **extra)
        loss = head(emb.bfloat16().requires_grad_(), labels, **extra)
        cosine = head.cosine(emb.bfloat16()) if isinstance(head, MarginHead) else None
    assert logits.dtype == torch.float32 and torch.isfinite(loss)
    assert cosine is None or cosine.dtype == torch.float32
    torch.testing.assert_close(logits, expected, rtol=0.05, atol=0.05 * float(expected.abs().max()))


@pytest.mark.parametrize("name", NAMES)
def test_eval_and_logits_leave_the_head_unchanged(name):
    head = build(name)
    emb, labels = batch()
    extra = dfi_for(head)
    before = state(head)
    head.train()
    head.logits(emb, labels, **extra)
    assert same_state(before, state(head))  # logits() never advances anything
    head.eval()
    first = head(emb, labels, **extra)
    assert torch.equal(head(emb, labels, **extra), first)
    assert same_state(before, state(head))
    head.train()
    head(emb, labels, **extra)
    after = state(head)
    for key, value in head.named_parameters():
        assert torch.equal(after[key], before[key]), key  # a forward never touches the parameters


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    head = build(name, seed=0)
    emb, labels = batch()
    extra = dfi_for(head)
    for _ in range(3):  # advance whatever state a head keeps (SphereFace's iteration)
        head(emb, labels, **extra)
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    other = build(name, seed=1)
    assert not torch.equal(other.weight, head.weight)
    other.load_state_dict(torch.load(buffer))  # strict: the same keys
    assert same_state(state(head), state(other))
    head.eval(), other.eval()
    assert torch.equal(other.logits(emb, labels, **extra), head.logits(emb, labels, **extra))
    assert torch.equal(other(emb, labels, **extra), head(emb, labels, **extra))


@pytest.mark.parametrize("name", [n for n, cls in HEADS.items() if issubclass(cls, MarginHead)])
def test_margin_head_prototypes_start_at_unit_length(name):
    """MarginHead.init_std: N(0, 1/D), so that SGD's first steps move the prototypes' directions, not their norms."""
    torch.manual_seed(0)
    head = HEADS[name](256, 500)
    norms = head.weight.detach().norm(dim=1)
    assert 0.95 < float(norms.mean()) < 1.05 and float(norms.std()) < 0.1
