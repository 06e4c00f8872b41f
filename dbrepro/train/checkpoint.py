"""A run's two weight files: ``checkpoint.pt`` (resume after an interruption) and ``model.pt`` (the result).

Both are plain ``torch.save`` dicts of tensors, numbers, strings and lists, written atomically
(:func:`dbrepro.paths.atomic_torch_save`) and read with ``weights_only=True``: loading them never runs code.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..config import resolve_device
from ..paths import atomic_torch_save
from ..runs import Run
from .config import TrainConfig
from .objective import TrainModule, build


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a run with another config."""


def save_checkpoint(run: Run, module: TrainModule, optimizer: torch.optim.Optimizer, scaler: Any, *, epoch: int,
                    step: int, history: list[dict[str, Any]], config_key: str, num_classes: int) -> None:
    """Everything needed to continue after epoch ``epoch`` bit-identically."""
    atomic_torch_save(run.checkpoint_path, {
        "config_key": config_key, "num_classes": num_classes, "epoch": epoch, "step": step,
        "history": history, "module": module.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
    })


def load_checkpoint(run: Run, device: torch.device, *, config_key: str, num_classes: int) -> dict[str, Any]:
    """The run's checkpoint, checked against the config and the data it is resumed with."""
    ckpt = torch.load(run.checkpoint_path, map_location=device, weights_only=True)
    if ckpt.get("config_key") != config_key:
        raise CheckpointMismatchError(
            f"{run.checkpoint_path} was written by config {ckpt.get('config_key')}, not {config_key}: "
            "delete it or use the matching config")
    if ckpt.get("num_classes") != num_classes:
        raise CheckpointMismatchError(
            f"{run.checkpoint_path} has {ckpt.get('num_classes')} classes, the dataset {num_classes}")
    return ckpt


def save_model(run: Run, module: TrainModule, cfg: TrainConfig, num_classes: int) -> None:
    """The trained model + objective, with the config that made it."""
    atomic_torch_save(run.model_path, {"config": cfg.to_dict(), "num_classes": num_classes,
                                        "module": module.state_dict()})


def load_trained(path_or_run: Run | str | os.PathLike, device: str | torch.device = "cpu") -> tuple[TrainModule, TrainConfig]:
    """Rebuild a trained model + objective from a run (or its ``model.pt``), in eval mode."""
    path = path_or_run.model_path if isinstance(path_or_run, Run) else path_or_run
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no trained model (is the run complete?)")
    device = resolve_device(device)
    blob = torch.load(path, map_location=device, weights_only=True)
    cfg = TrainConfig.from_dict(blob["config"])
    module = build(cfg, blob["num_classes"]).to(device)
    module.load_state_dict(blob["module"])
    module.eval()
    return module, cfg
