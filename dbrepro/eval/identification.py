"""Identification: MegaFace-style closed-set rank-k with distractors, and BLUFR-style open-set DIR.

Closed set (MegaFace Challenge 1 convention, Domain Balancing §4.5.3)
    Every probe is searched among the gallery images and the distractors by cosine similarity of
    L2-normalised embeddings. A probe is correct at rank ``k`` when one of its ``k`` nearest
    candidates is a gallery image of its own identity; distractors never match. Equivalently,
    with ``s*`` the probe's best mate score, its rank is ``1 + #(non-mates scoring >= s*)``,
    ties counted against the probe. That count is all the search accumulates, so the scan is a
    matrix product plus one comparison per score -- exact, and cheaper than keeping a running
    top-k list (which would give the same answer).

Open set (BLUFR, Range Loss §4.1 "Open-set identification, Rank = 1, FAR = 1%")
    Genuine probes have a mate in the gallery, impostor probes do not. The threshold is set on
    the impostor probes' top-1 scores so that at most ``far`` of them are accepted (the same
    exact rule as :func:`dbrepro.eval.roc.tar_at_far`); the detection and identification rate
    DIR is the fraction of genuine probes whose top-1 candidate is a mate *and* scores at least
    the threshold.

Memory
    Nothing of size (probes x distractors) is ever held: the scan works on blocks of
    ``probe_chunk x chunk`` scores in one reused float32 buffer (64 MB for the default 4096 x
    4096), plus a boolean mask of the block while scanning the gallery or keeping impostor
    scores (16 MB), one normalised distractor chunk (``chunk * D * 4`` = 8 MB) and the
    normalised probes and gallery (20 MB each for 10^4 x 512): about 130 MB for 10^4 probes
    whatever the number of distractors (measured: ``benchmarks/bench_eval.py``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dbrepro.eval._checks import ensure_embeddings, ensure_ids
from dbrepro.eval.roc import OperatingPoint, operating_points

__all__ = [
    "GallerySearch",
    "open_set_identification",
    "open_set_split",
    "count_mate_pairs",
    "impostors_to_keep",
]


class GallerySearch:
    """Streaming search of probes in a gallery plus distractors added chunk by chunk.

    Create it with the probe and gallery embeddings (it scans the gallery then), feed the
    distractors with :meth:`add_distractors` as many times as needed, then read
    :meth:`rank_k`, :meth:`tar_at_far` or :meth:`open_set`. One scan of the distractors serves
    all three, which matters when each chunk comes from running a network.

    Parameters
    ----------
    probes, gallery
        (P, D) and (G, D) embeddings (any device; the scan runs on the probes' device).
    probe_ids, gallery_ids
        integer identities; a gallery image is a *mate* of a probe when the ids are equal.
    keep_impostors
        how many of the largest impostor scores to keep for :meth:`tar_at_far` (0: none):
        ``impostors_to_keep(far, P * (G + distractors) - count_mate_pairs(probe_ids, gallery_ids))``.
        Impostor pairs are probe x non-mate gallery pairs and probe x distractor pairs.
    chunk, probe_chunk
        candidates (gallery images or distractors) and probes per block of the scan: a block
        holds ``probe_chunk * chunk`` float32 scores.
    """

    def __init__(
        self,
        probes: torch.Tensor | np.ndarray,
        probe_ids: Any,
        gallery: torch.Tensor | np.ndarray,
        gallery_ids: Any,
        keep_impostors: int = 0,
        chunk: int = 4096,
        probe_chunk: int = 4096,
    ) -> None:
        probes = ensure_embeddings(probes, "probes")
        gallery = ensure_embeddings(gallery, "gallery")
        if probes.shape[1] != gallery.shape[1]:
            raise ValueError(f"probes have dimension {probes.shape[1]} but the gallery has {gallery.shape[1]}")
        if len(probes) == 0 or len(gallery) == 0:
            raise ValueError("probes and gallery must not be empty")
        if not 1 <= chunk <= 2**24 or probe_chunk < 1 or keep_impostors < 0:
            raise ValueError(
                "need 1 <= chunk <= 2**24, probe_chunk >= 1 and keep_impostors >= 0, "
                f"got {chunk}, {probe_chunk}, {keep_impostors}"
            )
        self.device = probes.device
        self.dim = probes.shape[1]
        self.chunk = chunk
        self.probe_chunk = probe_chunk
        self.keep_impostors = int(keep_impostors)
        self.probes = F.normalize(probes.float(), dim=1)
        self.probe_ids = ensure_ids(probe_ids, len(probes), "probe_ids")
        gallery_ids = ensure_ids(gallery_ids, len(gallery), "gallery_ids")
        unit_gallery = F.normalize(gallery.float(), dim=1).to(self.device)

        self.genuine_scores, self.best_mate = self._mate_scores(unit_gallery, gallery_ids)
        self.has_mate = torch.isfinite(self.best_mate)
        p = len(self.probes)
        self.gallery_count = torch.zeros(p, dtype=torch.int64, device=self.device)
        self.distractor_count = torch.zeros(p, dtype=torch.int64, device=self.device)
        self.best_nonmate = torch.full((p,), -torch.inf, device=self.device)
        self._impostors = torch.empty(0, device=self.device)
        self._buffer: torch.Tensor | None = None
        self.num_distractors = 0
        self._probe_ids_t = torch.from_numpy(self.probe_ids).to(self.device)
        self._scan(unit_gallery, torch.from_numpy(gallery_ids).to(self.device), self.gallery_count)
        self.num_impostors = p * len(unit_gallery) - len(self.genuine_scores)

    def _mate_scores(self, unit_gallery: torch.Tensor, gallery_ids: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """Scores of every (probe, mate) pair and each probe's best mate score (-inf: no mate)."""
        order = np.argsort(gallery_ids, kind="stable")
        sorted_ids = gallery_ids[order]
        start = np.searchsorted(sorted_ids, self.probe_ids, side="left")
        stop = np.searchsorted(sorted_ids, self.probe_ids, side="right")
        per_probe = stop - start
        probe_rows = np.repeat(np.arange(len(self.probe_ids)), per_probe)
        offsets = np.arange(per_probe.sum()) - np.repeat(np.cumsum(per_probe) - per_probe, per_probe)
        gallery_rows = order[np.repeat(start, per_probe) + offsets]
        pr = torch.from_numpy(probe_rows).to(self.device)
        gr = torch.from_numpy(gallery_rows).to(self.device)
        scores = (self.probes[pr] * unit_gallery[gr]).sum(dim=1)
        best = torch.full((len(self.probe_ids),), -torch.inf, device=self.device)
        best.scatter_reduce_(0, pr, scores, reduce="amax")
        return scores.double().cpu().numpy(), best

    def _scan(self, candidates: torch.Tensor, candidate_ids: torch.Tensor | None, counts: torch.Tensor) -> None:
        """Compare every probe with ``candidates`` (unit rows) block by block; mates are skipped."""
        for c0 in range(0, len(candidates), self.chunk):
            block = candidates[c0 : c0 + self.chunk]
            block_ids = None if candidate_ids is None else candidate_ids[c0 : c0 + self.chunk]
            for p0 in range(0, len(self.probes), self.probe_chunk):
                p1 = min(p0 + self.probe_chunk, len(self.probes))
                scores = self._block(p1 - p0, len(block))
                torch.mm(self.probes[p0:p1], block.T, out=scores)
                if block_ids is not None:
                    scores.masked_fill_(self._probe_ids_t[p0:p1, None] == block_ids[None, :], -torch.inf)
                torch.maximum(self.best_nonmate[p0:p1], scores.amax(dim=1), out=self.best_nonmate[p0:p1])
                if self.keep_impostors:
                    self._keep_top(scores)
                # non-mates at or above the best mate, counted in place as float 0/1: exact (a row
                # has at most `chunk` <= 2**24 columns) and several times faster than summing a bool mask
                counts[p0:p1] += scores.ge_(self.best_mate[p0:p1, None]).sum(dim=1).long()

    def _block(self, rows: int, cols: int) -> torch.Tensor:
        """A (rows, cols) view of one reused score buffer (fresh 64 MB allocations cost page faults)."""
        if self._buffer is None:
            self._buffer = torch.empty(min(self.probe_chunk, len(self.probes)) * self.chunk, device=self.device)
        return self._buffer[: rows * cols].view(rows, cols)

    def _keep_top(self, scores: torch.Tensor) -> None:
        """Merge the block's largest finite scores into the running top ``keep_impostors``."""
        full = len(self._impostors) >= self.keep_impostors
        floor = self._impostors[-1] if full else torch.tensor(-torch.inf, device=self.device)
        fresh = scores[scores > floor]
        if len(fresh) == 0:
            return
        merged = torch.cat((self._impostors, fresh))
        k = min(self.keep_impostors, len(merged))
        self._impostors = torch.topk(merged, k, sorted=True).values  # descending

    def add_distractors(self, distractors: torch.Tensor | np.ndarray) -> None:
        """Scan one (m, D) chunk of distractor embeddings (they match no probe)."""
        block = ensure_embeddings(distractors, "distractors", check_finite=False)  # checked per chunk
        if block.shape[1] != self.dim:
            raise ValueError(f"distractors have dimension {block.shape[1]}, probes {self.dim}")
        for start in range(0, len(block), self.chunk):
            part = ensure_embeddings(block[start : start + self.chunk], f"distractors[{self.num_distractors + start}:]")
            unit = F.normalize(part.to(self.device, torch.float32), dim=1)
            self._scan(unit, None, self.distractor_count)
        self.num_distractors += len(block)
        self.num_impostors += len(self.probes) * len(block)

    def _require_mates(self) -> None:
        missing = int((~self.has_mate).sum())
        if missing:
            first = int((~self.has_mate).nonzero()[0, 0])
            raise ValueError(
                f"{missing} probe(s) have no gallery image of their identity (the first: probe {first}, "
                f"id {self.probe_ids[first]}); closed-set rank-k needs a mate for every probe"
            )

    def ranks(self, with_distractors: bool = True) -> np.ndarray:
        """1-based rank of each probe's best mate (ties with non-mates counted against it)."""
        self._require_mates()
        count = self.gallery_count + (self.distractor_count if with_distractors else 0)
        return (count + 1).cpu().numpy()

    def rank_k(self, ks: Sequence[int] = (1, 5, 10), with_distractors: bool = True) -> dict[int, float]:
        """Fraction of probes with a mate among their ``k`` nearest candidates, for each ``k``."""
        if any(int(k) < 1 for k in ks):
            raise ValueError(f"ranks must be >= 1, got {list(ks)}")
        rank = self.ranks(with_distractors)
        return {int(k): float(np.mean(rank <= k)) for k in ks}

    def tar_at_far(self, far: float | Sequence[float]) -> OperatingPoint | list[OperatingPoint]:
        """Verification between probes and gallery + distractors (MegaFace's "Ver" column).

        Genuine pairs: every (probe, mate) pair; impostor pairs: every (probe, non-mate gallery
        image) and (probe, distractor) pair. Needs ``keep_impostors >= far * impostors + 1``.
        """
        if self.num_impostors == 0:
            raise ValueError("no impostor pair was scanned")
        if not self.keep_impostors:
            raise ValueError("this search kept no impostor scores: create it with keep_impostors > 0")
        return operating_points(self.genuine_scores, self._impostors.double().cpu().numpy(), far, self.num_impostors)

    def open_set(self, far: float = 0.01) -> dict[str, Any]:
        """Open-set DIR at ``far``: probes without a mate are the impostor probes."""
        genuine = self.has_mate
        if not bool(genuine.any()) or bool(genuine.all()):
            raise ValueError("open-set identification needs probes with a gallery mate and probes without one")
        correct = genuine & (self.best_mate > self.best_nonmate)
        genuine_top = torch.where(correct, self.best_mate, torch.tensor(-torch.inf, device=self.device))[genuine]
        impostor_top = self.best_nonmate[~genuine]
        point = operating_points(genuine_top.double().cpu().numpy(), impostor_top.double().cpu().numpy(), far)
        return {
            "dir": point.tar,
            "far": point.far,
            "target_far": point.target_far,
            "threshold": point.threshold,
            "rank1": float(correct[genuine].float().mean()),
            "num_genuine_probes": int(genuine.sum()),
            "num_impostor_probes": int((~genuine).sum()),
        }


def count_mate_pairs(probe_ids: np.ndarray, gallery_ids: np.ndarray) -> int:
    """Number of (probe, gallery image) pairs sharing an identity: the genuine pairs."""
    ids, probe_counts = np.unique(probe_ids, return_counts=True)
    in_probes = np.isin(gallery_ids, ids)
    gallery_counts = np.bincount(np.searchsorted(ids, gallery_ids[in_probes]), minlength=len(ids))
    return int((probe_counts * gallery_counts).sum())


def impostors_to_keep(far: float | Sequence[float], num_impostors: int) -> int:
    """How many of the largest impostor scores an exact TAR at every ``far`` needs (the largest decides)."""
    largest = float(np.max(far))
    return min(int(np.floor(largest * num_impostors * (1 + 1e-9))) + 1, num_impostors)


def open_set_identification(
    probes: Any,
    probe_ids: Any,
    gallery: Any,
    gallery_ids: Any,
    far: float = 0.01,
    chunk: int = 4096,
    probe_chunk: int = 4096,
) -> dict[str, Any]:
    """BLUFR-style open-set identification: DIR at rank 1 and FAR = ``far`` (module docstring).

    Probes whose identity is in ``gallery_ids`` are genuine, the others impostors. Returns dict
    ``dir``, ``far`` (achieved), ``target_far``, ``threshold``, ``rank1`` (closed-set rank-1 of
    the genuine probes), ``num_genuine_probes``, ``num_impostor_probes``.
    """
    search = GallerySearch(probes, probe_ids, gallery, gallery_ids, chunk=chunk, probe_chunk=probe_chunk)
    return search.open_set(far)


def open_set_split(
    identities: Any,
    gallery_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A BLUFR-like open-set split of one labelled image set: ``(gallery, genuine, impostor)`` indices.

    ``round(gallery_fraction * identities)`` identities (at least 1), drawn among those with at
    least two images, go to the gallery with one randomly chosen image each; their other images
    are the genuine probes; every image of the remaining identities is an impostor probe. BLUFR's
    test protocol uses 1,000 of 4,249 identities (about 24%) in the gallery, hence the default.
    """
    ids = np.asarray(identities)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"identities: expected a 1-D integer array, got shape {ids.shape}, dtype {ids.dtype}")
    if not 0 < gallery_fraction < 1:
        raise ValueError(f"gallery_fraction must lie in (0, 1), got {gallery_fraction}")
    unique, counts = np.unique(ids, return_counts=True)
    eligible = unique[counts >= 2]
    wanted = max(1, round(gallery_fraction * len(unique)))
    if len(eligible) < wanted or wanted >= len(unique):
        raise ValueError(
            f"identities: {len(unique)} identities, {len(eligible)} with >= 2 images, cannot put {wanted} "
            "in the gallery and keep at least one impostor identity"
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(eligible, size=wanted, replace=False))
    in_gallery = np.isin(ids, chosen)
    order = rng.permutation(len(ids))
    shuffled_ids, first = np.unique(ids[order], return_index=True)  # a random image of every identity
    gallery_idx = np.sort(order[first[np.isin(shuffled_ids, chosen)]])
    genuine_idx = np.setdiff1d(np.flatnonzero(in_gallery), gallery_idx)
    impostor_idx = np.flatnonzero(~in_gallery)
    return gallery_idx, genuine_idx, impostor_idx
