"""Plotting helpers shared by the notebooks (matplotlib only, no global style changes).

Every function draws into a given ``ax`` (or a new figure when none is given) and returns the
figure, so notebooks can compose panels and save them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from .data.splits import PAPER_TAIL_BELOW, class_sizes, size_histogram
from .results import mean_std


#: the white space between two faces of :func:`show_faces`, and above each for its title, as fractions of a face
FACE_GAP = 0.06
FACE_TITLE_SPACE = 0.24


def _as_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A uint8 image 3 x H x W (torch or numpy) as H x W x 3 for ``imshow``."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"expected an image shaped 3 x H x W, got {arr.shape}")
    return np.transpose(arr, (1, 2, 0))


def show_faces(
    images: torch.Tensor | np.ndarray | Sequence,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    size: float = 1.3,
    suptitle: str | None = None,
) -> Figure:
    """A grid of face images (uint8, N x 3 x H x W, all of one size), nearest-neighbour upscaled, optional
    titles above them.

    The grid is one image on one axis, the titles text on it: a figure of 48 faces draws in a fraction of
    the time 48 axes and ``tight_layout`` take (``tests/test_viz.py`` places every face at its cell).
    """
    n = len(images)
    if n == 0:
        raise ValueError("show_faces: no images to show")
    if titles is not None and len(titles) != n:
        raise ValueError(f"show_faces: {len(titles)} titles for {n} images")
    if ncols < 1:
        raise ValueError(f"show_faces: ncols must be >= 1, got {ncols}")
    faces = [_as_hwc(images[i]) for i in range(n)]
    h, w = faces[0].shape[:2]
    if any(f.shape != faces[0].shape for f in faces):
        raise ValueError(f"show_faces: images of different sizes ({sorted({f.shape[:2] for f in faces})})")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    gap = max(1, round(w * FACE_GAP))
    title_h = round(h * FACE_TITLE_SPACE) if titles is not None else 0
    cell_h, cell_w = title_h + h + gap, w + gap
    canvas = np.full((nrows * cell_h - gap, ncols * cell_w - gap, 3), 255, dtype=np.uint8)
    for i, face in enumerate(faces):
        r, c = divmod(i, ncols)
        top, left = r * cell_h + title_h, c * cell_w
        canvas[top:top + h, left:left + w] = face
    width = ncols * size  # inches; the height keeps the faces square
    grid_height, suptitle_height = width * canvas.shape[0] / canvas.shape[1], 0.35 if suptitle else 0.0
    fig = plt.figure(figsize=(width, grid_height + suptitle_height))
    ax = fig.add_axes((0.0, 0.0, 1.0, grid_height / (grid_height + suptitle_height)))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    if titles is not None:
        for i, title in enumerate(titles):
            r, c = divmod(i, ncols)
            ax.text(c * cell_w + w / 2 - 0.5, r * cell_h + title_h * 0.55 - 0.5, title, ha="center", va="center",
                    fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, y=1.0 - 0.05 / fig.get_figheight(), va="top")
    return fig


def class_size_plot(labels: np.ndarray | Sequence[int], cut: int = PAPER_TAIL_BELOW, ax: Axes | None = None) -> Figure:
    """Images per class, classes sorted by size (log y), with the tail cut (Range Loss: < ``cut`` images).

    The title gives the share of classes and of images in the tail, the paper's "tail ratio".
    """
    if len(labels) == 0:
        raise ValueError("class_size_plot: no labels")
    counts = class_sizes(labels)
    counts = np.sort(counts[counts > 0])[::-1]
    fig, ax = _figure(ax, (6.0, 3.2))
    rank = np.arange(1, counts.size + 1)
    tail = counts < cut
    ax.fill_between(rank, counts, step="mid", alpha=0.3, color="tab:blue")
    ax.step(rank, counts, where="mid", color="tab:blue", label="images per identity")
    ax.axhline(cut, color="tab:red", linestyle="--", linewidth=1, label=f"tail: < {cut} images")
    if tail.any():
        ax.axvline(rank[tail][0] - 0.5, color="tab:red", linewidth=0.8, alpha=0.6)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks([t for t in (2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000) if counts.min() <= t <= counts.max() * 1.5])
    ax.set_xlabel("identity rank (largest first)")
    ax.set_ylabel("images")
    ax.set_title(f"{tail.mean():.0%} of {counts.size} identities and {counts[tail].sum() / counts.sum():.0%} "
                 f"of {counts.sum()} images are in the tail", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def class_size_histogram(
    labels: np.ndarray | Sequence[int],
    edges: Sequence[int],
    cut: int = PAPER_TAIL_BELOW,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Identities and images per range of images per identity (side by side, log y), the tail cut dashed.

    ``edges`` are the integer bin edges (a bin is ``[lo, hi)``, as :func:`dbrepro.data.splits.size_histogram`
    counts them); ``cut`` must be one of them. A bin one size wide is labelled by its size, a wider one by
    its first and last size (``"10-19"``).
    """
    edges = [int(e) for e in edges]
    if cut not in edges[:-1]:
        raise ValueError(f"class_size_histogram: the tail cut {cut} must be one of the bin edges {edges[:-1]}")
    hist = size_histogram(labels, bins=edges)
    names = [f"{lo:.0f}" if hi - lo == 1 else f"{lo:.0f}-{hi - 1:.0f}" for lo, hi in zip(hist.min_images, hist.max_images)]
    fig, ax = _figure(ax, (6.0, 3.2))
    x = np.arange(len(hist))
    ax.bar(x - 0.2, hist.identities, 0.4, label="identities", color="tab:blue")
    ax.bar(x + 0.2, hist.images, 0.4, label="images", color="tab:orange")
    ax.axvline(edges.index(cut) - 0.5, color="k", ls="--", lw=1, label=f"tail: < {cut} images")
    ax.set(yscale="log", xticks=x, xlabel="images per identity")
    ax.set_xticklabels(names)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return fig


def domain_frequency_plot(table: pd.DataFrame, ax: Axes | None = None, column: str = "identities") -> Figure:
    """Bars of identities (or images) per domain, most frequent first (the DB paper's Fig. 1)."""
    if "domain" not in table or column not in table:
        raise ValueError(f"domain_frequency_plot: the table needs 'domain' and {column!r} columns")
    t = table.sort_values(column, ascending=False)
    fig, ax = _figure(ax, (6.0, 3.2))
    ax.bar(t["domain"], t[column], color="tab:blue")
    ax.set_ylabel(column)
    ax.set_xlabel("domain (group / age band)")
    ax.tick_params(axis="x", rotation=60, labelsize=8)
    top, low = t[column].iloc[0], t[column].iloc[-1]
    if low > 0:
        ax.set_title(f"most frequent / rarest domain: {top / low:.1f}x", fontsize=9)
    return fig


def _figure(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def category_scatter(
    xy: np.ndarray,
    categories: Sequence,
    order: Sequence | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    size: float = 4.0,
) -> Figure:
    """A 2-D scatter (e.g. a t-SNE map) coloured by a categorical label, one legend entry per value.

    ``order`` fixes the colour order (and legend) of the categories; by default they are sorted.
    """
    xy = np.asarray(xy, dtype=float)
    categories = np.asarray(categories)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"category_scatter: xy must be N x 2, got {xy.shape}")
    if len(categories) != len(xy):
        raise ValueError(f"category_scatter: {len(categories)} categories for {len(xy)} points")
    values = list(order) if order is not None else sorted(set(categories.tolist()))
    missing = sorted(set(categories.tolist()) - set(values), key=str)
    if missing:
        raise ValueError(f"category_scatter: categories {missing} are not in order={values}")
    fig, ax = _figure(ax, (5.0, 4.5))
    colours = plt.get_cmap("tab10")
    for i, value in enumerate(values):
        mask = categories == value
        ax.scatter(xy[mask, 0], xy[mask, 1], s=size, color=colours(i % 10), label=f"{value} ({mask.sum()})",
                   alpha=0.7, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, markerscale=3, frameon=False)
    return fig


def grouped_bars(
    means: pd.DataFrame,
    errors: pd.DataFrame | None = None,
    ax: Axes | None = None,
    ylabel: str = "",
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Bars grouped by the rows of ``means`` (e.g. domains), one bar per column (e.g. method), with
    optional error bars from ``errors`` (same shape), as in the DB paper's Fig. 7."""
    if errors is not None and errors.shape != means.shape:
        raise ValueError(f"grouped_bars: errors has shape {errors.shape}, means {means.shape}")
    fig, ax = _figure(ax, (6.0, 3.4))
    n_rows, n_cols = means.shape
    width = 0.8 / max(1, n_cols)
    x = np.arange(n_rows)
    colours = plt.get_cmap("tab10")
    for j, column in enumerate(means.columns):
        err = None if errors is None else errors[column].to_numpy(dtype=float)
        ax.bar(x + (j - (n_cols - 1) / 2) * width, means[column].to_numpy(dtype=float), width, yerr=err,
               capsize=2, color=colours(j % 10), label=str(column))
    ax.set_xticks(x)
    ax.set_xticklabels([str(i) for i in means.index])
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return fig


def seeds_vs_paper(
    categories: Sequence[str],
    ours: Sequence[Sequence[float]],
    paper: Sequence[float] | None = None,
    ax: Axes | None = None,
    scale: float = 100.0,
    ylabel: str = "accuracy (%)",
    paper_label: str = "paper",
    colour: str = "tab:blue",
) -> Figure:
    """Our metric per category (one dot per seed, mean +- std) beside the paper's values.

    ``ours[i]`` holds the values (e.g. accuracies in [0, 1], times ``scale``) of ``categories[i]`` over
    seeds; a single value gets no error bar. ``paper`` (already in its own units) is drawn as black
    crosses joined by a dashed line on a second y axis: the levels of a small synthetic experiment and
    of the paper's cannot share an axis, only the *shape* across categories compares.
    """
    if len(ours) != len(categories):
        raise ValueError(f"seeds_vs_paper: {len(ours)} value lists for {len(categories)} categories")
    if paper is not None and len(paper) != len(categories):
        raise ValueError(f"seeds_vs_paper: {len(paper)} paper values for {len(categories)} categories")
    fig, ax = _figure(ax, (5.0, 3.4))
    x = np.arange(len(categories))
    means = []
    for i, vals in enumerate(ours):
        v = scale * np.asarray(vals, dtype=float)
        if v.size == 0:
            raise ValueError(f"seeds_vs_paper: no values for {categories[i]!r}")
        ax.scatter(np.full(v.size, x[i]), v, s=14, color=colour, alpha=0.45, zorder=2,
                   label="one seed" if i == 0 else None)
        mean, std = mean_std(v)
        means.append(mean)
        ax.errorbar(x[i], mean, yerr=std, fmt="o", color=colour, capsize=5, zorder=3,
                    label="ours: mean ± std over seeds" if i == 0 else None)
    ax.plot(x, means, color=colour, linewidth=1, alpha=0.6)
    ax.set_xticks(x, categories)
    ax.set_ylabel(f"ours: {ylabel}", color=colour)
    handles, labels = ax.get_legend_handles_labels()
    top = ax
    if paper is not None:
        top = ax.twinx()  # drawn above ax: the legend goes on it, or the paper's line would cross it
        top.plot(x, paper, "x--", color="black", linewidth=1, label=paper_label)
        top.set_ylabel(f"{paper_label}: {ylabel}")
        more_handles, more_labels = top.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    top.legend(handles, labels, fontsize=7, loc="best")
    return fig


def loss_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]]],
    ax: Axes | None = None,
    metric: str = "loss",
    title: str | None = None,
) -> Figure:
    """Training ``metric`` per epoch, as a run's ``metrics()["history"]`` records it, one colour per label.

    ``histories`` maps a label (e.g. a method) to one run's history (a list of per-epoch records, each with
    ``"epoch"`` and ``metric``) or to a list of such histories (one per seed), all drawn in the label's
    colour; the legend names each label once.
    """
    if not histories:
        raise ValueError("loss_curves: no histories")
    fig, ax = _figure(ax, (5.5, 3.4))
    colours = plt.get_cmap("tab10")
    for i, (label, value) in enumerate(histories.items()):
        runs = [value] if value and isinstance(value[0], Mapping) else list(value)
        if not runs or any(len(h) == 0 for h in runs):
            raise ValueError(f"loss_curves: {label!r} has an empty history")
        for j, history in enumerate(runs):
            missing = [k for k in ("epoch", metric) if any(k not in record for record in history)]
            if missing:
                raise ValueError(f"loss_curves: a history of {label!r} has epochs without {missing[0]!r}")
            ax.plot([r["epoch"] for r in history], [r[metric] for r in history], "o-", markersize=3,
                    color=colours(i % 10), alpha=0.8, label=str(label) if j == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel({"loss": "training loss (epoch mean)", "probe_loss": "training loss (end of epoch, fixed probe)"}
                  .get(metric, f"training {metric}"))
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return fig


def identity_map(xy: np.ndarray, labels: Sequence[int], ax: Axes | None = None, title: str | None = None) -> Figure:
    """A 2-D map (e.g. t-SNE) of a few identities drawn as coloured letters, as in Range Loss Fig. 3.

    Identity ``i`` (in order of first appearance) is drawn as the letter ``A + i`` in colour ``tab10[i]``;
    at most 26 identities.
    """
    xy = np.asarray(xy, dtype=float)
    labels = np.asarray(labels)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(labels):
        raise ValueError(f"identity_map: expected xy (N, 2) and N labels, got {xy.shape} and {labels.shape}")
    identities = list(dict.fromkeys(labels.tolist()))
    if len(identities) > 26:
        raise ValueError(f"identity_map: at most 26 identities (letters), got {len(identities)}")
    fig, ax = _figure(ax, (4.0, 4.0))
    colours = plt.cm.tab10(np.arange(len(identities)) % 10)
    for i, identity in enumerate(identities):
        pts = xy[labels == identity]
        for px, py in pts:
            ax.text(px, py, chr(ord("A") + i), color=colours[i], fontsize=8, ha="center", va="center",
                    fontweight="bold")
    pad = 0.05 * (xy.max(axis=0) - xy.min(axis=0) + 1e-9)
    ax.set_xlim(xy[:, 0].min() - pad[0], xy[:, 0].max() + pad[0])
    ax.set_ylim(xy[:, 1].min() - pad[1], xy[:, 1].max() + pad[1])
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def values_by_category(
    values: Sequence[float],
    categories: Sequence,
    order: Sequence,
    ax: Axes | None = None,
    ylabel: str = "",
    title: str | None = None,
) -> Figure:
    """A box per category (in ``order``, outliers not drawn) with every value jittered on top, and the
    count of values under each box (e.g. the DFI of every class, per group, as in DB Fig. 4)."""
    values, categories = np.asarray(values, dtype=float), np.asarray(categories)
    if len(values) != len(categories):
        raise ValueError(f"values_by_category: {len(values)} values for {len(categories)} categories")
    fig, ax = _figure(ax, (5.5, 3.6))
    data = [values[categories == v] for v in order]
    ax.boxplot(data, showfliers=False)
    for i, d in enumerate(data, start=1):
        ax.scatter(np.full(len(d), i) + np.random.default_rng(i).uniform(-0.15, 0.15, len(d)), d, s=4, alpha=0.4)
    ax.set_xticks(range(1, len(order) + 1))
    ax.set_xticklabels([f"{v}\n({(categories == v).sum()} classes)" for v in order])
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def annotated_heatmap(
    table: pd.DataFrame,
    ax: Axes | None = None,
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = None,
    xticklabels: Sequence[str] | None = None,
    yticklabels: Sequence[str] | None = None,
    vmin: float = -1.0,
    vmax: float = 1.0,
) -> Figure:
    """A heat map of a small table (rows down, columns across) with every value written in its cell
    (``+0.00``), on a diverging colour scale from ``vmin`` to ``vmax`` (a correlation by default)."""
    fig, ax = _figure(ax, (6.4, 3.6))
    values = table.to_numpy(dtype=float)
    im = ax.imshow(values, cmap="RdBu_r", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(values.shape[1]), xticklabels if xticklabels is not None else [str(c) for c in table.columns])
    ax.set_yticks(range(values.shape[0]), yticklabels if yticklabels is not None else [str(i) for i in table.index])
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]:+.2f}", ha="center", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax)
    return fig


#: colours of the classes of :func:`margin_regions`, in class order
MARGIN_REGION_COLOURS = ((0.98, 0.82, 0.25), (0.95, 0.55, 0.2), (0.35, 0.6, 0.95))


def margin_regions(
    prototypes: np.ndarray,
    margins: Sequence[float],
    names: Sequence[str],
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Fig. 6 of the DB paper in two dimensions: for every direction on the unit circle, the class whose
    margin condition ``cos theta_i - margins[i] > max_{j != i} cos theta_j`` it satisfies (that class's
    colour; white where none does), with each prototype drawn as an arrow labelled with its margin.

    ``prototypes`` are unit 2-D vectors (C, 2), one per class; ``names[i]`` labels class i (its first
    word is drawn).
    """
    protos = np.asarray(prototypes, dtype=float)
    margins = np.asarray(margins, dtype=float)
    if protos.ndim != 2 or protos.shape[1] != 2 or len(margins) != len(protos) or len(names) != len(protos):
        raise ValueError(f"margin_regions: expected prototypes (C, 2) with C margins and C names, got "
                         f"{protos.shape}, {len(margins)} margins and {len(names)} names")
    if len(protos) > len(MARGIN_REGION_COLOURS):
        raise ValueError(f"margin_regions: at most {len(MARGIN_REGION_COLOURS)} classes, got {len(protos)}")
    fig, ax = _figure(ax, (4.4, 4.4))
    ticks = np.linspace(-1.4, 1.4, 561)
    gx, gy = np.meshgrid(ticks, ticks)
    r, theta = np.hypot(gx, gy), np.arctan2(gy, gx)
    cls = _satisfied_class(theta.ravel(), protos, margins).reshape(theta.shape).astype(float)
    cls[(r < 0.25) | (r > 1.1)] = np.nan
    img = np.ones(cls.shape + (3,))
    for i in range(len(protos)):
        img[cls == i] = MARGIN_REGION_COLOURS[i]
    img[np.isnan(cls)] = 1.0
    ax.imshow(img, origin="lower", extent=(-1.4, 1.4, -1.4, 1.4))
    for i, name in enumerate(names):
        ax.annotate("", xy=protos[i], xytext=(0, 0), arrowprops=dict(arrowstyle="->", color="k"))
        ax.text(*(protos[i] * 1.26), f"{name.split()[0]}\nm={margins[i]:.2f}", ha="center", va="center", fontsize=8)
    ax.set(title=title, aspect="equal", xticks=[], yticks=[])
    return fig


def _satisfied_class(theta: np.ndarray, protos: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """For directions ``theta``, the class whose margin condition holds (-1: none)."""
    x = np.stack([np.cos(theta), np.sin(theta)], -1)
    cos = x @ protos.T
    out = np.full(len(theta), -1)
    for i in range(len(protos)):
        others = np.delete(cos, i, axis=1).max(1)
        out[cos[:, i] - margins[i] > others] = i
    return out
