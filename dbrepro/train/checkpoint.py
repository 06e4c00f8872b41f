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
from ..runs import DamagedRunError, Run, config_difference
from .config import TrainConfig
from .objective import TrainModule, build


class UnusableCheckpointError(ValueError):
    """``checkpoint.pt`` cannot be resumed from; the message names the file and why.

    :func:`dbrepro.experiments.train` discards such a checkpoint (saying so) and trains from scratch.
    """


class CorruptCheckpointError(UnusableCheckpointError):
    """``checkpoint.pt`` does not load with ``weights_only=True`` (truncated, garbage, or a pickle of code)."""


class CheckpointMismatchError(UnusableCheckpointError):
    """A checkpoint was written by a run with another config (or for another number of classes)."""


#: What :func:`save_checkpoint` writes, all of which :func:`dbrepro.train.loop.resume` reads.
CHECKPOINT_KEYS = ("config_key", "num_classes", "epoch", "step", "history", "module", "optimizer", "scaler")


def save_checkpoint(run: Run, module: TrainModule, optimizer: Any, scaler: Any, *, epoch: int,
                    step: int, history: list[dict[str, Any]], config_key: str, num_classes: int) -> None:
    """Everything needed to continue after epoch ``epoch`` bit-identically."""
    atomic_torch_save(run.checkpoint_path, {
        "config_key": config_key, "num_classes": num_classes, "epoch": epoch, "step": step,
        "history": history, "module": module.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
    })


def load_checkpoint(run: Run, device: torch.device, *, config_key: str, num_classes: int) -> dict[str, Any]:
    """The run's checkpoint, checked against the config and the data it is resumed with.

    Raises :class:`CorruptCheckpointError` (unloadable, or not a training checkpoint) or
    :class:`CheckpointMismatchError` (another config's, or another class count), each naming the file.
    """
    path = run.checkpoint_path
    try:
        ckpt = safe_load(path, device)
    except DamagedRunError as e:
        raise CorruptCheckpointError(str(e)) from None
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt] if isinstance(ckpt, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise CorruptCheckpointError(f"{path}: not a training checkpoint (no {', '.join(missing)})")
    if ckpt["config_key"] != config_key:
        raise CheckpointMismatchError(f"{path}: written by config {ckpt['config_key']}, not this run's {config_key}")
    if ckpt["num_classes"] != num_classes:
        raise CheckpointMismatchError(f"{path}: has {ckpt['num_classes']} classes, the dataset {num_classes}")
    return ckpt


def safe_load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; anything that does not load is one :class:`DamagedRunError` naming the file.

    ``weights_only=True`` unpickles tensors, numbers, strings and containers only: a file crafted to run
    code on load (``__reduce__``) is refused, never executed.
    """
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except Exception as e:  # truncated zip, garbage bytes, or a pickle of something other than weights
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise DamagedRunError(f"{path}: not a loadable weights file ({type(e).__name__}: {detail}); "
                              "truncated, overwritten, or not written by dbrepro") from None


def save_model(run: Run, module: TrainModule, cfg: TrainConfig, num_classes: int) -> None:
    """The trained model + objective, with the config that made it."""
    atomic_torch_save(run.model_path, {"config": cfg.to_dict(), "num_classes": num_classes,
                                        "module": module.state_dict()})


def load_trained(path_or_run: Run | str | os.PathLike, device: str | torch.device = "cpu") -> tuple[TrainModule, TrainConfig]:
    """Rebuild a trained model + objective from a run (or its ``model.pt``), in eval mode.

    Loaded with ``weights_only=True`` (:func:`safe_load`). For a run, the config stored in ``model.pt``
    must be the run's own: another config's weights are a :class:`~dbrepro.runs.DamagedRunError`
    naming the file, never a silently wrong model.
    """
    path = path_or_run.model_path if isinstance(path_or_run, Run) else path_or_run
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no trained model (is the run complete?)")
    device = resolve_device(device)
    blob = safe_load(path, device)
    if not (isinstance(blob, dict) and {"config", "num_classes", "module"} <= set(blob)):
        raise DamagedRunError(f"{path}: not a dbrepro model file (expected config, num_classes and module)")
    if isinstance(path_or_run, Run):
        difference = config_difference(blob["config"], path_or_run.config())
        if difference:
            raise DamagedRunError(f"{path}: holds the weights of another config ({difference})")
    cfg = TrainConfig.from_dict(blob["config"])
    module = build(cfg, blob["num_classes"]).to(device)
    module.load_state_dict(blob["module"])
    module.eval()
    return module, cfg
