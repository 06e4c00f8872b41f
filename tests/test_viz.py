"""dbrepro.viz: the plots draw the data they are given, and refuse what they cannot draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dbrepro.viz import class_size_histogram, loss_curves  # noqa: E402


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
