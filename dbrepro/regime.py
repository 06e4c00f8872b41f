"""Where a world and a recipe sit beside the papers' data, and a map of the DB premise over such regimes.

:func:`regime_table` states the numbers that decide whether a training set behaves like CASIA-WebFace or
MS1MV2: classes per embedding dimension (how much room the prototypes have), how many domains hold fewer
than K classes (whether a tail-domain class must find its K nearest prototypes outside its domain), and
optimisation steps and image presentations per class (how long the heads train).

:func:`premise_map` trains cheap CosFace models over a grid of regimes and measures the premise of DB
§3.1 with the true domains: Spearman(IC, the class's domain frequency), where IC is Eq. 1's inter-class
compactness of the trained prototypes. The DFI can only find tail domains where that correlation is
clearly positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from . import papers

#: the papers' training sets (DB Table 1): classes, images; both trained 15 epochs in batches of 256
PAPER_SETS = {
    "CASIA-WebFace": (papers.CASIA_CLASSES, papers.CASIA_IMAGES),
    "MS1MV2": (papers.MS1MV2_CLASSES, papers.MS1MV2_IMAGES),
}


@dataclass(frozen=True)
class Regime:
    """The numbers of one training set + recipe (``domain_sizes`` None where domains are not labelled)."""

    name: str
    classes: int
    images: int
    embedding_size: int
    k: int
    epochs: int
    batch_size: int
    domain_sizes: tuple[int, ...] | None = None
    final_loss: float | None = None

    def row(self) -> dict[str, Any]:
        steps = self.epochs * self.images / self.batch_size
        domains = "not labelled" if self.domain_sizes is None else len(self.domain_sizes)
        below_k = ("most, by DB Fig. 1 (estimated race x age)" if self.domain_sizes is None
                   else int(sum(n < self.k for n in self.domain_sizes)))
        return {
            "classes": f"{self.classes:,}", "images": f"{self.images:,}", "embedding size D": self.embedding_size,
            "classes per dimension": round(self.classes / self.embedding_size, 1),
            "K of the DFI": self.k, "domains": domains, "domains with fewer than K classes": below_k,
            "median classes per domain / K": "" if self.domain_sizes is None else
            round(float(np.median(self.domain_sizes)) / self.k, 2),
            "optimisation steps": f"{steps:,.0f}", "steps per class": round(steps / self.classes, 2),
            "image presentations per class": round(self.epochs * self.images / self.classes, 1),
            "final training loss (CosFace)": "not reported" if self.final_loss is None else round(self.final_loss, 3),
        }


def paper_regimes() -> list[Regime]:
    """CASIA-WebFace and MS1MV2 as the DB paper trains them (512-D, K = 100 of 10,575 as a share, 15 epochs, 256)."""
    from .recipes import dfi_k

    return [Regime(name, classes, images, papers.EMBEDDING_SIZE, dfi_k(classes), papers.EPOCHS, papers.BATCH_SIZE)
            for name, (classes, images) in PAPER_SETS.items()]


def regime_table(regimes: Iterable[Regime]) -> pd.DataFrame:
    """One column per regime, one row per number (see the module docstring)."""
    regimes = list(regimes)
    return pd.DataFrame({r.name: r.row() for r in regimes})


def ic_domain_correlation(weight: Any, domain_sizes_of_class: Sequence[float], ks: Sequence[int], s: float) -> dict[int, float]:
    """Spearman(IC_K(prototype), the class's domain size) for each K in ``ks`` (DB Eq. 1 on ``weight``)."""
    from scipy.stats import spearmanr

    from .dfi import inter_class_compactness

    out = {}
    for k in ks:
        ic = inter_class_compactness(weight.detach().float().cpu(), k=int(k), s=s).numpy()
        out[int(k)] = float(spearmanr(ic, domain_sizes_of_class).statistic)
    return out


def premise_map(cells: Iterable[dict[str, Any]], train: Callable[[dict[str, Any]], tuple[Any, Any]],
                ks: Sequence[int], s: float) -> pd.DataFrame:
    """For every cell (a dict of the regime's labels), ``train(cell)`` returns ``(prototypes, world)`` of a
    trained model; the result has one row per (cell, K) with Spearman(IC, domain frequency) as ``rho``."""
    from .premises import class_domains

    rows = []
    for cell in cells:
        weight, world = train(cell)
        table = class_domains(world)
        for k, rho in ic_domain_correlation(weight, table["domain_identities"].to_numpy(), ks, s).items():
            rows.append({**cell, "K": k, "rho": rho})
    return pd.DataFrame(rows)


#: the premise map's axes: embedding sizes (classes per dimension) and K (classes per domain relative to K)
MAP_EMBEDDINGS = (8, 16, 32, 64, 128)
MAP_KS = (1, 2, 4, 8, 16, 32, 64)
#: ... and how much an image tells about its identity within a domain: identity spread against nuisance
MAP_SPREADS = (0.5, 1.0, 2.0)
MAP_NUISANCES = (0.35, 0.7, 1.05)
#: suites as small as a world allows: the map needs only the training set's prototypes
_TINY_SUITES = {"lfw_pairs": 20, "cplfw_pairs": 20, "calfw_pairs": 20, "agedb_pairs": 20, "rfw_pairs_per_group": 20,
                "afw_pairs_per_band": 20, "blufr_identities": 2, "blufr_images_per_identity": 2,
                "megaface_identities": 1, "megaface_images_per_identity": 2, "megaface_distractors": 1}


def run_premise_maps(ch: Any, epochs: int | None = None) -> pd.DataFrame:
    """The two premise maps of a chapter's synthetic world (see :func:`premise_map`), cheap CosFace runs
    (one seed, ``epochs``: half the profile's by default) through the run cache.

    ``map="room"``: embedding size x K on the chapter's world; ``map="identity"``: identity spread x nuisance
    (worlds re-rendered with those knobs, tiny test suites), at the profile's embedding size and K. The axes
    are :data:`MAP_EMBEDDINGS`, :data:`MAP_KS`, :data:`MAP_SPREADS` and :data:`MAP_NUISANCES`, or the
    profile's ``premise_map`` where it gives them (the smoke profile's two values per axis).
    """
    from .data import specs
    from .recipes import dfi_k, world_data

    profile, seed = ch.profile, ch.seeds[0]
    epochs = epochs or max(2, profile.epochs // 2)

    def spec(cell: dict[str, Any]) -> dict[str, Any]:
        return ch.data.train_spec if cell["map"] == "room" else world_data(profile, overrides={
            **_TINY_SUITES, "identity_spread": cell["identity_spread"], "nuisance": cell["nuisance"]})

    def config(cell: dict[str, Any]) -> Any:
        return ch.config("cosface", seed=seed, epochs=epochs, milestones=None, data=spec(cell),
                         embedding_size=cell.get("embedding_size", profile.embedding_size))

    def train(cell: dict[str, Any]) -> tuple[Any, Any]:
        from . import experiments

        world = ch.world if cell["map"] == "room" else specs.world_for(spec(cell))
        return experiments.load(ch.train(config(cell))).objective.head.weight, world

    axes = {"embeddings": MAP_EMBEDDINGS, "ks": MAP_KS, "spreads": MAP_SPREADS, "nuisances": MAP_NUISANCES}
    unknown = set(profile.premise_map) - set(axes)
    if unknown:
        raise ValueError(f"profile {profile.name!r}: premise_map has unknown axes {sorted(unknown)}; "
                         f"choose from {sorted(axes)}")
    axes.update(profile.premise_map)
    room_cells = [{"map": "room", "embedding_size": d} for d in axes["embeddings"]]
    identity_cells = [{"map": "identity", "identity_spread": sp, "nuisance": nu}
                      for sp in axes["spreads"] for nu in axes["nuisances"]]
    ch.train_all([config(c) for c in room_cells + identity_cells])  # side by side on the CPU; then cached
    ks = [k for k in axes["ks"] if k < ch.num_classes]
    room = premise_map(room_cells, train, ks, profile.scale)
    k = dfi_k(ch.num_classes)
    identity = premise_map(identity_cells, train, [k], profile.scale)
    sizes = ch.world.domain_table()["identities"]
    room["classes_per_dimension"] = ch.num_classes / room["embedding_size"]
    room["domain_size_over_k"] = float(np.median(sizes)) / room["K"]
    return pd.concat([room, identity], ignore_index=True)


def premise_summary(maps: pd.DataFrame, embedding_size: int, k: int) -> str:
    """One sentence on the maps of :func:`run_premise_maps`: in how many cells the premise's sign holds
    (Spearman(IC, domain frequency) > 0), its largest value and where, and the value nearest the chapter's
    own regime (its embedding size, the map's K nearest to its ``k``). No threshold: the DB paper gives none."""
    if maps.empty:
        return "no premise map was measured"
    best = maps.loc[maps["rho"].idxmax()]
    if best["map"] == "room":
        where = f"the room map, {int(best['embedding_size'])}-D and K = {int(best['K'])}"
    else:
        where = (f"the identity map, identity spread {best['identity_spread']:g} against nuisance "
                 f"{best['nuisance']:g}")
    room = maps[(maps["map"] == "room") & (maps["embedding_size"] == embedding_size)]
    own = ""
    if not room.empty:
        near = room.loc[(room["K"] - k).abs().idxmin()]
        own = f"; at this world's {embedding_size}-D and K = {int(near['K'])} (nearest to its K = {k}): {near['rho']:+.2f}"
    positive = int((maps["rho"] > 0).sum())
    return (f"Spearman(IC, domain frequency) is positive in {positive} of {len(maps)} cells, at most "
            f"{best['rho']:+.2f} (in {where}){own}")


def plot_premise_maps(maps: pd.DataFrame, marks: Sequence[Regime] = ()):
    """The two maps as heat maps of Spearman(IC, domain frequency), the given regimes marked where they sit."""
    import matplotlib.pyplot as plt

    room = maps[maps["map"] == "room"].pivot_table(index="classes_per_dimension", columns="domain_size_over_k",
                                                   values="rho").sort_index(ascending=False)
    room = room[sorted(room.columns)]
    ident = maps[maps["map"] == "identity"].pivot_table(index="identity_spread", columns="nuisance",
                                                        values="rho").sort_index(ascending=False)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.4, 1]})
    for ax, grid, xlabel, ylabel, title in (
            (axes[0], room, "median classes per domain / K", "classes per embedding dimension",
             "room for the prototypes, and K against the domains"),
            (axes[1], ident, "nuisance (per-image variation)", "identity spread",
             "how much an image tells about its identity")):
        im = ax.imshow(grid.to_numpy(), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [f"{v:.2g}" for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{v:.2g}" for v in grid.index])
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=8)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    fig.colorbar(im, ax=axes, shrink=0.8, label="Spearman(IC, domain frequency)")
    rows = list(room.index)
    for r in marks:
        y = r.classes / r.embedding_size
        pos = float(np.interp(-y, [-v for v in rows], range(len(rows))))  # rows descend
        if r.domain_sizes is not None:
            x = float(np.median(r.domain_sizes)) / r.k
            cols = list(room.columns)
            axes[0].plot(np.interp(x, cols, range(len(cols))), pos, "k*", markersize=12)
            axes[0].annotate(r.name, (np.interp(x, cols, range(len(cols))), pos), xytext=(6, 6),
                             textcoords="offset points", fontsize=8)
        else:
            clipped = y > rows[0]
            axes[0].axhline(0 if clipped else pos, color="k", ls="--", lw=1)
            axes[0].annotate(f"{r.name}: {y:.0f} classes/dim{' (above the map)' if clipped else ''}, "
                             "domain sizes unknown", (0, 0 if clipped else pos), xytext=(2, -10),
                             textcoords="offset points", fontsize=7)
    return fig
