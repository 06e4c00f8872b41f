"""Small tables the chapters show: a metric of several methods over training seeds; what a sampler feeds.

>>> seeds_table({"softmax": {0: 0.80, 1: 0.78}, "range": {0: 0.70, 1: 0.74}})  # doctest: +NORMALIZE_WHITESPACE
         seed 0  seed 1  mean       std  seeds     mean ± std
method
softmax    80.0    78.0  79.0  1.414214      2  79.00 ± 1.41
range      70.0    74.0  72.0  2.828427      2  72.00 ± 2.83
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Iterable, Mapping, Protocol

import numpy as np
import pandas as pd

from .data.splits import PAPER_TAIL_BELOW, class_sizes
from .results import fmt_pm, mean_std


def seeds_table(
    values: Mapping[str, Mapping[Hashable, float]], *, scale: float = 100.0, digits: int = 2
) -> pd.DataFrame:
    """One row per method: its metric for every seed, the mean, the std over seeds and ``"mean ± std"``.

    Parameters
    ----------
    values
        ``{method: {seed: value}}``, e.g. LFW accuracies in [0, 1]. Methods keep their order; the
        seed columns are the union of all seeds, sorted (a seed a method lacks is NaN).
    scale
        Factor applied to every number (100 shows accuracies in percent).
    digits
        Decimals of the ``"mean ± std"`` column (:func:`dbrepro.results.fmt_pm`).

    Returns
    -------
    DataFrame indexed by ``method`` with columns ``seed <s>`` ..., ``mean``, ``std`` (sample std,
    ddof=1, as :func:`dbrepro.results.compare` uses; NaN with a single seed, which has no error bar),
    ``seeds`` (how many) and ``mean ± std`` (text).
    """
    if not values:
        raise ValueError("seeds_table: no methods given")
    seeds: set[Any] = set()
    for method, per_seed in values.items():
        if not isinstance(per_seed, Mapping) or not per_seed:
            raise ValueError(f"seeds_table: method {method!r} needs a non-empty {{seed: value}} mapping, got {per_seed!r}")
        for seed, v in per_seed.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(float(v)):
                raise ValueError(f"seeds_table: method {method!r}, seed {seed!r}: expected a finite number, got {v!r}")
        seeds.update(per_seed)
    try:
        order = sorted(seeds)
    except TypeError:
        raise ValueError(f"seeds_table: seeds must be mutually comparable (e.g. all ints), got {list(seeds)!r}") from None

    rows = {}
    for method, per_seed in values.items():
        row: dict[str, Any] = {f"seed {s}": float(per_seed[s]) * scale if s in per_seed else np.nan for s in order}
        sample = [float(v) for v in per_seed.values()]
        mean, std = mean_std(sample)
        row.update({"mean": mean * scale, "std": std * scale if len(sample) > 1 else np.nan, "seeds": len(sample),
                    "mean ± std": fmt_pm(sample, scale=scale, digits=digits)})
        rows[method] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


class EpochSampler(Protocol):
    """A batch sampler as :mod:`dbrepro.data.samplers` defines them: ``set_epoch(e)``, then batches of indices."""

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterable[Any]: ...


def sampler_coverage(
    sampler: EpochSampler, labels: Any, epochs: int, tail_below: int = PAPER_TAIL_BELOW
) -> dict[str, float]:
    """What a batch sampler feeds the network over ``epochs`` epochs, as shares in [0, 1].

    Returns
    -------
    ``people drawn``
        identities with at least one image drawn, over all identities in ``labels``;
    ``images drawn``
        images drawn at least once, over all images;
    ``repeated slots``
        batch slots holding an image already in the same batch (P x K batches repeat the images
        of a person with fewer than K), over all slots;
    ``one-image people's slots``
        slots holding the image of a person who has only one;
    ``head slots``
        slots holding an image of a head person (``tail_below`` images or more; 20 in Range Loss §3.1).
    """
    labels = np.asarray(labels)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"sampler_coverage: epochs must be a positive integer, got {epochs!r}")
    batches = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches.extend(np.asarray(b, dtype=np.int64) for b in sampler)
    if not batches:
        raise ValueError("sampler_coverage: the sampler yielded no batch")
    slots = np.concatenate(batches)
    if slots.size and (slots.min() < 0 or slots.max() >= len(labels)):
        raise ValueError(f"sampler_coverage: the sampler drew indices outside [0, {len(labels)}) of labels")
    sizes = class_sizes(labels)
    size_of_slot = sizes[labels[slots]]
    present = np.count_nonzero(sizes)
    return {
        "people drawn": len(np.unique(labels[slots])) / present,
        "images drawn": len(np.unique(slots)) / len(labels),
        "repeated slots": sum(len(b) - len(np.unique(b)) for b in batches) / len(slots),
        "one-image people's slots": float(np.mean(size_of_slot == 1)),
        "head slots": float(np.mean(size_of_slot >= tail_below)),
    }
