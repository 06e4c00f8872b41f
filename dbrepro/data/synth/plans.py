"""Suite plans: which identities, which images and which pairs each benchmark stand-in uses.

This module is pure combinatorics: it *plans* each suite (identity domains, one row per image
with the conditions it must be rendered under, the pair list with its 10 folds) and never draws
a pixel. :func:`plan_suites` plans all eight suites of a world in a fixed order from one
``numpy`` generator; :mod:`~dbrepro.data.synth.world` samples the planned identities, renders
the images and turns a plan into a :class:`~dbrepro.data.base.PairSuite`,
:class:`~dbrepro.data.base.AllVsAllSuite` or :class:`~dbrepro.data.base.IdentificationSuite`.
The evaluation of suites is :mod:`dbrepro.eval`.

Conventions shared by every pair suite
--------------------------------------
- 10 folds, stored contiguously (fold 0's pairs first), each fold half matched, and the folds
  are *identity-disjoint*: an identity appears in one fold only (as in LFW's View 2), so the
  threshold chosen on nine folds is never tuned on the tenth fold's people.
- Every identity is rendered in a fixed list of *slots* (e.g. one frontal and two profile
  images). Matched pairs use slot pairs from ``pos_slots``; mismatched pairs use the **same**
  slot pairs across two identities, so the nuisance that a suite is about (a yaw gap, an age
  gap) is identical for matched and mismatched pairs and cannot give the answer away.
- Where a suite says "attribute-matched negatives", the two identities of a mismatched pair
  share group and age band (as CPLFW/CALFW pick negatives of the same gender and race).

A *block* is a set of identities of one fold from which that fold's pairs of one stratum are
drawn: one block per fold for LFW-like suites, one per (fold, group) for RFW, one per
(fold, age band) for AFW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from .domains import AGE_BAND_YEARS, AGE_BANDS, AGE_MAX, AGE_MIN, GROUPS
from .rng import name_code

if TYPE_CHECKING:
    from .config import WorldConfig

N_FOLDS = 10

#: slot conditions an image of a plan can carry (:func:`~dbrepro.data.synth.nuisance.image_parameters`
#: reads ``yaw_mode``, :meth:`SuitePlan.imposed_ages` ``age_mode``)
FREE: dict[str, str] = {}
FRONTAL = {"yaw": "frontal"}
PROFILE = {"yaw": "profile"}
YOUNGER = {"age": "younger"}
OLDER = {"age": "older"}


@dataclass
class SuitePlan:
    """Everything about a suite except its pixels.

    ``identities``: one row per planned identity (``group``, ``age_band``, and for age suites
    ``age_young`` and ``age_gap`` in years: its images show ``age_young`` and
    ``age_young + age_gap``). ``images``: one row per image (``identity`` = row of ``identities``,
    ``slot``, ``yaw_mode`` in {"", "frontal", "profile"}, ``age_mode`` in {"", "younger",
    "older"}, ``role`` in {"", "gallery", "probe"}). Pair suites also fill ``pairs``,
    ``issame``, ``folds`` and ``pair_meta``.
    """

    name: str
    kind: str  # "pairs" | "all_vs_all" | "identification"
    stands_for: str
    description: str
    identities: pd.DataFrame
    images: pd.DataFrame
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    issame: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    folds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pair_meta: pd.DataFrame = field(default_factory=pd.DataFrame)

    def imposed_ages(self) -> np.ndarray:
        """The age each image must show: ``age_young`` for "younger" slots, ``age_young + age_gap``
        for "older" ones, NaN (free) otherwise."""
        mode = self.images["age_mode"].to_numpy()
        local = self.images["identity"].to_numpy()
        young = self.identities["age_young"].to_numpy(dtype=np.float64)[local]
        gap = self.identities["age_gap"].to_numpy(dtype=np.float64)[local]
        return np.where(mode == "younger", young, np.where(mode == "older", young + gap, np.nan))


def plan_suites(cfg: WorldConfig, seed: int) -> list[SuitePlan]:
    """The plans of a world's eight suites, in this order, drawn from one generator seeded with
    ``seed`` and the stream name (so a suite's plan depends on the plans before it)."""
    rng = np.random.default_rng([seed, name_code("suites")])
    gf, af = cfg.group_freqs, cfg.age_band_freqs
    return [
        plan_lfw(rng, cfg.lfw_pairs, gf, af, GROUPS, AGE_BANDS),
        plan_cplfw(rng, cfg.cplfw_pairs, gf, af, GROUPS, AGE_BANDS),
        plan_calfw(rng, cfg.calfw_pairs, gf, af, GROUPS, AGE_BANDS, AGE_BAND_YEARS),
        plan_agedb(rng, cfg.agedb_pairs, gf, af, GROUPS, AGE_BANDS, AGE_BAND_YEARS),
        plan_rfw(rng, cfg.rfw_pairs_per_group, GROUPS, AGE_BANDS),
        plan_afw(rng, cfg.afw_pairs_per_band, GROUPS, AGE_BANDS),
        plan_blufr(rng, cfg.blufr_identities, cfg.blufr_images_per_identity, gf, af, GROUPS, AGE_BANDS),
        plan_megaface(rng, cfg.megaface_identities, cfg.megaface_images_per_identity, gf, af, GROUPS, AGE_BANDS,
                      cfg.megaface_distractors),
    ]


# ----------------------------------------------------------------------------------------------
# domain draws


def sample_domains(rng: np.random.Generator, n: int, group_freqs: Sequence[float], age_freqs: Sequence[float],
                   groups: Sequence[str], bands: Sequence[str]) -> list[tuple[str, str]]:
    """``n`` (group, age band) draws from the product of the two frequency vectors."""
    g = rng.choice(len(groups), size=n, p=np.asarray(group_freqs) / np.sum(group_freqs))
    a = rng.choice(len(bands), size=n, p=np.asarray(age_freqs) / np.sum(age_freqs))
    return [(groups[i], bands[j]) for i, j in zip(g, a)]


# ----------------------------------------------------------------------------------------------
# pair suites


@dataclass
class _Block:
    fold: int
    stratum: str
    n_pos: int
    n_neg: int
    domains: list[tuple[str, str]]  # one per identity


def _split_half(total_per_fold: int) -> tuple[int, int]:
    return total_per_fold // 2, total_per_fold - total_per_fold // 2


def _ids_needed(n_pos: int, pos_per_identity: int) -> int:
    """Identities for ``n_pos`` matched pairs: at least two, an even number (drawn in pairs)."""
    k = max(2, math.ceil(n_pos / pos_per_identity))
    return k + (k % 2)


def _plan_pair_suite(
    name: str,
    stands_for: str,
    description: str,
    blocks: list[_Block],
    slots: Sequence[dict[str, str]],
    pos_slots: Sequence[tuple[int, int]],
    same_domain_negatives: bool,
    rng: np.random.Generator,
    age_gap: tuple[float, float] | None = None,
    band_years: dict[str, tuple[float, float]] | None = None,
) -> SuitePlan:
    id_rows: list[dict] = []
    img_rows: list[dict] = []
    pairs: list[tuple[int, int]] = []
    issame: list[bool] = []
    folds: list[int] = []
    meta: list[dict] = []
    for block in sorted(blocks, key=lambda b: b.fold):
        first_id = len(id_rows)
        first_img = len(img_rows)
        # age suites: every identity of one domain in a block is photographed at the same two
        # ages, so mismatched pairs have exactly the age gap of matched ones
        ages: dict[tuple[str, str], tuple[float, float]] = {}
        for group, band in block.domains:
            if age_gap is not None and (group, band) not in ages:
                gap = float(rng.uniform(*age_gap))
                centre = float(rng.uniform(*band_years[band]))
                ages[(group, band)] = (min(max(centre - gap / 2, AGE_MIN), AGE_MAX - gap), gap)
            young, gap = ages.get((group, band), (math.nan, math.nan))
            id_rows.append({"group": group, "age_band": band, "age_young": young, "age_gap": gap, "fold": block.fold})
        k = len(block.domains)
        n_slots = len(slots)
        for i in range(k):
            for s, cond in enumerate(slots):
                img_rows.append({
                    "identity": first_id + i, "slot": s,
                    "yaw_mode": cond.get("yaw", ""), "age_mode": cond.get("age", ""), "role": "",
                })

        def image(i: int, s: int) -> int:
            return first_img + i * n_slots + s

        # matched pairs: identity by identity, slot pair by slot pair
        pos = [(i, a, b) for i in range(k) for a, b in pos_slots][: block.n_pos]
        if len(pos) < block.n_pos:
            raise ValueError(f"{name}: block of fold {block.fold} has too few identities for {block.n_pos} matched pairs")
        # mismatched pairs: ordered identity pairs (same domain if asked) x slot pairs, without repetition
        cand = [
            (i, j, a, b)
            for i in range(k) for j in range(k) if i != j
            and (not same_domain_negatives or block.domains[i] == block.domains[j])
            for a, b in pos_slots
        ]
        if len(cand) < block.n_neg:
            raise ValueError(f"{name}: block of fold {block.fold} cannot make {block.n_neg} distinct mismatched pairs")
        neg = [cand[c] for c in rng.choice(len(cand), size=block.n_neg, replace=False)]
        for i, a, b in pos:
            pairs.append((image(i, a), image(i, b)))
            issame.append(True)
            folds.append(block.fold)
            meta.append({"stratum": block.stratum, "id_a": first_id + i, "id_b": first_id + i})
        for i, j, a, b in neg:
            pairs.append((image(i, a), image(j, b)))
            issame.append(False)
            folds.append(block.fold)
            meta.append({"stratum": block.stratum, "id_a": first_id + i, "id_b": first_id + j})
    identities = pd.DataFrame(id_rows)
    pair_meta = pd.DataFrame(meta)
    for side in ("a", "b"):
        sub = identities.loc[pair_meta[f"id_{side}"].to_numpy()]
        suffix = "" if side == "a" else "_b"
        pair_meta[f"group{suffix}"] = sub["group"].to_numpy()
        pair_meta[f"age_band{suffix}"] = sub["age_band"].to_numpy()
        pair_meta[f"domain{suffix}"] = (sub["group"] + "/" + sub["age_band"]).to_numpy()
    pair_meta.insert(0, "fold", np.asarray(folds, dtype=np.int64))
    return SuitePlan(
        name=name, kind="pairs", stands_for=stands_for, description=description,
        identities=identities, images=pd.DataFrame(img_rows),
        pairs=np.asarray(pairs, dtype=np.int64).reshape(-1, 2), issame=np.asarray(issame, dtype=bool),
        folds=np.asarray(folds, dtype=np.int64), pair_meta=pair_meta,
    )


def _mixed_blocks(rng, pairs_total: int, pos_per_identity: int, group_freqs, age_freqs, groups, bands,
                  in_pairs: bool) -> list[_Block]:
    """One block per fold whose identities' domains follow the training frequencies.

    ``in_pairs``: domains are drawn once for every two identities, so each identity has a
    same-domain partner (needed for attribute-matched negatives)."""
    n_pos, n_neg = _split_half(pairs_total // N_FOLDS)
    k = _ids_needed(n_pos, pos_per_identity)
    blocks = []
    for fold in range(N_FOLDS):
        if in_pairs:
            doms = sample_domains(rng, k // 2, group_freqs, age_freqs, groups, bands)
            doms = [d for d in doms for _ in range(2)]
        else:
            doms = sample_domains(rng, k, group_freqs, age_freqs, groups, bands)
        blocks.append(_Block(fold, "all", n_pos, n_neg, doms))
    return blocks


def _spread(total: int, parts: int, offset: int) -> list[int]:
    """``total`` split into ``parts`` near-equal integers, the remainder rotating with ``offset``."""
    base, extra = divmod(total, parts)
    return [base + (1 if (i - offset) % parts < extra else 0) for i in range(parts)]


def _stratified_blocks(pairs_per_stratum: int, pos_per_identity: int, strata: Sequence[str],
                       others: Sequence[str], stratum_is_group: bool) -> list[_Block]:
    """One block per (fold, stratum); inside a block the other attribute is balanced, in pairs."""
    n_pos, n_neg = _split_half(pairs_per_stratum // N_FOLDS)
    blocks = []
    for fold in range(N_FOLDS):
        for si, stratum in enumerate(strata):
            k = _ids_needed(n_pos, pos_per_identity)
            counts = _spread(k // 2, len(others), offset=fold + si)
            doms = []
            for other, c in zip(others, counts):
                dom = (stratum, other) if stratum_is_group else (other, stratum)
                doms.extend([dom] * (2 * c))
            blocks.append(_Block(fold, stratum, n_pos, n_neg, doms))
    return blocks


def plan_lfw(rng, pairs: int, group_freqs, age_freqs, groups, bands) -> SuitePlan:
    description = (
        f"{pairs} pairs in 10 identity-disjoint folds, half matched; identities' domains drawn with the "
        "training frequencies (head-dominated, like LFW's celebrities); negatives are random pairs of "
        "different identities of the same fold; every nuisance free.")
    return _plan_mixed(rng, "lfw", "LFW", description, pairs, (group_freqs, age_freqs, groups, bands),
                       [FREE, FREE, FREE], [(0, 1), (0, 2), (1, 2)], attribute_matched=False)


def plan_cplfw(rng, pairs: int, group_freqs, age_freqs, groups, bands) -> SuitePlan:
    description = (
        f"{pairs} cross-pose pairs: every pair is a near-frontal image (|yaw| <= 8 deg) against a "
        "large-yaw image (|yaw| in the world's profile_yaw range, 62-80 deg by default); negatives have the "
        "same pose gap and are attribute-matched (same group and age band).")
    return _plan_mixed(rng, "cplfw", "CPLFW", description, pairs, (group_freqs, age_freqs, groups, bands),
                       [FRONTAL, PROFILE, PROFILE], [(0, 1), (0, 2)], attribute_matched=True)


def plan_calfw(rng, pairs: int, group_freqs, age_freqs, groups, bands, band_years) -> SuitePlan:
    description = (
        f"{pairs} cross-age pairs: a younger image against an older one, 20-40 years apart (one gap "
        "and one pair of ages per fold and domain, around a base age of the identities' band); "
        "negatives have the same ages and are attribute-matched (same group and age band).")
    return _plan_mixed(rng, "calfw", "CALFW", description, pairs, (group_freqs, age_freqs, groups, bands),
                       [YOUNGER, OLDER, OLDER], [(0, 1), (0, 2)], attribute_matched=True,
                       age_gap=(20.0, 40.0), band_years=band_years)


def plan_agedb(rng, pairs: int, group_freqs, age_freqs, groups, bands, band_years) -> SuitePlan:
    description = (
        f"{pairs} pairs with an age gap of exactly 30 years (AgeDB-30); negatives have the same ages "
        "and are attribute-matched (same group and age band).")
    return _plan_mixed(rng, "agedb", "AgeDB-30", description, pairs, (group_freqs, age_freqs, groups, bands),
                       [YOUNGER, OLDER, OLDER], [(0, 1), (0, 2)], attribute_matched=True,
                       age_gap=(30.0, 30.0), band_years=band_years)


def _plan_mixed(rng, name: str, stands_for: str, description: str, pairs: int, domains, slots, pos_slots,
                attribute_matched: bool, **ages) -> SuitePlan:
    """A suite whose identities' domains follow the training frequencies (one block per fold).

    ``domains`` is ``(group_freqs, age_freqs, groups, bands)``. With ``attribute_matched`` the two
    identities of a mismatched pair share group and age band, so identities are drawn in same-domain
    pairs. ``ages`` (``age_gap``, ``band_years``) make it a cross-age suite."""
    blocks = _mixed_blocks(rng, pairs, len(pos_slots), *domains, in_pairs=attribute_matched)
    return _plan_pair_suite(name, stands_for, description, blocks, slots, pos_slots,
                            same_domain_negatives=attribute_matched, rng=rng, **ages)


def plan_rfw(rng, pairs_per_group: int, groups, bands) -> SuitePlan:
    return _plan_per_stratum(
        rng, "rfw", "RFW", pairs_per_group, groups, bands, stratum_is_group=True,
        description=f"{pairs_per_group} pairs per group ({len(groups)} groups), each group with its own 10 folds "
        "(pair meta 'group'); within a group the age bands are balanced; negatives share group and "
        "age band. Accuracy per group, and its spread across groups, measure the domain bias.")


def plan_afw(rng, pairs_per_band: int, groups, bands) -> SuitePlan:
    return _plan_per_stratum(
        rng, "afw", "AFW (CACD age subsets)", pairs_per_band, bands, groups, stratum_is_group=False,
        description=f"{pairs_per_band} pairs per age band ({', '.join(bands)}), each band with its own 10 folds "
        "(pair meta 'age_band'); within a band the groups are balanced; negatives share group and "
        "age band.")


def _plan_per_stratum(rng, name: str, stands_for: str, pairs_per_stratum: int, strata: Sequence[str],
                      others: Sequence[str], stratum_is_group: bool, description: str) -> SuitePlan:
    """A suite with its own 10 folds per stratum (a group for RFW, an age band for AFW)."""
    slots = [FREE, FREE, FREE]
    pos = [(0, 1), (0, 2), (1, 2)]
    blocks = _stratified_blocks(pairs_per_stratum, len(pos), strata, others, stratum_is_group=stratum_is_group)
    return _plan_pair_suite(name, stands_for, description, blocks, slots, pos, same_domain_negatives=True, rng=rng)


# ----------------------------------------------------------------------------------------------
# all-vs-all and identification


def _free_age_identities(doms: list[tuple[str, str]]) -> pd.DataFrame:
    """The identity table of a suite whose images show any age: one row per identity's (group, age band)."""
    return pd.DataFrame({"group": [g for g, _ in doms], "age_band": [a for _, a in doms],
                         "age_young": math.nan, "age_gap": math.nan})


def plan_blufr(rng, n_identities: int, images_per_identity: int, group_freqs, age_freqs, groups, bands) -> SuitePlan:
    identities = _free_age_identities(sample_domains(rng, n_identities, group_freqs, age_freqs, groups, bands))
    images = pd.DataFrame({
        "identity": np.repeat(np.arange(n_identities), images_per_identity),
        "slot": np.tile(np.arange(images_per_identity), n_identities),
        "yaw_mode": "", "age_mode": "", "role": "",
    })
    n = n_identities * images_per_identity
    pos = n_identities * images_per_identity * (images_per_identity - 1) // 2
    return SuitePlan(
        "blufr", "all_vs_all", "LFW BLUFR",
        f"all-vs-all verification over {n} images of {n_identities} identities: {pos} matched and "
        f"{n * (n - 1) // 2 - pos} mismatched pairs, enough for TAR at FAR = 1e-4; domains drawn "
        "with the training frequencies.",
        identities, images)


def plan_megaface(rng, n_identities: int, images_per_identity: int, group_freqs, age_freqs, groups, bands,
                  n_distractors: int) -> SuitePlan:
    identities = _free_age_identities(sample_domains(rng, n_identities, group_freqs, age_freqs, groups, bands))
    images = pd.DataFrame({
        "identity": np.repeat(np.arange(n_identities), images_per_identity),
        "slot": np.tile(np.arange(images_per_identity), n_identities),
        "yaw_mode": "", "age_mode": "",
        "role": np.tile(["gallery"] + ["probe"] * (images_per_identity - 1), n_identities),
    })
    return SuitePlan(
        "megaface", "identification", "MegaFace Challenge 1 (FaceScrub probes)",
        f"{n_identities} probe identities (FaceScrub stand-in), one gallery image each and "
        f"{images_per_identity - 1} probes each; every probe is searched among the gallery plus "
        f"{n_distractors} distractors of distractor-only identities, rendered on demand by index.",
        identities, images)
