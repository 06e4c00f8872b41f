"""The synthetic world: determinism, long tails, identities, suite protocols, World.render, config errors.

Images, randomness and distractors: test_synth_images.py; the cache: test_synth_cache.py; the pinned
fingerprints of the smoke and cpu worlds: test_synth_digest.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from dbrepro.data import synth
from dbrepro.data.base import AllVsAllSuite, IdentificationSuite, PairSuite, TensorFaces

#: the smallest world that still has every suite with 10 folds (renders in well under a second)
TINY = dict(
    image_size=16, num_identities=12, min_images=2, max_images=6,
    lfw_pairs=20, cplfw_pairs=20, calfw_pairs=20, agedb_pairs=20, rfw_pairs_per_group=20, afw_pairs_per_band=20,
    blufr_identities=4, blufr_images_per_identity=2,
    megaface_identities=2, megaface_images_per_identity=2, megaface_distractors=10,
)

PAIR_SUITES = ("lfw", "cplfw", "calfw", "agedb", "rfw", "afw")


@pytest.fixture(scope="module")
def smoke() -> synth.World:
    return synth.make_world("smoke", seed=0, cache=False)


# ----------------------------------------------------------------------------------------------
# shapes and tables


def test_train_set_shapes_dtypes_and_meta(smoke):
    cfg = smoke.config
    train = smoke.train
    assert isinstance(train, TensorFaces)
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, cfg.image_size, cfg.image_size)
    assert len(train) == synth.power_law_class_sizes(cfg).sum()
    assert train.num_classes == cfg.num_identities
    assert set(np.unique(train.labels)) == set(range(cfg.num_identities))
    expected = {"identity", "label", "group", "age_band", "domain", "sex", *synth.NUISANCE_COLUMNS}
    assert expected <= set(train.meta.columns)
    assert len(train.meta) == len(train)
    # labels are the identity ids of the training identities; domains read "G2/old"
    np.testing.assert_array_equal(train.meta["label"].to_numpy(), train.labels)
    np.testing.assert_array_equal(train.meta["identity"].to_numpy(), train.labels)
    assert (train.meta["domain"] == train.meta["group"] + "/" + train.meta["age_band"]).all()
    assert train.meta["yaw"].abs().max() <= 70 and train.meta["roll"].abs().max() <= 12
    assert set(train.meta["occluder"]) <= {"none", "hat", "mask", "patch"}
    # images are not blank: every image has contrast
    flat = train.images.float().flatten(1)
    assert (flat.std(dim=1) > 5).all()


def test_identities_table_and_domain_table(smoke):
    ids = smoke.identities
    assert ids["identity"].is_unique
    assert {"identity", "split", "group", "age_band", "domain", "sex", "base_age", "n_images"} <= set(ids.columns)
    train_ids = ids[ids["split"] == "train"]
    assert len(train_ids) == smoke.config.num_identities
    counts = np.bincount(smoke.train.labels)
    np.testing.assert_array_equal(train_ids.sort_values("identity")["n_images"].to_numpy(), counts)
    for band, (lo, hi) in synth.AGE_BAND_YEARS.items():
        ages = ids.loc[ids["age_band"] == band, "base_age"]
        assert ((ages >= lo) & (ages <= hi)).all()
    table = smoke.domain_table()
    assert len(table) == len(synth.GROUPS) * len(synth.AGE_BANDS)
    assert table["identities"].sum() == smoke.config.num_identities
    assert table["images"].sum() == len(smoke.train)
    assert list(table["identities"]) == sorted(table["identities"], reverse=True)


# ----------------------------------------------------------------------------------------------
# determinism


def test_same_seed_same_bytes_other_seed_other_world():
    a = synth.make_world("smoke", 0, config=TINY, cache=False)
    b = synth.make_world("smoke", 0, config=TINY, cache=False)
    c = synth.make_world("smoke", 1, config=TINY, cache=False)
    assert synth.world_digest(a) == synth.world_digest(b)
    assert synth.world_digest(a) != synth.world_digest(c)
    assert not torch.equal(a.train.images, c.train.images)


# ----------------------------------------------------------------------------------------------
# long tails


def test_power_law_class_sizes_by_hand():
    cfg = synth.world_config("smoke", {"num_identities": 4, "min_images": 2, "max_images": 5})
    # q = 1/8, 3/8, 5/8, 7/8: floor(2 / q) = 16, 5, 3, 2, clipped to [2, 5]
    assert synth.power_law_class_sizes(cfg).tolist() == [5, 5, 3, 2]


def test_domain_counts_round_by_largest_remainder():
    counts = synth.domain_counts(synth.world_config("smoke", {"num_identities": 7}))
    # 7 x P(domain) = 1.75, 1.225, 0.525, 0.875, 0.6125, ...: floors give 2, the five largest remainders
    # (0.875, 0.75, 0.6125, 0.525, 0.525) one more each
    assert counts["identities"].tolist() == [2, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    assert counts["domain"].tolist()[:4] == ["G0/young", "G0/middle", "G0/old", "G1/young"]


def test_class_sizes_follow_the_range_loss_long_tail():
    cfg = synth.world_config("smoke", {"num_identities": 300, "min_images": 4, "max_images": 150})
    n = synth.power_law_class_sizes(cfg)
    assert n.min() == 4 and n.max() == 150
    assert (n < 20).mean() > 0.5  # a majority of tail identities (Range Loss: < 20 images)
    assert (n >= 100).sum() >= 5  # and a head with >= 100 images each
    assert np.all(np.diff(n) <= 0)  # largest first, a monotone power law


def test_cpu_preset_sizes_fit_the_budget():
    cfg = synth.world_config("cpu")
    n = synth.power_law_class_sizes(cfg)
    assert 8000 <= n.sum() <= 12000
    assert (n < 20).mean() > 0.5 and (n >= 100).any()
    suite_images = sum(len(p.images) for p in synth.plan_suites(cfg, 0))
    assert suite_images <= 25000
    n_blufr = cfg.blufr_identities * cfg.blufr_images_per_identity
    matched = cfg.blufr_identities * cfg.blufr_images_per_identity * (cfg.blufr_images_per_identity - 1) // 2
    assert n_blufr * (n_blufr - 1) // 2 - matched >= 10**5  # TAR at FAR = 1e-4 is measurable


@pytest.mark.parametrize("profile", ["smoke", "cpu", "rehearsal"])
def test_domain_frequencies_are_long_tailed(profile):
    counts = synth.domain_counts(synth.world_config(profile))
    assert counts["identities"].sum() == synth.world_config(profile).num_identities
    assert counts["identities"].max() >= 10 * counts["identities"].min() > 0
    assert np.isclose(counts["frequency"].sum(), 1.0)


def test_class_size_is_independent_of_domain():
    cfg = synth.world_config("cpu")
    ids = synth.training_identities(cfg, seed=0)
    freq = ids["group"].map(ids["group"].value_counts()) * ids["age_band"].map(ids["age_band"].value_counts())
    rho = pd.Series(ids["n_images"].to_numpy()).corr(pd.Series(freq.to_numpy()), method="spearman")
    assert abs(rho) < 0.1
    # and the same class-size multiset whatever the seed
    other = synth.training_identities(cfg, seed=1)
    np.testing.assert_array_equal(np.sort(ids["n_images"]), np.sort(other["n_images"]))


def test_groups_differ_in_covariance_not_only_in_mean():
    n = 1000
    ids = synth.sample_identities(0, np.arange(4 * n), np.repeat(synth.GROUPS, n), ["middle"] * (4 * n))
    std = ids.groupby(["group", "sex"])[list(synth.TRAIT_OWNER)].std().groupby(level="group").mean()
    for trait, owner in synth.TRAIT_OWNER.items():
        assert std[trait].idxmax() == owner, trait
        assert std[trait].max() > 2 * std[trait].min(), trait
    # every group owns traits of several facial parts, about as many as the others
    parts = {t.name: t.part for t in synth.TRAITS}
    owned = pd.Series(synth.TRAIT_OWNER)
    assert owned.groupby(owned).apply(lambda s: len({parts[t] for t in s.index})).min() >= 5
    assert owned.value_counts().max() - owned.value_counts().min() <= 1


def test_group_shares_of_traits_are_equally_visible():
    vis = synth.trait_visibility(n_identities=16, image_size=24)
    assert (vis["visibility"] > 0).all()  # every trait changes the picture
    per_group = (vis["visibility"] ** 2).groupby(vis["owner"]).sum()
    assert per_group.max() / per_group.min() < 1.5


# ----------------------------------------------------------------------------------------------
# suites


def test_suite_kinds_and_descriptions(smoke):
    assert list(smoke.suites) == ["lfw", "cplfw", "calfw", "agedb", "rfw", "afw", "blufr", "megaface"]
    for name in PAIR_SUITES:
        assert isinstance(smoke.suites[name], PairSuite)
    assert isinstance(smoke.suites["blufr"], AllVsAllSuite)
    assert isinstance(smoke.suites["megaface"], IdentificationSuite)
    for s in smoke.suites.values():
        assert s.stands_for and s.description


def test_suite_identities_are_disjoint_from_training_and_each_other(smoke):
    ids = smoke.identities
    train = set(ids.loc[ids["split"] == "train", "identity"])
    seen: set[int] = set(train)
    for name, meta in smoke.suite_images.items():
        used = set(meta["identity"])
        assert used == set(ids.loc[ids["split"] == name, "identity"])
        assert not used & seen, name
        seen |= used
    assert synth.DISTRACTOR_ID_BASE > max(seen)


@pytest.mark.parametrize("name", PAIR_SUITES)
def test_pair_counts_folds_and_labels(smoke, name):
    cfg = smoke.config
    s = smoke.suites[name]
    expected = {"lfw": cfg.lfw_pairs, "cplfw": cfg.cplfw_pairs, "calfw": cfg.calfw_pairs, "agedb": cfg.agedb_pairs,
                "rfw": cfg.rfw_pairs_per_group * len(synth.GROUPS), "afw": cfg.afw_pairs_per_band * len(synth.AGE_BANDS)}
    assert len(s) == expected[name] and len(s.meta) == len(s)
    # 10 contiguous folds, each half matched
    assert np.all(np.diff(s.folds) >= 0) and set(s.folds) == set(range(10))
    for f in range(10):
        assert s.issame[s.folds == f].mean() == 0.5
    # matched pairs show one identity, mismatched two; folds are identity-disjoint
    m = s.meta
    assert (m["id_a"][s.issame] == m["id_b"][s.issame]).all()
    assert (m["id_a"][~s.issame] != m["id_b"][~s.issame]).all()
    img_ids = smoke.suite_images[name]["identity"].to_numpy()
    np.testing.assert_array_equal(img_ids[s.pairs[:, 0]], m["id_a"])
    np.testing.assert_array_equal(img_ids[s.pairs[:, 1]], m["id_b"])
    fold_of = {}
    for f, a, b in zip(s.folds, m["id_a"], m["id_b"]):
        assert fold_of.setdefault(a, f) == f and fold_of.setdefault(b, f) == f
    assert not pd.DataFrame(s.pairs).duplicated().any()


@pytest.mark.parametrize("name,stratum,per", [("rfw", "group", "rfw_pairs_per_group"), ("afw", "age_band", "afw_pairs_per_band")])
def test_per_domain_suites_have_ten_folds_per_stratum(smoke, name, stratum, per):
    s = smoke.suites[name]
    for value, sub in s.meta.groupby(stratum):
        assert len(sub) == getattr(smoke.config, per)
        folds = s.folds[sub.index]
        same = s.issame[sub.index]
        assert set(folds) == set(range(10))
        for f in range(10):
            assert same[folds == f].mean() == 0.5
    # negatives share group and age band, so the attributes do not give the answer away
    neg = s.meta[~s.issame]
    assert (neg["domain"] == neg["domain_b"]).all()


@pytest.mark.parametrize("name", ["cplfw", "calfw", "agedb"])
def test_attribute_matched_negatives(smoke, name):
    neg = smoke.suites[name].meta[~smoke.suites[name].issame]
    assert (neg["group"] == neg["group_b"]).all() and (neg["age_band"] == neg["age_band_b"]).all()


def test_cross_pose_and_cross_age_suites_have_their_gaps(smoke):
    m = smoke.suites["cplfw"].meta
    frontal = np.minimum(m["yaw_a"].abs(), m["yaw_b"].abs())
    profile = np.maximum(m["yaw_a"].abs(), m["yaw_b"].abs())
    assert (frontal <= synth.FRONTAL_YAW).all()
    low, high = smoke.config.profile_yaw  # the world's knob, not the generator's default
    assert ((profile >= low) & (profile <= high)).all()
    assert (m["yaw_gap"] >= low - synth.FRONTAL_YAW).all()
    calfw = smoke.suites["calfw"].meta
    assert ((calfw["age_gap"] >= 20 - 1e-9) & (calfw["age_gap"] <= 40 + 1e-9)).all()
    assert (calfw["age_a"] < calfw["age_b"]).all()
    agedb = smoke.suites["agedb"].meta
    np.testing.assert_allclose(agedb["age_gap"], 30.0)  # matched and mismatched pairs alike
    # the gap is the same for matched and mismatched pairs: it says nothing about the label
    s = smoke.suites["cplfw"]
    assert abs(m["yaw_gap"][s.issame].mean() - m["yaw_gap"][~s.issame].mean()) < 10


def test_blufr_and_megaface_layout(smoke):
    cfg = smoke.config
    blufr = smoke.suites["blufr"]
    assert len(blufr.images) == cfg.blufr_identities * cfg.blufr_images_per_identity
    assert np.bincount(np.unique(blufr.identities, return_inverse=True)[1]).tolist() == [cfg.blufr_images_per_identity] * cfg.blufr_identities
    mf = smoke.suites["megaface"]
    assert len(mf.gallery) == cfg.megaface_identities
    assert len(mf.probes) == cfg.megaface_identities * (cfg.megaface_images_per_identity - 1)
    assert set(mf.probe_ids) == set(mf.gallery_ids)
    assert len(mf.distractors) == cfg.megaface_distractors


# ----------------------------------------------------------------------------------------------
# World.render


def test_world_render_is_the_path_that_made_the_training_images(smoke):
    # the first render block of the training set, photographed again through World.render
    n = synth.RENDER_BLOCK
    assert len(smoke.train) >= n
    again = smoke.render(smoke.train.labels[:n], stream="train")
    assert torch.equal(again, smoke.train.images[:n])


def test_world_render_overrides(smoke):
    ident = int(smoke.identities.loc[smoke.identities["split"] == "train", "identity"].iloc[0])
    sweep = smoke.render([ident] * 3, {"yaw": [-50.0, 0.0, 50.0]}, nuisance=0.0)
    assert sweep.shape == (3, 3, 32, 32)
    assert not torch.equal(sweep[0], sweep[1]) and not torch.equal(sweep[1], sweep[2])
    assert torch.equal(smoke.render([ident] * 3, {"yaw": [-50.0, 0.0, 50.0]}, nuisance=0.0), sweep)
    with pytest.raises(ValueError, match="cannot override"):
        smoke.render([ident], {"hairstyle": [1]})
    with pytest.raises(ValueError, match="unknown identities"):
        smoke.render([10**9])


# ----------------------------------------------------------------------------------------------
# configuration errors


@pytest.mark.parametrize("field,value,match", [
    ("num_identities", 0, "num_identities"),
    ("num_identities", -5, "num_identities"),
    ("min_images", 1, "min_images"),
    ("max_images", 2, "max_images"),
    ("lfw_pairs", 0, "lfw_pairs"),
    ("rfw_pairs_per_group", -20, "rfw_pairs_per_group"),
    ("afw_pairs_per_band", 30, "multiple of 20"),
    ("blufr_identities", 0, "blufr_identities"),
    ("megaface_images_per_identity", 1, "megaface_images_per_identity"),
    ("megaface_distractors", 0, "megaface_distractors"),
    ("image_size", 8, f">= {synth.MIN_IMAGE_SIZE}"),
    ("supersample", 0, "supersample"),
    ("group_freqs", (0.5, 0.3, 0.1, 0.05), "summing to 1"),
    ("group_freqs", (0.5, 0.5), "4 frequencies"),
    ("age_band_freqs", (0.5, 0.6, -0.1), "positive"),
    ("identity_spread", 0.0, "identity_spread"),
    ("nuisance", -1.0, "nuisance"),
    ("class_size_exponent", 0.0, "class_size_exponent"),
])
def test_bad_config_is_a_clear_value_error(field, value, match):
    with pytest.raises(ValueError, match=match) as err:
        synth.world_config("smoke", {field: value})
    assert field in str(err.value)


def test_unknown_profile_preset_field_and_seed():
    with pytest.raises(ValueError, match="unknown profile"):
        synth.make_world("gpu-farm")
    with pytest.raises(ValueError, match="unknown WorldConfig field"):
        synth.world_config("smoke", {"n_people": 3})
    with pytest.raises(ValueError, match="seed"):
        synth.make_world("smoke", seed=-1, cache=False)


def test_unknown_preset_in_a_profile(monkeypatch):
    from dbrepro import config

    bad = config.get_profile("smoke").replace(name="odd", world={"preset": "huge"})
    monkeypatch.setitem(config.PROFILES, "odd", bad)
    with pytest.raises(ValueError, match="unknown world preset 'huge'"):
        synth.world_config("odd")


def test_profile_world_keys_override_the_preset(monkeypatch):
    from dbrepro import config

    prof = config.get_profile("smoke").replace(name="odd", world={"preset": "smoke", "nuisance": 0.25})
    monkeypatch.setitem(config.PROFILES, "odd", prof)
    cfg = synth.world_config("odd", {"identity_spread": 1.5})
    assert cfg.nuisance == 0.25 and cfg.identity_spread == 1.5
    assert cfg.num_identities == synth.PRESETS["smoke"].num_identities
    whole = synth.WorldConfig(num_identities=7)
    assert synth.world_config("cpu", whole) is whole


def test_wide_pose_share_sets_how_many_photos_come_from_the_wide_yaw_component():
    from dbrepro.data.synth.nuisance import pose
    from dbrepro.data.synth.rng import Draws

    keys = np.arange(20_000, dtype=np.uint64)
    base = pose(Draws(keys), 1.0)["yaw"]
    assert np.array_equal(base, pose(Draws(keys), 1.0, wide_pose_share=0.3)["yaw"])  # 0.3 is the default
    narrow, wide = (pose(Draws(keys), 1.0, wide_pose_share=v)["yaw"] for v in (0.0, 1.0))
    assert np.std(narrow) == pytest.approx(14.0, rel=0.05)  # the near-frontal component alone
    assert np.std(wide) == pytest.approx(32.0, rel=0.08)  # the wide one (clipped at 70 degrees)
    share = np.mean(np.abs(pose(Draws(keys), 1.0, wide_pose_share=0.5)["yaw"]) > 45)
    assert share == pytest.approx(0.5 / 0.3 * np.mean(np.abs(base) > 45), rel=0.1)  # large poses come from the wide part
    with pytest.raises(ValueError, match="wide_pose_share"):
        synth.preset_config("cpu", {"wide_pose_share": 1.5})


def test_profile_pose_share_shows_that_share_of_training_photos_in_profile():
    from dbrepro.data.synth.nuisance import TRAIN_PROFILE_YAW, pose
    from dbrepro.data.synth.rng import Draws

    keys = np.arange(20_000, dtype=np.uint64)
    mixture = pose(Draws(keys), 0.7, profile_pose_share=0.0)["yaw"]
    yaw = pose(Draws(keys), 0.7, profile_pose_share=0.05)["yaw"]
    moved = yaw != mixture
    assert moved.mean() == pytest.approx(0.05, abs=0.006)  # that share, drawn by its own names ...
    assert np.array_equal(yaw[~moved], mixture[~moved])  # ... so every other photo keeps its yaw
    lo, hi = TRAIN_PROFILE_YAW
    assert ((np.abs(yaw[moved]) >= lo) & (np.abs(yaw[moved]) <= hi)).all()
    assert np.mean(yaw[moved] > 0) == pytest.approx(0.5, abs=0.05)  # both sides
    assert np.mean(np.abs(mixture) > 62) < 0.003  # the mixture's normal tails alone show almost no profile
    # suite slots and canonical (nuisance 0) photographs are not moved
    slot = np.array(["frontal"] * 10_000 + ["profile"] * 10_000)
    np.testing.assert_array_equal(pose(Draws(keys), 0.7, slot, profile_pose_share=0.05)["yaw"],
                                  pose(Draws(keys), 0.7, slot)["yaw"])
    assert (pose(Draws(keys), 0.0, profile_pose_share=0.05)["yaw"] == 0).all()
    with pytest.raises(ValueError, match="profile_pose_share"):
        synth.preset_config("cpu", {"profile_pose_share": 0.7})


def test_profile_pose_share_reaches_the_training_set_not_the_suites(smoke):
    cfg = dataclasses.replace(smoke.config, profile_pose_share=0.3)
    world = synth.build_world(cfg, 0)
    train_moved = world.train.meta["yaw"].to_numpy() != smoke.train.meta["yaw"].to_numpy()
    assert 0.15 < train_moved.mean() < 0.45
    for name in ("lfw", "cplfw"):
        assert world.suites[name].meta.equals(smoke.suites[name].meta)
    n = synth.RENDER_BLOCK  # World.render is still the path that made the training images
    assert torch.equal(world.render(world.train.labels[:n], stream="train"), world.train.images[:n])
