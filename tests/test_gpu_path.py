"""The CUDA path of the training step, proved on the CPU: no value read back to the host, channels_last.

A read of a GPU tensor's values on the host (``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``, or an op whose
output shape depends on the values: ``nonzero``, ``unique``, boolean indexing) waits for the device to finish
everything queued. :class:`HostReads` records every such read (at the dispatcher for ops, at the Python method
for the reads that bypass it on CPU tensors). With :func:`dbrepro.losses.margins.host_readable` answering as
for a GPU tensor, a full training step (forward, heads, RBM gate loss, backward, SGD) of every head and RBM
mode records none, so on CUDA it queues its work without waiting. The one CUDA-only read, AMP's
``GradScaler.step``, is covered by the CUDA test at the end, which runs where a device is present.
"""

from __future__ import annotations

import traceback

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dbrepro.data.base import TensorFaces
from dbrepro.losses import DomainBalancingMargin, margins
from dbrepro.losses.margins import SphereFace
from dbrepro.models import normalize_images
from dbrepro.train import TrainConfig, fit, refresh_dfi
from dbrepro.train.loop import EpochMeter, start, step_memory_format, train_step

aten = torch.ops.aten
#: ops whose result needs a value on the host (a GPU sync): scalars, data-dependent shapes, comparisons to bool
SYNCING_OPS = {aten._local_scalar_dense, aten.nonzero, aten._unique2, aten.unique_dim, aten.unique_consecutive,
               aten.masked_select, aten.repeat_interleave, aten.bincount, aten.histc, aten.equal}
#: Tensor methods that read values without going through the dispatcher on a CPU tensor
READING_METHODS = ("tolist", "numpy", "cpu")


def _where() -> str:
    """The innermost dbrepro frame of the current stack (where the read was asked for)."""
    frames = [f for f in traceback.extract_stack()[:-2] if "/dbrepro/" in f.filename.replace("\\", "/")]
    return f"{frames[-1].filename.rsplit('/dbrepro/', 1)[-1]}:{frames[-1].lineno}" if frames else "outside dbrepro"


class HostReads(TorchDispatchMode):
    """Inside ``with HostReads() as reads``: ``reads.seen`` lists every host read, as ``(what, where)``."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, str]] = []
        self._patched: dict[str, object] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        boolean_index = func.overloadpacket in (aten.index, aten.index_put, aten.index_put_) and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ()) if i is not None)
        if func.overloadpacket in SYNCING_OPS or boolean_index:
            self.seen.append((str(func), _where()))
        return func(*args, **kwargs)

    def __enter__(self):
        for name in READING_METHODS:
            original = getattr(torch.Tensor, name)
            self._patched[name] = original

            def reading(tensor, *a, _name=name, _original=original, **kw):
                self.seen.append((f"Tensor.{_name}", _where()))
                return _original(tensor, *a, **kw)

            setattr(torch.Tensor, name, reading)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in self._patched.items():
            setattr(torch.Tensor, name, original)
        return super().__exit__(*exc)


@pytest.fixture
def as_on_a_gpu(monkeypatch):
    """The heads treat every tensor as a GPU tensor: their value checks are off, as on CUDA."""
    monkeypatch.setattr(margins, "host_readable", lambda tensor: False)


def toy_faces(num_classes=8, per_class=8, size=16, seed=0) -> TensorFaces:
    g = torch.Generator().manual_seed(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    images = torch.randint(0, 256, (len(labels), 3, size, size), dtype=torch.uint8, generator=g)
    return TensorFaces(images, labels, num_classes, pd.DataFrame({"identity": labels}), name="toy")


def config(**kw) -> TrainConfig:
    base = dict(data={"kind": "toy"}, backbone="small", backbone_kwargs={"width": (4, 4, 8)}, embedding_size=16,
                image_size=16, head="cosface", head_kwargs={"s": 16.0}, epochs=1, batch_size=16, lr=0.05, seed=1)
    return TrainConfig(**{**base, **kw})


DFI = {"k": 3, "s": 16.0, "every": 1}
#: every head and RBM mode of the book, the IR-ResNet backbone, gradient clipping
SYNC_FREE = {
    "softmax": dict(head="softmax", head_kwargs={}),
    "cosface-ir18": dict(backbone="ir18", backbone_kwargs={"widths": (4, 4, 8, 8)}),
    "arcface": dict(head="arcface"),
    "sphereface": dict(head="sphereface", head_kwargs={}),
    "dbm": dict(head="dbm", dfi=DFI),
    "rbm-soft+dbm": dict(head="dbm", rbm="soft", dfi=DFI),
    "rbm-ungated": dict(rbm="ungated"),
    "grad-clip": dict(head="dbm", rbm="soft", dfi=DFI, grad_clip=5.0),
}


def steps(cfg: TrainConfig, data: TensorFaces, n: int = 3, guard: HostReads | None = None):
    """``n`` training steps of ``cfg`` on ``data`` (the DFI refreshed first, outside ``guard``); the state."""
    state = start(cfg, data.num_classes, torch.device("cpu"))
    if cfg.dfi is not None:
        refresh_dfi(state.objective, cfg.dfi)
    state.module.train()
    flips = torch.Generator().manual_seed(0)
    labels = torch.as_tensor(data.labels)
    batches = [torch.arange(i * cfg.batch_size, (i + 1) * cfg.batch_size) % len(data) for i in range(n)]
    with guard if guard is not None else HostReads():
        for idx in batches:
            train_step(state, state.module, data.images[idx], labels[idx], flips, torch.device("cpu"))
    return state


def test_the_guard_sees_every_kind_of_host_read():
    t = torch.tensor([0.0, 1.0, 2.0])
    with HostReads() as reads:
        t.sum().item()
        bool(t.max() > 1)
        int(t[1])
        float(t[2])
        t.tolist()
        t.numpy()
        t.cpu()
        torch.nonzero(t)
        torch.unique(t)
        t[t > 0]
        t.sum()  # no read
    kinds = [what for what, _ in reads.seen]
    assert len(kinds) == 10 and kinds.count("aten._local_scalar_dense.default") == 4
    assert {"Tensor.tolist", "Tensor.numpy", "Tensor.cpu"} <= set(kinds)
    assert all(where == "outside dbrepro" for _, where in reads.seen)


@pytest.mark.parametrize("name", SYNC_FREE)
def test_a_training_step_reads_nothing_back_where_reads_cost_a_sync(name, as_on_a_gpu):
    cfg = config(**SYNC_FREE[name])
    data = toy_faces()
    before = {k: v.clone() for k, v in start(cfg, data.num_classes, torch.device("cpu")).module.state_dict().items()}
    reads = HostReads()
    state = steps(cfg, data, guard=reads)
    assert reads.seen == [], f"{name}: host reads in the training step: {reads.seen}"
    after = state.module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the steps did train
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())


def test_on_the_cpu_the_heads_check_their_inputs_on_every_call():
    data = toy_faces()
    reads = HostReads()
    steps(config(head="dbm", rbm="soft", dfi=DFI), data, n=1, guard=reads)
    where = {w for _, w in reads.seen}
    assert any(w.startswith("losses/margins.py") for w in where)  # the label range and the DFI, read for free
    head = margins.CosFace(16, 8)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 8\), got range \[0, 8\]"):
        head(torch.randn(2, 16), torch.tensor([0, 8]))
    dbm = DomainBalancingMargin(16, 8)
    with pytest.raises(ValueError, match="dfi must be finite and non-negative; class 2 has nan"):
        dbm(torch.randn(2, 16), torch.tensor([0, 1]), dfi=torch.tensor([1.0, 1.0, float("nan")] + [1.0] * 5))


@pytest.mark.parametrize("term, where", [
    ({"range": {"margin": 10.0}}, "losses/range.py"),
    ({"contrastive": {}}, "losses/contrastive.py"),
    ({"triplet": {}}, "losses/triplet.py"),
    ({"center": {}}, "losses/center.py"),
], ids=["range", "contrastive", "triplet", "center"])
def test_the_metric_terms_are_the_reads_that_remain(term, where, as_on_a_gpu):
    """What dbrepro.train.loop's docstring says: Part I's metric terms select with data-dependent shapes."""
    cfg = config(head="softmax", head_kwargs={}, terms=term, sampler="pk", pk=(4, 4), batch_size=16)
    reads = HostReads()
    steps(cfg, toy_faces(), n=1, guard=reads)
    assert reads.seen and all(w.startswith(where) for _, w in reads.seen), reads.seen


def test_the_epoch_meter_reads_the_loss_every_cuda_sync_every_steps():
    from dbrepro.train.loop import CUDA_SYNC_EVERY

    meter = EpochMeter(2 * CUDA_SYNC_EVERY + 5, torch.device("cuda"), "toy", 0, 1, False, 1)
    loss = torch.tensor(1.5)
    seen = []
    for i in range(1, 2 * CUDA_SYNC_EVERY + 1):
        with HostReads() as reads:
            meter.add(loss, {"head": loss}, 16, i, 0.1)
        seen.append(bool(reads.seen))
    assert [i + 1 for i, read in enumerate(seen) if read] == [CUDA_SYNC_EVERY, 2 * CUDA_SYNC_EVERY]


def test_fit_checks_the_labels_once_before_the_first_step():
    class Faces:  # a FaceDataset whose labels a GPU step would not check
        def __init__(self, labels):
            self.labels, self.num_classes, self.name = np.asarray(labels), 4, "bad-faces"
            self.meta = pd.DataFrame({"identity": self.labels})
            self.images = torch.zeros(len(labels), 3, 16, 16, dtype=torch.uint8)

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return self.images[i], int(self.labels[i])

    called = []
    bad = (([0, 1, 2, 4] * 8, r"bad-faces: labels must lie in \[0, num_classes=4\), got range \[0, 4\]"),
           ([0, -1, 2, 3] * 8, r"got range \[-1, 3\]"),
           ([0.0, 1.0, 2.0, 3.0] * 8, "must be integers, got dtype float64"))
    for labels, message in bad:
        with pytest.raises(ValueError, match=message):
            fit(config(), Faces(labels), progress=False, step_callbacks=[called.append])
    assert called == []


def test_sphereface_anneals_on_the_device_as_on_the_host(monkeypatch):
    torch.manual_seed(0)
    head = SphereFace(8, 5)
    emb, labels = torch.randn(32, 8), torch.arange(32) % 5
    for it in (0, 1, 7, 100, 999, 2000, 123_457):
        head.iteration.fill_(it)
        on_host = head.logits(emb, labels)
        with monkeypatch.context() as m:
            m.setattr(margins, "host_readable", lambda tensor: False)
            lam = head.annealed_lambda()
            on_device = head.logits(emb, labels)
        assert isinstance(lam, torch.Tensor) and lam.dtype == torch.float64 and float(lam) == head.lambda_
        assert torch.equal(on_device, on_host), it


# -- channels_last ---------------------------------------------------------------------------------------

def test_channels_last_is_chosen_for_ir_resnets_on_cuda_with_amp_only():
    ir18 = config(backbone="ir18", backbone_kwargs={"widths": (4, 4, 8, 8)})
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    model = start(ir18, 8, cpu).model
    small = start(config(), 8, cpu).model
    assert step_memory_format(ir18, cuda, model) is torch.channels_last
    assert step_memory_format(ir18.replace(amp=False), cuda, model) is torch.contiguous_format
    assert step_memory_format(ir18, cpu, model) is torch.contiguous_format
    assert step_memory_format(config(), cuda, small) is torch.contiguous_format  # keeps its own format
    state = start(ir18, 8, cpu)  # the CPU path is untouched: bit-identical runs
    assert state.memory_format is torch.contiguous_format
    assert all(p.is_contiguous() for p in state.model.parameters())


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
def test_a_channels_last_step_trains_the_same_model(monkeypatch):
    """The CUDA path's conversions, run on the CPU: same weights up to float rounding after two steps, and the
    channels_last weights load into a fresh (contiguous) model.

    oneDNN is switched off for both runs: its float32 weight gradient of a 1x1 stride-2 convolution in NHWC
    with fewer input channels than its block (this network's shortcuts, 4 channels) is wrong
    (uxlfoundation/oneDNN#6035). The book never trains an IR-ResNet in channels_last on the CPU, and CUDA
    runs cuDNN's convolutions.
    """
    cfg = config(backbone="ir18", backbone_kwargs={"widths": (4, 4, 8, 8)}, head="dbm", rbm="soft", dfi=DFI)
    data = toy_faces()
    import dbrepro.train.loop as loop

    with torch.backends.mkldnn.flags(enabled=False):
        plain = steps(cfg, data, n=2)
        monkeypatch.setattr(loop, "step_memory_format", lambda cfg, device, model: torch.channels_last)
        nhwc = steps(cfg, data, n=2)
    assert nhwc.memory_format is torch.channels_last
    conv = nhwc.model.backbone.stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    for (k, a), (_, b) in zip(plain.module.state_dict().items(), nhwc.module.state_dict().items()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), k
    monkeypatch.undo()
    fresh = start(cfg, data.num_classes, torch.device("cpu")).module  # contiguous again
    fresh.load_state_dict(nhwc.module.state_dict())
    assert all(p.is_contiguous() for p in fresh.parameters())
    fresh.eval(), nhwc.module.eval()
    x = normalize_images(data.images[:4])
    with torch.no_grad():
        assert torch.allclose(fresh.model(x), nhwc.model(x), rtol=1e-5, atol=1e-6)


# -- on a CUDA device ------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="runs where a CUDA device is present (the GPU check)")
def test_on_cuda_a_step_waits_for_the_device_only_in_the_grad_scaler():
    """``torch.cuda.set_sync_debug_mode("error")`` raises at any synchronising call; AMP's GradScaler.step,
    which reads whether the gradients overflowed, is the one allowed."""
    cuda = torch.device("cuda")
    for name in ("cosface-ir18", "rbm-soft+dbm", "sphereface"):
        cfg = config(**SYNC_FREE[name])
        data = toy_faces()
        state = start(cfg, data.num_classes, cuda)
        if cfg.dfi is not None:
            refresh_dfi(state.objective, cfg.dfi)
        flips = torch.Generator().manual_seed(0)
        images, labels = data.images[:16].pin_memory(), torch.as_tensor(data.labels[:16]).pin_memory()
        train_step(state, state.module, images, labels, flips, cuda)  # warm-up: cuDNN's kernel search
        scaler_step = state.scaler.step

        def allowed(optimizer):
            torch.cuda.set_sync_debug_mode(0)
            try:
                return scaler_step(optimizer)
            finally:
                torch.cuda.set_sync_debug_mode("error")

        state.scaler.step = allowed
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(3):
                train_step(state, state.module, images, labels, flips, cuda)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        assert state.memory_format is (torch.channels_last if name == "cosface-ir18" else torch.contiguous_format)
