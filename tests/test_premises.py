"""Premise checks: unit tests on a hand-made world, and the cpu-profile checks themselves (slow)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from dbrepro.premises import (attribute_frequencies, class_domains, domain_accuracy, gate_fit_intervals, image_sample,
                              margin_slack)
from dbrepro.regime import ic_domain_correlation


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
    rho = ic_domain_correlation(w, t["domain_identities"], ks=[1], s=10.0)
    assert rho.keys() == {1} and rho[1] > 0.7


def test_attribute_frequencies_most_frequent_first():
    world = SimpleNamespace(config=SimpleNamespace(group_freqs=(0.1, 0.5, 0.25, 0.15), age_band_freqs=(0.2, 0.2, 0.6)))
    assert attribute_frequencies(world, "group") == {"G1": 0.5, "G2": 0.25, "G3": 0.15, "G0": 0.1}
    assert list(attribute_frequencies(world, "group")) == ["G1", "G2", "G3", "G0"]
    assert list(attribute_frequencies(world, "age_band")) == ["old", "young", "middle"]  # a tie keeps the order
    with pytest.raises(ValueError, match="'group' or 'age_band'"):
        attribute_frequencies(world, "race")


def test_image_sample_is_everything_or_a_seeded_sorted_sample():
    assert image_sample(7, at_most=7).tolist() == list(range(7))
    a = image_sample(1000, at_most=50, seed=3)
    assert len(a) == 50 == len(set(a.tolist())) and (np.diff(a) > 0).all() and a.max() < 1000
    assert np.array_equal(a, image_sample(1000, at_most=50, seed=3))
    assert not np.array_equal(a, image_sample(1000, at_most=50, seed=4))
    with pytest.raises(ValueError, match="must be positive"):
        image_sample(0)


def test_gate_fit_intervals_separate_a_following_gate_from_a_blind_one():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(60), 5)
    target = rng.uniform(0.2, 1.0, 60)[labels]
    follows = target + rng.normal(0, 0.05, len(target))
    blind = rng.uniform(0.2, 1.0, len(target))
    good = gate_fit_intervals(follows, target, labels, n=500)
    assert 0.9 < good["pearson"][0] <= good["pearson"][1] < 1.0 and good["mse_gain"][0] > 0
    bad = gate_fit_intervals(blind, target, labels, n=500)
    assert bad["pearson"][0] < 0 < bad["pearson"][1] and bad["mse_gain"][1] < 0  # worse than a constant
    assert gate_fit_intervals(follows, target, labels, n=500) == good  # seeded
    exact = gate_fit_intervals(target, target, labels, n=50)  # a perfect gate: every resample says so
    assert exact["pearson"] == pytest.approx((1.0, 1.0)) and exact["mse_gain"][0] > 0
    with pytest.raises(ValueError, match="one value per image"):
        gate_fit_intervals(follows[:-1], target, labels)
    with pytest.raises(ValueError, match="at least two"):
        gate_fit_intervals(follows[:5], target[:5], labels[:5])


def test_gate_fit_intervals_resample_whole_classes():
    # class 0: the gate equals its target; class 1: the gate is its target reversed. A resample holds whole
    # classes: two copies of class 0 (Pearson 1, mse_gain 0.25 - 0), two of class 1 (-1, 0.25 - 1) or
    # one of each (0, 0.25 - 0.5), with probabilities 1/4, 1/4 and 1/2
    gate, target, labels = np.array([1.0, 2.0, 1.0, 2.0]), np.array([1.0, 2.0, 2.0, 1.0]), np.array([0, 0, 1, 1])
    out = gate_fit_intervals(gate, target, labels, n=400, level=0.9)
    assert out["pearson"] == pytest.approx((-1.0, 1.0))
    assert out["mse_gain"] == pytest.approx((-0.75, 0.25))


def test_margin_slack_by_hand():
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    # class 0: one image on its prototype (slack 1 - 0 = 1), one at 30 degrees towards class 1 (c - s)
    # class 1: one image at 60 degrees from it, nearer to class 0 (slack s - c < 0); class 2: on it (1 - 0)
    embeddings = torch.tensor([[2.0, 0.0], [c, s], [c, s], [-3.0, 0.0]])
    labels = np.array([0, 0, 1, 2])
    mean, satisfied = margin_slack(embeddings, prototypes, labels, m=0.35)
    np.testing.assert_allclose(mean, [(1 + c - s) / 2, s - c, 1.0], rtol=1e-6)
    np.testing.assert_allclose(satisfied, [1.0, 0.0, 1.0])  # c - s = 0.366 > 0.35
    np.testing.assert_allclose(margin_slack(embeddings, prototypes, labels, m=0.4)[1], [0.5, 0.0, 1.0])
    with pytest.raises(ValueError, match="every one of the 3 classes"):
        margin_slack(embeddings[:3], prototypes, labels[:3], m=0.35)
    with pytest.raises(ValueError, match="3 labels for 4"):
        margin_slack(embeddings, prototypes, labels[:3], m=0.35)


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
        k = recipes.dfi_k(world.train.num_classes)
        weight = experiments.load(run).objective.head.weight
        rho.append(ic_domain_correlation(weight, class_domains(world)["domain_identities"], [k], profile.scale)[k])
    # not saturated, not hopeless: real LFW gives CosFace 99.62 (DB Table 4); the 48 px world of version 18
    # gives 97.3 (the ceiling was 0.97 for the 32 px worlds, which gave 95-96)
    assert 0.80 <= np.mean(lfw) <= 0.99
    assert np.mean(frequent) - np.mean(rarest) >= 0.02
    if np.mean(rho) < 0.3:
        pytest.xfail(f"DB Fig. 4 premise does not hold in this world: Spearman(IC, domain size) = {np.mean(rho):+.2f} "
                     "(reported as 'not reproduced' in the synthetic-faces chapter)")


def test_premise_summary_counts_the_sign_and_finds_the_best_cell_and_our_own():
    import pandas as pd

    from dbrepro.regime import premise_summary

    maps = pd.DataFrame([
        {"map": "room", "embedding_size": 8, "K": 4, "rho": 0.15},
        {"map": "room", "embedding_size": 128, "K": 4, "rho": -0.11},
        {"map": "room", "embedding_size": 128, "K": 8, "rho": -0.10},
        {"map": "identity", "identity_spread": 1.0, "nuisance": 0.35, "K": 6, "rho": 0.05},
    ])
    text = premise_summary(maps, embedding_size=128, k=6)
    assert text.startswith("Spearman(IC, domain frequency) is positive in 2 of 4 cells, at most +0.15")
    assert "the room map, 8-D and K = 4" in text
    assert "128-D and K = 4 (nearest to its K = 6): -0.11" in text  # the first of two equally near Ks
    best_identity = maps.assign(rho=[-0.2, -0.11, -0.10, 0.3])
    assert "identity spread 1 against nuisance 0.35" in premise_summary(best_identity, 128, 6)
    assert premise_summary(maps.iloc[:0], 128, 6) == "no premise map was measured"


def test_premise_map_axes_come_from_the_profile_and_unknown_axes_are_refused():
    """The smoke profile shrinks the maps (two values per axis) and keeps its own embedding size on the room
    map, so the summary can still name this world's cell; a misspelt axis is an error naming it."""
    from types import SimpleNamespace

    from dbrepro.config import get_profile
    from dbrepro.regime import run_premise_maps

    smoke = get_profile("smoke")
    assert all(len(v) == 2 for v in smoke.premise_map.values())
    assert smoke.embedding_size in smoke.premise_map["embeddings"]
    assert get_profile("cpu").premise_map == {}
    bad = SimpleNamespace(profile=smoke.replace(premise_map={"embedding": (8,)}), seeds=(0,))
    with pytest.raises(ValueError, match=r"premise_map has unknown axes \['embedding'\]"):
        run_premise_maps(bad)
