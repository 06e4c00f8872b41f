"""ROC analysis of genuine/impostor scores: exact ROC, AUC, EER and TAR at a given FAR.

Conventions
-----------
Scores are similarities; a pair is *accepted* (declared "same") when ``score >= threshold``,
as in ``sklearn.metrics.roc_curve``. FAR = accepted impostors / impostors, TAR = accepted
genuine pairs / genuine pairs. Everything is exact: no grid and no interpolation, except where a
function says so (the EER).

TAR at FAR
    ``tar_at_far`` picks the *lowest* threshold whose FAR is still ``<= far`` -- the best TAR
    that is achievable without exceeding the requested FAR -- and reports the FAR that
    threshold actually achieves (``OperatingPoint.far``; it is below the target when impostor
    scores tie or when ``far * num_impostors`` is not a whole number). InsightFace instead
    interpolates the threshold between grid points (``VAL@FAR``).

Resolution limit
    With ``I`` impostor pairs, the smallest non-zero FAR that can be measured is ``1 / I``.
    A target below that (for example FAR = 1e-6 with only 10^5 impostor pairs) is not
    measurable: the result is NaN and a :class:`FarResolutionWarning` says how many impostor
    pairs the target would need. Report such cells as "n/a", never as a number.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dbrepro.eval._checks import ensure_scores

__all__ = [
    "FarResolutionWarning",
    "OperatingPoint",
    "roc_curve",
    "auc",
    "eer",
    "tar_at_far",
    "operating_points",
    "min_far",
]


class FarResolutionWarning(UserWarning):
    """A requested FAR is below ``1 / number of impostor pairs`` and cannot be measured."""


@dataclass(frozen=True)
class OperatingPoint:
    """One point of a ROC chosen for a target FAR.

    ``tar`` and ``far`` are what the threshold achieves (``far <= target_far``); a pair is
    accepted when ``score >= threshold``. All three are NaN when the target is not measurable.
    """

    target_far: float
    tar: float
    far: float
    threshold: float
    num_genuine: int
    num_impostors: int


def min_far(num_impostors: int) -> float:
    """The smallest measurable non-zero FAR with ``num_impostors`` impostor pairs: ``1 / I``."""
    if num_impostors < 1:
        raise ValueError(f"num_impostors must be >= 1, got {num_impostors}")
    return 1.0 / num_impostors


def _split(scores: Any, issame: Any) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores, each sorted ascending; both must be present."""
    s, y = ensure_scores(scores, issame)
    genuine, impostor = np.sort(s[y]), np.sort(s[~y])
    if len(genuine) == 0:
        raise ValueError("issame: no genuine (same identity) pair, TAR is undefined")
    if len(impostor) == 0:
        raise ValueError("issame: no impostor (different identity) pair, FAR is undefined")
    return genuine, impostor


def roc_curve(scores: Any, issame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact ROC: ``(far, tar, thresholds)``, one point per distinct score.

    ``thresholds`` are the distinct scores in decreasing order preceded by ``+inf`` (the point
    (0, 0)); point ``i`` accepts every pair with ``score >= thresholds[i]``, so tied scores
    enter together. Identical to ``sklearn.metrics.roc_curve(issame, scores,
    drop_intermediate=False)``.
    """
    genuine, impostor = _split(scores, issame)
    thresholds = np.concatenate(([np.inf], np.unique(np.concatenate((genuine, impostor)))[::-1]))
    accepted_genuine = len(genuine) - np.searchsorted(genuine, thresholds, side="left")
    accepted_impostors = len(impostor) - np.searchsorted(impostor, thresholds, side="left")
    return accepted_impostors / len(impostor), accepted_genuine / len(genuine), thresholds


def auc(scores: Any, issame: Any) -> float:
    """Area under the exact ROC (trapezoids between its points, so ties count one half).

    Computed as the Mann-Whitney statistic: the probability that a random genuine pair scores
    above a random impostor pair, plus half the probability of a tie.
    """
    genuine, impostor = _split(scores, issame)
    below = np.searchsorted(impostor, genuine, side="left")
    tied = np.searchsorted(impostor, genuine, side="right") - below
    return float((below.sum() + 0.5 * tied.sum()) / (len(genuine) * len(impostor)))


def eer(scores: Any, issame: Any) -> float:
    """Equal error rate: where FAR equals FRR = 1 - TAR on the exact ROC.

    The ROC's points are joined by straight segments (the error rates of randomising between
    two neighbouring thresholds) and the crossing with FAR = FRR is found on that polyline.
    """
    far, tar, _ = roc_curve(scores, issame)
    gap = far - (1.0 - tar)  # -1 at the first point, +1 at the last, non-decreasing
    j = int(np.argmax(gap >= 0))
    if gap[j] == 0:
        return float(far[j])
    i = j - 1
    step = (0.0 - gap[i]) / (gap[j] - gap[i])
    return float(far[i] + step * (far[j] - far[i]))


def operating_points(
    genuine: Any,
    impostor: Any,
    far: float | Sequence[float],
    num_impostors: int | None = None,
) -> OperatingPoint | list[OperatingPoint]:
    """TAR at a target FAR from genuine scores and (the largest) impostor scores.

    Parameters
    ----------
    genuine
        every genuine score (``-inf`` marks a genuine trial that can never be accepted, e.g. a
        probe whose top-1 match is wrong in open-set identification).
    impostor
        impostor scores: all of them, or only the largest ones when ``num_impostors`` gives
        their total count (streaming evaluations keep the top ``floor(far * I) + 1`` scores).
    far
        one target FAR or a sequence of them.
    num_impostors
        total number of impostor trials; default ``len(impostor)``.

    Returns
    -------
    One :class:`OperatingPoint` for a float ``far``, a list for a sequence.
    """
    return _points(genuine, impostor, far, num_impostors)


def _points(
    genuine: Any, impostor: Any, far: float | Sequence[float], num_impostors: int | None
) -> OperatingPoint | list[OperatingPoint]:
    """:func:`operating_points`; warnings point at the caller of the public function."""
    g = np.sort(np.asarray(genuine, dtype=np.float64))
    imp = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]  # descending
    if g.ndim != 1 or imp.ndim != 1:
        raise ValueError("genuine and impostor scores must be 1-D")
    if np.isnan(g).any() or np.isnan(imp).any():
        raise ValueError("genuine/impostor scores contain NaN")
    if len(g) == 0:
        raise ValueError("genuine: no genuine score, TAR is undefined")
    total = len(imp) if num_impostors is None else int(num_impostors)
    if total < len(imp):
        raise ValueError(f"num_impostors={total} is smaller than the {len(imp)} impostor scores given")
    if total < 1:
        raise ValueError("impostor: no impostor score, FAR is undefined")
    scalar = np.ndim(far) == 0
    targets = [float(far)] if scalar else [float(f) for f in far]
    points = []
    for target in targets:
        point = _operating_point(g, imp, total, target)
        if math.isnan(point.tar):
            warnings.warn(
                f"FAR {target:g} is below 1/{total} impostor pairs = {1 / total:.3g}: not measurable "
                f"(it needs at least {math.ceil(1 / target) if target > 0 else 'infinitely many'} impostor pairs)",
                FarResolutionWarning,
                stacklevel=3,
            )
        points.append(point)
    return points[0] if scalar else points


def _operating_point(genuine: np.ndarray, impostor_desc: np.ndarray, total: int, target: float) -> OperatingPoint:
    if not 0 <= target <= 1 or math.isnan(target):
        raise ValueError(f"far must lie in [0, 1], got {target}")
    # at most `allowed` impostors may be accepted; the tiny slack absorbs float error in far * total
    allowed = math.floor(target * total * (1 + 1e-9))
    if allowed == 0:  # not measurable: the caller warns
        nan = float("nan")
        return OperatingPoint(target, nan, nan, nan, len(genuine), total)
    if allowed >= total:
        cut = -np.inf  # every impostor may be accepted
    else:
        if allowed >= len(impostor_desc):
            raise ValueError(
                f"FAR {target:g} needs the top {allowed + 1} of {total} impostor scores, "
                f"only {len(impostor_desc)} given"
            )
        cut = impostor_desc[allowed]  # the (allowed + 1)-th largest: it and everything tied with it stay rejected
    accepted_genuine = len(genuine) - np.searchsorted(genuine, cut, side="right")
    accepted_impostors = int(np.count_nonzero(impostor_desc > cut))
    above = np.concatenate((genuine[genuine > cut][:1], impostor_desc[impostor_desc > cut][-1:]))
    threshold = float(above.min()) if len(above) else float("inf")
    return OperatingPoint(
        target_far=target,
        tar=float(accepted_genuine / len(genuine)),
        far=float(accepted_impostors / total),
        threshold=threshold,
        num_genuine=len(genuine),
        num_impostors=total,
    )


def tar_at_far(scores: Any, issame: Any, far: float | Sequence[float]) -> OperatingPoint | list[OperatingPoint]:
    """TAR at the lowest threshold whose FAR is ``<= far`` (exact, no interpolation).

    ``far`` is a float (one :class:`OperatingPoint` back) or a sequence (a list back). Targets
    below ``1 / number of impostor pairs`` give NaN and a :class:`FarResolutionWarning`.
    """
    genuine, impostor = _split(scores, issame)
    return _points(genuine, impostor, far, None)
