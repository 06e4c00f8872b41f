"""Input validation shared by the evaluation modules: one clear ``ValueError`` per bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def ensure_scores(scores: Any, issame: Any, what: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Pair scores as float64 (N,) and labels as bool (N,); errors name the field and the problem.

    Raises ``ValueError`` for a shape other than 1-D, a length mismatch, NaN scores (the first
    offending index is named) or labels that are not 0/1 / boolean.
    """
    s = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    y_raw = np.asarray(issame.detach().cpu() if isinstance(issame, torch.Tensor) else issame)
    if s.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array of scores, got shape {s.shape}")
    if y_raw.ndim != 1:
        raise ValueError(f"issame: expected a 1-D array of labels, got shape {y_raw.shape}")
    if len(s) != len(y_raw):
        raise ValueError(f"{what} has {len(s)} entries but issame has {len(y_raw)}")
    nan = np.flatnonzero(np.isnan(s))
    if len(nan):
        raise ValueError(f"{what}: {len(nan)} NaN score(s), the first at index {nan[0]}")
    if y_raw.dtype != bool:
        if not (np.issubdtype(y_raw.dtype, np.integer) or np.issubdtype(y_raw.dtype, np.floating)) or (
            len(y_raw) and not np.isin(y_raw, (0, 1)).all()
        ):
            raise ValueError(f"issame: labels must be boolean or 0/1, got dtype {y_raw.dtype}")
    return s, y_raw.astype(bool)


def ensure_embeddings(x: Any, what: str = "embeddings", check_finite: bool = True) -> torch.Tensor:
    """A float (N, D) tensor (numpy arrays are shared, not copied; the device is kept).

    NaN/inf are rejected unless ``check_finite=False`` (the check allocates N x D booleans).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what}: expected a tensor or array (N, D), got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{what}: expected shape (N, D), got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{what}: expected floating point embeddings, got dtype {x.dtype}")
    if check_finite and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x).all(dim=1)).nonzero()[0, 0])
        raise ValueError(f"{what}: non-finite values, the first in row {bad}")
    return x


def ensure_ids(ids: Any, n: int, what: str = "ids") -> np.ndarray:
    """Integer identity labels, one per row of the matching embeddings."""
    arr = np.asarray(ids.detach().cpu() if isinstance(ids, torch.Tensor) else ids)
    if arr.shape != (n,):
        raise ValueError(f"{what}: expected {n} ids (one per embedding), got shape {arr.shape}")
    if n and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what}: ids must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)
