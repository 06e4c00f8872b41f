"""Recipes: the training configs of the book's experiments, composed from a profile.

Every experiment of both papers is one function here, so the notebooks, the CLI and the tests build
identical configs (and therefore hit the same run-cache entries). Recipes only compose: the papers'
values are class defaults and named constants in :mod:`dbrepro.papers`, the sizes are the profile's
(:mod:`dbrepro.config`).

>>> cfg = softmax("smoke", split="A-2", seed=1)
>>> cfg.head, cfg.data["split"], cfg.seed
('softmax', 'A-2', 1)
"""

from __future__ import annotations

from typing import Any, Callable

from . import papers
from .config import Profile, get_profile, resolve_cpu_bf16
from .train import DFIConfig, TrainConfig

#: B-0's share of the world's identities for the Range Loss B splits (RL §3.1 takes 4,000 of MS-Celeb-1M's
#: 99,891; the synthetic world is far smaller, so B-0 is half of it: rl-01 argues the value, rl-02 trains on it).
#: On real data B-0 is the paper's papers.B0_IDENTITIES (:func:`b0_identities`).
B_SUBSET = 0.5


def world_data(profile: str | Profile, seed: int = 0, split: str | None = None, **extra: Any) -> dict[str, Any]:
    """The data spec of the profile's synthetic world (optionally one Range Loss split of it).

    The spec carries the generator's ``WORLD_VERSION``: a run's cache key is a hash of its config, data
    spec included, so a run trained on an older world is never served for the current one.
    """
    from .data.synth import WORLD_VERSION

    p = get_profile(profile)
    if p.needs_data_path:
        raise ValueError(f"the {p.name} profile trains on real data, not a synthetic world: pass the data spec "
                         "of its InsightFace folder (dbrepro.data.sources.insightface(...).train_spec) as data=")
    spec: dict[str, Any] = {"kind": "synth", "preset": p.world.get("preset", p.name), "seed": seed,
                            "world_version": WORLD_VERSION}
    overrides = {k: v for k, v in p.world.items() if k != "preset"}
    if overrides:
        spec["overrides"] = overrides
    if split is not None:
        spec["split"] = split
    spec.update(extra)
    return spec


def b0_identities(data: dict[str, Any], num_classes: int) -> int | float:
    """The size of Range Loss B-0 (RL §3.1) for the training set ``data`` of ``num_classes`` identities.

    A synthetic world: :data:`B_SUBSET` of its identities (a fraction; rl-01 argues it). Real data: the
    paper's 4,000 random identities (:data:`dbrepro.papers.B0_IDENTITIES`), or all of them in a set with
    fewer (a rehearsal folder).
    """
    if data.get("kind") == "synth":
        return B_SUBSET
    return min(papers.B0_IDENTITIES, int(num_classes))


def range_split(data: dict[str, Any], split: str, num_classes: int) -> dict[str, Any]:
    """The data spec of Range Loss split ``split`` (A-0..A-4, B-0..B-3; RL §3.1) of the training set ``data``.

    A splits only name the split. B splits also carry B-0's size (:func:`b0_identities`). On real data they
    may remove head identities (the smallest first) once the subset's tail is used up: the paper removes up
    to 3,000 of its 4,000 identities "from the tailed part" of MS-Celeb-1M, where nine identities in ten
    are in the tail; a training set with a smaller tail cannot give that many, and rl-01 reports how many
    head identities each B split loses. On an on-disk set the split is an index subset, nothing decoded.
    """
    spec = {**data, "split": split}
    if split.startswith("B-"):
        spec["b_subset"] = b0_identities(data, num_classes)
        if data.get("kind") != "synth":
            spec["b_allow_head"] = True
    return spec


def whole_set_as_itself(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without ``split="A-0"``: A-0 keeps every identity (RL Table 1), so it is the whole training set,
    and a run on it is the same run as on the unsplit set (one cache entry, not two)."""
    from .data.splits import A_KEEP

    if data.get("split") == "A-0" and A_KEEP[0] == 1.0:
        return {k: v for k, v in data.items() if k not in ("split", "split_seed")}
    return data


def balanced_domains(world_config: Any) -> dict[str, Any]:
    """World overrides that make every domain equally frequent (the control of a domain gap: what remains in a
    balanced world is intrinsic difficulty, not rarity); the generator is otherwise the same."""
    return {name: [1.0 / len(freqs)] * len(freqs) for name, freqs in
            (("group_freqs", world_config.group_freqs), ("age_band_freqs", world_config.age_band_freqs))}


def base(profile: str | Profile, *, data: dict[str, Any] | None = None, split: str | None = None, seed: int = 0,
         **changes: Any) -> TrainConfig:
    """The profile's data, backbone, sizes and schedule; everything else is the papers' (TrainConfig's defaults)."""
    p = get_profile(profile)
    if data is None:
        data = world_data(p, split=split)
    elif split is not None:
        data = {**data, "split": split}
    data = whole_set_as_itself(data)
    cfg = dict(data=data, backbone=p.backbone, backbone_kwargs=dict(p.backbone_kwargs),
               embedding_size=p.embedding_size, image_size=p.image_size, epochs=p.epochs, milestones=p.lr_milestones,
               batch_size=p.batch_size, cpu_bf16=resolve_cpu_bf16(p.cpu_bf16),
               seed=seed)
    cfg.update(changes)
    return TrainConfig(**cfg)


# -- Part I: Range Loss and the losses it compares with (all joint with softmax, Eq. 5) -------------

def softmax(profile, **kw) -> TrainConfig:
    """Softmax cross-entropy with inner-product logits and bias (Range Loss Eq. 5, first term)."""
    return base(profile, head="softmax", **kw)


def contrastive(profile, **kw) -> TrainConfig:
    """Softmax + contrastive loss (DeepID2), pairs built as Range Loss §3.2 describes."""
    return base(profile, head="softmax", terms={"contrastive": dict(get_profile(profile).contrastive)}, **kw)


def triplet(profile, **kw) -> TrainConfig:
    """Softmax + triplet loss (FaceNet), without hard mining (Range Loss §4.1)."""
    return base(profile, head="softmax", terms={"triplet": dict(get_profile(profile).triplet)}, **kw)


def center(profile, **kw) -> TrainConfig:
    """Softmax + center loss (Wen et al. 2016)."""
    return base(profile, head="softmax", terms={"center": dict(get_profile(profile).center)}, **kw)


def softmax_pk(profile, pk: tuple[int, int] | None = None, **kw) -> TrainConfig:
    """Softmax alone on range loss's identity-balanced P x K batches (the profile's ``range_pk`` unless ``pk``):
    the control that separates the range term from the sampler it trains with (rl-05, rl-06)."""
    pk = tuple(get_profile(profile).range_pk if pk is None else pk)
    return softmax(profile, **kw).replace(sampler="pk", pk=pk, batch_size=pk[0] * pk[1])


def range_loss(profile, **kw) -> TrainConfig:
    """Softmax + range loss (Eq. 2-5, the paper's k and weights) on identity-balanced P x K batches."""
    return base(profile, head="softmax", terms={"range": {}}, sampler="pk", pk=get_profile(profile).range_pk,
                batch_size=None, **kw)


# -- Part II: margin heads and Domain Balancing ----------------------------------------------------

def cosface(profile, **kw) -> TrainConfig:
    """CosFace (the paper's m) at the profile's scale s."""
    return base(profile, head="cosface", head_kwargs={"s": get_profile(profile).scale}, **kw)


def arcface(profile, **kw) -> TrainConfig:
    """ArcFace (the paper's m) at the profile's scale s."""
    return base(profile, head="arcface", head_kwargs={"s": get_profile(profile).scale}, **kw)


def sphereface(profile, **kw) -> TrainConfig:
    """SphereFace (A-Softmax, the authors' m and annealing); its scale is the embedding norm."""
    return base(profile, head="sphereface", **kw)


def scaled_k(paper_k: int, num_classes: int) -> int:
    """The paper's K (DB Table 3, for CASIA-WebFace's 10,575 classes) as the same share of ``num_classes``.

    At least 1 neighbour and at most all other classes; ``K = 0`` ("without DFI") stays 0.

    >>> scaled_k(100, 600), scaled_k(6000, 600), scaled_k(0, 600), scaled_k(1, 600)
    (6, 340, 0, 1)
    """
    if paper_k == 0:
        return 0
    return int(min(num_classes - 1, max(1, round(paper_k * num_classes / papers.CASIA_CLASSES))))


def dfi_k(num_classes: int) -> int:
    """K of the DFI (DB Eq. 1) for a training set of ``num_classes``: the paper's K = 100 of CASIA-WebFace's
    10,575 classes as the same share (:func:`scaled_k`). The one definition of K, for Tables 2 and 3 alike."""
    return scaled_k(papers.DB_K, num_classes)


def dfi_config(profile, k: int, every: int | None = None) -> DFIConfig:
    """The DFI with ``k`` neighbours, the profile's refresh period (``every`` overrides it) and scale s, and the
    paper's eps. Override ``every`` for a data set with many more classes than the profile's world."""
    p = get_profile(profile)
    return DFIConfig(k=int(k), s=p.scale, every=p.dfi_refresh_every if every is None else int(every))


def domain_balancing(profile, *, num_classes: int | None = None, rbm: str | None = "soft", dbm: bool = True,
                     k: int | None = None, dfi_every: int | None = None, **kw) -> TrainConfig:
    """The DB ablations of Table 2: RBM (soft gate or "ungated", w/o soft gate) and/or DBM on top of CosFace.

    ``rbm=None, dbm=False`` is the CosFace baseline; ``rbm="ungated"`` is "RBM (w/o sg)", f(x) = 1.

    ``k`` is the DFI's K; by default :func:`dfi_k` of ``num_classes`` (the training set's classes; one of the
    two must be given). ``k=0`` ("without DFI", Table 3) is the CosFace baseline too: with no neighbours
    there is no domain frequency to balance, and DB §4.4 says the model then "degenerates into the original
    form without balancing representation and margin supplied by RBM and DBM" (Table 3's K = 0 column equals
    Table 2's baseline row). Both return exactly :func:`cosface`'s config, so they share its run-cache entry.
    ``dfi_every`` overrides the profile's DFI refresh period.
    """
    p = get_profile(profile)
    if (rbm is None and not dbm) or k == 0:
        return cosface(p, **kw)
    if k is None:
        if num_classes is None:
            raise ValueError("domain_balancing: give k (the DFI's K) or num_classes (K = dfi_k(num_classes))")
        k = dfi_k(num_classes)
    needs_dfi = dbm or rbm == "soft"
    return base(profile, head="dbm" if dbm else "cosface", head_kwargs={"s": p.scale}, rbm=rbm,
                dfi=dfi_config(p, k, dfi_every) if needs_dfi else None, **kw)


#: name -> recipe, for the CLI (``dbrepro train --recipe NAME``).
RECIPES: dict[str, Callable[..., TrainConfig]] = {
    "softmax": softmax,
    "softmax_pk": softmax_pk,
    "contrastive": contrastive,
    "triplet": triplet,
    "center": center,
    "range": range_loss,
    "cosface": cosface,
    "arcface": arcface,
    "sphereface": sphereface,
    "db": domain_balancing,
}


def on_data(recipe: str, profile: str | Profile, data: dict[str, Any], num_classes: Callable[[], int] | int,
            **kw: Any) -> TrainConfig:
    """The config of ``recipe`` (:data:`RECIPES`) on the training set ``data``, as chapters and ``dbrepro train``
    both build it: ``db`` gets its K from the class count (:func:`dfi_k`) unless ``k`` is given.
    ``num_classes`` may be a function, called only when the recipe needs it."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    if recipe == "db" and "k" not in kw:
        kw["num_classes"] = num_classes() if callable(num_classes) else num_classes
    return RECIPES[recipe](profile, data=data, **kw)
