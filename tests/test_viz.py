"""dbrepro.viz: the plots draw the data they are given, and refuse what they cannot draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import torch  # noqa: E402

from dbrepro.viz import FACE_GAP, FACE_TITLE_SPACE, class_size_histogram, loss_curves, show_faces  # noqa: E402


def history(losses):
    return [{"epoch": e + 1, "loss": v, "seconds": 1.0} for e, v in enumerate(losses)]


def test_loss_curves_draws_every_history_in_its_labels_colour():
    fig = loss_curves({"softmax": history([3.0, 2.0, 1.5]),
                       "CosFace": [history([9.0, 6.0, 5.0]), history([8.0, 6.5, 4.0])]})
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 3
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines[0].get_ydata(), [3.0, 2.0, 1.5])
    np.testing.assert_array_equal(lines[2].get_ydata(), [8.0, 6.5, 4.0])
    assert lines[1].get_color() == lines[2].get_color() != lines[0].get_color()  # one colour per label
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["softmax", "CosFace"]  # each label once
    assert ax.get_ylabel() == "training loss (epoch mean)"
    plt.close(fig)


def test_loss_curves_draws_another_metric_into_a_given_axis():
    fig, ax = plt.subplots()
    records = [{"epoch": 1, "loss": 2.0, "head": 1.5}, {"epoch": 2, "loss": 1.0, "head": 0.5}]
    assert loss_curves({"range loss": records}, ax=ax, metric="head") is fig
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), [1.5, 0.5])
    assert ax.get_ylabel() == "training head"
    plt.close(fig)


@pytest.mark.parametrize(
    "histories, message",
    [
        ({}, "no histories"),
        ({"softmax": []}, "'softmax' has an empty history"),
        ({"softmax": [history([1.0]), []]}, "'softmax' has an empty history"),
        ({"softmax": [{"epoch": 1}]}, "epochs without 'loss'"),
    ],
)
def test_loss_curves_refuses_what_it_cannot_draw(histories, message):
    with pytest.raises(ValueError, match=message):
        loss_curves(histories)
    plt.close("all")


def test_class_size_histogram_counts_identities_and_images_per_bin():
    labels = [0] * 1 + [1] * 1 + [2] * 3 + [3] * 25  # sizes 1, 1, 3, 25
    fig = class_size_histogram(labels, edges=[1, 2, 5, 20, 30])
    ax = fig.axes[0]
    people, images = ax.containers
    assert [b.get_height() for b in people] == [2, 1, 0, 1]
    assert [b.get_height() for b in images] == [2, 3, 0, 25]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2-4", "5-19", "20-29"]
    cut = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(cut) == 1 and cut[0].get_xdata()[0] == 2.5  # between the 5-19 and 20-29 bars
    plt.close(fig)


def test_class_size_histogram_needs_the_cut_among_its_edges():
    with pytest.raises(ValueError, match="tail cut 20 must be one of the bin edges"):
        class_size_histogram([0, 0, 1], edges=[1, 2, 10, 50])


def test_show_faces_puts_every_face_in_its_cell_under_its_title():
    g = torch.Generator().manual_seed(0)
    faces = torch.randint(0, 256, (5, 3, 20, 16), dtype=torch.uint8, generator=g)
    fig = show_faces(faces, [f"face {i}" for i in range(5)], ncols=3, suptitle="five faces")
    (ax,) = fig.axes
    canvas = np.asarray(ax.images[0].get_array())
    h, w = 20, 16
    gap, title_h = max(1, round(w * FACE_GAP)), round(h * FACE_TITLE_SPACE)
    assert canvas.shape == (2 * (title_h + h + gap) - gap, 3 * (w + gap) - gap, 3)
    for i in range(5):
        r, c = divmod(i, 3)
        top, left = r * (title_h + h + gap) + title_h, c * (w + gap)
        assert np.array_equal(canvas[top:top + h, left:left + w], faces[i].permute(1, 2, 0).numpy()), i
    # the sixth cell is empty, the title rows are white
    assert (canvas[title_h + h + gap + title_h:, 2 * (w + gap):] == 255).all()
    assert (canvas[:title_h] == 255).all()
    texts = {t.get_text(): t.get_position() for t in ax.texts}
    assert set(texts) == {f"face {i}" for i in range(5)}
    x4, y4 = texts["face 4"]  # row 1, column 1: centred over its face, inside the title row above it
    assert abs(x4 - ((w + gap) + w / 2 - 0.5)) < 1e-9
    assert (title_h + h + gap) - 0.5 < y4 < (title_h + h + gap) + title_h - 0.5
    assert fig._suptitle.get_text() == "five faces"
    # the faces stay square: the axis has the canvas's aspect
    bbox = ax.get_position()
    fw, fh = fig.get_size_inches()
    assert bbox.width * fw / (bbox.height * fh) == pytest.approx(canvas.shape[1] / canvas.shape[0])
    plt.close(fig)


@pytest.mark.parametrize("images,titles,message", [
    (np.zeros((0, 3, 8, 8), np.uint8), None, "no images"),
    (np.zeros((2, 3, 8, 8), np.uint8), ["one"], "1 titles for 2 images"),
    ([np.zeros((3, 8, 8), np.uint8), np.zeros((3, 9, 8), np.uint8)], None, "images of different sizes"),
    (np.zeros((2, 8, 8, 3), np.uint8), None, "expected an image shaped 3 x H x W"),
])
def test_show_faces_refuses_what_it_cannot_draw(images, titles, message):
    with pytest.raises(ValueError, match=message):
        show_faces(images, titles)
