"""Premise checks: unit tests on a hand-made world, and the cpu-profile checks themselves (slow)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from dbrepro.premises import class_domains, compactness_vs_domain, domain_accuracy


def fake_world():
    table = pd.DataFrame({"domain": ["A/y", "B/o"], "group": ["A", "B"], "age_band": ["y", "o"], "identities": [3, 1]})
    # 40 pairs per domain, 10 folds of 4 (2 same, 2 different)
    n = 80
    domain = np.repeat(["A/y", "B/o"], 40)
    issame = np.tile([True, True, False, False], 20)
    folds = np.tile(np.repeat(np.arange(10), 4), 2)
    suite = type("Suite", (), {"meta": pd.DataFrame({"domain": domain}), "issame": issame, "folds": folds,
                               "__len__": lambda self: n})()
    meta = pd.DataFrame({"identity": [10, 10, 11, 12, 13, 13], "label": [0, 0, 1, 2, 3, 3],
                         "domain": ["A/y", "A/y", "A/y", "A/y", "B/o", "B/o"]})
    train = SimpleNamespace(meta=meta, num_classes=4)
    return SimpleNamespace(suites={"rfw": suite}, domain_table=lambda: table, train=train), domain, issame


def test_domain_accuracy_runs_the_protocol_within_each_domain():
    world, domain, issame = fake_world()
    # domain A perfectly separable; domain B: scores say the opposite of the truth
    scores = np.where(issame, 1.0, 0.0)
    scores[domain == "B/o"] = 1.0 - scores[domain == "B/o"]
    out = domain_accuracy(world, {"rfw": {"scores": scores}}, suites=("rfw",)).set_index("domain")
    assert list(out.index) == ["A/y", "B/o"]  # most frequent first
    assert out.loc["A/y", "accuracy"] == 1.0
    assert out.loc["B/o", "accuracy"] == 0.5  # nothing to learn from inverted scores: threshold at an edge
    assert out.loc["A/y", "pairs"] == 40 and out.loc["B/o", "identities"] == 1
    with pytest.raises(ValueError, match="scores for 80 pairs"):
        domain_accuracy(world, {"rfw": {"scores": scores[:5]}}, suites=("rfw",))


def test_class_domains_and_compactness_correlation():
    world, *_ = fake_world()
    t = class_domains(world)
    assert t["images"].tolist() == [2, 1, 1, 2] and t["domain_identities"].tolist() == [3, 3, 3, 1]
    # prototypes: the three A classes close together, the B class far away -> IC follows domain size
    w = torch.tensor([[1.0, 0.1, 0], [1.0, -0.1, 0], [1.0, 0.0, 0.1], [-1.0, 0.0, 0.0]])
    c = compactness_vs_domain(w, world, k=1, s=10.0)
    assert c["rho_domain"] > 0.7
    assert c["table"]["ic"].iloc[3] < c["table"]["ic"].iloc[:3].min()
    with pytest.raises(ValueError, match="3 prototypes for 4"):
        compactness_vs_domain(w[:3], world, k=1, s=10.0)


@pytest.mark.slow
def test_cpu_world_premises():
    """The synthetic world's premises with the book's CosFace baseline (cpu profile, 3 seeds; minutes)."""
    from dbrepro import experiments, recipes
    from dbrepro.config import get_profile
    from dbrepro.data import specs

    profile = get_profile("cpu")
    world = specs.world_for(recipes.world_data(profile))
    lfw, frequent, rarest, rho = [], [], [], []
    for seed in profile.seeds:
        run = experiments.train(recipes.cosface(profile, seed=seed), verbose=False)
        res = experiments.evaluate(run, {k: world.suites[k] for k in ("lfw", "rfw", "afw")})
        lfw.append(res["lfw"]["accuracy"])
        dom = domain_accuracy(world, res)
        frequent.append(dom["accuracy"].iloc[0])
        rarest.append(dom["accuracy"].iloc[-1])
        rho.append(compactness_vs_domain(experiments.load(run).objective.head.weight, world, k=recipes.dfi_k(world.train.num_classes),
                                         s=profile.scale)["rho_domain"])
    assert 0.80 <= np.mean(lfw) <= 0.97
    assert np.mean(frequent) - np.mean(rarest) >= 0.02
    if np.mean(rho) < 0.3:
        pytest.xfail(f"DB Fig. 4 premise does not hold in this world: Spearman(IC, domain size) = {np.mean(rho):+.2f} "
                     "(reported as 'not reproduced' in the synthetic-faces chapter)")
