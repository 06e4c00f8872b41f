"""The synthetic world's premise checks: is the Domain Balancing paper's starting point true here?

Three measurements on a trained CosFace baseline (issue 4):

1. verification accuracy on the LFW-like suite lies in a useful range (neither trivial nor hopeless);
2. accuracy on the rarest domain is below the most frequent domain's (DB Fig. 7):
   :func:`domain_accuracy` runs the 10-fold protocol within each domain on the RFW-like and
   AFW-like pairs (whose negatives are same-domain, so each domain is a fair test of its own);
3. inter-class compactness (DB Eq. 1) of the head's prototypes is higher for classes of frequent
   domains (DB Fig. 4): :func:`compactness_vs_domain` gives the Spearman correlation between a
   class's IC and the number of training identities of its domain (and, as a control, with the
   class's own image count, which must not be what IC measures).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from .dfi import inter_class_compactness
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


def compactness_vs_domain(weight: torch.Tensor, world: Any, k: int, s: float) -> dict[str, Any]:
    """Spearman correlation of each class's IC (DB Eq. 1) with its domain's frequency and its own size.

    ``weight`` are the head's prototypes (num_classes x D) of a model trained on ``world.train``.
    Returns ``rho_domain`` (the DB Fig. 4 premise: should be clearly positive), ``rho_class_size``
    (a control) and the per-class ``table`` (with the IC) for plots.
    """
    table = class_domains(world)
    if len(table) != weight.shape[0]:
        raise ValueError(f"{weight.shape[0]} prototypes for {len(table)} training classes")
    ic = inter_class_compactness(weight.detach().float().cpu(), k=k, s=s).numpy()
    table["ic"] = ic
    return {
        "rho_domain": float(spearmanr(ic, table["domain_identities"]).statistic),
        "rho_class_size": float(spearmanr(ic, table["images"]).statistic),
        "k": int(k), "s": float(s), "table": table,
    }
