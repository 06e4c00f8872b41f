"""Evaluation protocols: verification, ROC, identification, per-group metrics, feature statistics.

Imports only from :mod:`dbrepro.data`, :mod:`dbrepro.models` and :mod:`dbrepro.config`
(never from the trainer).
"""

from dbrepro.eval._checks import ensure_embeddings, ensure_ids, ensure_scores
from dbrepro.eval.embed import embed, embed_chunks, embed_with_aux, keep_rendered_distractors
from dbrepro.eval.features import feature_statistics, kurtosis
from dbrepro.eval.grouping import by_group, group_spread, neighbour_agreement, verification_by
from dbrepro.eval.identification import GallerySearch, open_set_identification, open_set_split
from dbrepro.eval.roc import (
    FarResolutionWarning,
    OperatingPoint,
    auc,
    eer,
    min_far,
    operating_points,
    roc_curve,
    tar_at_far,
)
from dbrepro.eval.suites import ALL_VS_ALL_FARS, IDENTIFICATION_FAR, OPEN_SET_FAR, evaluate_suite
from dbrepro.eval.verification import (all_pair_scores, contiguous_folds, held_out_correct, paired_bootstrap, pair_scores,
                                       verification)

__all__ = [
    "ALL_VS_ALL_FARS",
    "FarResolutionWarning",
    "GallerySearch",
    "IDENTIFICATION_FAR",
    "OPEN_SET_FAR",
    "OperatingPoint",
    "all_pair_scores",
    "auc",
    "by_group",
    "contiguous_folds",
    "eer",
    "held_out_correct",
    "embed",
    "embed_chunks",
    "embed_with_aux",
    "ensure_embeddings",
    "ensure_ids",
    "ensure_scores",
    "evaluate_suite",
    "feature_statistics",
    "group_spread",
    "keep_rendered_distractors",
    "kurtosis",
    "min_far",
    "neighbour_agreement",
    "open_set_identification",
    "open_set_split",
    "operating_points",
    "pair_scores",
    "paired_bootstrap",
    "roc_curve",
    "tar_at_far",
    "verification",
    "verification_by",
]
