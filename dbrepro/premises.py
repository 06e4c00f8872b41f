"""The synthetic world's premise checks: is the Domain Balancing paper's starting point true here?

Three measurements on a trained CosFace baseline (issue 4):

1. verification accuracy on the LFW-like suite lies in a useful range (neither trivial nor hopeless);
2. accuracy on the rarest domain is below the most frequent domain's (DB Fig. 7):
   :func:`domain_accuracy` runs the 10-fold protocol within each domain on the RFW-like and
   AFW-like pairs (whose negatives are same-domain, so each domain is a fair test of its own);
3. inter-class compactness (DB Eq. 1) of the head's prototypes is higher for classes of frequent
   domains (DB Fig. 4): :func:`dbrepro.regime.ic_domain_correlation` gives the Spearman correlation
   between a class's IC and the number of training identities of its domain (:func:`class_domains`
   lists both per class).

And helpers of the Part II chapters: :func:`attribute_frequencies` (a world's groups or age bands,
most frequent first), :func:`image_sample` (which training images a statistic over the training set
decodes), :func:`margin_slack` (how far each training image lies past its class's decision boundary,
the quantity of DB Fig. 6a) and :func:`gate_fit_intervals` (how well the RBM gate follows its target, with
an error bar from one trained model).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .eval import verification


def domain_accuracy(world: Any, results: Mapping[str, Mapping[str, Any]],
                    suites: Sequence[str] = ("rfw", "afw")) -> pd.DataFrame:
    """Accuracy per domain from evaluation results of the pair suites ``suites``.

    ``results[name]`` is what :func:`dbrepro.experiments.evaluate` returns for that suite (it keeps
    the pair ``scores``). Pairs of all listed suites are pooled per domain (``meta["domain"]``);
    each domain keeps the suites' fold ids, so the 10-fold protocol runs within the domain.
    Returns one row per domain with its group, age band, training identities, pairs and accuracy,
    sorted from the most to the least frequent domain.
    """
    parts = []
    for name in suites:
        suite = world.suites[name]
        scores = np.asarray(results[name]["scores"], dtype=float)
        if len(scores) != len(suite):
            raise ValueError(f"results for {name!r} have {len(scores)} scores for {len(suite)} pairs")
        parts.append(pd.DataFrame({"domain": suite.meta["domain"].to_numpy(), "score": scores,
                                   "issame": suite.issame, "fold": suite.folds}))
    pairs = pd.concat(parts, ignore_index=True)
    table = world.domain_table().set_index("domain")
    rows = []
    for domain, g in pairs.groupby("domain", sort=False):
        v = verification(g["score"].to_numpy(), g["issame"].to_numpy(), fold_ids=g["fold"].to_numpy())
        rows.append({"domain": domain, "group": table.loc[domain, "group"], "age_band": table.loc[domain, "age_band"],
                     "identities": int(table.loc[domain, "identities"]), "pairs": len(g),
                     "accuracy": v["accuracy"], "std": v["std"]})
    return pd.DataFrame(rows).sort_values("identities", ascending=False, kind="stable").reset_index(drop=True)


def class_domains(world: Any) -> pd.DataFrame:
    """One row per training class (label order): identity, group, age band, domain, its domain's identities,
    the class's images."""
    meta = world.train.meta
    per_class = meta.groupby("label").agg(identity=("identity", "first"), domain=("domain", "first"),
                                          images=("identity", "size")).sort_index()
    if not np.array_equal(per_class.index.to_numpy(), np.arange(world.train.num_classes)):
        raise ValueError("training labels are not 0..C-1 in the world's meta")
    domains = world.domain_table().set_index("domain")
    per_class.insert(1, "group", per_class["domain"].map(domains["group"]))
    per_class.insert(2, "age_band", per_class["domain"].map(domains["age_band"]))
    per_class["domain_identities"] = per_class["domain"].map(domains["identities"]).astype(int)
    return per_class.reset_index()


def attribute_frequencies(world: Any, column: str) -> dict[str, float]:
    """The training frequency of each value of a domain attribute, most frequent first.

    ``column`` is ``"group"`` (:data:`~dbrepro.data.synth.GROUPS`, frequencies ``config.group_freqs``)
    or ``"age_band"`` (:data:`~dbrepro.data.synth.AGE_BANDS`, ``config.age_band_freqs``); ties keep
    the generator's order.
    """
    from .data.synth import AGE_BANDS, GROUPS

    names = {"group": (GROUPS, "group_freqs"), "age_band": (AGE_BANDS, "age_band_freqs")}
    if column not in names:
        raise ValueError(f"attribute_frequencies: column must be 'group' or 'age_band', got {column!r}")
    values, field = names[column]
    freqs = dict(zip(values, getattr(world.config, field)))
    return dict(sorted(freqs.items(), key=lambda kv: kv[1], reverse=True))


#: the most training images a statistic over the training set decodes (a sample of a larger set; the
#: synthetic worlds of the smoke and cpu profiles are used whole)
SAMPLE_IMAGES = 20_000


def image_sample(num_images: int, at_most: int = SAMPLE_IMAGES, seed: int = 0) -> np.ndarray:
    """Indices of the training images a statistic reads: all ``num_images`` when there are at most
    ``at_most``, else ``at_most`` of them drawn without replacement (seeded), in increasing order.

    >>> image_sample(5).tolist(), image_sample(10, at_most=3, seed=1).tolist()
    ([0, 1, 2, 3, 4], [3, 4, 7])
    """
    if num_images < 1 or at_most < 1:
        raise ValueError(f"image_sample: num_images and at_most must be positive, got {num_images} and {at_most}")
    if num_images <= at_most:
        return np.arange(num_images)
    return np.sort(np.random.default_rng(seed).choice(num_images, size=at_most, replace=False))


def margin_slack(embeddings: torch.Tensor, prototypes: torch.Tensor, labels: Any,
                 m: float) -> tuple[np.ndarray, np.ndarray]:
    """Per class: how far its training images lie past the decision boundary of a cosine head (DB Fig. 6a).

    The slack of an image is ``cos theta_y - max_{j != y} cos theta_j`` (its target cosine beyond the
    nearest other class); CosFace's margin condition is slack > ``m``. Returns, per class (label order,
    ``len(prototypes)`` classes, each with at least one image), the mean slack of its images and the
    share of them that satisfy the condition.
    """
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if embeddings.ndim != 2 or prototypes.ndim != 2 or embeddings.shape[1] != prototypes.shape[1]:
        raise ValueError(f"margin_slack: embeddings {tuple(embeddings.shape)} and prototypes "
                         f"{tuple(prototypes.shape)} must be (N, D) and (C, D)")
    if labels.shape != (len(embeddings),):
        raise ValueError(f"margin_slack: {len(labels)} labels for {len(embeddings)} embeddings")
    counts = torch.bincount(labels, minlength=len(prototypes)).float()
    if len(counts) != len(prototypes) or (counts == 0).any():
        raise ValueError(f"margin_slack: labels must cover every one of the {len(prototypes)} classes, "
                         "each with at least one image")
    emb = torch.nn.functional.normalize(embeddings.float(), dim=1)
    cos = emb @ torch.nn.functional.normalize(prototypes.float(), dim=1).T
    target = cos.gather(1, labels[:, None]).squeeze(1)
    cos.scatter_(1, labels[:, None], -float("inf"))
    slack = target - cos.max(1).values
    mean_slack = torch.zeros(len(counts)).index_add_(0, labels, slack) / counts
    satisfied = torch.zeros(len(counts)).index_add_(0, labels, (slack > m).float()) / counts
    return mean_slack.numpy(), satisfied.numpy()


def gate_fit_intervals(gate: Any, target: Any, labels: Any, n: int = 2000, seed: int = 0,
                       level: float = 0.95) -> dict[str, tuple[float, float]]:
    """How well a gate ``f(x)`` follows its target ``DFI_y`` (DB Eq. 4) over training images, with a
    bootstrap interval that needs one trained model only.

    Two statistics over the images: the Pearson correlation of gate and target, and ``mse_gain``, the
    mean squared error of the best constant (the target's variance) minus that of the gate (positive:
    the gate predicts its target better than a constant does). Images of one class share their target,
    so they are not independent: the bootstrap resamples *classes* (``labels``) with replacement, ``n``
    times, each drawn class bringing all its images. Returns ``{"pearson": (low, high), "mse_gain":
    (low, high)}``, the central ``level`` intervals.
    """
    gate, target = np.asarray(gate, dtype=np.float64), np.asarray(target, dtype=np.float64)
    labels = np.asarray(labels)
    if not gate.shape == target.shape == labels.shape or gate.ndim != 1:
        raise ValueError(f"gate_fit_intervals: gate {gate.shape}, target {target.shape} and labels {labels.shape} "
                         "must be one value per image")
    classes, index = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError("gate_fit_intervals: the bootstrap resamples classes and needs at least two")
    # per-class sums; a resample is a multinomial weight per class, and every statistic a weighted sum
    parts = np.stack([np.ones_like(gate), gate, target, gate ** 2, target ** 2, gate * target, (gate - target) ** 2])
    sums = np.stack([np.bincount(index, weights=row, minlength=len(classes)) for row in parts], axis=1)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(classes), np.full(len(classes), 1 / len(classes)), size=n)
    count, sg, st, sgg, stt, sgt, see = (weights @ sums).T
    var_g, var_t = count * sgg - sg ** 2, count * stt - st ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        pearson = (count * sgt - sg * st) / np.sqrt(var_g * var_t)
    mse_gain = (stt / count - (st / count) ** 2) - see / count
    tail = (1 - level) / 2 * 100

    def interval(values: np.ndarray) -> tuple[float, float]:
        values = values[np.isfinite(values)]
        if values.size == 0:
            return float("nan"), float("nan")
        low, high = np.percentile(values, [tail, 100 - tail])
        return float(low), float(high)

    return {"pearson": interval(pearson), "mse_gain": interval(mse_gain)}
