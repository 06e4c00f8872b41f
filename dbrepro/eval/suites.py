"""Evaluate a model on the evaluation suites of :mod:`dbrepro.data.base`, one protocol per kind.

=====================  ==================================================================
suite                  result
=====================  ==================================================================
``PairSuite``          the 10-fold verification dict (the suite's own folds), plus the
                       per-pair ``scores`` and ``issame`` arrays for grouping/bootstrap
``AllVsAllSuite``      exact TAR at FAR 1e-5 .. 1e-2 wherever ``1 / impostor pairs`` allows,
                       AUC, EER, and BLUFR-style open-set DIR at FAR = 1% on a seeded
                       gallery/probe split of the images (``open_set`` is None, with the
                       reason in ``open_set_skipped``, when the split has too few
                       identities or fewer than 100 impostor probes)
``IdentificationSuite`` rank-1 and rank-5 with and without the distractors, and TAR at
                       FAR = 1e-6 between probes and gallery + distractors where measurable
=====================  ==================================================================

Distractors are embedded chunk by chunk and scanned once; all three identification numbers
come from that single pass. Per-group numbers (RFW races, AFW age bands) come from the pair
result: ``verification_by(result["scores"], result["issame"], suite.meta, "group")``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dbrepro.config import resolve_device
from dbrepro.data.base import AllVsAllSuite, IdentificationSuite, PairSuite
from dbrepro.eval.embed import Model, embed, embed_chunks
from dbrepro.eval.identification import (
    GallerySearch,
    count_mate_pairs,
    impostors_to_keep,
    open_set_identification,
    open_set_split,
)
from dbrepro.eval.roc import auc, eer, min_far, tar_at_far
from dbrepro.eval.verification import all_pair_scores, pair_scores, verification

__all__ = ["ALL_VS_ALL_FARS", "IDENTIFICATION_FAR", "OPEN_SET_FAR", "evaluate_suite"]

#: FARs reported for all-vs-all suites (BLUFR reports 1e-3; Domain Balancing Table 5 1e-5 and 1e-4)
ALL_VS_ALL_FARS = (1e-5, 1e-4, 1e-3, 1e-2)
#: MegaFace's verification FAR (Domain Balancing Table 7)
IDENTIFICATION_FAR = 1e-6
#: BLUFR open-set identification FAR (Range Loss §4.1: "Rank = 1, FAR = 1%")
OPEN_SET_FAR = 0.01


def _header(suite: Any, kind: str) -> dict[str, Any]:
    return {"suite": suite.name, "kind": kind, "stands_for": suite.stands_for}


def _evaluate_pairs(model: Model, suite: PairSuite, **kw: Any) -> dict[str, Any]:
    emb = embed(model, suite.images, **kw)
    scores = pair_scores(emb, suite.pairs)
    result = _header(suite, "pairs")
    result.update(verification(scores, suite.issame, fold_ids=suite.folds))
    result["scores"] = scores
    result["issame"] = suite.issame.copy()
    return result


def _evaluate_all_vs_all(model: Model, suite: AllVsAllSuite, **kw: Any) -> dict[str, Any]:
    emb = embed(model, suite.images, **kw)
    scores, issame = all_pair_scores(emb, suite.identities)
    num_impostors = int((~issame).sum())
    fars = [f for f in ALL_VS_ALL_FARS if f >= min_far(max(num_impostors, 1))]
    points = tar_at_far(scores, issame, fars) if fars else []
    result = _header(suite, "all_vs_all")
    result.update({
        "num_genuine": int(issame.sum()),
        "num_impostors": num_impostors,
        "min_far": min_far(max(num_impostors, 1)),
        "tar_at_far": {p.target_far: p.tar for p in points},
        "achieved_far": {p.target_far: p.far for p in points},
        "auc": auc(scores, issame),
        "eer": eer(scores, issame),
    })
    result["open_set"] = None
    try:
        gallery, genuine, impostor = open_set_split(suite.identities)
    except ValueError as err:  # too few identities for a gallery and impostor probes
        result["open_set_skipped"] = str(err)
        return result
    if OPEN_SET_FAR < min_far(len(impostor)):
        result["open_set_skipped"] = (
            f"FAR {OPEN_SET_FAR:g} needs at least {round(1 / OPEN_SET_FAR)} impostor probes, "
            f"the split has {len(impostor)}"
        )
    else:
        probes = np.concatenate((genuine, impostor))
        result["open_set"] = open_set_identification(
            emb[probes], suite.identities[probes], emb[gallery], suite.identities[gallery], far=OPEN_SET_FAR
        )
    return result


def _evaluate_identification(
    model: Model, suite: IdentificationSuite, distractor_chunk: int = 4096, **kw: Any
) -> dict[str, Any]:
    probes = embed(model, suite.probes, **kw)
    gallery = embed(model, suite.gallery, **kw)
    num_distractors = len(suite.distractors) if suite.distractors is not None else 0
    mates = count_mate_pairs(suite.probe_ids, suite.gallery_ids)
    num_impostors = len(probes) * (len(gallery) + num_distractors) - mates
    measurable = num_impostors > 0 and IDENTIFICATION_FAR >= min_far(num_impostors)
    keep = impostors_to_keep(IDENTIFICATION_FAR, num_impostors) if measurable else 0

    device = resolve_device(kw["device"])  # search where the model ran: a GPU scans 10^6 distractors in seconds
    search = GallerySearch(
        probes.to(device), suite.probe_ids, gallery.to(device), suite.gallery_ids, keep_impostors=keep
    )
    result = _header(suite, "identification")
    without = search.rank_k((1, 5), with_distractors=False)
    if suite.distractors is not None:
        for chunk in embed_chunks(model, suite.distractors.chunks(distractor_chunk), **kw):
            search.add_distractors(chunk)
    with_d = search.rank_k((1, 5))
    result.update({
        "num_probes": len(probes),
        "num_gallery": len(gallery),
        "num_distractors": search.num_distractors,
        "rank1": with_d[1],
        "rank5": with_d[5],
        "rank1_no_distractors": without[1],
        "rank5_no_distractors": without[5],
        "num_impostors": search.num_impostors,
        "tar_at_far": {},
        "achieved_far": {},
    })
    if measurable:
        point = search.tar_at_far(IDENTIFICATION_FAR)
        result["tar_at_far"] = {IDENTIFICATION_FAR: point.tar}
        result["achieved_far"] = {IDENTIFICATION_FAR: point.far}
    return result


def evaluate_suite(
    model: Model,
    suite: PairSuite | AllVsAllSuite | IdentificationSuite,
    device: str | torch.device = "cpu",
    flip: bool = False,
    batch_size: int = 512,
) -> dict[str, Any]:
    """Embed the suite's images with ``model`` and run the suite's protocol (module docstring).

    Every result carries ``suite`` (name), ``kind`` (``pairs``, ``all_vs_all`` or
    ``identification``) and ``stands_for``.
    """
    kw = {"device": device, "flip": flip, "batch_size": batch_size}
    if isinstance(suite, PairSuite):
        return _evaluate_pairs(model, suite, **kw)
    if isinstance(suite, AllVsAllSuite):
        return _evaluate_all_vs_all(model, suite, **kw)
    if isinstance(suite, IdentificationSuite):
        return _evaluate_identification(model, suite, **kw)
    raise ValueError(
        f"suite: expected a PairSuite, AllVsAllSuite or IdentificationSuite, got {type(suite).__name__}"
    )
