"""Closed-set rank-k with distractors, MegaFace-style TAR at FAR, open-set DIR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dbrepro.eval import GallerySearch, open_set_identification, open_set_split, tar_at_far
from dbrepro.eval.identification import count_mate_pairs, impostors_to_keep


def at(*degrees: float) -> torch.Tensor:
    """Unit 2-D vectors at the given angles."""
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1).float()


def random_world(seed: int = 0, p: int = 120, g: int = 80, m: int = 900, d: int = 8):
    gen = torch.Generator().manual_seed(seed)
    gallery_ids = np.arange(g) % 40
    probe_ids = np.random.default_rng(seed).integers(0, 40, p)
    gallery = torch.randn(g, d, generator=gen)
    probes = gallery[[int(np.flatnonzero(gallery_ids == i)[0]) for i in probe_ids]] + torch.randn(p, d, generator=gen)
    distractors = torch.randn(m, d, generator=gen)
    return probes, probe_ids, gallery, gallery_ids, distractors


def rank_k(probes, probe_ids, gallery, gallery_ids, distractors=(), ks=(1, 5, 10), **chunks) -> dict[int, float]:
    """Closed-set rank-k through one GallerySearch, the distractors added chunk by chunk."""
    search = GallerySearch(probes, probe_ids, gallery, gallery_ids, **chunks)
    for chunk in distractors:
        search.add_distractors(chunk)
    return search.rank_k(ks)


def brute_rank_k(probes, probe_ids, gallery, gallery_ids, distractors, ks):
    candidates = F.normalize(torch.cat([gallery, distractors]), dim=1)
    ids = np.concatenate([gallery_ids, np.full(len(distractors), -1)])
    order = (F.normalize(probes, dim=1) @ candidates.T).argsort(dim=1, descending=True).numpy()
    return {k: float(np.mean([(ids[order[i, :k]] == probe_ids[i]).any() for i in range(len(probes))])) for k in ks}


def test_rank_on_a_hand_example() -> None:
    gallery, gallery_ids = at(0, 90), np.array([0, 1])
    probes, probe_ids = at(10, 50), np.array([0, 1])
    distractor = at(45)  # 5 degrees from probe 1, 35 from probe 0
    assert rank_k(probes, probe_ids, gallery, gallery_ids, ks=(1,)) == {1: 1.0}
    assert rank_k(probes, probe_ids, gallery, gallery_ids, [distractor], ks=(1, 2)) == {1: 0.5, 2: 1.0}
    search = GallerySearch(probes, probe_ids, gallery, gallery_ids)
    search.add_distractors(distractor)
    np.testing.assert_array_equal(search.ranks(), [1, 2])
    np.testing.assert_array_equal(search.ranks(with_distractors=False), [1, 1])


def test_rank_k_equals_a_full_sort() -> None:
    probes, probe_ids, gallery, gallery_ids, distractors = random_world()
    assert rank_k(probes, probe_ids, gallery, gallery_ids, [distractors]) == pytest.approx(
        brute_rank_k(probes, probe_ids, gallery, gallery_ids, distractors, ks=(1, 5, 10)))


@pytest.mark.parametrize(("chunk", "probe_chunk"), [(1, 7), (37, 1), (64, 50), (5000, 5000)])
def test_chunking_does_not_change_the_answer(chunk: int, probe_chunk: int) -> None:
    probes, probe_ids, gallery, gallery_ids, distractors = random_world(1)
    whole = rank_k(probes, probe_ids, gallery, gallery_ids, [distractors], chunk=10_000, probe_chunk=10_000)
    chunked = rank_k(probes, probe_ids, gallery, gallery_ids, [distractors], chunk=chunk, probe_chunk=probe_chunk)
    assert chunked == whole


def test_distractors_added_in_chunks_equal_the_whole_tensor() -> None:
    probes, probe_ids, gallery, gallery_ids, distractors = random_world(2)
    as_tensor = rank_k(probes, probe_ids, gallery, gallery_ids, [distractors])
    in_chunks = rank_k(probes, probe_ids, gallery, gallery_ids, distractors.split(100), chunk=33)
    as_array = rank_k(probes, probe_ids, gallery, gallery_ids, [distractors.numpy()])
    assert as_tensor == in_chunks == as_array


def test_ties_with_a_non_mate_count_against_the_probe() -> None:
    gallery, gallery_ids = at(0, 0), np.array([0, 1])  # two identical gallery images
    assert rank_k(at(10), np.array([0]), gallery, gallery_ids, ks=(1,)) == {1: 0.0}


def test_streamed_tar_at_far_equals_the_full_score_matrix() -> None:
    probes, probe_ids, gallery, gallery_ids, distractors = random_world(3)
    fars = [1e-4, 1e-3, 1e-2]
    impostors = len(probes) * (len(gallery) + len(distractors)) - count_mate_pairs(probe_ids, gallery_ids)
    search = GallerySearch(probes, probe_ids, gallery, gallery_ids, keep_impostors=impostors_to_keep(fars, impostors),
                           chunk=100)
    for chunk in distractors.split(300):
        search.add_distractors(chunk)
    assert search.num_impostors == impostors
    scores = F.normalize(probes, dim=1) @ F.normalize(torch.cat([gallery, distractors]), dim=1).T
    ids = np.concatenate([gallery_ids, np.full(len(distractors), -1)])
    same = probe_ids[:, None] == ids[None, :]
    assert search.tar_at_far(fars) == tar_at_far(scores.flatten().numpy(), same.ravel(), fars)


def test_tar_at_far_needs_kept_impostor_scores() -> None:
    probes, probe_ids, gallery, gallery_ids, _ = random_world(4)
    with pytest.raises(ValueError, match="create it with keep_impostors > 0"):
        GallerySearch(probes, probe_ids, gallery, gallery_ids).tar_at_far(1e-3)


def test_bad_inputs_are_named() -> None:
    probes, probe_ids, gallery, gallery_ids, distractors = random_world(5)
    with pytest.raises(ValueError, match="no gallery image of their identity"):
        rank_k(probes, probe_ids + 100, gallery, gallery_ids)
    with pytest.raises(ValueError, match="probe_ids: expected 120 ids"):
        rank_k(probes, probe_ids[:-1], gallery, gallery_ids)
    with pytest.raises(ValueError, match="distractors have dimension 3"):
        rank_k(probes, probe_ids, gallery, gallery_ids, [torch.randn(4, 3)])
    with pytest.raises(ValueError, match=r"probes: expected shape \(N, D\)"):
        rank_k(probes[0], probe_ids, gallery, gallery_ids)


def test_open_set_dir_on_a_hand_example() -> None:
    gallery, gallery_ids = at(0, 90), np.array([0, 1])
    # genuine: id 0 at 20 deg (top-1 right, 0.940), id 1 at 30 deg (top-1 wrong), id 1 at 80 deg (right, 0.985)
    # impostors' top scores: cos 5 = 0.996, cos 15 = 0.966, then two far below
    probes = torch.cat([at(20, 30, 80), at(5, 105, 200, 250)])
    probe_ids = np.array([0, 1, 1, 7, 8, 9, 10])
    result = open_set_identification(probes, probe_ids, gallery, gallery_ids, far=0.25)
    # one impostor (0.996) may pass: the threshold must reject 0.966, so only the 0.985 genuine passes
    assert result["dir"] == pytest.approx(1 / 3)
    assert result["far"] == 0.25
    assert result["threshold"] == pytest.approx(math.cos(math.radians(10)), abs=1e-6)
    assert result["rank1"] == pytest.approx(2 / 3)
    assert (result["num_genuine_probes"], result["num_impostor_probes"]) == (3, 4)
    relaxed = open_set_identification(probes, probe_ids, gallery, gallery_ids, far=0.5)
    assert relaxed["dir"] == pytest.approx(2 / 3)  # the wrong top-1 never counts


def test_open_set_needs_both_kinds_of_probe() -> None:
    with pytest.raises(ValueError, match="probes with a gallery mate and probes without"):
        open_set_identification(at(1, 2), np.array([0, 0]), at(0), np.array([0]))


def test_open_set_split_is_a_blufr_like_partition() -> None:
    ids = np.repeat(np.arange(40), np.random.default_rng(0).integers(1, 6, 40))
    gallery, genuine, impostor = open_set_split(ids, gallery_fraction=0.25, seed=3)
    assert len(gallery) == 10 and len(np.unique(ids[gallery])) == 10  # one image per gallery identity
    assert set(ids[genuine]) <= set(ids[gallery])
    assert not set(ids[impostor]) & set(ids[gallery])
    assert sorted(np.concatenate([gallery, genuine, impostor]).tolist()) == list(range(len(ids)))
    again = open_set_split(ids, gallery_fraction=0.25, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(again, (gallery, genuine, impostor)))
    with pytest.raises(ValueError, match="cannot put"):
        open_set_split(np.arange(10), gallery_fraction=0.5)  # singletons only
