"""Recipes: the training configs of the book's experiments, built from a profile.

Every experiment of both papers is one function here, so the notebooks, the CLI and the tests
build identical configs (and therefore hit the same run-cache entries). The numbers that are the
papers' own (margins, loss weights, eps, lambda, K) are named constants with their source.

>>> cfg = softmax("smoke", split="A-2", seed=1)
>>> cfg.head, cfg.data["split"], cfg.seed
('softmax', 'A-2', 1)
"""

from __future__ import annotations

from typing import Any, Callable

from .config import Profile, get_profile
from .train import TrainConfig

#: Range Loss §3.4: weights of softmax, intra and inter parts are 1, 5e-5 and 1e-4; k = 2.
RANGE_K = 2
RANGE_INTRA_WEIGHT = 5e-5
RANGE_INTER_WEIGHT = 1e-4
#: Range Loss identity-balanced batches: 16 identities x 16 images (§3.5).
RANGE_PK = (16, 16)
#: B-0's share of the world's identities for the Range Loss B splits (§3.1 takes 4,000 of MS-Celeb-1M's
#: 99,891; the synthetic world is far smaller, so B-0 is half of it: rl-01 argues the value, rl-02 trains on it).
B_SUBSET = 0.5
#: CosFace (Wang et al. 2018) and the DB paper: s = 64, m = 0.35; ArcFace: m = 0.5.
COSFACE_M = 0.35
ARCFACE_M = 0.5
#: Domain Balancing §4.2: eps = 5.5, lambda = 0.01, K = 100 (CASIA-WebFace, 10.5k classes).
DB_EPS = 5.5
DB_LAMBDA = 0.01
DB_K = 100
#: CASIA-WebFace's identities, the class count the paper's K values (Table 3) refer to
CASIA_CLASSES = 10_575


def world_data(profile: str | Profile, seed: int = 0, split: str | None = None, **extra: Any) -> dict[str, Any]:
    """The data spec of the profile's synthetic world (optionally one Range Loss split of it).

    The spec carries the generator's ``WORLD_VERSION``: a run's cache key is a hash of its config, data
    spec included, so a run trained on an older world is never served for the current one.
    """
    from .data.synth import WORLD_VERSION

    p = get_profile(profile)
    spec: dict[str, Any] = {"kind": "synth", "preset": p.world.get("preset", p.name), "seed": seed,
                            "world_version": WORLD_VERSION}
    overrides = {k: v for k, v in p.world.items() if k != "preset"}
    if overrides:
        spec["overrides"] = overrides
    if split is not None:
        spec["split"] = split
    spec.update(extra)
    return spec


def base(profile: str | Profile, *, data: dict[str, Any] | None = None, split: str | None = None, seed: int = 0,
         **changes: Any) -> TrainConfig:
    """The profile's backbone, sizes and schedule (SGD, momentum 0.9, wd 5e-4, lr 0.1 /10 at 5, 8, 11 of 15)."""
    p = get_profile(profile)
    if data is None:
        data = world_data(p, split=split)
    elif split is not None:
        data = {**data, "split": split}
    cfg = dict(data=data, backbone=p.backbone, embedding_size=p.embedding_size, image_size=p.image_size,
               epochs=p.epochs, lr=p.lr, batch_size=p.batch_size, seed=seed)
    cfg.update(changes)
    return TrainConfig(**cfg)


# -- Part I: Range Loss and the losses it compares with (all joint with softmax, Eq. 5) -------------

def softmax(profile, **kw) -> TrainConfig:
    """Softmax cross-entropy with inner-product logits and bias (Range Loss Eq. 5, first term)."""
    return base(profile, head="softmax", **kw)


def contrastive(profile, **kw) -> TrainConfig:
    """Softmax + contrastive loss (DeepID2), pairs built as Range Loss §3.2 describes."""
    p = get_profile(profile)
    return base(profile, head="softmax", terms={"contrastive": dict(p.contrastive)}, **kw)


def triplet(profile, **kw) -> TrainConfig:
    """Softmax + triplet loss (FaceNet), without hard mining (Range Loss §4.1)."""
    p = get_profile(profile)
    return base(profile, head="softmax", terms={"triplet": dict(p.triplet)}, **kw)


def center(profile, **kw) -> TrainConfig:
    """Softmax + center loss (Wen et al. 2016)."""
    p = get_profile(profile)
    return base(profile, head="softmax", terms={"center": dict(p.center)}, **kw)


def range_loss(profile, **kw) -> TrainConfig:
    """Softmax + range loss (Eq. 2-5) on identity-balanced P x K batches (16 x 16 in the paper)."""
    p = get_profile(profile)
    pk = p.range_pk
    terms = {"range": {"k": RANGE_K, "margin": p.range_margin, "intra_weight": RANGE_INTRA_WEIGHT,
                       "inter_weight": RANGE_INTER_WEIGHT}}
    return base(profile, head="softmax", terms=terms, sampler="pk", pk=pk, batch_size=pk[0] * pk[1], **kw)


# -- Part II: margin heads and Domain Balancing ----------------------------------------------------

def cosface(profile, **kw) -> TrainConfig:
    p = get_profile(profile)
    return base(profile, head="cosface", head_kwargs={"s": p.scale, "m": COSFACE_M}, **kw)


def arcface(profile, **kw) -> TrainConfig:
    p = get_profile(profile)
    return base(profile, head="arcface", head_kwargs={"s": p.scale, "m": ARCFACE_M}, **kw)


def sphereface(profile, **kw) -> TrainConfig:
    return base(profile, head="sphereface", **kw)


def scaled_k(paper_k: int, num_classes: int) -> int:
    """The paper's K (DB Table 3, for CASIA-WebFace's 10,575 classes) as the same share of ``num_classes``.

    At least 1 neighbour and at most all other classes; ``K = 0`` ("without DFI") stays 0.

    >>> scaled_k(100, 600), scaled_k(6000, 600), scaled_k(0, 600), scaled_k(1, 600)
    (6, 340, 0, 1)
    """
    if paper_k == 0:
        return 0
    return int(min(num_classes - 1, max(1, round(paper_k * num_classes / CASIA_CLASSES))))


def dfi_config(profile, k: int | None = None, every: int | None = None) -> dict[str, Any]:
    """DFI settings: K nearest prototypes (the profile's ``dfi_k``, chosen for its world's class count), s,
    eps, refresh period.

    ``k`` and ``every`` (iterations between refreshes) override the profile's defaults, e.g. for a
    data set with many more classes than the profile's world, where a refresh costs more.
    """
    p = get_profile(profile)
    return {"k": p.dfi_k if k is None else int(k), "s": p.scale, "eps": DB_EPS,
            "every": p.dfi_refresh_every if every is None else int(every)}


def domain_balancing(profile, *, rbm: str | None = "soft", dbm: bool = True, k: int | None = None,
                     dfi_every: int | None = None, **kw) -> TrainConfig:
    """The DB ablations of Table 2: RBM (soft gate or w/o soft gate) and/or DBM on top of CosFace.

    ``rbm=None, dbm=False`` is the CosFace baseline; ``rbm="none"`` is "RBM (w/o sg)", f(x) = 1.

    ``k=0`` ("without DFI", Table 3) is the CosFace baseline too: with no neighbours there is no
    domain frequency to balance, and DB §4.4 says the model then "degenerates into the original
    form without balancing representation and margin supplied by RBM and DBM" (Table 3's K = 0
    column equals Table 2's baseline row). Both return exactly :func:`cosface`'s config, so they
    share its run-cache entry.

    ``k`` and ``dfi_every`` override the profile's K and DFI refresh period (:func:`dfi_config`).
    """
    p = get_profile(profile)
    if (rbm is None and not dbm) or k == 0:
        return cosface(p, **kw)
    head = "dbm" if dbm else "cosface"
    needs_dfi = dbm or rbm == "soft"
    return base(profile, head=head, head_kwargs={"s": p.scale, "m": COSFACE_M}, rbm=rbm, rbm_weight=DB_LAMBDA,
                dfi=dfi_config(p, k, dfi_every) if needs_dfi else None, **kw)


#: name -> recipe, for the CLI (``dbrepro train --recipe NAME``).
RECIPES: dict[str, Callable[..., TrainConfig]] = {
    "softmax": softmax,
    "contrastive": contrastive,
    "triplet": triplet,
    "center": center,
    "range": range_loss,
    "cosface": cosface,
    "arcface": arcface,
    "sphereface": sphereface,
    "db": domain_balancing,
}
