"""The training loop: SGD with the papers' step schedule, AMP on CUDA (bf16 on the CPU), DDP, atomic checkpoints, resume.

One loop serves every experiment in the book; :func:`fit` reads like the algorithm::

    start (model, objective, optimiser)  ->  resume from the run's checkpoint, if any
    for every epoch:  set the lr  ->  seed the epoch  ->  for every batch: callbacks (DFI refresh), step
                      ->  measure the loss on a fixed probe  ->  record the epoch (history, checkpoint, log)
    finish (model.pt, metrics.json)

What varies is plugged in, never edited in: the **model** returns embeddings (and, with
``return_aux=True``, the RBM gate); the **objective** (:class:`~dbrepro.train.objective.Objective`) is the
head plus extra terms plus the gate regression; **callbacks** are plain functions of the
:class:`TrainState`, called before every step or after every epoch. The DFI refresh of Domain Balancing is
one of them (:func:`dfi_refresh`).

Reproducibility: all randomness of epoch ``e`` (batch order, flips, dropout) is seeded from
``(seed, e, rank)``, and the checkpoint written at the end of every epoch holds the model, the objective
(head, centres, DFI), the optimiser and the AMP scaler, so a run interrupted after epoch ``e`` and resumed
ends bit-identical to an uninterrupted one (on the CPU).

Speed: on CUDA the loop reads the loss back to the host only every :data:`CUDA_SYNC_EVERY` steps (loss
sums stay on the device), copies batches with ``non_blocking`` from pinned memory and flips them on the
device, turns on ``cudnn.benchmark``, and trains an IR-ResNet in ``channels_last`` under AMP
(:func:`step_memory_format`, decided once in :func:`start`); on the CPU the loss is checked after every
step, which costs nothing there, and the backbone runs under bfloat16 autocast when the config asks for it
(``cpu_bf16``, the cpu profile on a CPU with native bf16: :func:`autocast_dtype`).

No host sync per step on CUDA: nothing on the step path reads a device value back to the host. The heads
check label ranges and the DFI only where that is free, on the CPU
(:func:`dbrepro.losses.margins.host_readable`); on a GPU :func:`fit` checks the training set's labels
once instead (every :class:`~dbrepro.data.base.FaceDataset` returns ``labels[i]`` with image ``i``) and
the DFI is checked where it is computed (:func:`dbrepro.dfi.domain_frequency_indicator`, every
``dfi.every`` steps). Two reads remain, both outside this code: float16 AMP's ``GradScaler.step`` reads
whether the gradients overflowed, once per step, to skip the update (PyTorch's fused SGD would decide on
the device, but it allocates its momentum buffers uninitialised before a first step that it then skips,
so the standard SGD is kept); and the metric terms of Part I (range, contrastive, triplet, center loss)
select pairs and classes with data-dependent shapes (``unique``, ``nonzero``).
The softmax and margin heads, DBM and the RBM are sync-free; ``tests/test_gpu_path.py`` proves it.

Distributed: launched under ``torchrun`` (``WORLD_SIZE`` > 1) the loop joins the process group, shards
every batch across ranks (the global batch stays ``batch_size``) and wraps model + objective in
``DistributedDataParallel``; rank 0 alone writes. The ranks wait for each other before looking for a
checkpoint (rank 0 may just have reset the run or removed an unusable checkpoint) and before leaving
:func:`fit` (so that every rank finds the finished run in the cache; ``dbrepro train`` verifies it).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ..progress import event, report
from ..config import resolve_device
from ..data.base import FaceDataset
from ..data.samplers import PKSampler, RandomBatchSampler
from ..models import normalize_images
from ..runs import Run
from .checkpoint import load_checkpoint, save_checkpoint, save_model
from .config import DFIConfig, TrainConfig
from .distributed import DistInfo, barrier, init_distributed, process_device
from .objective import Objective, TrainModule, build, refresh_dfi
from .sgd import SGD

#: on CUDA, steps between two reads of the loss on the host (finiteness check, progress)
CUDA_SYNC_EVERY = 50
#: seconds between two progress lines
PROGRESS_EVERY_S = 10.0
#: batches of the fixed probe on which the loss is measured after every epoch (:func:`probe_loss`)
PROBE_BATCHES = 16
#: the "epoch" whose batches form the probe: the same training images after every epoch of a run
PROBE_EPOCH = 1_000_000


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch and step."""


@dataclass
class TrainState:
    """What callbacks see. ``step`` counts optimiser steps from 0 over the whole run."""

    cfg: TrainConfig
    module: TrainModule
    #: ``torch.optim.SGD`` on CUDA, :class:`~dbrepro.train.sgd.SGD` on the CPU (:func:`make_optimizer`)
    optimizer: Any
    scaler: torch.amp.GradScaler
    num_classes: int
    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    #: the memory format of the model's input batches (:func:`step_memory_format`)
    memory_format: torch.memory_format = torch.contiguous_format

    @property
    def model(self) -> nn.Module:
        return self.module.model

    @property
    def objective(self) -> Objective:
        return self.module.objective


#: A callback is a plain function of the state. Step callbacks run before every optimiser step
#: (``state.step`` is the index of the step about to run); epoch callbacks run after every epoch, before
#: the checkpoint is written.
Callback = Callable[[TrainState], None]


def dfi_refresh(dfi: DFIConfig) -> Callback:
    """A step callback recomputing the DFI (DB Eq. 1-2) from the head's prototypes every ``dfi.every`` steps.

    It runs *before* the steps whose index is a multiple of ``every`` (step 0 included): the DFI in use is
    always computed from the prototypes of an earlier iteration ("DFI(x) ... from the last iteration",
    DB §3.2), at most ``every`` steps old.
    """

    def refresh(state: TrainState) -> None:
        if state.step % dfi.every == 0:
            refresh_dfi(state.objective, dfi)

    return refresh


@dataclass
class TrainResult:
    module: TrainModule
    history: list[dict[str, Any]]
    metrics: dict[str, Any]

    @property
    def model(self) -> nn.Module:
        return self.module.model

    @property
    def objective(self) -> Objective:
        return self.module.objective


# -- the loop -------------------------------------------------------------------------------------

def fit(
    cfg: TrainConfig,
    dataset: FaceDataset,
    *,
    run: Run | None = None,
    device: str | torch.device = "auto",
    progress: bool | None = None,
    step_callbacks: Sequence[Callback] = (),
    epoch_callbacks: Sequence[Callback] = (),
    num_workers: int = 0,
    stop_after_epoch: int | None = None,
    label: str = "training",
) -> TrainResult:
    """Train ``cfg`` on ``dataset``; with a ``run``, checkpoint every epoch and resume from the last one.

    ``num_workers``: DataLoader workers for on-disk datasets (in-memory ones are indexed directly).
    ``stop_after_epoch`` ends the loop early after that many epochs (as an interruption would), leaving the
    run incomplete; calling ``fit`` again resumes it. ``label`` names the run in progress lines
    (:mod:`dbrepro.progress`); ``progress`` shows a tqdm bar (default: on a terminal).
    """
    device = resolve_device(device)
    info = init_distributed(device)
    device = process_device(device, info)
    labels = _checked_labels(cfg, dataset, info)  # once per dataset: the heads do not check them on a GPU
    if progress is None:
        progress = info.is_main and sys.stderr.isatty()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels

    state = start(cfg, int(dataset.num_classes), device)
    barrier(info)  # under torchrun every rank sees the run's files as rank 0 left them (reset, checkpoint removed)
    if run is not None and run.checkpoint_path.exists():
        resume(state, run, device, int(dataset.num_classes), info)
    wrapped = _wrap(state.module, device, info)
    callbacks = ([dfi_refresh(cfg.dfi)] if cfg.dfi is not None else []) + list(step_callbacks)

    last_epoch = cfg.epochs if stop_after_epoch is None else min(cfg.epochs, stop_after_epoch)
    started = time.perf_counter()
    for epoch in range(state.epoch, last_epoch):
        lr = cfg.lr_at(epoch)
        for g in state.optimizer.param_groups:
            g["lr"] = lr
        flip_gen = _seed_epoch(cfg, epoch, info)
        sampler = epoch_sampler(cfg, labels, epoch, info)
        state.module.train()
        meter = EpochMeter(len(sampler), device, label, epoch, cfg.epochs, progress, info.world_size)
        for images, y in batches(dataset, sampler, num_workers, pin_memory=device.type == "cuda"):
            for cb in callbacks:
                cb(state)
            loss, parts = train_step(state, wrapped, images, y, flip_gen, device)
            meter.add(loss, parts, len(images), state.step, lr)
            state.step += 1
        record = meter.record(epoch, lr)
        record["probe_loss"] = probe_loss(state, dataset, labels, device, info)
        end_epoch(state, record, run, info, epoch_callbacks)
    return finish(state, run, info, dataset, device, time.perf_counter() - started)


def start(cfg: TrainConfig, num_classes: int, device: torch.device) -> TrainState:
    """Model, objective (seeded from ``cfg.seed``), SGD with momentum and weight decay (:func:`make_optimizer`),
    the AMP scaler; the model in the memory format it trains in (:func:`step_memory_format`)."""
    module = build(cfg, num_classes).to(device)
    memory_format = step_memory_format(cfg, device, module.model)
    if memory_format is not torch.contiguous_format:
        module.model.to(memory_format=memory_format)  # conv weights; the batches follow in train_step
    optimizer = make_optimizer(module, cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
    return TrainState(cfg, module, optimizer, scaler, num_classes, memory_format=memory_format)


def make_optimizer(module: nn.Module, cfg: TrainConfig, device: torch.device) -> Any:
    """SGD with the config's momentum and weight decay: ``torch.optim.SGD`` on CUDA (its multi-tensor
    kernels), :class:`~dbrepro.train.sgd.SGD` on the CPU, the same arithmetic without ``torch.optim``'s
    2.3-2.5 s import of ``torch._dynamo`` in every new process (its module docstring)."""
    if device.type == "cuda":
        return torch.optim.SGD(module.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return SGD(module.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The dtype a training step's backbone computes in under autocast, or None for float32 throughout:
    float16 on CUDA with ``cfg.amp``, bfloat16 on the CPU with ``cfg.cpu_bf16``. The one place this is decided."""
    if device.type == "cuda":
        return torch.float16 if cfg.amp else None
    if device.type == "cpu":
        return torch.bfloat16 if cfg.cpu_bf16 else None
    return None


def step_autocast(cfg: TrainConfig, device: torch.device) -> torch.autocast:
    """The autocast context of a training step and of the epoch's probe loss (:func:`autocast_dtype`)."""
    dtype = autocast_dtype(cfg, device)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def step_memory_format(cfg: TrainConfig, device: torch.device, model: nn.Module) -> torch.memory_format:
    """``channels_last`` for an IR-ResNet trained on CUDA with AMP, else ``contiguous_format``: the one place
    this is decided.

    Tensor cores read NHWC; in NCHW cuDNN transposes around every half-precision convolution. In float32
    on CUDA, and on the CPU, nothing changes (CPU runs stay bit-identical). The small CPU network keeps
    ``channels_last`` internally whatever this says (:mod:`dbrepro.models.small`).
    """
    from ..models.iresnet import IResNet

    if device.type == "cuda" and cfg.amp and isinstance(getattr(model, "backbone", model), IResNet):
        return torch.channels_last
    return torch.contiguous_format


def resume(state: TrainState, run: Run, device: torch.device, num_classes: int, info: DistInfo) -> None:
    """Continue from the run's last checkpoint (written at the end of an epoch)."""
    ckpt = load_checkpoint(run, device, config_key=state.cfg.key(), num_classes=num_classes)
    state.module.load_state_dict(ckpt["module"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scaler.load_state_dict(ckpt["scaler"])
    state.epoch, state.step, state.history = ckpt["epoch"], ckpt["step"], ckpt["history"]
    if info.is_main:
        run.log(f"resumed from epoch {state.epoch}")


def train_step(state: TrainState, wrapped: nn.Module, images: torch.Tensor, labels: torch.Tensor,
               flip_gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One SGD step on one batch (to the device, random flips, normalisation, forward under autocast, backward,
    update). Nothing is read back to the host (the module docstring lists the exceptions).

    Returns the loss and its parts, detached, still on the device.
    """
    cfg = state.cfg
    images = images.to(device, non_blocking=True)
    if state.memory_format is not torch.contiguous_format:
        images = images.contiguous(memory_format=state.memory_format)
    if cfg.flip:
        images = random_flip(images, flip_gen)
    x = normalize_images(images)
    labels = labels.to(device, non_blocking=True)
    with step_autocast(cfg, device):
        loss, parts = wrapped(x, labels)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if cfg.grad_clip:
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(state.module.parameters(), cfg.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    return loss.detach(), {k: v.detach() for k, v in parts.items()}


def end_epoch(state: TrainState, record: dict[str, Any], run: Run | None, info: DistInfo,
              epoch_callbacks: Sequence[Callback]) -> None:
    """Append the epoch's record to the history, run the epoch callbacks, checkpoint and log (rank 0)."""
    state.history.append(record)
    state.epoch = record["epoch"]
    for cb in epoch_callbacks:
        cb(state)
    if run is not None and info.is_main:
        save_checkpoint(run, state.module, state.optimizer, state.scaler, epoch=state.epoch, step=state.step,
                        history=state.history, config_key=state.cfg.key(), num_classes=state.num_classes)
        run.log(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
    barrier(info)


def finish(state: TrainState, run: Run | None, info: DistInfo, dataset: FaceDataset, device: torch.device,
           seconds: float) -> TrainResult:
    """Metrics of the run; a complete run writes ``model.pt`` and then ``metrics.json`` (rank 0)."""
    history = state.history
    metrics = {
        "epochs_done": state.epoch,
        "complete": state.epoch >= state.cfg.epochs,
        "num_classes": int(dataset.num_classes),
        "num_images": len(dataset),
        "final_loss": history[-1]["loss"] if history else None,
        "train_seconds": round(sum(h["seconds"] for h in history), 3),
        "seconds_this_call": round(seconds, 3),
        "history": history,
        "world_size": info.world_size,
        "device": str(device),
        "autocast": str(autocast_dtype(state.cfg, device) or torch.float32).removeprefix("torch."),
    }
    if run is not None and info.is_main and metrics["complete"]:
        save_model(run, state.module, state.cfg, int(dataset.num_classes))
        run.finish(metrics)
        event("trained", run=run.key, seconds=metrics["train_seconds"])
    barrier(info)  # no rank returns before rank 0 has written the finished run
    state.module.eval()
    return TrainResult(state.module, history, metrics)


# -- the pieces -----------------------------------------------------------------------------------

def _checked_labels(cfg: TrainConfig, dataset: FaceDataset, info: DistInfo) -> np.ndarray:
    """The training labels, checked once: integers in ``[0, num_classes)``, one per image."""
    if len(dataset) == 0:
        raise ValueError("the training set is empty")
    if cfg.batch_size % info.world_size or (cfg.sampler == "pk" and cfg.pk[0] % info.world_size):
        raise ValueError(f"batch_size {cfg.batch_size} (pk={cfg.pk}) cannot be split evenly over "
                         f"{info.world_size} processes")
    labels = np.asarray(dataset.labels)
    name = getattr(dataset, "name", type(dataset).__name__)
    if labels.shape != (len(dataset),):
        raise ValueError(f"{name}: dataset.labels has shape {labels.shape}, expected ({len(dataset)},)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: dataset.labels must be integers, got dtype {labels.dtype}")
    num_classes = int(dataset.num_classes)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{name}: labels must lie in [0, num_classes={num_classes}), got range [{low}, {high}]")
    return labels


def _wrap(module: TrainModule, device: torch.device, info: DistInfo) -> nn.Module:
    if info.world_size == 1:
        return module
    return nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101) % (2**63 - 1)


def _seed_epoch(cfg: TrainConfig, epoch: int, info: DistInfo) -> torch.Generator:
    """Seed this epoch's torch randomness (dropout, ...) and return the generator of its flips."""
    seed = _epoch_seed(cfg.seed, epoch, info.rank)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed + 1)


def epoch_sampler(cfg: TrainConfig, labels: np.ndarray, epoch: int, info: DistInfo) -> PKSampler | RandomBatchSampler:
    """This rank's batches of one epoch: P x K identities x images, or shuffled batches."""
    if cfg.sampler == "pk":
        sampler = PKSampler(labels, p=cfg.pk[0] // info.world_size, k=cfg.pk[1], seed=cfg.seed,
                            rank=info.rank, world_size=info.world_size)
    else:
        sampler = RandomBatchSampler(len(labels), cfg.batch_size // info.world_size, seed=cfg.seed, rank=info.rank,
                                     world_size=info.world_size)
    sampler.set_epoch(epoch)
    if len(sampler) == 0:
        raise ValueError(f"the training set ({len(labels)} images) is smaller than one batch of {cfg.batch_size}")
    return sampler


@torch.no_grad()
def probe_loss(state: TrainState, dataset: FaceDataset, labels: np.ndarray, device: torch.device,
               info: DistInfo) -> float:
    """The objective on a fixed sample of the training set, measured after an epoch: the end-of-epoch loss.

    The running mean an epoch records (``loss``) averages a moving model over freshly drawn batches and
    random flips; at the lowest learning rates that noise is as large as the change it is meant to show (a
    few per cent of a softmax loss near 0.2). Here the same :data:`PROBE_BATCHES` batches of the run's own
    sampler (the epoch :data:`PROBE_EPOCH`), unflipped, pass through the model after every epoch, so that
    two epochs' values differ only by what the epoch changed in the weights (the calibration chapter's C1
    judges the plateau on it):

    - batch normalisation normalises with the probe batch's own statistics, as in the training step, not
      with its running averages: those average the last ~20 batches of the epoch and move the loss of
      fixed weights by +-1.5 % from one pass to the next (a softmax run on the cpu world: 0.2022 in eval
      mode, then 0.2016, 0.2046 and 0.2034 after each of three passes that only refreshed them), as much
      as the 2 % plateau it would judge;
      dropout and every other layer run in eval mode;
    - an objective whose definition changes over training is measured at its end point
      (:meth:`~dbrepro.losses.margins.SphereFace.settle`: SphereFace's annealed lambda at its floor), so that
      the first and the last epoch are measured on one loss.

    Every buffer (BN running statistics, counters, centres) is restored afterwards and nothing is drawn
    from the training generators, so the run trains exactly as without the probe; each rank measures its
    own shard of the probe.
    """
    sampler = epoch_sampler(state.cfg, labels, PROBE_EPOCH, info)
    probe = [idx for _, idx in zip(range(PROBE_BATCHES), sampler)]
    buffers = {name: b.clone() for name, b in state.module.named_buffers()}
    total = torch.zeros((), dtype=torch.float64, device=device)
    try:
        state.module.eval()
        for m in state.module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()  # the batch's statistics, as the step normalises (running ones restored below)
            if hasattr(m, "settle"):
                m.settle()
        with torch.no_grad():
            for images, y in batches(dataset, probe):
                images = images.to(device)
                if state.memory_format is not torch.contiguous_format:
                    images = images.contiguous(memory_format=state.memory_format)
                with step_autocast(state.cfg, device):
                    loss, _ = state.module(normalize_images(images), y.to(device))
                total += loss.detach().double()
    finally:
        for name, b in state.module.named_buffers():
            b.copy_(buffers[name])
        state.module.train()
    return float(total) / len(probe)  # one read back to the host per epoch


def _stack(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([im for im, _ in items]), torch.tensor([y for _, y in items])


def batches(dataset: FaceDataset, sampler: Iterable, num_workers: int = 0,
            pin_memory: bool = False) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images, int64 labels) per batch of ``sampler``: in-memory sets are indexed, others loaded.

    ``pin_memory``: batches in page-locked memory, so that a ``non_blocking`` copy to the GPU really is
    asynchronous (from pageable memory the driver may wait for the device first).
    """
    images = getattr(dataset, "images", None)
    labels = torch.as_tensor(np.asarray(dataset.labels), dtype=torch.long)
    if isinstance(images, torch.Tensor):  # in memory: index the tensor, no workers, no collation
        for idx in sampler:
            idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
            batch = images[idx], labels[idx]
            yield tuple(t.pin_memory() for t in batch) if pin_memory else batch
        return
    yield from torch.utils.data.DataLoader(
        dataset, batch_sampler=list(sampler), num_workers=num_workers, collate_fn=_stack, pin_memory=pin_memory,
        persistent_workers=False, prefetch_factor=4 if num_workers else None,
    )


def random_flip(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2 (the flip of every face-recognition recipe).

    The coin flips come from ``gen`` on the CPU, whatever the images' device, so a batch is flipped the
    same on every device; on a GPU the images are flipped there (only the mask is copied over).
    """
    mask = torch.rand(len(images), generator=gen) < 0.5
    if mask.device != images.device:
        mask = (mask.pin_memory() if images.device.type == "cuda" else mask).to(images.device, non_blocking=True)
    return torch.where(mask[:, None, None, None], images.flip(-1), images)


class EpochMeter:
    """Sums of the loss and its parts over an epoch, the finiteness check, progress lines and the bar.

    Sums are kept in float64 on the device; they are read on the host after every step on the CPU and
    every :data:`CUDA_SYNC_EVERY` steps on CUDA (a host read waits for the GPU).
    """

    def __init__(self, n_batches: int, device: torch.device, label: str, epoch: int, epochs: int, bar: bool,
                 world_size: int):
        self.n_batches, self.epoch, self.world_size = n_batches, epoch, world_size
        self.label = f"{label}: epoch {epoch + 1}/{epochs}"
        self.sync_every = CUDA_SYNC_EVERY if device.type == "cuda" else 1
        self.sums: dict[str, torch.Tensor] = {}
        self.seen, self.i = 0, 0
        self.t0 = self.last_report = time.perf_counter()
        self.bar = tqdm(total=n_batches, desc=label, disable=not bar, leave=False)

    def add(self, loss: torch.Tensor, parts: dict[str, torch.Tensor], n_images: int, step: int, lr: float) -> None:
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.double()
        self.sums["loss"] = self.sums.get("loss", 0.0) + loss.double()
        self.seen += n_images
        self.i += 1
        self.bar.update(1)
        if self.i % self.sync_every == 0 or self.i == self.n_batches:
            self._check(step, lr, parts)

    def _check(self, step: int, lr: float, parts: dict[str, torch.Tensor]) -> None:
        total = float(self.sums["loss"])
        if total != total or abs(total) == float("inf"):
            detail = ", ".join(f"{k}={float(v):.4g}" for k, v in parts.items())
            where = f"step {self.i} of {self.n_batches}" if self.sync_every == 1 else \
                f"one of steps {self.i - self.sync_every + 1}..{self.i} of {self.n_batches}"
            raise NonFiniteLossError(
                f"loss became {total} at epoch {self.epoch + 1}, {where} (global step {step}); "
                f"parts: {detail}; lr={lr:g}. Lower the learning rate or check the data.")
        now = time.perf_counter()
        if now - self.last_report >= PROGRESS_EVERY_S or self.i == self.n_batches:
            self.last_report = now
            line = (f"{self.label}, batch {self.i}/{self.n_batches}, loss {total / self.i:.3f}, "
                    f"{self.images_per_s(now):,.0f} img/s")
            report(line)
            self.bar.set_postfix_str(line.split(", ", 2)[-1])

    def images_per_s(self, now: float | None = None) -> float:
        return self.seen * self.world_size / max((now or time.perf_counter()) - self.t0, 1e-9)

    def record(self, epoch: int, lr: float) -> dict[str, Any]:
        """The epoch's line of the history: mean loss and parts per batch, time and throughput."""
        self.bar.close()
        seconds = time.perf_counter() - self.t0
        return {"epoch": epoch + 1, "lr": lr, "seconds": round(seconds, 3),
                "images_per_s": round(self.seen * self.world_size / seconds, 1),
                **{k: float(v) / self.n_batches for k, v in self.sums.items()}}
