"""Embedding images and evaluating whole suites."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dbrepro.data.base import AllVsAllSuite, DistractorSource, IdentificationSuite, PairSuite
from dbrepro.eval import (
    GallerySearch,
    embed,
    embed_chunks,
    embed_with_aux,
    evaluate_suite,
    keep_rendered_distractors,
    pair_scores,
    verification,
)


def linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def random_images(n: int, seed: int = 0, size: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def one_hot_images(positions: list[list[int]], size: int = 8) -> torch.Tensor:
    """Black images with the listed flat pixel positions (of 3 * size * size) at 255."""
    flat = torch.zeros(len(positions), 3 * size * size, dtype=torch.uint8)
    for row, pos in enumerate(positions):
        flat[row, pos] = 255
    return flat.view(-1, 3, size, size)


def lift(x: torch.Tensor) -> torch.Tensor:
    """A model for one-hot images: -1 background -> 0, so pixel p lit gives 2 at coordinate p."""
    return x.flatten(1) + 1


def test_embed_equals_the_model_on_normalised_images() -> None:
    model, images = linear_model(), random_images(10)
    expected = model((images.float() / 255 - 0.5) / 0.5)
    out = embed(model, images, batch_size=3)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == (10, 5)
    torch.testing.assert_close(out, expected.detach())


def test_flip_adds_the_embedding_of_the_mirrored_image() -> None:
    model, images = linear_model(), random_images(6)
    plain = embed(model, images)
    mirrored = embed(model, images.flip(3))
    torch.testing.assert_close(embed(model, images, flip=True, batch_size=4), plain + mirrored)
    symmetric = one_hot_images([[0, 7], [9, 14]])  # each row is its own mirror image
    torch.testing.assert_close(embed(lift, symmetric, flip=True), 2 * embed(lift, symmetric))


def test_embed_restores_training_mode_and_runs_without_gradients() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 4), nn.Dropout(0.5))
    model.train()
    out = embed(model, random_images(8))
    assert model.training and not out.requires_grad
    torch.testing.assert_close(out, embed(model, random_images(8)))  # dropout was off


def test_embed_chunks_is_lazy_and_equal_to_embed() -> None:
    model, images = linear_model(), random_images(9)
    chunks = embed_chunks(model, (images[i : i + 4] for i in range(0, 9, 4)))
    torch.testing.assert_close(torch.cat(list(chunks)), embed(model, images))


def test_embed_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="uint8 tensor"):
        embed(linear_model(), torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="model output"):
        embed(lambda x: x, random_images(2))
    with pytest.raises(ValueError, match="0 images"):
        embed(linear_model(), random_images(0))


def test_embed_with_aux_returns_the_rbm_gate_and_the_backbone_embedding() -> None:
    from dbrepro.models import build_model

    torch.manual_seed(0)
    model = build_model("small", embedding_size=8, image_size=16, rbm="soft")
    with torch.no_grad():  # a residual that is not zero, so x_re differs from x
        model.rbm.residual[-1].weight.normal_()
        model.rbm.gate.weight.normal_()
    model.train()
    images = random_images(7, size=16)
    emb, aux = embed_with_aux(model, images, batch_size=3)
    assert model.training and sorted(aux) == ["gate", "pre_rbm"]
    assert emb.shape == (7, 8) and aux["pre_rbm"].shape == (7, 8) and aux["gate"].shape == (7,)
    torch.testing.assert_close(emb, embed(model, images))
    model.eval()
    with torch.no_grad():
        x = (images.float() / 255 - 0.5) / 0.5
        pre = model.backbone(x)
        gate = torch.nn.functional.softplus(model.rbm.gate(pre)).squeeze(1)
        expected = pre + gate[:, None] * model.rbm.residual(pre)  # DB Eq. 3, by hand
    torch.testing.assert_close(aux["pre_rbm"], pre)
    torch.testing.assert_close(aux["gate"], gate)
    torch.testing.assert_close(emb, expected)
    _, aux = embed_with_aux(build_model("small", embedding_size=8, image_size=16, rbm="ungated"), images)
    assert list(aux) == ["pre_rbm"]
    _, aux = embed_with_aux(build_model("small", embedding_size=8, image_size=16), images)
    assert aux == {}


def test_embed_with_aux_rejects_a_model_without_aux() -> None:
    with pytest.raises(TypeError):
        embed_with_aux(linear_model(), random_images(2))  # nn.Sequential takes no return_aux
    with pytest.raises(ValueError, match=r"return_aux=True\) must return"):
        embed_with_aux(lambda x, return_aux: x.flatten(1), random_images(2))
    with pytest.raises(ValueError, match="one row per image"):
        embed_with_aux(lambda x, return_aux: (x.flatten(1), {"gate": torch.zeros(1)}), random_images(2))


def test_kept_distractors_are_rendered_once_and_unchanged() -> None:
    calls = []

    def render(start: int, stop: int) -> torch.Tensor:
        calls.append((start, stop))
        return random_images(stop - start, seed=start)

    suite = IdentificationSuite(name="mf", probes=random_images(2), probe_ids=np.array([0, 1]),
                                gallery=random_images(2, seed=1), gallery_ids=np.array([0, 1]),
                                distractors=DistractorSource(10, render))
    kept = keep_rendered_distractors(suite)
    first = [c.clone() for c in kept.distractors.chunks(4)]
    again = list(kept.distractors.chunks(4))
    assert calls == [(0, 4), (4, 8), (8, 10)] and len(kept.distractors) == 10
    for a, b, c in zip(first, again, suite.distractors.chunks(4)):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert kept.probes is suite.probes and suite.distractors.render is render  # the original is untouched
    plain = PairSuite(name="p", images=random_images(4), pairs=np.array([[0, 1]] * 10),
                      issame=np.ones(10, bool), folds=np.arange(10))
    assert keep_rendered_distractors(plain) is plain


def test_pair_suite_known_answer_and_scores() -> None:
    # identities 0..9 light pixel i; pair k compares image 2k with 2k+1, same identity when k is even
    positions, issame = [], []
    for k in range(20):
        same = k % 2 == 0
        positions += [[k % 10], [k % 10 if same else (k + 1) % 10]]
        issame.append(same)
    suite = PairSuite(
        name="toy", images=one_hot_images(positions), pairs=np.arange(40).reshape(20, 2),
        issame=np.array(issame), folds=np.repeat(np.arange(10), 2), stands_for="LFW",
    )
    result = evaluate_suite(lift, suite)
    assert (result["suite"], result["kind"], result["stands_for"]) == ("toy", "pairs", "LFW")
    np.testing.assert_allclose(result["scores"], np.where(issame, 1.0, 0.0), atol=1e-6)
    assert result["accuracy"] == 1.0 and result["std"] == 0.0
    assert result["thresholds"] == pytest.approx([0.5] * 10)


def test_pair_suite_uses_the_suite_folds() -> None:
    rng = np.random.default_rng(0)
    images = random_images(60, seed=1)
    pairs = rng.integers(0, 60, size=(50, 2))
    issame = rng.random(50) < 0.5
    folds = rng.permutation(np.repeat(np.arange(10), 5))
    suite = PairSuite(name="p", images=images, pairs=pairs, issame=issame, folds=folds)
    model = linear_model()
    result = evaluate_suite(model, suite)
    expected = verification(pair_scores(embed(model, images), pairs), issame, fold_ids=folds)
    np.testing.assert_allclose(result["fold_accuracies"], expected["fold_accuracies"])


def test_all_vs_all_known_answers() -> None:
    ids = np.repeat(np.arange(120), 2)  # orthogonal identities, two identical images each
    suite = AllVsAllSuite(name="blufr", images=one_hot_images([[int(i)] for i in ids]), identities=ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unmeasurable FARs are skipped, not warned about
        result = evaluate_suite(lift, suite)
    assert (result["num_genuine"], result["num_impostors"]) == (120, 28560)
    assert result["tar_at_far"] == {1e-4: 1.0, 1e-3: 1.0, 1e-2: 1.0}  # 1e-5 < 1/28560: absent
    assert result["auc"] == 1.0 and result["eer"] == 0.0
    open_set = result["open_set"]
    assert (open_set["num_genuine_probes"], open_set["num_impostor_probes"]) == (30, 180)
    assert open_set["dir"] == 1.0 and open_set["far"] == 0.0


def test_all_vs_all_too_small_for_open_set() -> None:
    ids = np.repeat(np.arange(6), 2)
    suite = AllVsAllSuite(name="tiny", images=one_hot_images([[int(i)] for i in ids]), identities=ids)
    result = evaluate_suite(lift, suite)
    assert result["open_set"] is None and "impostor probes" in result["open_set_skipped"]
    assert result["num_impostors"] == 60 and result["tar_at_far"] == {}  # FAR 1e-2 needs 100


def test_identification_suite_known_answer() -> None:
    # gallery: identity i lights pixel i; probes light i and (dimly) 50 + i; distractor j < 5
    # lights j and 50 + j, so it is nearer to the probes of identity j than their gallery image
    gallery = one_hot_images([[i] for i in range(10)])
    probe_flat = one_hot_images([[i % 10] for i in range(20)]).view(20, -1)
    probe_flat[torch.arange(20), 50 + torch.arange(20) % 10] = 128
    distractors = DistractorSource(5, lambda a, b: one_hot_images([[j, 50 + j] for j in range(a, b)]))
    suite = IdentificationSuite(
        name="megaface", probes=probe_flat.view(20, 3, 8, 8), probe_ids=np.arange(20) % 10,
        gallery=gallery, gallery_ids=np.arange(10), distractors=distractors,
    )
    result = evaluate_suite(lift, suite)
    assert result["rank1_no_distractors"] == 1.0 and result["rank5_no_distractors"] == 1.0
    assert result["rank1"] == 0.5 and result["rank5"] == 1.0
    assert result["num_distractors"] == 5 and result["tar_at_far"] == {}  # 280 impostor pairs


def test_identification_suite_with_a_million_impostor_pairs_matches_one_search_of_all_distractors() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 8))
    torch.manual_seed(0)
    gallery, probes = random_images(50, seed=1), random_images(100, seed=2)
    render = lambda a, b: random_images(10_000, seed=3)[a:b]  # noqa: E731 - deterministic
    suite = IdentificationSuite(
        name="m", probes=probes, probe_ids=np.arange(100) % 50, gallery=gallery, gallery_ids=np.arange(50),
        distractors=DistractorSource(10_000, render),
    )
    result = evaluate_suite(model, suite)  # distractors embedded and scanned chunk by chunk
    p, g, d = embed(model, probes), embed(model, gallery), embed(model, random_images(10_000, seed=3))
    impostors = 100 * 10_050 - 100  # every probe has one mate among the 50 gallery images
    search = GallerySearch(p, suite.probe_ids, g, suite.gallery_ids, keep_impostors=impostors // 10**6 + 1)
    search.add_distractors(d)
    assert (result["rank1"], result["rank5"]) == (search.rank_k((1, 5))[1], search.rank_k((1, 5))[5])
    assert result["num_impostors"] == search.num_impostors == impostors
    assert result["tar_at_far"] == {1e-6: search.tar_at_far(1e-6).tar}


def test_unknown_suite_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected a PairSuite"):
        evaluate_suite(lift, pd.DataFrame())
