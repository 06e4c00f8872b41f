"""Any metric per value of a metadata column: per race (RFW), per age band (AFW), per pose gap.

Per-group verification follows RFW: each group (e.g. each race) is its own test set with its own
10-fold protocol -- the pairs of the group, in their pair-list order, cut into 10 contiguous
folds, a threshold chosen per fold within the group. A model is therefore allowed a different
threshold per group, exactly as when the four RFW subsets are evaluated one after another.
(A single global threshold would measure something else: how well one operating point serves
every group.) The spread across groups is reported with the sample standard deviation
(``ddof=1``), as TFace does for RFW.

:func:`neighbour_agreement` asks the question of DB Fig. 2 with a number: do images of one group sit
together in feature space? It counts how often an image's nearest neighbours of *other* identities
share its group, against the rate that neighbours drawn at random would give.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dbrepro.eval.verification import verification

__all__ = ["by_group", "verification_by", "group_spread", "neighbour_agreement", "bin_labels"]


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


def bin_labels(values: Any, edges: Any, unit: str = "") -> pd.Series:
    """Each value's bin among ``edges`` (increasing), as an ordered label ``"lo-hi"`` + ``unit``; bins are
    closed on the right, the first also on the left. A value outside ``[edges[0], edges[-1]]`` is an error
    naming it. For :func:`verification_by` on a continuous column (the cross-pose pairs by profile yaw)."""
    values = pd.Series(np.asarray(values, dtype=np.float64))
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not (np.diff(edges) > 0).all():
        raise ValueError(f"bin edges must increase, at least two of them, got {edges.tolist()}")
    outside = values[(values < edges[0]) | (values > edges[-1])]
    if len(outside):
        raise ValueError(f"{len(outside)} value(s) outside the bins {edges[0]:g}-{edges[-1]:g}{unit}, "
                         f"e.g. {outside.iloc[0]:g}")
    labels = [f"{a:g}-{b:g}{unit}" for a, b in zip(edges[:-1], edges[1:])]
    return pd.cut(values, edges, labels=labels, include_lowest=True)


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


def neighbour_agreement(features: torch.Tensor, attribute: Any, identity: Any, k: int = 10) -> tuple[float, float]:
    """How often an image's ``k`` nearest neighbours of other identities share its ``attribute``, and chance.

    Neighbours are by cosine similarity of ``features`` (N, D); images of the image's own identity are
    never neighbours (a person's own photos would share every attribute). ``k`` is capped at the fewest
    other-identity images any image has. Returns ``(agree, chance)``: the mean over images of the share
    of their ``k`` nearest other-identity neighbours with the same attribute value, and the mean share
    of all their other-identity images with it (what ``k`` random neighbours would give).

    >>> f = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> neighbour_agreement(f, np.array(["a", "a", "b", "b"]), np.arange(4), k=1)
    (1.0, 0.3333333333333333)
    """
    attribute, identity = np.asarray(attribute), np.asarray(identity)
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"neighbour_agreement: features must be a tensor (N, D), got {shape}")
    if attribute.shape != (len(features),) or identity.shape != (len(features),):
        raise ValueError(f"neighbour_agreement: {len(features)} features, {attribute.shape} attribute values and "
                         f"{identity.shape} identities: give one attribute value and one identity per image")
    if k < 1:
        raise ValueError(f"neighbour_agreement: k must be >= 1, got {k}")
    same_id = torch.as_tensor(identity[:, None] == identity[None, :])
    if bool(same_id.all(1).any()):
        raise ValueError("neighbour_agreement: some image has no image of another identity to compare with")
    # region: agreement and chance
    unit = F.normalize(features.float(), dim=1)
    sim = unit @ unit.T
    sim[same_id] = -float("inf")
    k = min(k, int((~same_id).sum(1).min()))
    nearest = sim.topk(k, dim=1).indices.numpy()
    agree = (attribute[nearest] == attribute[:, None]).mean()
    same_attr = attribute[:, None] == attribute[None, :]
    chance = ((same_attr & ~same_id.numpy()).sum(1) / (~same_id.numpy()).sum(1)).mean()
    # endregion
    return float(agree), float(chance)
