"""The world: identities, training set and suites of one ``(config, seed)``, and its entry point.

:func:`make_world` resolves a profile's config, loads the world from the cache
(:mod:`~dbrepro.data.synth.cache`) or builds and caches it. :func:`build_world` does the work:

1. the identity table: the training roster (:func:`~dbrepro.data.synth.domains.training_identities`)
   first, so identity == label, then every suite's planned identities
   (:func:`~dbrepro.data.synth.plans.plan_suites`), with traits from
   :func:`~dbrepro.data.synth.identities.sample_identities`;
2. the training images: ``n_images`` photographs of each training identity;
3. each suite's images, under the conditions its plan sets (pose slot, age), assembled into a
   :class:`~dbrepro.data.base.PairSuite`, :class:`~dbrepro.data.base.AllVsAllSuite` or
   :class:`~dbrepro.data.base.IdentificationSuite`.

Every image comes from :func:`~dbrepro.data.synth.photos.photograph`, seeded by a key of its own
stream (``"train"``, the suite's name, ...; :func:`~dbrepro.data.synth.rng.stream_keys`).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from dbrepro.data.base import AllVsAllSuite, IdentificationSuite, PairSuite, Suite, TensorFaces

from . import cache as _cache
from .config import WORLD_VERSION, WorldConfig, world_config
from .distractors import distractor_source
from .domains import domain_counts, training_identities
from .identities import sample_identities
from .photos import photograph
from .plans import SuitePlan, plan_suites
from .rng import stream_keys

#: per-image identity columns copied into every image table
_IMAGE_ID_COLUMNS = ["identity", "group", "age_band", "domain", "sex"]


@dataclass
class World:
    """A rendered synthetic world (see :mod:`dbrepro.data.synth`)."""

    config: WorldConfig
    seed: int
    train: TensorFaces
    suites: dict[str, Suite]
    #: one row per identity, train and test: split, group, age_band, domain, sex, base_age, n_images, traits
    identities: pd.DataFrame
    #: per suite, one row per image: identity, slot/role and the nuisance values it was rendered with
    suite_images: dict[str, pd.DataFrame]

    @property
    def version(self) -> str:
        """The generator version that rendered this world (:data:`~dbrepro.data.synth.config.WORLD_VERSION`)."""
        return WORLD_VERSION

    def domain_table(self) -> pd.DataFrame:
        """Training identities and images per domain, most frequent first (with shares)."""
        meta = self.train.meta
        ids = self.identities[self.identities["split"] == "train"]
        table = domain_counts(self.config)[["domain", "group", "age_band"]].copy()
        table["identities"] = table["domain"].map(ids.groupby("domain").size()).fillna(0).astype(int)
        table["images"] = table["domain"].map(meta.groupby("domain").size()).fillna(0).astype(int)
        table["identity_share"] = table["identities"] / max(1, table["identities"].sum())
        table["image_share"] = table["images"] / max(1, table["images"].sum())
        return table.sort_values(["identities", "domain"], ascending=[False, True]).reset_index(drop=True)

    def render(self, identities: Iterable[int], overrides: Mapping[str, Any] | None = None,
               nuisance: float | None = None, stream: str = "gallery") -> torch.Tensor:
        """Render new images of existing identities (one per entry of ``identities``), e.g. a pose
        sweep: ``world.render([7] * 5, {"yaw": [-60, -30, 0, 30, 60]}, nuisance=0)``.

        Image ``i`` is seeded by position ``i`` of ``stream``, so the same call gives the same
        images; pass another ``stream`` name for other photographs of the same people. The poses are the training
        set's (``profile_pose_share`` included): ``stream="train"`` gives the training photographs again."""
        ids = np.asarray(list(identities), dtype=np.int64)
        table = self.identities.set_index("identity")
        missing = sorted(set(ids) - set(table.index))
        if missing:
            raise ValueError(f"unknown identities {missing[:5]}")
        ident = table.loc[ids].reset_index()
        cfg = self.config if nuisance is None else dataclasses.replace(self.config, nuisance=nuisance)
        images, _ = _photograph(ident, stream, cfg, self.seed, overrides=overrides,
                                profile_pose_share=cfg.profile_pose_share)
        return images


def make_world(profile: str = "cpu", seed: int = 0, config: WorldConfig | Mapping[str, Any] | None = None,
               cache: bool = True) -> World:
    """The synthetic world of ``profile`` (its ``world`` preset and overrides) and ``seed``.

    ``config`` overrides fields (a mapping) or replaces the config (a :class:`WorldConfig`).
    With ``cache`` (default) a world rendered before is loaded from
    ``cache_dir("worlds")/<key>.npz`` (:mod:`~dbrepro.data.synth.cache`); a new one is rendered
    and written there atomically. A cache file that fails its checks is reported (a warning
    naming the file and what is wrong), never used, and replaced by a fresh rendering.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    cfg = world_config(profile, config)
    seed = int(seed)
    if not cache:
        return build_world(cfg, seed)
    return _cached_world(cfg, seed)


def _cached_world(cfg: WorldConfig, seed: int) -> World:
    path = _cache.world_path(cfg, seed)
    if path.exists():
        try:
            parts = _cache.load_world(path, cfg, seed, distractors=distractor_source(cfg, seed))
            return World(config=cfg, seed=seed, **parts)
        except _cache.WorldCacheError as err:
            warnings.warn(f"{err}; rendering the world again", stacklevel=3)
    world = build_world(cfg, seed)
    _cache.save_world(world, path)
    return world


def build_world(cfg: WorldConfig, seed: int) -> World:
    """Render the world of ``(cfg, seed)`` (no cache)."""
    plans = plan_suites(cfg, seed)
    identities = _identity_table(cfg, seed, plans)
    train = _training_set(identities, cfg, seed)
    first = dict(zip(*np.unique(identities["split"], return_index=True)))
    suites: dict[str, Suite] = {}
    suite_images: dict[str, pd.DataFrame] = {}
    for plan in plans:
        suites[plan.name], suite_images[plan.name] = _render_suite(plan, identities, first[plan.name], cfg, seed)
    return World(config=cfg, seed=seed, train=train, suites=suites, identities=identities, suite_images=suite_images)


def _identity_table(cfg: WorldConfig, seed: int, plans: list[SuitePlan]) -> pd.DataFrame:
    """Training identities first (identity == label), then each suite's identities, with traits."""
    frames = [training_identities(cfg, seed).assign(split="train")]
    for plan in plans:
        frames.append(plan.identities[["group", "age_band"]].assign(split=plan.name, n_images=0))
    ids = pd.concat(frames, ignore_index=True)
    ids.insert(0, "identity", np.arange(len(ids), dtype=np.int64))
    traits = sample_identities(seed, ids["identity"], ids["group"], ids["age_band"], cfg.identity_spread)
    return pd.concat([ids[["identity", "split", "n_images"]], traits.drop(columns=["identity"])], axis=1)


def _photograph(ident: pd.DataFrame, stream: str, cfg: WorldConfig, seed: int, **conditions: Any):
    """Photographs of the rows of ``ident``, image ``i`` seeded by position ``i`` of ``stream``."""
    keys = stream_keys(seed, stream, np.arange(len(ident)))
    return photograph(ident, keys, nuisance=cfg.nuisance, image_size=cfg.image_size, supersample=cfg.supersample,
                      profile_yaw=cfg.profile_yaw, ageing=cfg.ageing, wide_pose_share=cfg.wide_pose_share,
                      **conditions)


def _training_set(identities: pd.DataFrame, cfg: WorldConfig, seed: int) -> TensorFaces:
    train = identities.iloc[: cfg.num_identities]
    labels = np.repeat(train["identity"].to_numpy(), train["n_images"].to_numpy())
    ident = identities.iloc[labels].reset_index(drop=True)
    images, nuisance = _photograph(ident, "train", cfg, seed, profile_pose_share=cfg.profile_pose_share)
    meta = pd.concat([ident[_IMAGE_ID_COLUMNS], nuisance], axis=1)
    meta.insert(1, "label", labels)
    return TensorFaces(images=images, labels=labels, num_classes=cfg.num_identities, meta=meta, name="synth-train")


def _render_suite(plan: SuitePlan, identities: pd.DataFrame, offset: int, cfg: WorldConfig,
                  seed: int) -> tuple[Suite, pd.DataFrame]:
    """A suite's images under its plan's conditions, and the suite; ``offset`` is the identity id
    of the plan's first identity."""
    local = plan.images["identity"].to_numpy()
    ident = identities.iloc[offset + local].reset_index(drop=True)
    pixels, nuisance = _photograph(ident, plan.name, cfg, seed,
                                   yaw_mode=plan.images["yaw_mode"].to_numpy(), age=plan.imposed_ages())
    img_meta = pd.concat([ident[_IMAGE_ID_COLUMNS], plan.images[["slot", "role"]].reset_index(drop=True), nuisance],
                         axis=1)
    return _assemble_suite(plan, pixels, img_meta, offset, cfg, seed), img_meta


def _assemble_suite(plan: SuitePlan, pixels: torch.Tensor, img_meta: pd.DataFrame, offset: int,
                    cfg: WorldConfig, seed: int) -> Suite:
    ids = img_meta["identity"].to_numpy()
    if plan.kind == "pairs":
        meta = plan.pair_meta.copy()
        meta["id_a"] = meta["id_a"] + offset
        meta["id_b"] = meta["id_b"] + offset
        a, b = plan.pairs[:, 0], plan.pairs[:, 1]
        for col in ("yaw", "age"):
            va, vb = img_meta[col].to_numpy()[a], img_meta[col].to_numpy()[b]
            meta[f"{col}_a"], meta[f"{col}_b"], meta[f"{col}_gap"] = va, vb, np.abs(va - vb)
        return PairSuite(name=plan.name, images=pixels, pairs=plan.pairs, issame=plan.issame, folds=plan.folds,
                         meta=meta, stands_for=plan.stands_for, description=plan.description)
    if plan.kind == "all_vs_all":
        return AllVsAllSuite(name=plan.name, images=pixels, identities=ids, meta=img_meta,
                             stands_for=plan.stands_for, description=plan.description)
    gallery = (img_meta["role"] == "gallery").to_numpy()
    g_idx = torch.from_numpy(np.flatnonzero(gallery))
    p_idx = torch.from_numpy(np.flatnonzero(~gallery))
    return IdentificationSuite(
        name=plan.name, probes=pixels[p_idx], probe_ids=ids[~gallery],
        gallery=pixels[g_idx], gallery_ids=ids[gallery],
        distractors=distractor_source(cfg, seed), probe_meta=img_meta[~gallery].reset_index(drop=True),
        stands_for=plan.stands_for, description=plan.description)
