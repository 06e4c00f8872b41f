"""The folder protocol: pairs drawn from a labelled folder (balanced, seeded, LFW pairs.txt round trip) and rank-1.

Folders are real image files written here (JPEG, PNG, greyscale PNG and JPEG, two sizes). Identity ``k``
lights cell ``k`` of a 4 x 4 grid, so a model that average-pools the grid is a perfect face recogniser.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dbrepro.data.formats import FormatError, ImageDecodeError, read_lfw_pairs
from dbrepro.eval import evaluate_suite
from dbrepro.eval.folder_protocol import (
    FOLDS,
    MAX_PAIRS,
    HeldDistractors,
    _matched,
    draw_pairs,
    folder_protocol,
    identification_split,
    pairs_text,
    read_pairs,
    write_pairs,
)
from dbrepro.experiments import suite_digest

#: images per identity of the test folder: 6 with two or more images, 2 with one (distractors)
SIZES = {"alice": 5, "bob": 4, "carol": 4, "dave": 3, "erin": 3, "frank": 2, "grace": 1, "heidi": 1}
#: one file kind per image, cycled: (extension, Pillow mode, side in pixels)
KINDS = [(".jpg", "RGB", 32), (".png", "RGB", 64), (".png", "L", 32), (".jpeg", "L", 64)]


def labels_of(sizes) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def lit_cell(identity: int, side: int, mode: str, rng: np.random.Generator) -> Image.Image:
    """A dark ``side`` square with cell ``identity`` of a 4 x 4 grid bright, plus a little noise."""
    cell = side // 4
    pixels = rng.integers(0, 20, (side, side)).astype(np.uint8)
    r, c = divmod(identity, 4)
    pixels[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = 235 + rng.integers(0, 20, (cell, cell))
    if mode == "L":
        return Image.fromarray(pixels, mode="L")
    tint = (pixels // 2 + np.where(pixels > 128, 100, 0)).astype(np.uint8)
    return Image.fromarray(np.stack([pixels, tint, pixels], axis=2), mode="RGB")


def write_folder(root: Path, sizes: dict[str, int] = SIZES) -> Path:
    rng = np.random.default_rng(0)
    n = 0
    for identity, (name, count) in enumerate(sizes.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            ext, mode, side = KINDS[n % len(KINDS)]
            lit_cell(identity, side, mode, rng).save(root / name / f"{name}_{i + 1:04d}{ext}", quality=92)
            n += 1
    return root


class CellModel(nn.Module):
    """The mean of each cell of the 4 x 4 grid, shifted to be >= 0: one-hot-like per identity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x.mean(dim=1, keepdim=True), x.shape[-1] // 4).flatten(1) + 1.0


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_folder(tmp_path / "photos")


# -- the pairs, from labels alone --------------------------------------------------------------------

def test_pairs_are_balanced_per_fold_distinct_and_true_to_the_labels():
    labels = labels_of([7, 1, 5, 2, 9, 1, 1, 4, 3, 6])
    pairs = draw_pairs(labels, max_pairs=160)
    m = pairs.per_fold
    assert m == 8 and len(pairs) == 2 * FOLDS * m  # 160 // 20; the labels allow 92 // 10 = 9
    assert draw_pairs(labels).per_fold == 9
    for f in range(FOLDS):
        block = slice(2 * m * f, 2 * m * (f + 1))
        assert (pairs.folds[block] == f).all()
        assert pairs.issame[block].tolist() == [True] * m + [False] * m  # LFW View 2: matched, then mismatched
    a, b = pairs.pairs.T
    assert np.array_equal(labels[a] == labels[b], pairs.issame) and (a < b).all()
    assert len({tuple(p) for p in pairs.pairs}) == len(pairs)


def test_the_draw_is_deterministic_and_seeded():
    labels = labels_of([7, 1, 5, 2, 9, 1, 1, 4, 3, 6])
    first, again, other = draw_pairs(labels, seed=3), draw_pairs(labels, seed=3), draw_pairs(labels, seed=4)
    assert np.array_equal(first.pairs, again.pairs) and np.array_equal(first.folds, again.folds)
    assert not np.array_equal(first.pairs, other.pairs)


def test_as_many_pairs_as_the_labels_allow_up_to_lfw_view_2():
    many = labels_of(np.random.default_rng(0).integers(1, 40, 400))
    assert len(draw_pairs(many)) == MAX_PAIRS and draw_pairs(many).per_fold == 300
    # 10 + 10 matched pairs possible: all of them, 2 a fold; 25 mismatched possible, 20 drawn
    exact = labels_of([5, 5])
    pairs = draw_pairs(exact)
    assert pairs.per_fold == 2
    assert {tuple(p) for p in pairs.pairs[pairs.issame]} == {
        (a, b) for a, b in itertools.combinations(range(10), 2) if exact[a] == exact[b]}
    # 20 mismatched pairs possible (an identity of 10 against one of 2), 46 matched: every mismatched pair
    lopsided = labels_of([10, 2])
    drawn = draw_pairs(lopsided)
    assert {tuple(p) for p in drawn.pairs[~drawn.issame]} == {(a, b) for a in range(10) for b in (10, 11)}


def test_one_image_identities_give_only_mismatched_pairs():
    labels = labels_of([6, 1, 1, 1, 1, 5, 1, 4])
    singles = np.flatnonzero(np.isin(labels, [1, 2, 3, 4, 6]))
    pairs = draw_pairs(labels)
    with_single = np.isin(pairs.pairs, singles).any(axis=1)
    assert with_single.any() and not pairs.issame[with_single].any()


def test_matched_pair_numbers_decode_exactly_in_a_large_identity():
    n = 300_000  # 4.5e10 pairs: the row is found from a square root, then corrected
    ranks = np.concatenate((np.arange(5), np.random.default_rng(0).integers(0, n * (n - 1) // 2, 2000),
                            n * (n - 1) // 2 - np.arange(1, 6)))
    a, b = _matched(ranks, np.array([0]), np.array([n])).T
    assert (0 <= a).all() and (a < b).all() and (b < n).all()
    assert np.array_equal(a * (2 * n - a - 1) // 2 + (b - a - 1), ranks)  # the inverse of the row-major order


@pytest.mark.parametrize("sizes, message", [
    ([5, 1, 1, 1], "1 of 4 identities hold two or more images"),
    ([1, 1, 1], "0 of 3 identities hold two or more images"),
    ([2, 2, 2], "3 matched and 12 mismatched pairs possible; 10 folds need at least 10 of each"),
])
def test_too_small_label_sets_are_refused(sizes, message):
    with pytest.raises(ValueError, match=message):
        draw_pairs(labels_of(sizes), where="photos")


def test_identification_split_takes_the_first_image_of_each_identity():
    split = identification_split(labels_of([3, 1, 2, 1]))
    assert split.gallery.tolist() == [0, 4] and split.probes.tolist() == [1, 2, 5]
    assert split.distractors.tolist() == [3, 6]
    with pytest.raises(ValueError, match="1 of 3 identities hold two or more images"):
        identification_split(labels_of([3, 1, 1]))


# -- a folder of real files ---------------------------------------------------------------------------

def test_written_pairs_are_an_lfw_pairs_file_that_reads_back_to_the_same_pairs(folder, tmp_path):
    protocol = folder_protocol(folder, image_size=32)
    path = write_pairs(tmp_path / "pairs.txt", protocol.pairs, protocol.folder)
    lines = path.read_text().splitlines()
    m = protocol.pairs.per_fold
    assert m == 2 and lines[0] == f"10\t{m}" and len(lines) == 1 + 2 * FOLDS * m
    # every line names files of the folder by 1-based number in file-name order, as LFW does
    df = read_lfw_pairs(path, folder, check_files=False)
    paths = protocol.folder.paths
    for (a, b), row in zip(protocol.pairs.pairs, df.itertuples()):
        assert Path(paths[a]).name.startswith(f"{row.name_a}_{row.index_a:04d}.")
        assert Path(paths[b]).name.startswith(f"{row.name_b}_{row.index_b:04d}.")
    assert np.array_equal(df["issame"], protocol.pairs.issame) and np.array_equal(df["fold"], protocol.pairs.folds)
    back = read_pairs(path, protocol.folder)
    assert np.array_equal(back.pairs, protocol.pairs.pairs) and np.array_equal(back.folds, protocol.pairs.folds)
    reused = folder_protocol(folder, image_size=32, pairs_file=path)
    assert suite_digest(reused.verification) == suite_digest(protocol.verification)  # the cache serves it again


def test_a_perfect_model_gets_accuracy_1_and_rank1_1(folder):
    protocol = folder_protocol(folder, image_size=32)
    assert protocol.verification.images.shape[1:] == (3, 32, 32)  # 64 px and greyscale files alike
    pairs = evaluate_suite(CellModel(), protocol.verification)
    assert pairs["accuracy"] == 1.0 and pairs["n_pairs"] == 40 and len(pairs["fold_accuracies"]) == FOLDS
    ident = evaluate_suite(CellModel(), protocol.identification)
    assert ident["num_gallery"] == 6 and ident["num_probes"] == 15 and ident["num_distractors"] == 2
    assert ident["rank1"] == 1.0 and ident["rank1_no_distractors"] == 1.0


def test_a_model_that_sees_no_identity_is_at_chance(folder):
    protocol = folder_protocol(folder, image_size=32)
    blind = lambda x: torch.ones(len(x), 4)  # noqa: E731  every image the same embedding
    assert evaluate_suite(blind, protocol.verification)["accuracy"] == 0.5
    assert evaluate_suite(blind, protocol.identification)["rank1"] == 0.0  # ties count against the mate


def test_identification_gallery_is_the_first_file_and_distractors_are_the_one_image_people(folder):
    protocol = folder_protocol(folder, image_size=32)
    paths = [Path(p) for p in protocol.folder.paths]
    gallery = [paths[i] for i in protocol.split.gallery]
    assert [(p.parent.name, p.stem) for p in gallery] == [(n, f"{n}_0001") for n, c in SIZES.items() if c >= 2]
    assert sorted(paths[i].parent.name for i in protocol.split.distractors) == ["grace", "heidi"]
    assert len(protocol.split.probes) == sum(c - 1 for c in SIZES.values() if c >= 2)


def test_a_changed_distractor_changes_the_suite_digest(folder):
    protocol = folder_protocol(folder, image_size=32)
    images = protocol.identification.distractors.images.clone()
    images[-1] = 255 - images[-1]
    changed = dataclasses.replace(protocol.identification, distractors=HeldDistractors(images))
    assert suite_digest(changed) != suite_digest(protocol.identification)


def test_a_folder_with_one_identity_of_two_images_is_refused(tmp_path):
    root = write_folder(tmp_path / "few", {"alice": 4, "bob": 1, "carol": 1})
    with pytest.raises(ValueError, match=f"{root}: 1 of 3 identities hold two or more images"):
        folder_protocol(root, image_size=32)


def test_an_unreadable_image_is_named(folder):
    broken = folder / "bob" / "bob_0002.png"
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated PNG
    with pytest.raises(ImageDecodeError, match=str(broken)):
        folder_protocol(folder, image_size=32)


@pytest.mark.parametrize("line, message", [
    ("frank\t1\t3", "image 3 of 'frank', but {root}/frank holds 2 image\\(s\\)"),
    ("zoe\t1\t2", "'zoe' is not an identity folder of {root}"),
    ("frank\t2\t2", "a matched pair of image 2 of 'frank' with itself"),
])
def test_a_pairs_file_naming_images_the_folder_lacks_is_refused(folder, tmp_path, line, message):
    protocol = folder_protocol(folder, image_size=32)
    lines = pairs_text(protocol.pairs, protocol.folder).splitlines()
    lines[1] = line
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=f"{path}, line 2: " + message.format(root=folder)):
        folder_protocol(folder, image_size=32, pairs_file=path)


def test_a_mismatched_pair_of_one_identity_is_refused(folder, tmp_path):
    protocol = folder_protocol(folder, image_size=32)
    lines = pairs_text(protocol.pairs, protocol.folder).splitlines()
    row = 1 + protocol.pairs.per_fold  # the first mismatched line
    lines[row] = "alice\t1\talice\t2"
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=f"line {row + 1}: a mismatched pair names one identity twice"):
        read_pairs(path, protocol.folder)


def test_a_name_the_lfw_format_cannot_write_is_named(tmp_path):
    root = write_folder(tmp_path / "spaces", {"ann lee": 6, "bo": 6})
    protocol = folder_protocol(root, image_size=32)
    with pytest.raises(ValueError, match="ann lee: the identity folder's name holds white space"):
        pairs_text(protocol.pairs, protocol.folder)
