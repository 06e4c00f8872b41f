"""Results as data: each notebook writes its numbers and its checked claims to ``results.json``.

A claim is one sentence of a paper we can check (``"A-2 beats A-0 with softmax (Table 2)"``), the paper's
value, ours, and a verdict:

``reproduced``       our numbers show the paper's effect beyond the error bars
``not reproduced``   our numbers show the opposite effect beyond the error bars, or no effect where the
                     paper claims a large one
``inconclusive``     the difference lies within the error bars
``not measured``     the notebook could not measure it here (e.g. no data path given)

The book's scorecard page and the tests read these files; nothing scrapes cell output.
Verdicts come from :func:`compare` (mean +- std over seeds) or :func:`compare_intervals` (one seed,
bootstrap intervals), never from hand-written strings.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .paths import atomic_write_json, cache_root

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not measured")
RESULTS_FILE = "results.json"


@dataclass
class Claim:
    id: str
    claim: str
    paper: str
    ours: str
    verdict: str
    section: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.id!r}: verdict must be one of {VERDICTS}, got {self.verdict!r}")


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
        """Record a number (or a small table as a dict/list); returns ``value`` for inline use."""
        self.numbers[name] = _jsonable(value)
        return value

    def claim(self, id: str, claim: str, paper: Any, ours: Any, verdict: str, section: str = "", note: str = "") -> Claim:
        if any(c.id == id for c in self.claims):
            raise ValueError(f"claim id {id!r} recorded twice in {self.notebook}")
        c = Claim(id=id, claim=claim, paper=str(paper), ours=str(ours), verdict=verdict, section=section, note=note)
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
    """All claims of all notebooks as one DataFrame (the scorecard)."""
    import pandas as pd

    rows = [{"notebook": r["notebook"], **c} for r in results for c in r.get("claims", [])]
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


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
