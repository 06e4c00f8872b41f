"""Any metric per value of a metadata column: per race (RFW), per age band (AFW), per pose gap.

Per-group verification follows RFW: each group (e.g. each race) is its own test set with its own
10-fold protocol -- the pairs of the group, in their pair-list order, cut into 10 contiguous
folds, a threshold chosen per fold within the group. A model is therefore allowed a different
threshold per group, exactly as when the four RFW subsets are evaluated one after another.
(A single global threshold would measure something else: how well one operating point serves
every group.) The spread across groups is reported with the sample standard deviation
(``ddof=1``), as TFace does for RFW.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from dbrepro.eval.verification import verification

__all__ = ["by_group", "verification_by", "group_spread"]


def _group_rows(table: pd.DataFrame, column: str, n: int) -> dict[Any, np.ndarray]:
    if column not in table.columns:
        raise ValueError(f"meta has no column {column!r} (columns: {list(table.columns)})")
    if len(table) != n:
        raise ValueError(f"meta has {len(table)} rows for {n} items")
    values = table[column].reset_index(drop=True)
    missing = int(values.isna().sum())
    if missing:
        raise ValueError(f"meta column {column!r}: {missing} row(s) have no value; drop or label them first")
    groups = values.groupby(values, sort=True, observed=True).indices
    return {key: np.asarray(rows) for key, rows in groups.items()}


def by_group(
    metric_fn: Callable[..., float | dict[str, Any]],
    table: pd.DataFrame,
    column: str,
    **arrays: Any,
) -> pd.DataFrame:
    """Evaluate ``metric_fn(**arrays restricted to the group)`` for every value of ``table[column]``.

    ``arrays`` are aligned with the rows of ``table`` (one entry per row, original order kept
    inside each group). ``metric_fn`` returns a number (column ``value``) or a dict of numbers
    (one column each; array-valued entries are dropped). Rows: one per group value, sorted
    (categoricals in category order), with ``n`` the group size.

    >>> t = pd.DataFrame({"g": ["a", "b", "a"]})
    >>> by_group(lambda x: float(np.sum(x)), t, "g", x=np.array([1, 2, 3]))["value"].tolist()
    [4.0, 2.0]
    """
    if not arrays:
        raise ValueError("by_group needs at least one array to split")
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    for name, a in arrays.items():
        if len(a) != len(table):
            raise ValueError(f"{name} has {len(a)} entries but the table has {len(table)} rows")
    rows = []
    for key, idx in _group_rows(table, column, len(table)).items():
        try:
            result = metric_fn(**{name: a[idx] for name, a in arrays.items()})
        except ValueError as err:
            raise ValueError(f"group {column}={key!r} ({len(idx)} rows): {err}") from err
        row: dict[str, Any] = {column: key, "n": len(idx)}
        if isinstance(result, dict):
            row.update({k: v for k, v in result.items() if np.ndim(v) == 0})
        else:
            row["value"] = float(result)
        rows.append(row)
    return pd.DataFrame(rows)


def verification_by(
    scores: Any,
    issame: Any,
    meta: pd.DataFrame,
    column: str = "group",
    folds: int = 10,
) -> pd.DataFrame:
    """Per-group 10-fold verification (RFW protocol, module docstring).

    Returns one row per group: ``group`` value, ``n_pairs``, ``n_same``, ``accuracy``, ``std``
    (over the group's folds, ddof=0) and ``threshold`` (mean over the group's folds).
    """
    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)

    def one_group(scores: np.ndarray, issame: np.ndarray) -> dict[str, Any]:
        result = verification(scores, issame, folds=folds)
        return {
            "n_same": int(issame.sum()),
            "accuracy": result["accuracy"],
            "std": result["std"],
            "threshold": result["threshold"],
        }

    table = by_group(one_group, meta, column, scores=scores, issame=issame)
    return table.rename(columns={"n": "n_pairs"})


def group_spread(table: pd.DataFrame, metric: str = "accuracy", group: str | None = None) -> dict[str, Any]:
    """How unequal a metric is across groups: mean, std (ddof=1, TFace's RFW bias measure),
    the best-worst gap and the worst group.

    ``group`` names the column holding the group values (default: the first column).
    """
    if metric not in table.columns:
        raise ValueError(f"table has no column {metric!r}")
    if len(table) < 2:
        raise ValueError("a spread needs at least two groups")
    group = group or table.columns[0]
    values = table[metric].to_numpy(dtype=np.float64)
    worst = int(np.argmin(values))
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)),
        "gap": float(values.max() - values.min()),
        "worst_group": table[group].iloc[worst],
    }
