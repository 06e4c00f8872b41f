"""The training loop: SGD with the papers' step schedule, AMP on CUDA, DDP, atomic checkpoints, resume.

One loop serves every experiment in the book. What varies is plugged in, never edited in:

- the **model** returns embeddings (and, with ``return_aux=True``, auxiliary outputs such as the
  Residual Balancing Module's gate ``f(x)``);
- the **objective** (:class:`Objective`) is the classification head plus any number of extra loss
  terms, each an ``nn.Module`` called as ``term(embeddings, labels)`` (range, center, contrastive,
  triplet loss), plus the RBM gate regression of DB Eq. 4 when the model has a soft gate;
- **callbacks** are plain functions of the :class:`TrainState`, called before every step
  (``step_callbacks``) or every epoch (``epoch_callbacks``). The periodic DFI refresh of Domain
  Balancing is one of them (:func:`dfi_refresh`).

Reproducibility: all randomness of epoch ``e`` (batch order, flips, dropout) is seeded from
``(seed, e, rank)``, and the checkpoint written at the end of every epoch holds the model, the
objective (head, centres, DFI), the optimiser and the AMP scaler. A run interrupted after epoch ``e``
and resumed therefore ends bit-identical to an uninterrupted one (on the CPU).

Distributed: launched under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the loop joins the
process group (NCCL on GPUs, gloo on CPUs), shards every batch across ranks (the global batch stays
``batch_size``) and wraps model + objective in ``DistributedDataParallel``; rank 0 alone writes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from .config import resolve_device, scaled_milestones
from .data.base import FaceDataset
from .data.samplers import PKSampler, RandomBatchSampler
from .dfi import domain_frequency_indicator
from .losses import HEADS, TERMS
from .models import build_model, normalize_images
from .models.rbm import rbm_gate_loss
from .paths import atomic_torch_save, config_hash
from .runs import Run


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch and step."""


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a run with another config."""


@dataclass
class TrainConfig:
    """Everything that determines a training run (and therefore its run-cache key).

    ``data`` describes the training set (e.g. ``{"kind": "synth", "preset": "cpu", "seed": 0,
    "split": "A-2"}``); the loop itself never reads it, it only makes the run key unique.
    """

    data: dict[str, Any] = field(default_factory=dict)
    backbone: str = "small"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    embedding_size: int = 128
    image_size: int = 32
    #: classification head: a key of :data:`dbrepro.losses.HEADS`
    head: str = "cosface"
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    #: extra loss terms, name -> constructor kwargs (each term applies its own ``weight``)
    terms: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Residual Balancing Module after the backbone: None, "soft" (DB Eq. 3) or "none" (f(x) = 1)
    rbm: str | None = None
    #: lambda of DB Eq. 6, the weight of the gate regression (Eq. 4)
    rbm_weight: float = 0.01
    #: DFI refresh for DBM / RBM: {"k": K, "s": s, "eps": eps, "every": N iterations}
    dfi: dict[str, Any] | None = None
    epochs: int = 6
    #: epochs after which the lr is divided by 10; None = the papers' 5/8/11 of 15, scaled
    milestones: tuple[int, ...] | None = None
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    #: "random" (shuffled batches) or "pk" (P identities x K images; Range Loss uses 16 x 16)
    sampler: str = "random"
    pk: tuple[int, int] = (16, 16)
    flip: bool = True
    amp: bool = True
    seed: int = 0
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.milestones is not None:
            self.milestones = tuple(int(m) for m in self.milestones)
        self.pk = tuple(int(v) for v in self.pk)
        self.validate()

    def validate(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head {self.head!r} is unknown: choose one of {', '.join(HEADS)}")
        for name in self.terms:
            if name not in TERMS:
                raise ValueError(f"loss term {name!r} is unknown: choose from {', '.join(TERMS)}")
        if self.rbm not in (None, "soft", "none"):
            raise ValueError(f"rbm must be None, 'soft' or 'none', got {self.rbm!r}")
        if self.sampler not in ("random", "pk"):
            raise ValueError(f"sampler must be 'random' or 'pk', got {self.sampler!r}")
        if self.sampler == "pk" and self.pk[0] * self.pk[1] != self.batch_size:
            raise ValueError(f"pk={self.pk} gives batches of {self.pk[0] * self.pk[1]}, but batch_size={self.batch_size}")
        for name in ("epochs", "batch_size", "embedding_size", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.dfi is not None:
            unknown = set(self.dfi) - {"k", "s", "eps", "every"}
            if unknown:
                raise ValueError(f"dfi has unknown keys {sorted(unknown)}; allowed: k, s, eps, every")
            if int(self.dfi.get("every", 1)) < 1:
                raise ValueError("dfi['every'] must be >= 1 iterations")
        if self.head == "dbm" and self.dfi is None:
            raise ValueError("head 'dbm' needs a dfi config (k, s, eps, every) to set its per-class margins")
        if self.rbm == "soft" and self.dfi is None:
            raise ValueError("rbm='soft' regresses its gate onto the DFI: give a dfi config (k, s, eps, every)")

    @property
    def schedule(self) -> tuple[int, ...]:
        return self.milestones if self.milestones is not None else scaled_milestones(self.epochs)

    def lr_at(self, epoch: int) -> float:
        """The step schedule: ``lr / 10`` after each milestone (epochs counted from 0)."""
        return self.lr * 0.1 ** sum(epoch >= m for m in self.schedule)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pk"] = list(self.pk)
        d["milestones"] = list(self.schedule)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training config keys {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def key(self) -> str:
        return config_hash(self.to_dict())


class Objective(nn.Module):
    """L = head(x, y) + sum_t term_t(x, y) [+ lambda * L_rrm]  (Range Loss Eq. 5, DB Eq. 6).

    Each term carries its own weight (range loss its alpha and beta of Eq. 2).

    Holds the per-class DFI (DB Eq. 2) as a buffer so that it is checkpointed with the head; the
    DBM head and the RBM gate regression both read it.
    """

    def __init__(self, head: nn.Module, num_classes: int, terms: dict[str, nn.Module] | None = None,
                 rbm_weight: float = 0.0):
        super().__init__()
        self.head = head
        self.terms = nn.ModuleDict(terms or {})
        self.rbm_weight = float(rbm_weight)
        self.register_buffer("dfi", torch.ones(num_classes))

    @torch.no_grad()
    def set_dfi(self, dfi: torch.Tensor) -> None:
        self.dfi.copy_(dfi.to(self.dfi))
        if hasattr(self.head, "set_dfi"):
            self.head.set_dfi(self.dfi)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                aux: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {"head": self.head(embeddings, labels)}
        for name, term in self.terms.items():
            parts[name] = term(embeddings, labels)
        if aux and "gate" in aux and self.rbm_weight:
            parts["rbm"] = self.rbm_weight * rbm_gate_loss(aux["gate"], self.dfi[labels])
        total = torch.stack(list(parts.values())).sum()
        return total, parts


class TrainModule(nn.Module):
    """Model + objective as one module, so a single DDP wrapper synchronises both."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        emb, aux = self.model(x, return_aux=True)  # under the caller's autocast on CUDA
        # the head and the loss terms run in float32 (InsightFace keeps the last FC in fp32 too)
        with torch.autocast(x.device.type, enabled=False):
            return self.objective(emb.float(), labels, {k: v.float() for k, v in aux.items()})


def build_objective(cfg: TrainConfig, num_classes: int) -> Objective:
    head = HEADS[cfg.head](cfg.embedding_size, num_classes, **cfg.head_kwargs)
    terms = {name: TERMS[name](cfg.embedding_size, num_classes, **kwargs) for name, kwargs in cfg.terms.items()}
    return Objective(head, num_classes, terms, rbm_weight=cfg.rbm_weight if cfg.rbm == "soft" else 0.0)


def build(cfg: TrainConfig, num_classes: int) -> TrainModule:
    """Model and objective for ``cfg``, initialised from ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.backbone, cfg.embedding_size, cfg.image_size, rbm=cfg.rbm, **cfg.backbone_kwargs)
    return TrainModule(model, build_objective(cfg, num_classes))


# -- callbacks ------------------------------------------------------------------------------------

@dataclass
class TrainState:
    """What callbacks see. ``step`` counts optimiser steps from 0 over the whole run."""

    cfg: TrainConfig
    module: TrainModule
    optimizer: torch.optim.Optimizer
    epoch: int = 0
    step: int = 0
    loss: float = float("nan")
    parts: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model(self) -> nn.Module:
        return self.module.model

    @property
    def objective(self) -> Objective:
        return self.module.objective


#: A callback is a plain function of the state. Step callbacks run before every optimiser step
#: (``state.step`` is the index of the step about to run; ``state.loss`` the previous step's loss);
#: epoch callbacks run after every epoch, before the checkpoint is written.
Callback = Callable[[TrainState], None]


def dfi_refresh(every: int, k: int, s: float, eps: float) -> Callback:
    """A step callback recomputing the DFI (DB Eq. 1-2) from the head's prototypes every ``every`` steps.

    Step callbacks run *before* each step, so this one runs before the steps whose index is a
    multiple of ``every`` (step 0 included): the DFI in use is always computed from the prototypes
    of an earlier iteration ("DFI(x) ... from the last iteration", DB §3.2), at most ``every`` steps old.
    """

    def refresh(state: TrainState) -> None:
        if state.step % every == 0:
            dfi = domain_frequency_indicator(state.objective.head.weight.detach(), k=k, s=s, eps=eps)
            state.objective.set_dfi(dfi)

    return refresh


# -- distributed helpers ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (or already joined); a single process otherwise."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


# -- data -----------------------------------------------------------------------------------------

def _batches(dataset: FaceDataset, sampler: Iterable, num_workers: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    images = getattr(dataset, "images", None)
    labels = torch.as_tensor(np.asarray(dataset.labels), dtype=torch.long)
    if isinstance(images, torch.Tensor):  # in-memory: index the tensor, no workers, no collation
        for idx in sampler:
            idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
            yield images[idx], labels[idx]
        return
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=list(sampler), num_workers=num_workers,
        collate_fn=lambda items: (torch.stack([im for im, _ in items]), torch.tensor([y for _, y in items])),
    )
    yield from loader


def _flip(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    mask = torch.rand(len(images), generator=gen) < 0.5
    return torch.where(mask[:, None, None, None], images.flip(-1), images)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101) % (2**63 - 1)


# -- the loop -------------------------------------------------------------------------------------

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
) -> TrainResult:
    """Train ``cfg`` on ``dataset``; with a ``run``, checkpoint every epoch and resume from the last one.

    ``stop_after_epoch`` ends the loop early after that many epochs (as an interruption would),
    leaving the run incomplete; calling ``fit`` again resumes it.
    """
    device = resolve_device(device)
    info = init_distributed(device)
    if device.type == "cuda" and info.world_size > 1:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if len(dataset) == 0:
        raise ValueError("the training set is empty")
    if cfg.batch_size % info.world_size or (cfg.sampler == "pk" and cfg.pk[0] % info.world_size):
        raise ValueError(f"batch_size {cfg.batch_size} (pk={cfg.pk}) cannot be split evenly over "
                         f"{info.world_size} processes")
    num_classes = int(dataset.num_classes)
    labels_np = np.asarray(dataset.labels)
    if labels_np.shape != (len(dataset),):
        raise ValueError(f"dataset.labels has shape {labels_np.shape}, expected ({len(dataset)},)")
    if progress is None:
        progress = info.is_main and sys.stderr.isatty()

    module = build(cfg, num_classes).to(device)
    optimizer = torch.optim.SGD(module.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    state = TrainState(cfg, module, optimizer)
    cfg_key = cfg.key()

    if run is not None and run.checkpoint_path.exists():
        ckpt = torch.load(run.checkpoint_path, map_location=device, weights_only=False)
        if ckpt.get("config_key") != cfg_key:
            raise CheckpointMismatchError(
                f"{run.checkpoint_path} was written by config {ckpt.get('config_key')}, not {cfg_key}: "
                "delete it or use the matching config")
        if ckpt.get("num_classes") != num_classes:
            raise CheckpointMismatchError(
                f"{run.checkpoint_path} has {ckpt.get('num_classes')} classes, the dataset {num_classes}")
        module.load_state_dict(ckpt["module"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        state.epoch, state.step, state.history = ckpt["epoch"], ckpt["step"], ckpt["history"]
        if info.is_main:
            run.log(f"resumed from epoch {state.epoch}")

    wrapped: nn.Module = module
    if info.world_size > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)

    callbacks = list(step_callbacks)
    if cfg.dfi is not None:
        d = cfg.dfi
        callbacks.insert(0, dfi_refresh(int(d.get("every", 100)), int(d.get("k", 100)), float(d.get("s", 64.0)),
                                        float(d.get("eps", 5.5))))

    per_rank = cfg.batch_size // info.world_size
    last_epoch = cfg.epochs if stop_after_epoch is None else min(cfg.epochs, stop_after_epoch)
    started = time.perf_counter()
    for epoch in range(state.epoch, last_epoch):
        lr = cfg.lr_at(epoch)
        for g in optimizer.param_groups:
            g["lr"] = lr
        seed = _epoch_seed(cfg.seed, epoch, info.rank)
        torch.manual_seed(seed)  # dropout and any other torch randomness of this epoch
        flip_gen = torch.Generator().manual_seed(seed + 1)
        if cfg.sampler == "pk":
            sampler = PKSampler(labels_np, p=cfg.pk[0] // info.world_size, k=cfg.pk[1], seed=cfg.seed,
                                rank=info.rank, world_size=info.world_size)
        else:
            sampler = RandomBatchSampler(len(dataset), per_rank, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
        sampler.set_epoch(epoch)
        n_batches = len(sampler)
        if n_batches == 0:
            raise ValueError(f"the training set ({len(dataset)} images) is smaller than one batch of {cfg.batch_size}")

        module.train()
        sums: dict[str, float] = {}
        seen, t0 = 0, time.perf_counter()
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for i, (images, labels) in enumerate(_batches(dataset, sampler, num_workers)):
            for cb in callbacks:
                cb(state)
            if cfg.flip:
                images = _flip(images, flip_gen)
            x = normalize_images(images.to(device, non_blocking=True))
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=use_amp):
                loss, parts = wrapped(x, labels)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in parts.items())
                raise NonFiniteLossError(
                    f"loss became {loss_value} at epoch {epoch + 1}, step {i + 1} of {n_batches} "
                    f"(global step {state.step}); parts: {detail}; lr={lr:g}. "
                    "Lower the learning rate or check the data.")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()

            state.loss = loss_value
            state.parts = {k: float(v.detach()) for k, v in parts.items()}
            for k, v in state.parts.items():
                sums[k] = sums.get(k, 0.0) + v
            sums["loss"] = sums.get("loss", 0.0) + loss_value
            seen += len(images)
            state.step += 1
            if progress and (i % 10 == 0 or i + 1 == n_batches):
                bar.set_postfix(loss=f"{loss_value:.3f}", img_s=f"{seen * info.world_size / (time.perf_counter() - t0):.0f}")
            bar.update(1)
        bar.close()

        seconds = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "lr": lr, "seconds": round(seconds, 3),
                  "images_per_s": round(seen * info.world_size / seconds, 1),
                  **{k: v / n_batches for k, v in sums.items()}}
        state.history.append(record)
        state.epoch = epoch + 1
        for cb in epoch_callbacks:
            cb(state)
        if run is not None and info.is_main:
            _save_checkpoint(run, module, optimizer, scaler, state, cfg_key, num_classes)
            run.log(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        if info.world_size > 1:
            dist.barrier()

    total = time.perf_counter() - started
    metrics = {
        "epochs_done": state.epoch,
        "complete": state.epoch >= cfg.epochs,
        "num_classes": num_classes,
        "num_images": len(dataset),
        "final_loss": state.history[-1]["loss"] if state.history else None,
        "train_seconds": round(sum(h["seconds"] for h in state.history), 3),
        "seconds_this_call": round(total, 3),
        "history": state.history,
        "world_size": info.world_size,
        "device": str(device),
    }
    if run is not None and info.is_main and metrics["complete"]:
        _save_model(run, module, cfg, num_classes)
        run.finish(metrics)
    module.eval()
    return TrainResult(module, state.history, metrics)


def _save_checkpoint(run: Run, module: TrainModule, optimizer, scaler, state: TrainState, cfg_key: str,
                     num_classes: int) -> None:
    atomic_torch_save(run.checkpoint_path, {
        "config_key": cfg_key, "num_classes": num_classes, "epoch": state.epoch, "step": state.step,
        "history": state.history, "module": module.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
    })


def _save_model(run: Run, module: TrainModule, cfg: TrainConfig, num_classes: int) -> None:
    atomic_torch_save(run.model_path, {"config": cfg.to_dict(), "num_classes": num_classes,
                                        "module": module.state_dict()})


def load_trained(path_or_run: Run | str | os.PathLike, device: str | torch.device = "cpu") -> tuple[TrainModule, TrainConfig]:
    """Rebuild a trained model + objective from a run (or its ``model.pt``), in eval mode."""
    path = path_or_run.model_path if isinstance(path_or_run, Run) else path_or_run
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no trained model (is the run complete?)")
    blob = torch.load(path, map_location=resolve_device(device), weights_only=False)
    cfg = TrainConfig.from_dict(blob["config"])
    module = build(cfg, blob["num_classes"]).to(resolve_device(device))
    module.load_state_dict(blob["module"])
    module.eval()
    return module, cfg
