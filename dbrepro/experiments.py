"""Cached experiments: train a config once, evaluate it once, load it anywhere.

This is the layer the notebooks and the CLI call. It sits at the end of the one-way flow
(``data -> models + losses -> train -> eval -> experiments``): it resolves a config's data spec
into a dataset (:mod:`dbrepro.data.specs`), trains through :func:`dbrepro.train.fit` inside the run
cache (:mod:`dbrepro.runs`), and caches evaluation results next to the checkpoint.

>>> from dbrepro import experiments, recipes                        # doctest: +SKIP
>>> cfg = recipes.cosface("cpu", seed=0)                            # doctest: +SKIP
>>> run = experiments.train(cfg)            # trains, or finds it in the cache   # doctest: +SKIP
>>> res = experiments.evaluate(run, world.suites)                   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from . import runs as runs_mod
from .config import resolve_device
from .data import specs
from .data.base import AllVsAllSuite, IdentificationSuite, PairSuite
from .eval import evaluate_suite
from .runs import Run
from .train import TrainConfig, TrainModule, fit, load_trained


def train(cfg: TrainConfig, *, device: str | torch.device = "auto", progress: bool | None = None,
          verbose: bool = True, num_workers: int = 0, label: str | None = None) -> Run:
    """The complete run for ``cfg``: from the cache if it is there, else trained (resuming if interrupted)."""
    run = runs_mod.get_run(cfg.to_dict())
    name = label or describe(cfg)
    if run.complete:
        if verbose:
            print(f"{name}: cached ({run.key})", flush=True)
        return run
    dataset = specs.training_set(cfg.data)
    t0 = time.perf_counter()
    result = fit(cfg, dataset, run=run, device=device, progress=progress, num_workers=num_workers)
    if verbose:
        m = result.metrics
        print(f"{name}: trained in {time.perf_counter() - t0:.1f} s "
              f"({m['num_images']} images, {m['num_classes']} classes, final loss {m['final_loss']:.3f})", flush=True)
    return run


def train_all(cfgs: Iterable[TrainConfig], **kwargs: Any) -> list[Run]:
    """:func:`train` for every config, one after the other."""
    return [train(cfg, **kwargs) for cfg in cfgs]


def describe(cfg: TrainConfig) -> str:
    """A short human name: ``softmax+range on A-2, seed 1``."""
    parts = [cfg.head] + list(cfg.terms)
    if cfg.rbm:
        parts.append("rbm" if cfg.rbm == "soft" else "rbm(w/o sg)")
    split = cfg.data.get("split")
    where = f" on {split}" if split else ""
    return f"{'+'.join(parts)}{where}, seed {cfg.seed}"


def load(run: Run, device: str | torch.device = "cpu") -> TrainModule:
    """The trained model + objective of a complete run, in eval mode."""
    module, _ = load_trained(run, device=device)
    return module


def suite_digest(suite: PairSuite | AllVsAllSuite | IdentificationSuite) -> str:
    """A content hash of a suite (images and pair/id arrays), memoised on the object."""
    cached = getattr(suite, "_digest", None)
    if cached:
        return cached
    h = hashlib.sha256(type(suite).__name__.encode())
    for name in ("images", "pairs", "issame", "folds", "identities", "probes", "probe_ids", "gallery", "gallery_ids"):
        value = getattr(suite, name, None)
        if value is None:
            continue
        arr = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    distractors = getattr(suite, "distractors", None)
    if distractors is not None:
        h.update(f"distractors:{len(distractors)}".encode())
        first = distractors.render(0, min(4, len(distractors)))
        h.update(first.numpy().tobytes())
    digest = h.hexdigest()[:16]
    object.__setattr__(suite, "_digest", digest)
    return digest


def evaluate(run: Run, suites: Mapping[str, Any], *, device: str | torch.device = "auto", flip: bool = False,
             batch_size: int = 512) -> dict[str, dict[str, Any]]:
    """Evaluate a complete run on ``suites`` (name -> suite); each result cached in the run folder."""
    device = resolve_device(device)
    out: dict[str, dict[str, Any]] = {}
    module = None
    for name, suite in suites.items():
        what = {"suite": name, "digest": suite_digest(suite), "flip": flip}
        cached = run.load_eval(what)
        if cached is not None:
            out[name] = cached["result"]
            continue
        if module is None:
            module = load(run, device)
        result = _jsonable(evaluate_suite(module.model, suite, device=device, flip=flip, batch_size=batch_size))
        run.save_eval(what, result)
        out[name] = result
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict(orient="list") if hasattr(value, "columns") else value.to_dict())
    if isinstance(value, float) and value != value:
        return None
    return value
