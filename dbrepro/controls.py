"""Positive controls: facts every face-recognition study agrees on, checked before the papers' claims.

A world (or a recipe) that fails them cannot judge a paper's new claim, so the calibration chapter checks
them first and the scorecard shows a failing control beside every claim that depends on it. Each function
takes what the chapter measured and returns a :class:`Control` (verdict, our numbers); the thresholds are
the constants below, which the chapter states before the runs it judges.

C1 converged
    every recipe ends on a plateau of its training loss (the last epoch lowers it by less than
    :data:`PLATEAU`) *and* has learned (its last epoch's loss is at most :data:`PROGRESS` of its first's:
    a plateau at the starting loss is not convergence). The loss is measured after every epoch on a fixed
    probe of training images (:func:`dbrepro.train.loop.probe_loss`: batch statistics, SphereFace at its
    annealing floor), so that the last drop shows what the epoch changed in the weights rather than the
    noise of the epoch's running mean or of BatchNorm's running averages.
C2 margins help
    CosFace and ArcFace beat softmax by at least :data:`MARGIN_GAIN` (one point) on the mean of the
    LFW-, CALFW-, CPLFW- and AgeDB-like suites, beyond two standard errors over seeds, and by the most
    on the cross-pose suite (DB Tables 4 and 6; the CosFace and ArcFace papers).
C3 difficulty as on real data
    for every method, LFW-like above CALFW- and AgeDB-like, both above CPLFW-like.
C4 rarity hurts
    under CosFace the rarest domain verifies worse than the most frequent one, and a domain-balanced
    world removes most (at least :data:`BALANCED_SHARE_REMOVED`) of that gap.
C5 the class tail carries information
    softmax trained on A-4 (every tail identity removed) is below softmax on A-0 (RL Table 2).

:func:`gain_by_profile_yaw` is not a control but C2's diagnosis: the cross-pose pairs' verification by the
yaw of their profile photo, inside and beyond the yaws the training set shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .results import compare, fmt_pm, verdict_all

#: C1: the last epoch lowers the training loss by less than this share
PLATEAU = 0.02
#: C1: the last epoch's loss is at most this share of the first epoch's
PROGRESS = 0.5
#: C2: the margin heads' gain over softmax on the four-suite mean, in accuracy (1 point)
MARGIN_GAIN = 0.01
#: C4: the domain-balanced world removes at least this share of the long-tailed world's domain gap
BALANCED_SHARE_REMOVED = 0.5

CONTROLS = {
    "C1": "every recipe the book trains converges (plateau, and well below its starting loss)",
    "C2": "CosFace and ArcFace beat softmax by >= 1 point on the four hard suites, most on cross-pose",
    "C3": "for every method LFW-like > CALFW-, AgeDB-like > CPLFW-like",
    "C4": "rare domains verify worse under CosFace, and a domain-balanced world removes most of the gap",
    "C5": "softmax on A-4 (no tail identities) is below softmax on A-0",
}


@dataclass
class Control:
    id: str
    verdict: str
    ours: str


def loss_measure(history: Sequence[Mapping[str, Any]]) -> str:
    """The history's key C1 reads: ``"probe_loss"`` (the loss on a fixed sample of the training set after
    every epoch, :func:`dbrepro.train.loop.probe_loss`) where every epoch has it, else ``"loss"`` (the
    epoch's running mean: runs trained before the probe was recorded)."""
    return "probe_loss" if history and all("probe_loss" in h for h in history) else "loss"


def common_measure(histories: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]) -> str:
    """The one loss key C1 judges every run of ``histories`` on: ``"probe_loss"`` where every run has it."""
    every = all(loss_measure(h) == "probe_loss" for runs in histories.values() for h in runs)
    return "probe_loss" if every else "loss"


def convergence(history: Sequence[Mapping[str, Any]], measure: str | None = None) -> dict[str, Any]:
    """Plateau and progress of one run's training loss, epoch by epoch: ``history[e][measure]``
    (default: :func:`loss_measure`).

    ``last_drop`` is the last epoch's relative decrease, ``progress`` the last epoch's loss over the first's.
    A run of one epoch has no last drop: ``last_drop`` and ``progress`` are NaN, ``plateau`` and ``learned``
    None (:func:`c1_converged` then says "not measured")."""
    if not history:
        raise ValueError("convergence: the run has no epoch in its history")
    measure = measure or loss_measure(history)
    losses = [float(h[measure]) for h in history]
    if len(losses) < 2:
        return {"last_drop": float("nan"), "progress": float("nan"), "first": losses[0], "final": losses[0],
                "plateau": None, "learned": None, "measure": measure}
    last_drop = (losses[-2] - losses[-1]) / abs(losses[-2])
    progress = losses[-1] / losses[0]
    return {"last_drop": last_drop, "progress": progress, "first": losses[0], "final": losses[-1],
            "plateau": last_drop < PLATEAU, "learned": progress <= PROGRESS, "measure": measure}


def c1_converged(histories: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]) -> Control:
    """``histories[recipe]`` = one loss history per seed. Reproduced when every run of every recipe converged.

    The loss judged is the probe loss where every run recorded it, else every run's epoch mean (one
    measure for all runs, named in ``ours``)."""
    failing, short = [], []
    measure = common_measure(histories)
    for recipe, runs in histories.items():
        for i, history in enumerate(runs):
            c = convergence(history, measure)
            if c["plateau"] is None:
                short.append(recipe)
            elif not (c["plateau"] and c["learned"]):
                why = [] if c["plateau"] else [f"last epoch -{100 * c['last_drop']:.1f}%"]
                why += [] if c["learned"] else [f"final/first loss {c['progress']:.2f}"]
                failing.append(f"{recipe} (run {i + 1}: {', '.join(why)})")
    n = sum(len(r) for r in histories.values())
    measured = ("the loss on a fixed probe of training images after every epoch" if measure == "probe_loss"
                else "the epoch-mean training loss (some runs predate the probe loss)")
    if short:
        return Control("C1", "not measured", f"{len(short)} of {n} runs trained one epoch: a plateau needs two")
    if failing:
        return Control("C1", "not reproduced",
                       f"{len(failing)} of {n} runs did not converge ({measured}): " + "; ".join(failing))
    return Control("C1", "reproduced", f"all {n} runs of {len(histories)} recipes converged ({measured})")


def _per_seed_mean(values: Mapping[str, Sequence[float]], suites: Sequence[str]) -> list[float]:
    return list(np.mean([values[s] for s in suites], axis=0))


def c2_margins_help(acc: Mapping[str, Mapping[str, Sequence[float]]], margin_methods: Sequence[str] = ("CosFace", "ArcFace"),
                    baseline: str = "Softmax", suites: Sequence[str] = ("lfw", "calfw", "cplfw", "agedb"),
                    cross_pose: str = "cplfw") -> Control:
    """``acc[method][suite]`` = accuracies over seeds (in [0, 1])."""
    base = _per_seed_mean(acc[baseline], suites)
    verdicts, parts = [], []
    for m in margin_methods:
        mine = _per_seed_mean(acc[m], suites)
        gain = float(np.mean(mine) - np.mean(base))
        beyond = compare(mine, [b + MARGIN_GAIN for b in base], "greater")
        gains = {s: float(np.mean(acc[m][s]) - np.mean(acc[baseline][s])) for s in suites}
        most = max(gains, key=gains.get) == cross_pose
        verdicts += [beyond, "reproduced" if most else "not reproduced"]
        parts.append(f"{m} {fmt_pm(mine)} vs {baseline} {fmt_pm(base)} ({100 * gain:+.2f} points; largest gain on "
                     f"{max(gains, key=gains.get)}, {100 * max(gains.values()):+.2f})")
    return Control("C2", verdict_all(*verdicts), "; ".join(parts))


def c3_difficulty(acc: Mapping[str, Mapping[str, Sequence[float]]]) -> Control:
    """``acc[method][suite]`` over seeds; every method must order LFW > CALFW, AgeDB > CPLFW."""
    order = [("lfw", "calfw"), ("lfw", "agedb"), ("calfw", "cplfw"), ("agedb", "cplfw")]
    verdicts, broken = [], []
    for method, by_suite in acc.items():
        for hi, lo in order:
            v = compare(by_suite[hi], by_suite[lo], "greater")
            verdicts.append(v)
            if v != "reproduced":
                broken.append(f"{method}: {hi} {fmt_pm(by_suite[hi])} vs {lo} {fmt_pm(by_suite[lo])} ({v})")
    means = {s: float(np.mean([np.mean(a[s]) for a in acc.values()])) for s in ("lfw", "calfw", "agedb", "cplfw")}
    ours = "mean over methods: " + ", ".join(f"{s} {100 * v:.2f}" for s, v in means.items())
    return Control("C3", verdict_all(*verdicts), ours + ("; " + "; ".join(broken) if broken else "; every pair in order"))


def c4_rarity(gap_long_tailed: Sequence[float], gap_balanced: Sequence[float]) -> Control:
    """Accuracy of the most frequent minus the rarest domain (per seed) in the long-tailed and the balanced world."""
    hurts = compare(gap_long_tailed, [0.0] * len(gap_long_tailed), "greater") if len(gap_long_tailed) > 1 else (
        "reproduced" if gap_long_tailed[0] > 0 else "not reproduced")
    removed = 1.0 - float(np.mean(gap_balanced)) / float(np.mean(gap_long_tailed)) if np.mean(gap_long_tailed) > 0 else 0.0
    balanced = "reproduced" if removed >= BALANCED_SHARE_REMOVED else "not reproduced"
    ours = (f"gap {fmt_pm(gap_long_tailed)} points in the long-tailed world, {fmt_pm(gap_balanced)} in the balanced "
            f"one ({100 * removed:.0f}% of it removed)")
    return Control("C4", verdict_all(hurts, balanced), ours)


def c5_tail(a0: Sequence[float], a4: Sequence[float]) -> Control:
    """Softmax accuracy (four-suite mean, per seed) on A-0 and on A-4."""
    return Control("C5", compare(a0, a4, "greater"), f"A-0 {fmt_pm(a0)} vs A-4 {fmt_pm(a4)}")


def profile_yaw_edges(profile_yaw: Sequence[float], train_limit: float, n_pairs: int) -> list[float]:
    """Bin edges over a cross-pose suite's profile yaws: a cut at the training set's yaw limit when it falls
    inside the range, and each bin halved when the suite has at least 2,000 pairs (about 500 a bin)."""
    lo, hi = float(profile_yaw[0]), float(profile_yaw[1])
    edges = [lo, *([float(train_limit)] if lo < train_limit < hi else []), hi]
    if n_pairs >= 2000:
        edges = sorted({*edges, *((a + b) / 2 for a, b in zip(edges, edges[1:]))})
    return edges


def gain_by_profile_yaw(results: Mapping[str, Sequence[Mapping[str, Any]]], meta: Any, edges: Sequence[float],
                        baseline: str = "Softmax") -> Any:
    """Each method's cross-pose accuracy (%) per bin of the profile photo's |yaw| (meta column ``yaw_b``),
    the mean over its seeds, and every other method's gain over ``baseline`` (``"<method> gain"``).

    ``results``: method -> one pair-suite result per seed (``scores`` and ``issame``, as
    :func:`dbrepro.experiments.evaluate` returns them). Each bin is its own 10-fold protocol
    (:func:`dbrepro.eval.grouping.verification_by`, as per race on RFW). Rows: (bin, pairs).
    """
    import pandas as pd

    from .eval.grouping import bin_labels, verification_by

    if baseline not in results:
        raise ValueError(f"gain_by_profile_yaw: no {baseline!r} among the methods {sorted(results)}")
    meta = meta.reset_index(drop=True)
    binned = meta.assign(profile_yaw=bin_labels(np.abs(meta["yaw_b"].to_numpy()), edges, "°"))
    rows = []
    for method, per_seed in results.items():
        for seed, r in enumerate(per_seed):
            t = verification_by(r["scores"], r["issame"], binned, "profile_yaw")
            rows += [{"method": method, "seed": seed, "yaw": g, "pairs": int(n), "accuracy": 100 * float(a)}
                     for g, n, a in zip(t["profile_yaw"], t["n_pairs"], t["accuracy"])]
    table = pd.DataFrame(rows).pivot_table(index=["yaw", "pairs"], columns="method", values="accuracy",
                                           aggfunc="mean", observed=True)
    table = table[list(results)]
    for method in results:
        if method != baseline:
            table[f"{method} gain"] = table[method] - table[baseline]
    return table
