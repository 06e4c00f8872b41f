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
import json
import os
import time
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from . import runs as runs_mod
from .config import resolve_device
from .data import specs
from .data.base import AllVsAllSuite, IdentificationSuite, PairSuite
from .eval import evaluate_suite
from .paths import canonical_json, jsonable
from .runs import Run, RunState
from .train import TrainConfig, TrainModule, fit, load_trained
from .train.checkpoint import UnusableCheckpointError


def train(cfg: TrainConfig, *, device: str | torch.device = "auto", progress: bool | None = None,
          verbose: bool = True, num_workers: int = 0, label: str | None = None) -> Run:
    """The complete run for ``cfg``: from the cache if it is there, else trained (resuming if interrupted).

    The run is :func:`dbrepro.runs.get_run`'s (on-disk data fingerprinted) and is verified before it
    is served (:func:`dbrepro.runs.verify`). Under the run's lock: a second identical training waits
    for the first and then loads its result. A *damaged* run is trained again from scratch and a
    *failed* one retried, each saying why; an unusable ``checkpoint.pt`` (unreadable, or another
    config's) is discarded, saying so, and training starts from scratch. When training raises, the run
    is marked *failed* with the reason before the error propagates.
    """
    run = runs_mod.get_run(cfg.to_dict())
    name = label or describe(cfg)
    with run.lock() as waited:
        verdict = run.verify()
        if verdict.state is RunState.COMPLETE:
            if verbose or waited:
                how = f", trained by another process while this one waited {waited:.1f} s" if waited else ""
                print(f"{name}: cached ({run.key}){how}", flush=True)
            return run
        if verdict.state in (RunState.DAMAGED, RunState.STALE) and _is_main_process():
            _say(run, f"{name}: run {run.key} is {verdict}; training it again from scratch")
            run.reset(runs_mod.keyed_config(cfg.to_dict()))
        elif verdict.state is RunState.FAILED and _is_main_process():
            _say(run, f"{name}: the last attempt failed ({verdict.reason}); training it again")
            run.failed_path.unlink(missing_ok=True)
        stored = run.config()  # verified: it hashes to the run's key
        train_cfg = cfg if stored == json.loads(canonical_json(cfg.to_dict())) else TrainConfig.from_dict(stored)
        try:
            dataset = specs.training_set(train_cfg.data)
            t0 = time.perf_counter()
            try:
                result = fit(train_cfg, dataset, run=run, device=device, progress=progress, num_workers=num_workers,
                             label=name)
            except UnusableCheckpointError as e:
                if _is_main_process():
                    _say(run, f"{name}: {e}; discarding it and training from scratch")
                    run.checkpoint_path.unlink(missing_ok=True)
                result = fit(train_cfg, dataset, run=run, device=device, progress=progress, num_workers=num_workers,
                             label=name)
        except Exception as e:
            if _is_main_process():
                run.mark_failed(f"{type(e).__name__}: {e}")
            raise
    if verbose:
        m = result.metrics
        print(f"{name}: trained in {time.perf_counter() - t0:.1f} s "
              f"({m['num_images']} images, {m['num_classes']} classes, final loss {m['final_loss']:.3f})", flush=True)
    return run


def train_many(cfgs: Sequence[TrainConfig], *, device: str | torch.device = "auto", jobs: int = 1,
               labels: Sequence[str] | None = None, verbose: bool = True, num_workers: int = 0) -> list[Run]:
    """The complete run of every config, in order: like ``[train(c) for c in cfgs]``, but on the CPU the
    runs not yet in the cache train ``jobs`` at a time, each in a worker process of one PyTorch thread
    (:mod:`dbrepro.workers`: why this is faster on a small CPU model).

    ``jobs``: parallel trainings (``0``: one per usable core; ``$DBREPRO_JOBS`` overrides it). On CUDA,
    under ``torchrun``, or with fewer than two runs to train, everything trains in this process, one
    after the other. Identical configs train once. A run trained in a worker has the same key and the
    same files as one trained here; its numbers may differ in the last float bits (1 thread, not 2).
    ``labels`` name the runs in progress lines (default :func:`describe`).
    """
    from . import workers

    cfgs = list(cfgs)
    labels = list(labels) if labels is not None else [describe(c) for c in cfgs]
    if len(labels) != len(cfgs):
        raise ValueError(f"train_many: {len(labels)} labels for {len(cfgs)} configs")
    todo: dict[str, tuple[TrainConfig, str]] = {}
    keys = []
    for cfg, label in zip(cfgs, labels):
        run = runs_mod.get_run(cfg.to_dict())
        keys.append(run.key)
        if run.key not in todo and run.verify().state is not RunState.COMPLETE:
            todo[run.key] = (cfg, label)
    trained: set[str] = set()
    jobs = min(workers.jobs_from_env(jobs), len(todo))
    if jobs >= 2 and resolve_device(device).type == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        threads = max(1, workers.usable_cores() // jobs)
        _prepare_shared_data([c.data for c, _ in todo.values()])
        if verbose:
            print(f"training {len(todo)} runs, {jobs} at a time ({threads} thread{'s' * (threads > 1)} each)",
                  flush=True)
        for key, label, seconds, final in workers.imap_unordered(
                "dbrepro.experiments:_train_in_worker", [[c.to_dict(), l] for c, l in todo.values()], jobs, threads):
            trained.add(key)
            if verbose:
                print(f"{label}: trained in {seconds:.1f} s (final loss {final:.3f})", flush=True)
    # what the workers trained has been said; this loads it (verified) and trains whatever is left
    return [train(cfg, device=device, verbose=verbose and key not in trained, label=label, num_workers=num_workers)
            for cfg, label, key in zip(cfgs, labels, keys)]


def _prepare_shared_data(data_specs: Sequence[dict[str, Any]]) -> None:
    """Render (into its disk cache) every synthetic world that two or more of the pending runs train on, here,
    once, before the workers start: else each of them would render it. A world only one run needs is left to
    the worker that trains it, so that different worlds render side by side."""
    synthetic = [s for s in data_specs if s.get("kind") == "synth"]
    counts = Counter(specs.world_key(s) for s in synthetic)
    for key, spec in {specs.world_key(s): s for s in synthetic}.items():
        if counts[key] > 1:
            specs.world_for(spec)


def _train_in_worker(item: list[Any]) -> tuple[str, str, float, float]:
    """One run of :func:`train_many`, in a worker process (``[config dict, label]``): (key, label, seconds,
    final loss)."""
    cfg_dict, label = item
    run = train(TrainConfig.from_dict(cfg_dict), device="cpu", progress=False, verbose=False, label=label)
    m = run.metrics()
    return run.key, label, float(m["train_seconds"]), float(m["final_loss"])


def _is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` group, or the only process: the one that writes to the run."""
    return int(os.environ.get("RANK", "0")) == 0


def _say(run: Run, line: str) -> None:
    """A line the user must see whatever ``verbose`` says, also kept in the run's log."""
    print(line, flush=True)
    run.log(line)


def describe(cfg: TrainConfig) -> str:
    """A short human name: ``softmax+range on A-2, seed 1``."""
    parts = [cfg.head] + list(cfg.terms)
    if cfg.rbm:
        parts.append("rbm" if cfg.rbm == "soft" else "rbm(w/o sg)")
    split = cfg.data.get("split")
    where = f" on {split}" if split else ""
    return f"{'+'.join(parts)}{where}, seed {cfg.seed}"


def load(run: Run, device: str | torch.device = "cpu") -> TrainModule:
    """The trained model + objective of a complete run, in eval mode (a damaged run is refused)."""
    run.require_complete()
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
        held = getattr(distractors, "images", None)  # distractors held in memory are hashed whole
        first = held if isinstance(held, torch.Tensor) else distractors.render(0, min(4, len(distractors)))
        h.update(first.numpy().tobytes())
    digest = h.hexdigest()[:16]
    object.__setattr__(suite, "_digest", digest)
    return digest


def evaluate(run: Run, suites: Mapping[str, Any], *, device: str | torch.device = "auto", flip: bool = False,
             batch_size: int = 512) -> dict[str, dict[str, Any]]:
    """Evaluate a complete run on ``suites`` (name -> suite); each result cached in the run folder.

    The run is verified first: a damaged, failed or unfinished run is refused (naming the file at
    fault), and a cached result is served only if it was computed from this run's ``model.pt``.
    """
    run.require_complete()
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
        result = jsonable(evaluate_suite(module.model, suite, device=device, flip=flip, batch_size=batch_size))
        run.save_eval(what, result)
        out[name] = result
    return out
