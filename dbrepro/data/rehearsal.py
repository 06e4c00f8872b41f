"""A tiny InsightFace folder written from the synthetic world, to rehearse the paper-scale path on any machine.

``write_folder(root)`` renders the ``rehearsal`` world preset and writes it exactly as InsightFace
distributes CASIA-WebFace and MS1MV2::

    root/train.rec  root/train.idx  root/property           the training set (InsightFace RecordIO layout)
    root/lfw.bin  calfw.bin  cplfw.bin  agedb_30.bin  cfp_fp.bin            verification packs
    root/rfw_caucasian.bin ... rfw_african.bin, afw_young.bin ... afw_aged.bin   per-domain packs

so that ``PROFILE=rehearsal`` runs every chapter through the code that reads real data (RecordIO and
``.bin`` readers, index-subset splits, DataLoader workers, IR-ResNet at 112 px; AMP on CUDA) in minutes.
The synthetic groups G0..G3 stand in for RFW's four races and the age bands for AFW's, so the per-domain
packs follow :data:`dbrepro.data.sources.DOMAIN_PACKS`. ``cfp_fp.bin`` holds the cross-pose (CPLFW-like)
pairs again: the synthetic world has no separate frontal-profile suite.

Sizes: the fewest faces at 112 x 112 that give every chapter what it reads, since every image costs
rendering, packing and a forward pass at 112 px on a CPU. 40 identities of 3 to 20 images (about 300):
batches of 32, classes on both sides of every long-tail split (RL's tail is "fewer than 20
images", and A-4 must keep some identities), more classes than the DFI's K; 20 pairs per suite and
per domain pack, the least the 10-fold protocol takes (one matched and one mismatched pair per fold).
Its numbers mean nothing, and every page of the rehearsal says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..paths import atomic_write_text
from .formats import write_bin_pairs, write_recordio
from .sources import DOMAIN_PACKS, PACKS

#: the world preset the rehearsal folder is rendered from
PRESET = "rehearsal"
#: written last: the folder is complete (and of this version) when it holds this file
MARKER = "rehearsal.json"
VERSION = 2  # 2: the smaller rehearsal preset


def _write_pairs(path: Path, suite, keep: np.ndarray | None = None) -> None:
    pairs, issame = suite.pairs, suite.issame
    if keep is not None:
        pairs, issame = pairs[keep], issame[keep]
    write_bin_pairs(path, suite.images[pairs.reshape(-1)], issame)


def write_folder(root: str | Path, seed: int = 0) -> Path:
    """Write the rehearsal folder into ``root`` (created); return ``root``. A complete folder is kept as is."""
    from . import synth

    root = Path(root)
    marker = root / MARKER
    config = synth.preset_config(PRESET)
    stamp = {"version": VERSION, "world_version": synth.WORLD_VERSION, "seed": seed, "preset": PRESET}
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return root
    world = synth.make_world(config=config, seed=seed)
    train = world.train
    order = np.argsort(train.labels, kind="stable")  # InsightFace stores each identity as one key range
    write_recordio(((train.images[i], int(train.labels[i])) for i in order), root, num_classes=train.num_classes)
    for name, stem in PACKS.items():
        _write_pairs(root / f"{stem}.bin", world.suites["cplfw" if name == "cfp_fp" else name])
    groups = {"rfw": ("group", dict(zip(synth.GROUPS, DOMAIN_PACKS["rfw"].values()))),
              "afw": ("age_band", dict(zip(synth.AGE_BANDS, DOMAIN_PACKS["afw"].values())))}
    for benchmark, (column, stems) in groups.items():
        suite = world.suites[benchmark]
        for domain, stem in stems.items():
            keep = (suite.meta[column] == domain).to_numpy()
            _write_pairs(root / f"{stem}.bin", suite, keep)
    atomic_write_text(marker, json.dumps(stamp, sort_keys=True) + "\n")
    return root
