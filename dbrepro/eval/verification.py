"""Face verification: pair scores, the 10-fold accuracy protocol, a paired bootstrap of two models.

The protocol is the one both papers report on LFW, YTF, CALFW, CPLFW, AgeDB, RFW and AFW
("unrestricted with labeled outside data", Range Loss §4, Domain Balancing §4.2): the pair list
is cut into 10 folds; for each fold the decision threshold is chosen on the other 9 and the
accuracy measured on the held-out one; the mean and standard deviation over the 10 folds are
reported.

What this implementation fixes (reference projects differ, see ``anchors.md``):

* scores are similarities (cosine of L2-normalised embeddings; higher means "same"), and a pair
  is predicted "same" when ``score > threshold``;
* folds are contiguous in pair-list order, sized like ``sklearn.model_selection.KFold(10,
  shuffle=False)`` (the first ``N % 10`` folds hold one pair more) -- InsightFace's split;
* the threshold search is exact, not a grid: the candidates are every midpoint between two
  consecutive distinct training scores plus ``-inf`` (everything "same") and ``+inf`` (nothing
  "same"), so every distinct partition of the training scores is tried once. Among thresholds
  with the same best training accuracy the smallest wins. InsightFace instead scans squared L2
  distances 0..4 in steps of 0.01 (cosine steps of 0.005), which can miss the best partition by
  a few pairs;
* ``std`` is the population standard deviation (``ddof=0``) of the 10 fold accuracies, as
  InsightFace reports (``np.std``); FaceX-Zoo reports a standard error instead;
* ``threshold`` is the mean of the 10 fold thresholds (infinite if a fold chose an edge).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dbrepro.eval._checks import ensure_embeddings, ensure_ids, ensure_scores

__all__ = ["pair_scores", "all_pair_scores", "contiguous_folds", "verification", "held_out_correct",
           "paired_bootstrap"]


def pair_scores(embeddings: torch.Tensor | np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair: ``<e_a, e_b> / (|e_a| |e_b|)``, float64 (P,).

    ``pairs`` is an integer (P, 2) array of row indices into ``embeddings`` (N, D).
    """
    emb = ensure_embeddings(embeddings)
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs: expected shape (P, 2), got {pairs.shape}")
    if not np.issubdtype(pairs.dtype, np.integer):
        raise ValueError(f"pairs: expected integer indices, got dtype {pairs.dtype}")
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= len(emb)):
        raise ValueError(f"pairs: indices must lie in [0, {len(emb)}), got [{pairs.min()}, {pairs.max()}]")
    unit = F.normalize(emb.float(), dim=1)
    idx = torch.from_numpy(pairs.astype(np.int64)).to(unit.device)
    cos = (unit[idx[:, 0]] * unit[idx[:, 1]]).sum(dim=1)
    return cos.double().cpu().numpy()


def all_pair_scores(
    embeddings: torch.Tensor | np.ndarray, identities: Any, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity and same-identity flag of every pair ``i < j`` (row-major order).

    Returns float32 scores and bool ``issame``, each of length N (N - 1) / 2, built ``chunk``
    rows at a time (5 bytes per pair, twice that while the blocks are joined).
    """
    emb = ensure_embeddings(embeddings)
    ids = ensure_ids(identities, len(emb), "identities")
    if len(emb) < 2:
        raise ValueError(f"embeddings: all-vs-all needs at least 2 images, got {len(emb)}")
    unit = F.normalize(emb.float(), dim=1)
    ids_t = torch.from_numpy(ids).to(unit.device)
    scores, same = [], []
    for start in range(0, len(unit) - 1, chunk):
        stop = min(start + chunk, len(unit) - 1)
        block = unit[start:stop] @ unit[start + 1 :].T  # row r holds columns start+1 ..
        rows = torch.arange(stop - start, device=unit.device)[:, None]
        cols = torch.arange(block.shape[1], device=unit.device)[None, :]
        upper = cols >= rows  # column c is image start+1+c, row r is image start+r
        scores.append(block[upper].cpu())
        same.append((ids_t[start:stop, None] == ids_t[None, start + 1 :])[upper].cpu())
    return torch.cat(scores).numpy(), torch.cat(same).numpy()


def contiguous_folds(n: int, folds: int = 10) -> np.ndarray:
    """Fold index of each of ``n`` items for ``folds`` contiguous folds (KFold without shuffle).

    >>> contiguous_folds(7, 3).tolist()
    [0, 0, 0, 1, 1, 2, 2]
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if n < folds:
        raise ValueError(f"{n} pairs cannot be split into {folds} folds")
    sizes = np.full(folds, n // folds)
    sizes[: n % folds] += 1
    return np.repeat(np.arange(folds), sizes)


def _best_threshold(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """The exact accuracy-maximising threshold for ``score > t`` on sorted ``scores``.

    Returns ``(threshold, training accuracy)``; candidates are ``-inf``, the midpoints between
    distinct consecutive scores and ``+inf``; the smallest best candidate wins.
    """
    n = len(scores)
    neg_upto = np.cumsum(~issame)  # negatives among scores[0..i], all predicted "different" by a cut after i
    pos_upto = np.cumsum(issame)
    num_pos = pos_upto[-1]
    distinct = np.flatnonzero(scores[1:] > scores[:-1])  # cut after i is a real partition
    correct = np.concatenate((
        [num_pos],  # t = -inf: everything "same"
        neg_upto[distinct] + num_pos - pos_upto[distinct],
        [neg_upto[-1]],  # t = +inf: nothing "same"
    ))
    best = int(np.argmax(correct))  # first maximum = smallest threshold
    if best == 0:
        threshold = -np.inf
    elif best == len(correct) - 1:
        threshold = np.inf
    else:
        i = distinct[best - 1]
        threshold = 0.5 * (scores[i] + scores[i + 1])
    return float(threshold), float(correct[best]) / n


def verification(
    scores: Any,
    issame: Any,
    folds: int = 10,
    fold_ids: Any = None,
) -> dict[str, Any]:
    """The 10-fold verification protocol on pair similarities (see the module docstring).

    Parameters
    ----------
    scores
        (N,) similarity of each pair, higher = more likely the same identity.
    issame
        (N,) bool, True where the pair shows one identity.
    folds
        number of contiguous folds in pair-list order (ignored when ``fold_ids`` is given).
    fold_ids
        (N,) integer fold of each pair, overriding the contiguous split (e.g. ``PairSuite.folds``).

    Returns
    -------
    dict with ``accuracy`` (mean held-out accuracy), ``std`` (ddof=0 over folds),
    ``threshold`` (mean fold threshold), ``fold_accuracies`` and ``thresholds`` (arrays, one
    per fold in fold order), ``folds`` (the fold labels) and ``n_pairs``.
    """
    s, y = ensure_scores(scores, issame)
    if fold_ids is None:
        fold_of = contiguous_folds(len(s), folds)
    else:
        fold_of = np.asarray(fold_ids)
        if fold_of.shape != s.shape:
            raise ValueError(f"fold_ids: expected {len(s)} fold labels, got shape {fold_of.shape}")
        if len(np.unique(fold_of)) < 2:
            raise ValueError("fold_ids: at least 2 distinct folds are needed")
    labels = np.unique(fold_of)

    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted, f_sorted = s[order], y[order], fold_of[order]
    thresholds = np.empty(len(labels))
    accuracies = np.empty(len(labels))
    for k, label in enumerate(labels):
        train = f_sorted != label
        y_train = y_sorted[train]
        if y_train.all() or not y_train.any():
            kind = "negative" if y_train.all() else "positive"
            raise ValueError(f"fold {label}: the other folds hold no {kind} pair, so no threshold can be chosen")
        thresholds[k], _ = _best_threshold(s_sorted[train], y_train)
        test = fold_of == label
        accuracies[k] = np.mean((s[test] > thresholds[k]) == y[test])
    return {
        "accuracy": float(accuracies.mean()),
        "std": float(accuracies.std()),
        "threshold": float(thresholds.mean()),
        "fold_accuracies": accuracies,
        "thresholds": thresholds,
        "folds": labels,
        "n_pairs": int(len(s)),
    }


def held_out_correct(scores: Any, issame: Any, fold_ids: Any = None, folds: int = 10) -> np.ndarray:
    """(N,) bool: whether each pair is judged right by the 10-fold protocol (the threshold chosen on the other
    folds). Its mean over a fold is that fold's accuracy, so its mean over folds of equal size is the
    protocol's accuracy."""
    s, y = ensure_scores(scores, issame)
    fold_of = contiguous_folds(len(s), folds) if fold_ids is None else np.asarray(fold_ids)
    result = verification(s, y, fold_ids=fold_of)
    correct = np.empty(len(s), dtype=bool)
    for label, threshold in zip(result["folds"], result["thresholds"]):
        test = fold_of == label
        correct[test] = (s[test] > threshold) == y[test]
    return correct


def paired_bootstrap(correct_a: Sequence[np.ndarray], correct_b: Sequence[np.ndarray], n: int = 2000,
                     seed: int = 0, alpha: float = 0.05) -> dict[str, float]:
    """Percentile interval of "accuracy of A minus accuracy of B" from the test pairs, for a single training run.

    ``correct_a[j]`` and ``correct_b[j]`` are :func:`held_out_correct` of the two models on the same pairs of
    suite ``j``; the statistic is the mean over suites of the accuracy difference (the papers' "Average"
    column). Each replicate resamples every suite's pairs with replacement, the *same* pairs for both models
    (paired), so what the two models share cancels and the interval measures how much the difference moves
    with the choice of test pairs. It is not a seed-to-seed spread: a verdict from it says which error bar it
    used. Returns ``difference``, ``low``, ``high`` (in [−1, 1]), ``alpha``, ``n``, ``pairs``.
    """
    if len(correct_a) != len(correct_b) or not correct_a:
        raise ValueError("paired_bootstrap: give the same, non-empty list of suites for both models")
    diffs = []
    for a, b in zip(correct_a, correct_b):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
            raise ValueError(f"paired_bootstrap: both models need one value per pair, got {a.shape} and {b.shape}")
        diffs.append(a - b)
    rng = np.random.default_rng(seed)
    samples = np.zeros(n)
    for d in diffs:
        idx = rng.integers(0, len(d), size=(n, len(d)))
        samples += d[idx].mean(axis=1)
    samples /= len(diffs)
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return {"difference": float(np.mean([d.mean() for d in diffs])), "low": float(low), "high": float(high),
            "alpha": alpha, "n": n, "pairs": int(sum(len(d) for d in diffs))}
