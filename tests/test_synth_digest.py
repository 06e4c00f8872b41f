"""Same config and seed, same bytes: the smoke and cpu worlds are pinned by their sha256 digests.

The digests were recorded from the generator as it stood before the synthetic world became a package
(``dbrepro/data/synth.py``), so the refactor provably changed no pixel, label, table or pair, hence no
cached run. They are keyed by ``WORLD_VERSION``: a deliberate change of what a world renders bumps the
version in ``dbrepro/data/synth/config.py`` and records the new digests here, in the same commit.
Worlds are rendered with the cache off, so what is hashed is what the code renders today.

They are rendered with PyTorch's scalar kernels (``ATEN_CPU_CAPABILITY=default``, in a fresh interpreter):
the vector kernels PyTorch picks for the CPU at hand (AVX2, AVX-512) round a few pixels of the suites'
images differently (on 2026-12-02, one pixel of the 120 LFW-like smoke images differed by 1 between AVX2
and the scalar kernels), so digests taken with them pinned the machine as much as the code.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dbrepro.data import synth

#: per WORLD_VERSION: for the smoke and cpu worlds of seed 0, the world_digest of everything the world
#: stores and a digest of images made on demand (_on_demand_digest); the trait_visibility table
RECORDED: dict[str, dict] = {
    "14": {
        "smoke": {"world": "b77840e848ccd6d80e89e77608a9e91aaba5fa3d6d31f1529d63509db0c8a2b3",
                  "on_demand": "41251f9fbdb3cc9bbd0229533fc1ef9dec2dcfba054c06de4cf1353bf93b98c0"},
        "cpu": {"world": "1f74ca28024ef83fb427c75f37a05f1074f0c8509ac60c80f1b845ce2ffec036",
                "on_demand": "f4502b1dbf4d989abc8714a1f027a27be01c6f64a3e32fe10cc2941f4f978a16"},
        "trait_visibility": "16d378f95845c93af50fdc7b6435762ca8503dcf62011bcab1973a1febe1a9b0",
    },
    # profile_yaw (62, 80) and ageing 0.5 by default: cross-pose hardest, as on real data (calibration, C3);
    # with the scalar kernels (the vector kernels of the machines it was first recorded on gave the worlds
    # bf8872f1... and 102ede4b..., the same on-demand images)
    "15": {
        "smoke": {"world": "69727124496c82a52c6ff48e3e2c34e884ad7e8839c5eabdef5548148de10b17",
                  "on_demand": "8c44280a24cdf3d207b591e0ec39ca2e8967a720af42f87e8b90ba16b03267a2"},
        "cpu": {"world": "7afcfcff055b82fad08886c99107711ab4a8f64f2cd93eec0313112252644c11",
                "on_demand": "02876286501006e16999129bb5036b0e08c6c641e846611044994a2946757ed4"},
        "trait_visibility": "16d378f95845c93af50fdc7b6435762ca8503dcf62011bcab1973a1febe1a9b0",
    },
}


def _recorded(what: str):
    version = synth.WORLD_VERSION
    if version not in RECORDED:
        pytest.fail(f"no digests are recorded for WORLD_VERSION {version!r} (recorded: {sorted(RECORDED)}): "
                    "render the worlds with the new generator and add them to RECORDED in this file")
    return RECORDED[version][what]


def _mismatch(what: str, got, want) -> str:
    return (f"{what} no longer has the digest recorded for WORLD_VERSION {synth.WORLD_VERSION!r}: "
            f"got {got}, recorded {want}. If the generator changed on purpose, bump WORLD_VERSION in "
            "dbrepro/data/synth/config.py (this invalidates every cached world and every run trained on one) "
            "and record the new digests in tests/test_synth_digest.py; if not, the change altered the data.")


def _on_demand_digest(world: synth.World) -> str:
    """Images made after the build: distractors at both ends of the range and World.render calls."""
    h = hashlib.sha256()
    src = world.suites["megaface"].distractors
    n = len(src)
    parts = [src.render(0, min(n, 256)), src.render(max(0, n - 64), n)]
    ids = world.identities
    train_ids = ids.loc[ids["split"] == "train", "identity"].to_numpy()[:6]
    lfw_ids = ids.loc[ids["split"] == "lfw", "identity"].to_numpy()[:4]
    parts.append(world.render(train_ids))
    parts.append(world.render([train_ids[0]] * 5, {"yaw": [-60.0, -30.0, 0.0, 30.0, 60.0]}, nuisance=0.0))
    parts.append(world.render(lfw_ids, {"age": [20.0, 40.0, 60.0, 80.0]}, stream="check"))
    for p in parts:
        h.update(p.numpy().tobytes())
    return h.hexdigest()


def _digests(profile: str) -> dict[str, str]:
    world = synth.make_world(profile, 0, cache=False)
    return {"world": synth.world_digest(world), "on_demand": _on_demand_digest(world)}


def _digests_with_scalar_kernels(profile: str) -> dict[str, str]:
    """:func:`_digests` in a fresh interpreter that runs PyTorch's scalar kernels (see the module docstring)."""
    here = Path(__file__).resolve().parent
    code = (f"import json, sys; sys.path.insert(0, {str(here)!r}); import test_synth_digest as t; "
            f"print(json.dumps(t._digests({profile!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "ATEN_CPU_CAPABILITY": "default"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_world(profile: str) -> None:
    want = _recorded(profile)
    got = _digests_with_scalar_kernels(profile)
    assert got["world"] == want["world"], _mismatch(f"the {profile} world (seed 0)", got["world"], want["world"])
    assert got["on_demand"] == want["on_demand"], _mismatch(
        f"the {profile} world's distractors and World.render", got["on_demand"], want["on_demand"])


def test_smoke_world_renders_the_recorded_bytes():
    _check_world("smoke")


@pytest.mark.slow
def test_cpu_world_renders_the_recorded_bytes():
    _check_world("cpu")


def test_trait_visibility_is_the_recorded_table():
    vis = synth.trait_visibility(n_identities=8, image_size=16)
    got = hashlib.sha256(("|".join(vis["trait"]) + "|".join(vis["owner"])).encode()
                         + vis["visibility"].to_numpy(dtype=np.float64).tobytes()).hexdigest()
    assert got == _recorded("trait_visibility"), _mismatch("trait_visibility(8 identities, 16 px)", got,
                                                           _recorded("trait_visibility"))

