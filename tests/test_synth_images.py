"""Photographs of the synthetic world: counter-based randomness, the image model, the renderer, distractors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dbrepro.data import synth
from test_synth import TINY


def _identities(n: int = 6):
    return synth.sample_identities(0, np.arange(n), (synth.GROUPS * n)[:n], (synth.AGE_BANDS * n)[:n])


# ----------------------------------------------------------------------------------------------
# randomness


def test_splitmix64_matches_the_reference_sequence():
    # SplitMix64 seeded with 0 returns mix(k * golden) for k = 1, 2, 3: the reference implementation's
    # first outputs are 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        states = np.array([0, golden, golden * np.uint64(2)], dtype=np.uint64)
    out = synth.splitmix64(states)
    assert [int(v) for v in out] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_hash_uniform_is_counter_based():
    u = synth.hash_uniform(np.array([1, 2, 3], dtype=np.uint64), 5)
    assert u.shape == (3, 5) and ((u >= 0) & (u < 1)).all()
    np.testing.assert_array_equal(synth.hash_uniform(np.array([2], dtype=np.uint64), 5)[0], u[1])
    big = synth.hash_uniform(np.arange(20000, dtype=np.uint64), 1)[:, 0]
    assert abs(big.mean() - 0.5) < 0.01 and abs(big.var() - 1 / 12) < 0.003


def test_named_draws_do_not_depend_on_order_chunking_or_other_names():
    keys = synth.stream_keys(7, "train", np.arange(10))
    whole = synth.Draws(keys)
    yaw = whole.uniform("yaw")
    whole.normal("pitch")  # drawing another variable first changes nothing
    np.testing.assert_array_equal(synth.Draws(keys).uniform("yaw"), yaw)
    np.testing.assert_array_equal(synth.Draws(keys[4:]).uniform("yaw"), yaw[4:])
    assert not np.array_equal(synth.Draws(keys).uniform("roll"), yaw)
    # streams and seeds give other keys
    assert not np.array_equal(synth.stream_keys(7, "lfw", np.arange(10)), keys)
    assert not np.array_equal(synth.stream_keys(8, "train", np.arange(10)), keys)
    np.testing.assert_array_equal(synth.stream_keys(7, "train", np.arange(3, 6)), keys[3:6])
    # scaled uniforms and normals
    lo_hi = synth.Draws(keys).uniform("yaw", -2.0, 3.0)
    np.testing.assert_allclose(lo_hi, -2.0 + 5.0 * yaw)
    z = synth.Draws(synth.stream_keys(0, "z", np.arange(20000))).normal("x")
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03


# ----------------------------------------------------------------------------------------------
# the image model


def test_no_nuisance_gives_canonical_photographs():
    ident = _identities()
    keys = synth.stream_keys(0, "canonical", np.arange(len(ident)))
    params, meta = synth.image_parameters(ident, keys, nuisance=0.0)
    for col in ("yaw", "pitch", "roll", "light_azimuth", "light_temperature", "blur", "noise", "brow_raise", "mouth_open"):
        np.testing.assert_array_equal(meta[col], 0.0, err_msg=col)
    np.testing.assert_array_equal(meta["age"], np.clip(ident["base_age"], synth.AGE_MIN, synth.AGE_MAX))
    np.testing.assert_allclose(meta["smile"], 0.2)
    np.testing.assert_allclose(meta["light_elevation"], 15.0)
    assert (meta["occluder"] == "none").all() and (meta["glasses"] == 0).all()
    # no alignment error
    np.testing.assert_array_equal(params["shift_x"], 0.0)
    np.testing.assert_array_equal(params["scale"], 1.0)


def test_suite_conditions_and_overrides_are_imposed():
    ident = _identities(8)
    keys = synth.stream_keys(0, "conditions", np.arange(8))
    modes = np.array(["frontal", "profile", "", "frontal", "profile", "", "profile", "frontal"])
    ages = np.array([20.0, np.nan, 95.0, 5.0, 50.0, np.nan, 70.0, 33.0])
    _, meta = synth.image_parameters(ident, keys, nuisance=1.0, yaw_mode=modes, age=ages)
    yaw = meta["yaw"].abs().to_numpy()
    assert (yaw[modes == "frontal"] <= synth.FRONTAL_YAW).all()
    assert ((yaw[modes == "profile"] >= synth.PROFILE_YAW[0]) & (yaw[modes == "profile"] <= synth.PROFILE_YAW[1])).all()
    # imposed ages are shown as given, clipped to what an image may show; NaN leaves the age free
    expected = np.clip(ages, synth.AGE_MIN, synth.AGE_MAX)
    given = ~np.isnan(ages)
    np.testing.assert_array_equal(meta["age"].to_numpy()[given], expected[given])
    free = meta["age"].to_numpy()[~given]
    assert not np.array_equal(free, ident["base_age"].to_numpy()[~given])  # the usual +- few years
    # an override wins over the draw and changes only its own column
    _, base = synth.image_parameters(ident, keys, nuisance=1.0)
    _, fixed = synth.image_parameters(ident, keys, nuisance=1.0, overrides={"yaw": 30.0})
    np.testing.assert_array_equal(fixed["yaw"], 30.0)
    others = [c for c in base.columns if c != "yaw"]
    assert fixed[others].equals(base[others])
    with pytest.raises(ValueError, match="cannot override 'hairstyle'"):
        synth.image_parameters(ident, keys, overrides={"hairstyle": 1})


def test_age_changes_the_face_as_documented():
    from dbrepro.data.synth.nuisance import age_effects

    youth, old = age_effects(np.array([14.0, 18.0, 22.0, 40.0, 60.0, 80.0, 90.0]))
    np.testing.assert_allclose(youth, [1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(old, [0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0])
    ident = _identities(1)
    keys = synth.stream_keys(0, "age", np.arange(1))
    young, _ = synth.image_parameters(ident, keys, nuisance=0.0, overrides={"age": 25.0})
    aged, _ = synth.image_parameters(ident, keys, nuisance=0.0, overrides={"age": 80.0})
    assert young["wrinkles"][0] == 0.0 < aged["wrinkles"][0]
    assert aged["nose_len"][0] == pytest.approx(young["nose_len"][0] + 0.03)
    assert aged["lip_upper"][0] == pytest.approx(0.75 * young["lip_upper"][0])


# ----------------------------------------------------------------------------------------------
# rendering


def test_photograph_is_chunk_invariant_and_renders_the_drawn_parameters():
    ident = _identities()
    keys = np.arange(6, dtype=np.uint64) + 11
    kw = dict(nuisance=1.0, image_size=24, supersample=2)
    images, meta = synth.photograph(ident, keys, **kw)
    assert images.shape == (6, 3, 24, 24) and images.dtype == torch.uint8
    assert len(meta) == 6 and set(synth.NUISANCE_COLUMNS) <= set(meta.columns)
    # rows 2.. rendered alone, told where they sit in their stream, give the same bytes
    tail, _ = synth.photograph(ident.iloc[2:].reset_index(drop=True), keys[2:], start=2, **kw)
    assert torch.equal(images[2:], tail)
    # the renderer is a pure function of the parameters: the same numbers give the same pixels
    params, _ = synth.image_parameters(ident, keys, 1.0)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in params.items()}
    assert torch.equal(synth.render_faces(tensors, keys, 24, 2), images)


def test_renderer_rejects_bad_parameters():
    ident = _identities(2)
    keys = np.arange(2, dtype=np.uint64)
    with pytest.raises(ValueError, match="missing parameters"):
        synth.render_faces({"yaw": torch.zeros(2)}, keys, 24)
    with pytest.raises(ValueError, match=f">= {synth.MIN_IMAGE_SIZE}"):
        synth.photograph(ident, keys, nuisance=1.0, image_size=synth.MIN_IMAGE_SIZE - 1, supersample=1)
    params, _ = synth.image_parameters(ident, keys)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in params.items()}
    with pytest.raises(ValueError, match="noise_key has 1 entries for a batch of 2"):
        synth.render_faces(tensors, keys[:1], 24)
    tensors["skin_rgb"] = tensors["skin_rgb"][:, :2]
    with pytest.raises(ValueError, match="colour 'skin_rgb' must have shape"):
        synth.render_faces(tensors, keys, 24)


def test_blur_is_a_normalised_separable_gaussian_per_image():
    from dbrepro.data.synth.render import _blur

    gen = torch.Generator().manual_seed(0)
    img = torch.rand(3, 3, 12, 10, generator=gen)
    sigma = torch.tensor([0.0, 0.8, 1.6])
    out = _blur(img, sigma)
    # by hand, in float64: replicate padding by 3, the 7 taps exp(-x^2 / 2 sigma^2) normalised, rows then columns
    x = np.arange(-3, 4)
    for i, s in enumerate(sigma.tolist()):
        k = np.exp(-0.5 * (x / max(s, 0.05)) ** 2)
        k /= k.sum()
        p = np.pad(img[i].double().numpy(), ((0, 0), (3, 3), (3, 3)), mode="edge")
        rows = sum(k[t] * p[:, :, t:t + 10] for t in range(7))
        want = sum(k[t] * rows[:, t:t + 12, :] for t in range(7))
        np.testing.assert_allclose(out[i].numpy(), want, rtol=0, atol=2e-6)
    assert torch.equal(out[0], img[0])  # sigma 0 is the identity (its one-hot kernel)
    flat = torch.full((2, 3, 8, 8), 0.375)
    assert torch.allclose(_blur(flat, torch.tensor([1.0, 2.0])), flat, atol=1e-7)  # weights sum to one
    assert _blur(img, torch.zeros(3)) is img  # all sharp: untouched


def test_blur_does_not_depend_on_the_cpu_kernels():
    # the blur sums its taps elementwise in a fixed order, so its bytes are the same under PyTorch's scalar and
    # vectorised kernels and whatever ISA oneDNN is allowed (a grouped conv2d was not: see _blur)
    code = ("import hashlib, torch; from dbrepro.data.synth.render import _blur; "
            "g = torch.Generator().manual_seed(1); x = torch.rand(4, 3, 16, 16, generator=g); "
            "print(hashlib.sha256(_blur(x, torch.tensor([0.3, 0.7, 1.1, 2.0])).numpy().tobytes()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, **env}).stdout.strip()
               for env in ({"ATEN_CPU_CAPABILITY": "default"}, {}, {"ONEDNN_MAX_CPU_ISA": "SSE41"})}
    assert len(digests) == 1 and len(digests.pop()) == 64


def test_single_thread_restores_the_thread_count():
    before = torch.get_num_threads()
    with synth.single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# ----------------------------------------------------------------------------------------------
# distractors


def test_distractors_are_deterministic_per_index_and_chunk_invariant():
    cfg = synth.world_config("smoke", {**TINY, "megaface_distractors": 300})
    src = synth.distractor_source(cfg, seed=0)
    whole = src.render(0, 300)
    assert whole.shape == (300, 3, cfg.image_size, cfg.image_size) and whole.dtype == torch.uint8
    assert torch.equal(torch.cat(list(src.chunks(chunk=70))), whole)
    assert torch.equal(src.render(127, 131), whole[127:131])
    assert torch.equal(synth.distractor_source(cfg, seed=0).render(250, 300), whole[250:])
    assert not torch.equal(synth.distractor_source(cfg, seed=1).render(0, 8), whole[:8])
    assert len({hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in whole}) == 300  # all different faces
    assert src.render(5, 5).shape == (0, 3, cfg.image_size, cfg.image_size)
    with pytest.raises(ValueError, match="outside"):
        src.render(290, 301)


def test_profile_yaw_and_ageing_are_the_worlds_knobs():
    """WorldConfig.profile_yaw sets the large pose of a cross-pose pair; ageing scales what age does to a face."""
    ident = synth.sample_identities(3, np.arange(4), ["G0", "G1", "G2", "G3"], ["old"] * 4)
    keys = synth.stream_keys(3, "knobs", np.arange(4))
    _, meta = synth.image_parameters(ident, keys, 0.7, yaw_mode=np.array(["profile"] * 4), profile_yaw=(70.0, 80.0))
    assert (meta["yaw"].abs() >= 70.0).all() and (meta["yaw"].abs() <= 80.0).all()
    def photo(age, ageing):
        return synth.photograph(ident, keys, nuisance=0.0, image_size=32, supersample=1, ageing=ageing,
                                overrides={"age": age})[0].float()

    assert torch.equal(photo(80.0, 0.0), photo(30.0, 0.0))  # no ageing: an 80-year-old looks 30
    d_half, d_full = ((photo(80.0, a) - photo(30.0, a)).abs().mean() for a in (0.5, 1.0))
    assert 0 < d_half < d_full
    with pytest.raises(ValueError, match="profile_yaw"):
        synth.preset_config("smoke", {"profile_yaw": [50.0, 40.0]})
    with pytest.raises(ValueError, match="ageing"):
        synth.preset_config("smoke", {"ageing": -1.0})
