"""Experiment grids: train and evaluate many configs (cached), get one tidy table back.

Most tables of both papers are a grid: methods x data splits x seeds, evaluated on a few suites.
:func:`run_grid` trains every cell through the run cache and evaluates it on the suites (also
cached), returning one row per (cell, suite) with the cell's labels and the headline metrics;
:func:`summarize` turns that into mean +- std over seeds.

>>> cells = [{"method": m, "split": s, "seed": k, "config": recipes.softmax("cpu", split=s, seed=k)}
...          for m in ["softmax"] for s in ["A-0", "A-2"] for k in (0, 1, 2)]      # doctest: +SKIP
>>> table = run_grid(cells, {"lfw": world.suites["lfw"]})                           # doctest: +SKIP
>>> summarize(table, by=["method", "split"], metric="accuracy")                     # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from . import experiments
from .results import fmt_pm


def run_grid(cells: Iterable[Mapping[str, Any]], suites: Mapping[str, Any], *, device: str = "auto",
             flip: bool = False, verbose: bool = True, num_workers: int = 0, jobs: int = 1) -> pd.DataFrame:
    """Train (or load) and evaluate every cell; one row per cell and suite.

    The runs not in the cache train first, ``jobs`` at a time on the CPU
    (:func:`dbrepro.experiments.train_many`), then every cell is evaluated in order.

    A cell is a mapping with a ``config`` (:class:`dbrepro.train.TrainConfig`) and any labels
    (``method``, ``split``, ``seed``, ...) that become columns. The row also carries the run key,
    training time and every scalar of the evaluation result (nested dicts are flattened with
    ``/``, e.g. ``tar_at_far/0.001``).
    """
    rows = []
    t0 = time.perf_counter()
    cells = list(cells)
    labels = [{k: v for k, v in cell.items() if k != "config"} for cell in cells]
    names = [f"[{i + 1}/{len(cells)}] " + (", ".join(f"{v}" for v in lab.values())
                                           or experiments.describe(cell["config"]))
             for i, (cell, lab) in enumerate(zip(cells, labels))]
    trained = experiments.train_many([c["config"] for c in cells], device=device, jobs=jobs, labels=names,
                                     verbose=verbose, num_workers=num_workers)
    for cell_labels, run in zip(labels, trained):
        results = experiments.evaluate(run, suites, device=device, flip=flip)
        metrics = run.metrics()
        for suite, result in results.items():
            rows.append({**cell_labels, "suite": suite, "run": run.key, "train_seconds": metrics["train_seconds"],
                         **flatten(result)})
    if verbose:
        print(f"{len(cells)} runs ready in {time.perf_counter() - t0:.1f} s", flush=True)
    return pd.DataFrame(rows)


def flatten(result: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars of a (nested) result dict, keys joined with ``/``; lists and arrays are dropped."""
    out: dict[str, Any] = {}
    for k, v in result.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, prefix=f"{key}/"))
        elif isinstance(v, (int, float, np.integer, np.floating)) or v is None:
            out[key] = v
    return out


def summarize(table: pd.DataFrame, by: list[str], metric: str = "accuracy", scale: float = 100.0,
              digits: int = 2) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and count of ``metric`` over seeds, per group, plus a ``"m ± s"`` column."""
    if metric not in table.columns:
        raise ValueError(f"metric {metric!r} is not a column; have {', '.join(map(str, table.columns))}")
    g = table.groupby(by, sort=False)[metric]
    out = pd.DataFrame({"mean": g.mean() * scale, "std": g.std(ddof=1).fillna(0.0) * scale, "n": g.count()})
    out["mean ± std"] = g.agg(lambda v: fmt_pm(list(v), scale=scale, digits=digits))
    return out.reset_index()


def values(table: pd.DataFrame, metric: str = "accuracy", **where: Any) -> list[float]:
    """The ``metric`` of the rows matching ``where`` (e.g. one method on one split), in seed order."""
    mask = np.ones(len(table), dtype=bool)
    for k, v in where.items():
        mask &= (table[k] == v).to_numpy()
    rows = table[mask]
    if "seed" in rows.columns:
        rows = rows.sort_values("seed")
    if rows.empty:
        raise ValueError(f"no rows with {where}")
    return [float(x) for x in rows[metric]]
