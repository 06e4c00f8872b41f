"""Results as data: each notebook writes its numbers and its checked claims to ``results.json``.

A claim is one sentence of a paper we can check (``"A-2 beats A-0 with softmax (Table 2)"``), the paper's
value, ours, and a verdict:

``reproduced``       our numbers show the paper's effect beyond the error bars
``not reproduced``   our numbers show the opposite effect beyond the error bars, or no effect where the
                     paper claims a large one
``inconclusive``     the difference lies within the error bars
``not measured``     the notebook could not measure it here (e.g. no data path given)

A claim has a ``kind`` (:data:`CLAIM_KINDS`): ``"control"`` for a positive control of the calibration
chapter (a fact every face-recognition study agrees on, ids ``"C1"``, ``"C2"``, ...), ``"paper"`` (the
default) for a claim of one of the two papers, ``"beyond"`` for what the papers did not claim (what only a
world with true domain labels can show). ``needs`` lists the controls a claim depends on: the scorecard
shows "world fails C2" beside a claim that needs C2 when C2 is not reproduced.

The book's scorecard page and the tests read these files; nothing scrapes cell output.
Verdicts come from :func:`compare` (mean +- std over seeds) or :func:`compare_intervals` (one seed,
bootstrap intervals), never from hand-written strings.
"""

from __future__ import annotations

import json
import math
import platform
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .paths import atomic_write_json, cache_root, jsonable

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not measured")
#: What a claim is about: a positive control of the world, a claim of a paper, or beyond the papers.
CLAIM_KINDS = ("control", "paper", "beyond")
RESULTS_FILE = "results.json"
_CONTROL_ID = re.compile(r"^C[1-9][0-9]*$")


@dataclass
class Claim:
    id: str
    claim: str
    paper: str
    ours: str
    verdict: str
    section: str = ""
    note: str = ""
    #: ids of the positive controls this claim depends on ("C1".."C5")
    needs: list[str] = field(default_factory=list)
    #: "control", "paper" or "beyond" (:data:`CLAIM_KINDS`)
    kind: str = "paper"

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.id!r}: verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.kind not in CLAIM_KINDS:
            raise ValueError(f"claim {self.id!r}: kind must be one of {CLAIM_KINDS}, got {self.kind!r}")
        if isinstance(self.needs, str) or not all(isinstance(n, str) and _CONTROL_ID.match(n) for n in self.needs):
            raise ValueError(f"claim {self.id!r}: needs must be a list of control ids like ['C1', 'C2'], "
                             f"got {self.needs!r}")
        self.needs = list(dict.fromkeys(self.needs))
        if self.kind == "control":
            if not _CONTROL_ID.match(self.id):
                raise ValueError(f"claim {self.id!r}: a control's id must be C1, C2, ... (the ids other claims need)")
            if self.needs:
                raise ValueError(f"claim {self.id!r}: a control needs no other control, got needs={self.needs!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Claim":
        """A claim as stored in a ``results.json``; files written before ``needs`` and ``kind`` existed load
        with ``needs=[]`` and ``kind="paper"``. Unknown keys are ignored."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def output_dir(notebook: str, profile: str, given: str | Path | None = None) -> Path:
    """The notebook's output folder: ``given`` (papermill passes one) or a folder in the cache."""
    path = Path(given) if given else cache_root() / "results" / profile / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Results:
    """Collects a notebook's numbers and claims; :meth:`save` writes them atomically."""

    notebook: str
    profile: str
    output_dir: Path
    numbers: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.output_dir = output_dir(self.notebook, self.profile, self.output_dir)

    def add(self, name: str, value: Any) -> Any:
        """Record a number (or a small table: a dict, list, array or DataFrame) as JSON data
        (:func:`dbrepro.paths.jsonable`: NaN and infinities become None); returns ``value`` for inline use."""
        self.numbers[name] = jsonable(value, f"number {name!r}")
        return value

    def claim(
        self,
        id: str,
        claim: str,
        paper: Any,
        ours: Any,
        verdict: str,
        section: str = "",
        note: str = "",
        *,
        needs: Sequence[str] = (),
        kind: str = "paper",
    ) -> Claim:
        """Record a checked claim. ``needs``: the controls it depends on (``["C2"]``); ``kind``: ``"paper"``,
        ``"control"`` (the calibration chapter's C1, C2, ...) or ``"beyond"`` (see the module docstring)."""
        if any(c.id == id for c in self.claims):
            raise ValueError(f"claim id {id!r} recorded twice in {self.notebook}")
        c = Claim(id=id, claim=claim, paper=str(paper), ours=str(ours), verdict=verdict, section=section, note=note,
                  needs=needs if isinstance(needs, str) else list(needs), kind=kind)  # a str is refused, not split
        self.claims.append(c)
        return c

    def save(self) -> Path:
        path = self.output_dir / RESULTS_FILE
        atomic_write_json(
            path,
            {
                "notebook": self.notebook,
                "profile": self.profile,
                "numbers": self.numbers,
                "claims": [asdict(c) for c in self.claims],
                "seconds": round(time.time() - self.started, 2),
                "python": platform.python_version(),
            },
        )
        return path

    def claims_table(self):
        import pandas as pd

        return pd.DataFrame([asdict(c) for c in self.claims], columns=list(Claim.__dataclass_fields__))


def load_results(root: str | Path) -> list[dict[str, Any]]:
    """Every ``results.json`` under ``root`` (one per notebook), sorted by notebook name."""
    out = []
    for path in sorted(Path(root).glob(f"*/{RESULTS_FILE}")):
        try:
            out.append(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    return sorted(out, key=lambda r: r["notebook"])


def claims_frame(results: Iterable[dict[str, Any]]):
    """All claims of all notebooks as one DataFrame (the scorecard); claims written before ``needs`` and
    ``kind`` existed get their defaults (:meth:`Claim.from_dict`)."""
    import pandas as pd

    rows = []
    for r in results:
        for c in r.get("claims", []):
            try:
                rows.append({"notebook": r["notebook"], **asdict(Claim.from_dict(c))})
            except (TypeError, ValueError) as e:
                raise ValueError(f"results of notebook {r.get('notebook')!r}: {e}") from None
    return pd.DataFrame(rows, columns=["notebook", *Claim.__dataclass_fields__])


# -- verdicts -------------------------------------------------------------------------------------

def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fmt_pm(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """``"97.12 ± 0.31"`` for accuracies in [0, 1] (scaled to percent by default)."""
    m, s = mean_std(values)
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}" if len(values) > 1 else f"{m * scale:.{digits}f}"


def compare(a: Sequence[float], b: Sequence[float], expect: str = "greater", z: float = 2.0) -> str:
    """Verdict for the claim "a > b" (``expect="greater"``) or "a < b" (``expect="less"``) over seeds.

    The difference of means is judged against ``z`` standard errors, ``sqrt(var_a/n_a + var_b/n_b)``
    with sample variances (ddof=1). With a single value on either side there is no error bar and the
    verdict is ``inconclusive`` unless the two are identical in the claimed direction's opposite.
    """
    if expect not in ("greater", "less"):
        raise ValueError(f"expect must be 'greater' or 'less', got {expect!r}")
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return "inconclusive"
    diff = a.mean() - b.mean()
    if expect == "less":
        diff = -diff
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    if se == 0.0:
        return "reproduced" if diff > 0 else ("not reproduced" if diff < 0 else "inconclusive")
    if diff > z * se:
        return "reproduced"
    if diff < -z * se:
        return "not reproduced"
    return "inconclusive"


def verdict_all(*verdicts: str) -> str:
    """The verdict of a claim that needs every one of several conditions.

    ``not reproduced`` if any condition is contradicted, ``reproduced`` if all hold, otherwise
    ``inconclusive`` (``not measured`` counts as inconclusive when mixed with measured ones).

    >>> verdict_all("reproduced", "not reproduced"), verdict_all("reproduced", "inconclusive")
    ('not reproduced', 'inconclusive')
    """
    if not verdicts:
        raise ValueError("verdict_all needs at least one verdict")
    for v in verdicts:
        if v not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {v!r}")
    if "not reproduced" in verdicts:
        return "not reproduced"
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if all(v == "not measured" for v in verdicts):
        return "not measured"
    return "inconclusive"


def compare_intervals(diff_low: float, diff_high: float, expect: str = "greater") -> str:
    """Verdict from a (bootstrap) confidence interval of ``a - b``: reproduced when it excludes 0 on the claimed side."""
    if expect == "less":
        diff_low, diff_high = -diff_high, -diff_low
    if diff_low > 0:
        return "reproduced"
    if diff_high < 0:
        return "not reproduced"
    return "inconclusive"
