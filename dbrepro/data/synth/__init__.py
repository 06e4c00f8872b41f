"""The synthetic long-tailed face world: the book's default data.

No face dataset can ship with the book, and real face datasets carry no domain labels. This
package generates a world of procedurally drawn faces in which identity, domain and every
nuisance are known exactly, with long tails in both classes and domains::

    world = make_world("cpu", seed=0)
    world.train            # TensorFaces: uint8 N x 3 x H x W, labels 0..C-1, meta per image
    world.suites["rfw"]    # PairSuite with per-pair 'group'
    world.identities       # one row per identity (train and test)
    world.domain_table()   # identities and images per domain in training

The generative model
--------------------
*Identities* (:mod:`.identities`). Every identity has a group (``G0``..``G3``, an ethnicity-like
attribute), an age band (``young`` 16-30, ``middle`` 30-60, ``old`` 60-85 years), a sex, and
about 50 facial traits (head shape, eyes, brows, nose, mouth, hair, colours, ears, marks, ageing
rates): see :data:`TRAITS`. Groups differ in their *mean* face (skin, hair and eye colour; fixed
offsets of every shape trait, :data:`GROUP_MEANS`) **and in their covariance**: every shape trait
is owned by one group (:data:`TRAIT_OWNER`), whose people vary a lot in it while the other groups
vary little, so ``G0``'s people differ mostly in jaw, chin, eye tilt and hair length, ``G3``'s in
head shape, eye opening, nose and mouth width and hair volume. The traits were dealt so that
every group's share is equally visible (:func:`trait_visibility`), so no group is intrinsically
easier to tell apart; a model trained mostly on ``G0`` learns ``G0``'s traits and transfers
imperfectly to the rare groups. Age bands change proportions and texture on top.

*Domains* (:mod:`.domains`) are (group, age band) pairs with long-tailed, configurable
frequencies (the product of ``group_freqs`` and ``age_band_freqs``; with the default
frequencies the most frequent domain, 0.5 x 0.5, has about 17 times the identities of the
rarest, 0.10 x 0.15). *Class sizes* follow a power law independent of the domain (deterministic
quantiles of a Pareto law: a few head identities with 100+ images, most with fewer than 20, so
Range Loss's "tail = fewer than 20 images" rule applies as written).

*Images* (:mod:`.nuisance`, drawn by :mod:`.render`). Each image of an identity varies pose
(yaw, pitch, roll after a landmark-like alignment), expression (smile, open mouth, brows), age
(the identity's base age +- a few years: proportions, wrinkles, greying, receding hair),
illumination (direction, ambient share, intensity, colour temperature), occlusion (glasses
habit, sunglasses, hats, masks, patches), haircut changes, blur, sensor noise and a cluttered
background. ``nuisance`` scales all of it. :func:`photograph` is the one path from identities to
pixels.

*Suites* (:mod:`.plans`, assembled in :mod:`.world`): stand-ins for LFW, CPLFW, CALFW, AgeDB-30,
RFW, AFW, BLUFR and MegaFace, with identities disjoint from training and each other, 10
identity-disjoint folds, and negatives that share the nuisance (and where the benchmark does,
the attributes) of the positives. MegaFace's distractors are rendered on demand
(:mod:`.distractors`).

Everything is a pure function of ``(config, seed)`` (:mod:`.config`): per-image and
per-identity randomness is counter-based (:mod:`.rng`: a hash of seed, stream, index and
variable name), so a distractor is the same image whichever chunk renders it, and adding a
variable never changes the others. Worlds are cached under ``dbrepro.paths.cache_dir("worlds")``
keyed by the config, the seed and :data:`WORLD_VERSION`, as plain arrays that cannot run code
(:mod:`.cache`), and checked against their :func:`world_digest` on load.
"""

from __future__ import annotations

from .cache import WorldCacheError, load_world, save_world, world_key, world_path
from .config import PRESETS, WORLD_VERSION, WorldConfig, preset_config, validate_config, world_config
from .digest import world_digest
from .distractors import DISTRACTOR_ID_BASE, distractor_source, render_distractors
from .domains import (
    AGE_BAND_YEARS, AGE_BANDS, AGE_MAX, AGE_MIN, GROUPS, domain_counts, power_law_class_sizes, training_identities,
)
from .identities import (
    COLOUR_MEANS, COLOUR_SPREAD, GROUP_MEAN_SD, GROUP_MEANS, GROUP_SPREAD, GROUP_TRAIT_SD, HIGH_SD, LOW_SD, PARTS,
    SEX_SHIFT, TRAIT_OWNER, TRAITS, Z_RANGE, Trait, sample_identities,
)
from .nuisance import (FRONTAL_YAW, NUISANCE_COLUMNS, PROFILE_YAW, TRAIN_PROFILE_YAW, TRAIN_YAW_LIMIT,
                       image_parameters)
from .photos import RENDER_BLOCK, photograph, single_thread
from .plans import SuitePlan, plan_suites
from .render import MIN_IMAGE_SIZE, render_faces
from .rng import Draws, hash_key, hash_uniform, splitmix64, stream_keys
from .visibility import trait_visibility
from .world import World, build_world, make_world

__all__ = [
    # the world
    "World", "make_world", "build_world",
    # configuration
    "WorldConfig", "PRESETS", "WORLD_VERSION", "preset_config", "world_config", "validate_config",
    # domains and long tails
    "GROUPS", "AGE_BANDS", "AGE_BAND_YEARS", "AGE_MIN", "AGE_MAX", "domain_counts", "power_law_class_sizes",
    "training_identities",
    # identities
    "Trait", "TRAITS", "PARTS", "TRAIT_OWNER", "HIGH_SD", "LOW_SD", "GROUP_SPREAD", "GROUP_TRAIT_SD",
    "GROUP_MEAN_SD", "GROUP_MEANS", "COLOUR_MEANS", "COLOUR_SPREAD", "Z_RANGE", "SEX_SHIFT", "sample_identities",
    "trait_visibility",
    # photographs
    "NUISANCE_COLUMNS", "FRONTAL_YAW", "PROFILE_YAW", "TRAIN_YAW_LIMIT", "TRAIN_PROFILE_YAW",
    "image_parameters", "photograph",
    "RENDER_BLOCK", "single_thread", "render_faces", "MIN_IMAGE_SIZE",
    # randomness
    "splitmix64", "hash_key", "hash_uniform", "stream_keys", "Draws",
    # suites and distractors
    "SuitePlan", "plan_suites", "DISTRACTOR_ID_BASE", "render_distractors", "distractor_source",
    # cache
    "world_key", "world_path", "save_world", "load_world", "WorldCacheError", "world_digest",
]
