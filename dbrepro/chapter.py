"""One call sets a chapter up: profile, device, seeds, results file, banner, and the data it reads.

Every chapter starts with::

    ch = chapter.setup("db-05-ablation", PROFILE, seed=SEED, device=DEVICE, output_dir=OUTPUT_DIR,
                       data_root=CASIA_ROOT, dataset="casia")
    ch                  # shows the banner: which profile and which data the page's numbers come from

and then uses ``ch.profile``, ``ch.device``, ``ch.seeds`` (the profile's seeds shifted by ``SEED``),
``ch.data`` (a :class:`~dbrepro.data.sources.DataSource`: the synthetic world in the smoke and cpu
profiles, the user's InsightFace folder in the paper profile, never the one in place of the other),
``ch.suites(...)``, ``ch.claim(...)`` and ``ch.save()``. Helpers several chapters share live here too, so
no chapter redefines them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from . import recipes
from .banner import Banner, banner
from .config import Profile, get_profile, resolve_device
from .data import sources
from .data.sources import DataSource
from .results import Results, compare, compare_intervals, fmt_pm, verdict_all

#: the verification suites of the papers' average column (DB Tables 2 and 6), in the order the papers print
HARD_SUITES = ("lfw", "calfw", "cplfw", "agedb")
#: how the papers name the benchmarks our suites stand in for
SUITE_TITLES = {"lfw": "LFW", "calfw": "CALFW", "cplfw": "CPLFW", "agedb": "AgeDB", "rfw": "RFW", "afw": "AFW",
                "blufr": "BLUFR", "megaface": "MegaFace", "cfp_fp": "CFP-FP"}


@dataclass
class Comparison:
    """The verdict of "A beats B" (or "A is below B") with the numbers and the error bar it rests on."""

    verdict: str
    #: our numbers, as a claim's "ours" column shows them
    ours: str
    #: which error bar decided the verdict
    error_bar: str


@dataclass
class Chapter:
    """What a chapter needs, built by :func:`setup`."""

    name: str
    profile: Profile
    device: torch.device
    seeds: list[int]
    results: Results
    data: DataSource
    #: what ``setup`` was asked to read: "casia", "ms1mv2", "synthetic" or "lfw"
    dataset: str = "casia"
    started: float = field(default_factory=time.perf_counter)

    @property
    def banner(self) -> Banner:
        return banner(self.profile.name, self.profile.numbers_meaningful, self.data.description)

    def _repr_html_(self) -> str:
        return self.banner._repr_html_()

    def _repr_markdown_(self) -> str:
        return self.banner._repr_markdown_()

    def __repr__(self) -> str:
        return repr(self.banner)

    @property
    def world(self) -> Any:
        """The synthetic world (what only it has: true domains, nuisances), or None on real data."""
        return self.data.world

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def suites(self, names: Iterable[str] = HARD_SUITES) -> dict[str, Any]:
        """The evaluation suites ``names`` the chapter's data has (name -> suite), in that order."""
        return self.data.suites(names)

    def config(self, recipe: str, **kw: Any):
        """The config of ``recipe`` (:data:`dbrepro.recipes.RECIPES`) on the chapter's data and profile."""
        return recipes.on_data(recipe, self.profile, kw.pop("data", self.data.train_spec), lambda: self.num_classes, **kw)

    def train(self, cfg: Any, label: str | None = None):
        """The complete run of ``cfg``: from the run cache, or trained on the chapter's device."""
        from . import experiments

        return experiments.train(cfg, device=self.device, num_workers=self.profile.num_workers, label=label)

    def train_all(self, cfgs: Any) -> Any:
        """The complete runs of many configs: a dict of configs gives a dict of runs (same keys), a list a
        list. The runs not in the cache train ``profile.train_jobs`` at a time on the CPU
        (:func:`dbrepro.experiments.train_many`)."""
        from . import experiments

        configs = list(cfgs.values()) if isinstance(cfgs, dict) else list(cfgs)
        runs = experiments.train_many(configs, device=self.device, jobs=self.profile.train_jobs,
                                      num_workers=self.profile.num_workers)
        return dict(zip(cfgs, runs)) if isinstance(cfgs, dict) else runs

    def evaluate(self, run: Any, suites: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Evaluation results of a complete run on ``suites`` (cached in the run folder)."""
        from . import experiments

        return experiments.evaluate(run, suites, device=self.device)

    def grid(self, cells: Iterable[dict[str, Any]], suites: dict[str, Any], **kw: Any):
        """:func:`dbrepro.grid.run_grid` on the chapter's device: one row per (cell, suite)."""
        from .grid import run_grid

        return run_grid(cells, suites, device=str(self.device), num_workers=self.profile.num_workers,
                        jobs=self.profile.train_jobs, **kw)

    def compare(self, table: Any, a: dict[str, Any], b: dict[str, Any], suites: dict[str, Any],
                expect: str = "greater", names: tuple[str, str] | None = None) -> Comparison:
        """Is configuration ``a`` above (``expect="greater"``) or below (``"less"``) ``b`` on the mean accuracy
        over ``suites``? ``a`` and ``b`` select rows of a grid ``table`` (e.g. ``{"method": "RBM"}``).

        With two or more training seeds on each side: mean ± std over seeds of the per-seed average, judged
        at two standard errors (:func:`dbrepro.results.compare`). With one run per side (the paper profile's
        norm): a paired bootstrap over the test pairs of the two models (95 %,
        :func:`dbrepro.eval.paired_bootstrap`). ``Comparison.error_bar`` says which.
        """
        names = names or (", ".join(map(str, a.values())), ", ".join(map(str, b.values())))
        rows = [_select(table, where).query("suite in @suites_", local_dict={"suites_": list(suites)})
                for where in (a, b)]
        for where, r in zip((a, b), rows):
            if r.empty:
                raise ValueError(f"no rows of the table match {where} on suites {list(suites)}")
        per_seed = [r.groupby("seed")["accuracy"].mean().to_dict() for r in rows]
        if min(len(v) for v in per_seed) >= 2:
            va, vb = (list(v.values()) for v in per_seed)
            return Comparison(compare(va, vb, expect), f"{names[0]} {fmt_pm(va)} vs {names[1]} {fmt_pm(vb)}",
                              f"mean ± std over {len(va)} training seeds; two standard errors")
        correct = [[], []]
        for side, r in enumerate(rows):
            if r["run"].nunique() != 1:
                raise ValueError(f"{(a, b)[side]}: a single-run comparison needs one run per side, got "
                                 f"{r['run'].nunique()}")
            correct[side] = self._held_out_correct(r["run"].iloc[0], suites)
        from .eval import paired_bootstrap

        boot = paired_bootstrap(*correct)
        folds = [s.folds for s in suites.values()]
        means = [100 * float(np.mean([_fold_mean(c, f) for c, f in zip(side, folds)])) for side in correct]
        ours = (f"{names[0]} {means[0]:.2f} vs {names[1]} {means[1]:.2f}: {100 * boot['difference']:+.2f} points, "
                f"95% interval [{100 * boot['low']:+.2f}, {100 * boot['high']:+.2f}]")
        return Comparison(compare_intervals(boot["low"], boot["high"], expect), ours,
                          f"one training run each; 95% paired bootstrap over {boot['pairs']:,} test pairs")

    def _held_out_correct(self, run_key: str, suites: dict[str, Any]) -> list[np.ndarray]:
        from .eval import held_out_correct
        from .runs import find_run

        results = self.evaluate(find_run(run_key), suites)
        return [held_out_correct(results[n]["scores"], s.issame, s.folds) for n, s in suites.items()]

    def claim(self, id: str, claim: str, paper: Any, ours: Any = None, verdict: str | None = None, *,
              comparison: Comparison | None = None, **kw: Any):
        """Record a checked claim (see :meth:`dbrepro.results.Results.claim`); with ``comparison``, its
        numbers, verdict and error bar (as the note) are used."""
        if comparison is not None:
            ours, verdict = comparison.ours, comparison.verdict
            kw["note"] = "; ".join(filter(None, [kw.get("note", ""), f"error bar: {comparison.error_bar}"]))
        if ours is None or verdict is None:
            raise ValueError(f"claim {id!r}: give ours and verdict, or a comparison")
        return self.results.claim(id, claim, paper, ours, verdict, **kw)

    def add(self, name: str, value: Any) -> Any:
        """Record a number or a small table; returns ``value``."""
        return self.results.add(name, value)

    def save(self) -> None:
        """Write the chapter's results file, with its running time and the data its numbers come from
        (``data``: what was asked, what was read, as the banner says it), and say so in one line."""
        self.results.add("seconds", round(time.perf_counter() - self.started, 1))
        self.results.add("data", {"dataset": self.dataset, "kind": self.data.kind, "description": self.data.description})
        self.results.save()
        n, m = len(self.results.claims), len(self.results.numbers)
        print(f"{self.name}: {n} claim{'s' * (n != 1)} and {m} number{'s' * (m != 1)} recorded "
              f"in {self.results.numbers['seconds']:.0f} s")


def setup(name: str, profile: str | Profile, *, seed: int = 0, device: str = "auto", output_dir: str | None = None,
          data_root: str | None = None, dataset: str = "casia") -> Chapter:
    """Set up chapter ``name``: resolve the profile and device, shift the profile's seeds by ``seed``, open
    the results file (``output_dir``, or the cache when run by hand) and open the chapter's data.

    ``dataset`` says what the chapter reads:

    - ``"casia"`` / ``"ms1mv2"``: the profile's synthetic world in the smoke and cpu profiles; in the profiles
      that need real data (``paper``, ``rehearsal``) the InsightFace folder ``data_root`` of CASIA-WebFace or
      MS1MV2, and without it a clear error, never a fallback to synthetic data;
    - ``"synthetic"``: a synthetic world in every profile (a chapter about the world itself; the real-data
      profiles show the cpu world, the rehearsal profile its own);
    - ``"lfw"``: LFW from ``data_root`` in every profile (:func:`dbrepro.data.sources.lfw`; the profiles whose
      numbers mean nothing train on its people with at least 20 images), or no data when it is not given.
    """
    p = get_profile(profile)
    if dataset == "lfw":
        from .data.splits import PAPER_TAIL_BELOW

        data = sources.lfw(data_root, p.image_size, min_images=1 if p.numbers_meaningful else PAPER_TAIL_BELOW)
    elif dataset == "synthetic":
        world_profile = p if not p.needs_data_path else ("rehearsal" if p.name == "rehearsal" else "cpu")
        world_profile = get_profile(world_profile).replace(needs_data_path=False)
        data = sources.synthetic(recipes.world_data(world_profile))
    elif dataset not in sources.DATASETS:
        raise ValueError(f"{name}: unknown dataset {dataset!r}: choose casia, ms1mv2, synthetic or lfw")
    elif p.needs_data_path:
        if data_root is None:
            raise ValueError(
                f"{name}: the {p.name} profile reads real data: give the chapter its {sources.DATASETS[dataset]} "
                f"folder (the book passes $DBREPRO_{dataset.upper()}; see the README's paper-scale section)")
        data = sources.insightface(data_root, dataset, image_size=p.image_size)
    else:
        data = sources.synthetic(recipes.world_data(p))
    return Chapter(name=name, profile=p, device=resolve_device(device), seeds=[seed + s for s in p.seeds],
                   results=Results(name, p.name, output_dir), data=data, dataset=dataset)


# -- helpers several chapters share -----------------------------------------------------------------------

def _fold_mean(correct: np.ndarray, folds: np.ndarray) -> float:
    """The 10-fold protocol's accuracy from per-pair correctness: the mean over folds of each fold's mean."""
    return float(np.mean([correct[folds == f].mean() for f in np.unique(folds)]))


def _select(table: Any, where: dict[str, Any]) -> Any:
    mask = np.ones(len(table), dtype=bool)
    for k, v in where.items():
        mask &= (table[k] == v).to_numpy()
    return table[mask]


def seed_values(table: Any, metric: str = "accuracy", **where: Any) -> list[float]:
    """``metric`` of the grid rows matching ``where``, one value per seed in seed order."""
    from .grid import values

    return values(table, metric, **where)


def suite_average(table: Any, suites: Sequence[str] = HARD_SUITES, by: str = "method",
                  metric: str = "accuracy") -> dict[Any, list[float]]:
    """``by`` -> per-seed mean of ``metric`` over ``suites`` (the papers' "Average" column, per seed first)."""
    wide = table.pivot_table(index=[by, "seed"], columns="suite", values=metric)
    return wide[list(suites)].mean(axis=1).groupby(level=0).apply(list).to_dict()


def greater(a: Sequence[float], b: Sequence[float]) -> str:
    """Verdict of "a > b" over seeds (:func:`dbrepro.results.compare`)."""
    return compare(a, b, "greater")


__all__ = ["Chapter", "HARD_SUITES", "SUITE_TITLES", "fmt_pm", "greater", "seed_values", "setup", "suite_average",
           "verdict_all"]
