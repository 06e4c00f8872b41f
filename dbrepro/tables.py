"""Small tables the chapters show: a metric of several methods over training seeds; what a sampler feeds;
the scorecard's claims, controls and verdict counts (HTML that fits the text column).

>>> seeds_table({"softmax": {0: 0.80, 1: 0.78}, "range": {0: 0.70, 1: 0.74}})  # doctest: +NORMALIZE_WHITESPACE
         seed 0  seed 1  mean       std  seeds     mean ± std
method
softmax    80.0    78.0  79.0  1.414214      2  79.00 ± 1.41
range      70.0    74.0  72.0  2.828427      2  72.00 ± 2.83
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Iterable, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from .data.splits import PAPER_TAIL_BELOW, class_sizes
from .results import fmt_pm, mean_std


def seeds_table(
    values: Mapping[str, Mapping[Hashable, float]], *, scale: float = 100.0, digits: int = 2
) -> pd.DataFrame:
    """One row per method: its metric for every seed, the mean, the std over seeds and ``"mean ± std"``.

    Parameters
    ----------
    values
        ``{method: {seed: value}}``, e.g. LFW accuracies in [0, 1]. Methods keep their order; the
        seed columns are the union of all seeds, sorted (a seed a method lacks is NaN).
    scale
        Factor applied to every number (100 shows accuracies in percent).
    digits
        Decimals of the ``"mean ± std"`` column (:func:`dbrepro.results.fmt_pm`).

    Returns
    -------
    DataFrame indexed by ``method`` with columns ``seed <s>`` ..., ``mean``, ``std`` (sample std,
    ddof=1, as :func:`dbrepro.results.compare` uses; NaN with a single seed, which has no error bar),
    ``seeds`` (how many) and ``mean ± std`` (text).
    """
    if not values:
        raise ValueError("seeds_table: no methods given")
    seeds: set[Any] = set()
    for method, per_seed in values.items():
        if not isinstance(per_seed, Mapping) or not per_seed:
            raise ValueError(f"seeds_table: method {method!r} needs a non-empty {{seed: value}} mapping, got {per_seed!r}")
        for seed, v in per_seed.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(float(v)):
                raise ValueError(f"seeds_table: method {method!r}, seed {seed!r}: expected a finite number, got {v!r}")
        seeds.update(per_seed)
    try:
        order = sorted(seeds)
    except TypeError:
        raise ValueError(f"seeds_table: seeds must be mutually comparable (e.g. all ints), got {list(seeds)!r}") from None

    rows = {}
    for method, per_seed in values.items():
        row: dict[str, Any] = {f"seed {s}": float(per_seed[s]) * scale if s in per_seed else np.nan for s in order}
        sample = [float(v) for v in per_seed.values()]
        mean, std = mean_std(sample)
        row.update({"mean": mean * scale, "std": std * scale if len(sample) > 1 else np.nan, "seeds": len(sample),
                    "mean ± std": fmt_pm(sample, scale=scale, digits=digits)})
        rows[method] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


class EpochSampler(Protocol):
    """A batch sampler as :mod:`dbrepro.data.samplers` defines them: ``set_epoch(e)``, then batches of indices."""

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterable[Any]: ...


def sampler_coverage(
    sampler: EpochSampler, labels: Any, epochs: int, tail_below: int = PAPER_TAIL_BELOW
) -> dict[str, float]:
    """What a batch sampler feeds the network over ``epochs`` epochs, as shares in [0, 1].

    Returns
    -------
    ``people drawn``
        identities with at least one image drawn, over all identities in ``labels``;
    ``images drawn``
        images drawn at least once, over all images;
    ``repeated slots``
        batch slots holding an image already in the same batch (P x K batches repeat the images
        of a person with fewer than K), over all slots;
    ``one-image people's slots``
        slots holding the image of a person who has only one;
    ``head slots``
        slots holding an image of a head person (``tail_below`` images or more; 20 in Range Loss §3.1).
    """
    labels = np.asarray(labels)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"sampler_coverage: epochs must be a positive integer, got {epochs!r}")
    batches = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches.extend(np.asarray(b, dtype=np.int64) for b in sampler)
    if not batches:
        raise ValueError("sampler_coverage: the sampler yielded no batch")
    slots = np.concatenate(batches)
    if slots.size and (slots.min() < 0 or slots.max() >= len(labels)):
        raise ValueError(f"sampler_coverage: the sampler drew indices outside [0, {len(labels)}) of labels")
    sizes = class_sizes(labels)
    size_of_slot = sizes[labels[slots]]
    present = np.count_nonzero(sizes)
    return {
        "people drawn": len(np.unique(labels[slots])) / present,
        "images drawn": len(np.unique(slots)) / len(labels),
        "repeated slots": sum(len(b) - len(np.unique(b)) for b in batches) / len(slots),
        "one-image people's slots": float(np.mean(size_of_slot == 1)),
        "head slots": float(np.mean(size_of_slot >= tail_below)),
    }


# -- the scorecard ---------------------------------------------------------------------------------
#
# HTML tables with inline styles (they look the same in JupyterLab and on the site) that wrap inside the
# text column: a fixed layout over the column's full width, long words broken anywhere, one table per part
# of the book, a chapter's name once per group of its claims, verdicts coloured.

#: Text and background colour of each verdict (GitHub's success / danger / attention / muted palettes).
VERDICT_COLOURS = {
    "reproduced": ("#1a7f37", "#dafbe1"),
    "not reproduced": ("#cf222e", "#ffebe9"),
    "inconclusive": ("#9a6700", "#fff8c5"),
    "not measured": ("#57606a", "#eaeef2"),
}
#: The scorecard's part for claims of kind "beyond", whatever chapter they come from.
BEYOND_PART = "Beyond the papers"

_TABLE_STYLE = "table-layout: fixed; width: 100%; border-collapse: collapse; font-size: 0.9em;"
_CELL_STYLE = ("vertical-align: top; text-align: left; padding: 0.3em 0.45em; white-space: normal; "
               "overflow-wrap: anywhere; word-break: normal; border-bottom: 1px solid #d0d7de;")


class Html:
    """HTML that a notebook displays as such (``_repr_html_``); ``str()`` is the markup."""

    def __init__(self, markup: str) -> None:
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup

    def __str__(self) -> str:
        return self.markup


def _esc(value: Any) -> str:
    import html

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value))


def _html_table(header: list[str], rows: list[list[str]], widths: list[str], css_class: str) -> Html:
    """``rows`` are lists of ready ``<td ...>...</td>`` cells (a row may have fewer: rowspans)."""
    cols = "".join(f'<col style="width: {w};">' for w in widths)
    head = "".join(f'<th style="{_CELL_STYLE} border-bottom: 2px solid #57606a;">{h}</th>' for h in header)
    body = "".join(f"<tr>{''.join(r)}</tr>" for r in rows)
    return Html(f'<table class="dbrepro-table {css_class}" style="{_TABLE_STYLE}"><colgroup>{cols}</colgroup>'
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _td(content: str, style: str = "", rowspan: int = 1) -> str:
    span = f' rowspan="{rowspan}"' if rowspan > 1 else ""
    return f'<td{span} style="{_CELL_STYLE} {style}">{content}</td>'


def verdict_badge(verdict: str, caveats: Iterable[str] = ()) -> str:
    """A verdict in its colour, with caveats (``"world fails C2"``) on a line below it."""
    fg, bg = VERDICT_COLOURS.get(verdict, ("#24292f", "#ffffff"))
    badge = (f'<span class="dbrepro-verdict" style="color: {fg}; background: {bg}; font-weight: 600; '
             f'padding: 0.05em 0.3em; border-radius: 0.3em; overflow-wrap: normal;">{_esc(verdict)}</span>')
    notes = "".join(f'<br><span class="dbrepro-caveat" style="color: #cf222e; font-size: 0.85em;">{_esc(c)}</span>'
                    for c in caveats)
    return badge + notes


def control_verdicts(claims: pd.DataFrame) -> dict[str, str]:
    """``{"C1": verdict, ...}`` from the claims of kind ``"control"``; a control reported by several chapters
    gets :func:`dbrepro.results.verdict_all` of their verdicts (one failure fails it)."""
    from .results import verdict_all

    controls = claims[claims["kind"] == "control"] if len(claims) else claims
    return {cid: verdict_all(*group["verdict"]) for cid, group in controls.groupby("id", sort=True)}


def control_caveats(needs: Iterable[str], verdicts: Mapping[str, str]) -> list[str]:
    """What a claim's verdict rests on that does not hold, one phrase per control it needs: ``"world fails
    C2"`` (C2 not reproduced), ``"C3 inconclusive"``, ``"C4 not measured"``, ``"C5 not checked"`` (no chapter
    reported C5); nothing for a control that is reproduced."""
    out = []
    for cid in needs:
        verdict = verdicts.get(cid)
        if verdict is None:
            out.append(f"{cid} not checked")
        elif verdict == "not reproduced":
            out.append(f"world fails {cid}")
        elif verdict != "reproduced":
            out.append(f"{cid} {verdict}")
    return out


def scorecard_parts(claims: pd.DataFrame, part_of: Mapping[str, str], parts_in_order: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """The claims that are not controls, grouped as the scorecard shows them: ``[(part, rows), ...]``.

    A claim of kind ``"beyond"`` goes to :data:`BEYOND_PART` (last); every other claim to its chapter's
    part of the table of contents (``part_of[notebook]``), parts in ``parts_in_order``, then parts the toc
    does not know, sorted. Within a part, rows keep their order (the chapters' order in the results).
    """
    if not len(claims):
        return []
    rest = claims[claims["kind"] != "control"]
    part = rest["notebook"].map(lambda n: part_of.get(n, "Not in the table of contents"))
    part = part.where(rest["kind"] != "beyond", BEYOND_PART)
    present = list(dict.fromkeys(part))
    order = [p for p in parts_in_order if p in present and p != BEYOND_PART]
    order += sorted(p for p in present if p not in order and p != BEYOND_PART)
    order += [BEYOND_PART] if BEYOND_PART in present else []
    return [(p, rest[part == p]) for p in order]


def claims_table(rows: pd.DataFrame, verdicts: Mapping[str, str], chapter_order: Sequence[str] = ()) -> Html:
    """One part's claims: chapter (a link, once per chapter), claim (with its paper section), the paper's
    value, ours, and the verdict in its colour with the failing controls it needs beside it."""
    rank = {n: i for i, n in enumerate(chapter_order)}
    notebooks = sorted(dict.fromkeys(rows["notebook"]), key=lambda n: (rank.get(n, len(rank)), n))
    body = []
    for notebook in notebooks:
        group = rows[rows["notebook"] == notebook]
        for i, (_, c) in enumerate(group.iterrows()):
            cells = []
            if i == 0:
                cells.append(_td(f'<a href="{_esc(notebook)}.html">{_esc(notebook)}</a>', rowspan=len(group)))
            section = f'<br><span style="color: #57606a; font-size: 0.85em;">{_esc(c["section"])}</span>' if c["section"] else ""
            cells += [_td(_esc(c["claim"]) + section), _td(_esc(c["paper"])), _td(_esc(c["ours"])),
                      _td(verdict_badge(c["verdict"], control_caveats(c["needs"] or [], verdicts)))]
            body.append(cells)
    return _html_table(["chapter", "claim", "paper", "ours", "verdict"], body,
                       ["14%", "34%", "16%", "17%", "19%"], "dbrepro-claims")


def controls_table(claims: pd.DataFrame) -> Html:
    """The positive controls C1, C2, ...: what each checks, the threshold, ours, the verdict, and how many
    claims of the book need it ("needed by")."""
    controls = claims[claims["kind"] == "control"]
    needed = {}
    for needs in claims.loc[claims["kind"] != "control", "needs"]:
        for cid in needs or []:
            needed[cid] = needed.get(cid, 0) + 1
    body = []
    for _, c in controls.sort_values("id", key=lambda s: s.str[1:].astype(int), kind="stable").iterrows():
        body.append([_td(f"<strong>{_esc(c['id'])}</strong>"), _td(_esc(c["claim"])), _td(_esc(c["paper"])),
                     _td(_esc(c["ours"])), _td(verdict_badge(c["verdict"])), _td(str(needed.get(c["id"], 0)))])
    return _html_table(["control", "what every study agrees on", "threshold", "ours", "verdict", "needed by"],
                       body, ["10%", "31%", "16%", "15%", "16%", "12%"], "dbrepro-controls")


def verdict_counts_table(rows: Sequence[Mapping[str, Any]], first: str = "chapter") -> Html:
    """Counts per verdict, one row per ``rows`` entry (``{first: ..., "claims": n, <verdict>: n, ...}``);
    the verdict columns' headings in their colours."""
    from .results import VERDICTS

    header = [first, "claims"] + [verdict_badge(v) for v in VERDICTS]
    body = [[_td(_esc(r[first])), _td(_esc(r["claims"]))] + [_td(_esc(r.get(v, 0))) for v in VERDICTS] for r in rows]
    return _html_table(header, body, ["24%", "12%", "16%", "16%", "16%", "16%"], "dbrepro-counts")


# -- Part I (Range Loss) -------------------------------------------------------------------------------

#: what each verification suite varies, as the Range Loss chapters label their columns ("{}": the benchmark)
SUITE_LABELS = {"lfw": "{}", "cplfw": "cross-pose ({})", "calfw": "cross-age ({})", "agedb": "cross-age ({})",
                "cfp_fp": "frontal-profile ({})", "blufr": "{} (all vs all)"}


def suite_labels(names: Iterable[str], synthetic: bool) -> dict[str, str]:
    """Column labels of the verification suites ``names``: the benchmark each stands for (``"-like"`` on a
    synthetic world: ``"LFW-like"``, ``"cross-pose (CPLFW-like)"``), and what it varies.

    >>> suite_labels(["lfw", "cplfw"], synthetic=True)
    {'lfw': 'LFW-like', 'cplfw': 'cross-pose (CPLFW-like)'}
    """
    from .chapter import SUITE_TITLES

    like = "-like" if synthetic else ""
    out = {}
    for name in names:
        if name not in SUITE_TITLES:
            raise KeyError(f"suite_labels: no benchmark is known for suite {name!r}; known: {', '.join(SUITE_TITLES)}")
        out[name] = SUITE_LABELS.get(name, "{}").format(SUITE_TITLES[name] + like)
    return out
