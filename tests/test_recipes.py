"""Recipes build the configs whose hashes key the run cache: the keys must change when the data does."""

from __future__ import annotations

from unittest import mock

import pytest

from dbrepro import papers, recipes
from dbrepro.config import get_profile


def test_world_data_carries_the_world_version_into_the_run_key():
    from dbrepro.data import synth

    spec = recipes.world_data("smoke")
    assert spec["world_version"] == synth.WORLD_VERSION
    old_key = recipes.softmax("smoke").key()
    with mock.patch.object(synth, "WORLD_VERSION", synth.WORLD_VERSION + "-next"):
        assert recipes.world_data("smoke")["world_version"] == synth.WORLD_VERSION
        new_key = recipes.softmax("smoke").key()
    assert new_key != old_key  # a run on an older world is never served for the current one


#: a real-data spec for the profiles that train on the user's data (nothing is read to build a config)
REAL = {"kind": "recordio", "root": "/data/faces_webface_112x112", "image_size": 112}


def data_for(profile):
    return {"data": REAL} if get_profile(profile).needs_data_path else {}


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper", "rehearsal"])
def test_domain_balancing_without_dfi_is_the_cosface_baseline(profile):
    """DB §4.4 / Table 3: K = 0 degenerates to CosFace, so it shares the baseline's cache entry."""
    d = data_for(profile)
    baseline = recipes.cosface(profile, seed=3, **d)
    assert recipes.domain_balancing(profile, k=0, seed=3, **d).key() == baseline.key()
    assert recipes.domain_balancing(profile, rbm=None, dbm=False, seed=3, **d).key() == baseline.key()
    full = recipes.domain_balancing(profile, num_classes=10_575, seed=3, **d)
    assert full.key() != baseline.key()
    assert full.head == "dbm" and full.rbm == "soft"
    assert full.dfi.k == 100 and full.dfi.eps == papers.DB_EPS  # the paper's K on CASIA-WebFace's classes
    assert full.dfi.every == get_profile(profile).dfi_refresh_every
    custom = recipes.domain_balancing(profile, k=7, dfi_every=25, seed=3, **d)
    assert (custom.dfi.k, custom.dfi.every) == (7, 25) and custom.key() != full.key()
    with pytest.raises(ValueError, match="give k"):
        recipes.domain_balancing(profile, seed=3, **d)


def test_one_definition_of_k():
    """DB Tables 2 and 3 both use K = the paper's 100 of 10,575 classes as a share of the training classes."""
    assert recipes.dfi_k(10_575) == 100 and recipes.dfi_k(85_742) == 811 and recipes.dfi_k(600) == 6
    assert recipes.dfi_k(40) == 1


def test_real_data_profiles_never_fall_back_to_a_synthetic_world():
    for profile in ("paper", "rehearsal"):
        with pytest.raises(ValueError, match="trains on real data"):
            recipes.cosface(profile)


def test_db_ablation_rows_differ_only_where_table_2_says():
    rows = {
        "rbm w/o sg": recipes.domain_balancing("smoke", rbm="ungated", dbm=False, k=1),
        "rbm": recipes.domain_balancing("smoke", rbm="soft", dbm=False, k=1),
        "dbm": recipes.domain_balancing("smoke", rbm=None, dbm=True, k=1),
    }
    assert rows["rbm w/o sg"].dfi is None  # f(x) = 1 needs no DFI
    assert rows["rbm"].head == "cosface" and rows["rbm"].dfi is not None
    assert rows["dbm"].head == "dbm" and rows["dbm"].rbm is None
    assert len({cfg.key() for cfg in rows.values()}) == 3


def test_range_loss_recipe_uses_identity_balanced_batches_of_the_profile():
    for profile in ("smoke", "cpu", "paper", "rehearsal"):
        cfg = recipes.range_loss(profile, **data_for(profile))
        p, k = get_profile(profile).range_pk
        assert cfg.sampler == "pk" and tuple(cfg.pk) == (p, k) and cfg.batch_size == p * k
        assert cfg.terms["range"]["intra_weight"] == 5e-5 and cfg.terms["range"]["inter_weight"] == 1e-4
        assert cfg.terms["range"]["k"] == 2  # RL §3.4, recorded in the config (and its key)
    assert papers.RANGE_PK == (16, 16)  # the paper's batches, used by the paper profile
    assert tuple(get_profile("paper").range_pk) == (16, 16)


def test_a0_is_the_whole_training_set_and_shares_its_run():
    from dbrepro.data import specs

    assert recipes.softmax("smoke", split="A-0", seed=1).key() == recipes.softmax("smoke", seed=1).key()
    assert recipes.softmax("smoke", data=recipes.world_data("smoke", split="A-0")).key() == recipes.softmax("smoke").key()
    assert recipes.softmax("smoke", split="A-1").key() != recipes.softmax("smoke").key()
    whole = specs.training_set(recipes.world_data("smoke"))
    a0 = specs.apply_split(whole, "A-0")
    assert len(a0) == len(whole) and (a0.labels == whole.labels).all() and bool((a0.images == whole.images).all())


def test_on_data_reads_the_class_count_only_for_db():
    from dbrepro import recipes

    data = recipes.world_data("smoke")
    calls = []

    def count():
        calls.append(1)
        return 1000

    assert recipes.on_data("cosface", "smoke", data, count).head == "cosface" and calls == []
    db = recipes.on_data("db", "smoke", data, count)
    assert calls == [1] and db.dfi.k == recipes.dfi_k(1000)
    assert recipes.on_data("db", "smoke", data, count, k=7).dfi.k == 7 and calls == [1]
    with pytest.raises(ValueError, match="unknown recipe 'adacos'"):
        recipes.on_data("adacos", "smoke", data, 10)


def test_cpu_bf16_is_resolved_into_the_config(monkeypatch):
    """The cpu profile trains in bfloat16 where the CPU has native bf16, the smoke profile in float32; the
    choice is a concrete bool in the config (so the run cache keys it), and ``$DBREPRO_CPU_BF16`` overrides it."""
    from dbrepro import config as config_module

    monkeypatch.delenv("DBREPRO_CPU_BF16", raising=False)
    assert recipes.cosface("smoke").cpu_bf16 is False
    assert recipes.cosface("cpu").cpu_bf16 is config_module.cpu_has_native_bf16()
    monkeypatch.setattr(config_module, "cpu_has_native_bf16", lambda: True)
    assert recipes.cosface("cpu").cpu_bf16 is True
    monkeypatch.setenv("DBREPRO_CPU_BF16", "0")
    assert recipes.cosface("cpu").cpu_bf16 is False
    assert recipes.cosface("cpu").key() != recipes.cosface("cpu").replace(cpu_bf16=True).key()
    monkeypatch.setenv("DBREPRO_CPU_BF16", "yes")
    with pytest.raises(ValueError, match="DBREPRO_CPU_BF16 must be 0 or 1"):
        recipes.cosface("cpu")
