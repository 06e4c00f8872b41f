"""Where a chapter's numbers come from: the synthetic world, or the user's InsightFace folder.

A :class:`DataSource` gives a chapter everything it reads, whichever the data: the training-set spec (for
the run cache), the class sizes (from the labels alone: an on-disk set is never decoded for them),
evaluation suites by name, per-domain suites, and a one-line description for the page's banner.

The InsightFace folder (``train.rec``, ``train.idx``, ``property``, and ``.bin`` packs) is what
InsightFace distributes for CASIA-WebFace (``faces_webface_112x112``) and MS1MV2 (``faces_emore``). The
packs read, by file name (:data:`PACKS`, :data:`DOMAIN_PACKS`)::

    lfw.bin  calfw.bin  cplfw.bin  agedb_30.bin  cfp_fp.bin                   verification benchmarks
    rfw_caucasian.bin  rfw_indian.bin  rfw_asian.bin  rfw_african.bin          RFW, one pack per race
    afw_young.bin  afw_middle.bin  afw_aged.bin                                 AFW, one pack per age band

A pack that is not in the folder is simply absent from :meth:`DataSource.suites`, and the chapter that
wanted it says "not measured". There is no YouTube Faces pack: Range Loss's YTF column is not measured at
paper scale, and BLUFR and MegaFace (lists and a million-image distractor set, not packs) neither.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from . import specs

#: suite name -> file stem of its InsightFace ``.bin`` pack
PACKS = {"lfw": "lfw", "calfw": "calfw", "cplfw": "cplfw", "agedb": "agedb_30", "cfp_fp": "cfp_fp"}
#: per-domain benchmarks: name -> {domain -> file stem}; the RFW races (Wang et al. 2019) and the DB paper's
#: AFW age bands ([0-30), [30-60), [60-90) years, DB §4.1)
DOMAIN_PACKS = {
    "rfw": {"Caucasian": "rfw_caucasian", "Indian": "rfw_indian", "Asian": "rfw_asian", "African": "rfw_african"},
    "afw": {"young": "afw_young", "middle": "afw_middle", "aged": "afw_aged"},
}
#: the training sets of the papers, by the name a chapter asks for (InsightFace folders in the paper profile)
DATASETS = {"casia": "CASIA-WebFace", "ms1mv2": "MS1MV2"}


@dataclass
class DataSource:
    """The data of one chapter (see the module docstring). Build it with :func:`synthetic` or :func:`insightface`."""

    #: "synthetic" or "insightface"
    kind: str
    #: what the banner says the numbers come from (never a local path)
    description: str
    #: the data spec of the training set (:mod:`dbrepro.data.specs`), as recipes take it
    train_spec: dict[str, Any]
    #: the synthetic world (true identities, domains and nuisances), or None for real data
    world: Any = None
    #: the InsightFace folder, or None
    root: Path | None = None
    image_size: int = 112
    _suites: dict[str, Any] = field(default_factory=dict, repr=False)

    def training_set(self):
        return specs.training_set(self.train_spec)

    @functools.cached_property
    def labels(self) -> np.ndarray:
        """The training labels (for an on-disk set: from its index, nothing decoded)."""
        return np.asarray(self.training_set().labels)

    @property
    def num_classes(self) -> int:
        return int(self.training_set().num_classes)

    def images(self, indices: Any, name: str | None = None):
        """The training images at ``indices`` decoded into memory, as a
        :class:`~dbrepro.data.base.TensorFaces` (labels renumbered 0..C-1 among them); for samples of a few
        thousand images (a t-SNE map, feature statistics), never a whole on-disk set."""
        from .base import IndexSubset, TensorFaces

        data = self.training_set()
        indices = np.asarray(indices, dtype=np.int64)
        if isinstance(data, TensorFaces):
            return data.subset(indices, name=name)
        return IndexSubset(data, indices, name=name).decode()

    def suites(self, names: Iterable[str]) -> dict[str, Any]:
        """The evaluation suites ``names`` that this data has (name -> suite, in the order asked).

        The synthetic world has every suite; an InsightFace folder has those whose pack is there.
        An unknown name is a ``KeyError`` listing the known ones.
        """
        out = {}
        for name in names:
            if self.world is not None:
                if name not in self.world.suites:
                    raise KeyError(f"the synthetic world has no suite {name!r}; it has {', '.join(self.world.suites)}")
                out[name] = self.world.suites[name]
                continue
            if name not in PACKS:
                raise KeyError(f"no InsightFace pack is known for suite {name!r}; known: {', '.join(PACKS)}")
            path = self.root / f"{PACKS[name]}.bin"
            if path.exists():
                out[name] = self._pack(name, path)
        return out

    def domain_suites(self, benchmark: str) -> dict[str, Any]:
        """``benchmark`` ("rfw" or "afw") as one pair suite per domain (domain -> suite).

        Synthetic: the world's suite split by its pairs' group (RFW) or age band (AFW), each keeping its folds.
        InsightFace: one pack per domain (:data:`DOMAIN_PACKS`); the domains whose pack is missing are absent.
        """
        if benchmark not in DOMAIN_PACKS:
            raise KeyError(f"unknown per-domain benchmark {benchmark!r}: choose {', '.join(DOMAIN_PACKS)}")
        if self.world is not None:
            from .base import PairSuite

            suite = self.world.suites[benchmark]
            column = "group" if benchmark == "rfw" else "age_band"
            out = {}
            for domain in dict.fromkeys(suite.meta[column]):
                keep = (suite.meta[column] == domain).to_numpy()
                used, pairs = np.unique(suite.pairs[keep], return_inverse=True)  # only this domain's images
                out[domain] = PairSuite(name=f"{benchmark}/{domain}", images=suite.images[torch.from_numpy(used)],
                                        pairs=pairs.reshape(-1, 2), issame=suite.issame[keep],
                                        folds=suite.folds[keep], meta=suite.meta[keep].reset_index(drop=True),
                                        stands_for=suite.stands_for, description=f"{suite.description} ({domain})")
            return out
        out = {}
        for domain, stem in DOMAIN_PACKS[benchmark].items():
            path = self.root / f"{stem}.bin"
            if path.exists():
                out[domain] = self._pack(f"{benchmark}/{domain}", path)
        return out

    def _pack(self, name: str, path: Path):
        if name not in self._suites:
            from .formats import bin_suite

            self._suites[name] = bin_suite(path, name=name, image_size=self.image_size)
        return self._suites[name]


def synthetic(world_spec: dict[str, Any]) -> DataSource:
    """The synthetic world a ``synth`` data spec names (rendered once, then loaded from the world cache)."""
    from . import synth

    world = specs.world_for(world_spec)
    n = world.train.num_classes
    return DataSource(
        kind="synthetic", world=world, train_spec=world_spec, image_size=world.config.image_size,
        description=(f"the synthetic world (version {synth.WORLD_VERSION}: {n:,} training identities, "
                     f"{len(world.train):,} images at {world.config.image_size} px)"))


def insightface(root: str | Path, dataset: str, image_size: int = 112) -> DataSource:
    """An InsightFace folder (``train.rec``, ``train.idx``, ``property``, ``.bin`` packs) holding ``dataset``
    ("casia" or "ms1mv2", the name the banner uses). Missing training files are a clear error."""
    root = Path(root).expanduser()
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    missing = [f for f in ("train.rec", "train.idx") if not (root / f).exists()]
    if missing:
        raise FileNotFoundError(f"{root}: not an InsightFace training folder ({', '.join(missing)} missing; "
                                f"expected train.rec, train.idx, property and .bin packs)")
    spec = specs.with_fingerprint({"kind": "recordio", "root": str(root.resolve()), "image_size": image_size})
    source = DataSource(kind="insightface", root=root, train_spec=spec, image_size=image_size, description="")
    packs = sorted(p.stem for p in root.glob("*.bin"))
    source.description = (f"{DATASETS[dataset]} in InsightFace format ({source.num_classes:,} identities, "
                          f"{len(source.labels):,} images; packs: {', '.join(packs) or 'none'})")
    return source


def lfw(root: str | Path | None, image_size: int, min_images: int = 1) -> DataSource:
    """LFW's people who are not in its View 1 test pairs (``root/lfw/<Name>/*.jpg``,
    ``root/lfw-protocol/pairsDevTest.txt``), decoded at ``image_size``; ``root=None`` is a source with no data
    (its chapter records its claims as not measured). Missing files are a clear error naming them."""
    if root is None:
        return DataSource("lfw", "no data: LFW_ROOT was not given, so nothing on this page is measured", {})
    from .formats import LFW_CROP, list_image_folder, people_in_pairs

    root = Path(root).expanduser()
    lfw_dir, test_pairs = root / "lfw", root / "lfw-protocol" / "pairsDevTest.txt"
    for path in (lfw_dir, test_pairs):
        if not path.exists():
            raise FileNotFoundError(f"{root} has no {path.relative_to(root)}; expected lfw/<Name>/<Name>_<NNNN>.jpg "
                                    "and lfw-protocol/pairsDevTest.txt (see the LFW chapter's 'Getting LFW')")
    spec = {"kind": "lfw", "root": str(lfw_dir.resolve()), "exclude_pairs": str(test_pairs.resolve()),
            "image_size": image_size, "crop": LFW_CROP, "min_images": min_images}
    _, people, _ = list_image_folder(lfw_dir, min_images=min_images, exclude=people_in_pairs(test_pairs))
    return DataSource("lfw", f"LFW, its {people.max() + 1:,} people with at least {min_images} image(s) who are "
                      f"not in pairsDevTest.txt ({len(people):,} images at {image_size} px)", spec,
                      root=root, image_size=image_size)
