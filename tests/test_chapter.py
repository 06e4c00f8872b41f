"""chapter.setup and Chapter.compare: seeds where there are several, a paired bootstrap where there is one run."""

import numpy as np
import pandas as pd
import pytest
import torch

from dbrepro import chapter
from dbrepro.eval import held_out_correct, paired_bootstrap, verification


def test_held_out_correct_averages_to_the_protocol_accuracy():
    rng = np.random.default_rng(0)
    issame = np.repeat([True, False], 300)
    scores = rng.normal(issame * 1.0, 1.0)
    folds = np.arange(600) % 10
    correct = held_out_correct(scores, issame, folds)
    assert np.mean([correct[folds == f].mean() for f in range(10)]) == pytest.approx(
        verification(scores, issame, fold_ids=folds)["accuracy"])


def test_paired_bootstrap_by_hand():
    a = [np.array([1, 1, 1, 0], bool)]
    b = [np.array([1, 0, 1, 0], bool)]
    boot = paired_bootstrap(a, b, n=4000)
    assert boot["difference"] == 0.25 and 0.0 <= boot["low"] <= 0.25 <= boot["high"] <= 0.75
    same = paired_bootstrap(a, a, n=100)
    assert same["low"] == same["high"] == 0.0  # paired: identical models never differ
    with pytest.raises(ValueError, match="one value per pair"):
        paired_bootstrap(a, [np.ones(3, bool)])


def test_compare_over_seeds():
    ch = chapter.setup("t", "smoke")
    rows = [{"method": m, "seed": s, "suite": suite, "run": f"{m}{s}", "accuracy": acc + 0.001 * s}
            for m, acc in (("good", 0.9), ("bad", 0.8)) for s in (0, 1, 2) for suite in ("lfw", "cplfw")]
    table = pd.DataFrame(rows)
    c = ch.compare(table, {"method": "good"}, {"method": "bad"}, {"lfw": None, "cplfw": None})
    assert c.verdict == "reproduced" and "3 training seeds" in c.error_bar and c.ours.startswith("good 90.10")
    assert ch.compare(table, {"method": "good"}, {"method": "bad"}, {"lfw": None}, expect="less").verdict == \
        "not reproduced"
    claim = ch.claim("x", "good beats bad", "1 vs 0", comparison=c)
    assert claim.verdict == "reproduced" and "error bar" in claim.note


def test_compare_a_single_run_uses_a_paired_bootstrap(monkeypatch):
    ch = chapter.setup("t", "smoke")
    suite = ch.suites(["lfw"])["lfw"]
    rng = np.random.default_rng(1)
    noisy = {"good": suite.issame + rng.normal(0, 0.3, len(suite)), "bad": suite.issame + rng.normal(0, 3, len(suite))}
    monkeypatch.setattr(chapter.Chapter, "_held_out_correct",
                        lambda self, key, suites: [held_out_correct(noisy[key], suite.issame, suite.folds)])
    table = pd.DataFrame([{"method": m, "seed": 0, "suite": "lfw", "run": m, "accuracy": 0.0} for m in noisy])
    c = ch.compare(table, {"method": "good"}, {"method": "bad"}, {"lfw": suite})
    assert c.verdict == "reproduced" and "paired bootstrap" in c.error_bar and "95% interval" in c.ours


def test_synthetic_domain_suites_hold_only_their_own_pairs_images():
    ch = chapter.setup("t", "smoke")
    whole = ch.world.suites["rfw"]
    parts = ch.data.domain_suites("rfw")
    assert sum(len(p) for p in parts.values()) == len(whole)
    for group, part in parts.items():
        keep = (whole.meta["group"] == group).to_numpy()
        assert len(part.images) < len(whole.images)
        assert torch.equal(part.images[part.pairs.reshape(-1)], whole.images[whole.pairs[keep].reshape(-1)])
        assert (part.folds == whole.folds[keep]).all() and (part.issame == whole.issame[keep]).all()
