"""Claims with a kind and the controls they need; the scorecard's grouping, caveats and tables; the
scorecard notebook with and without control results (on a temporary book, smoke profile)."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
from book_helpers import ROOT, notebook_md, run_cli, write_book

from dbrepro.results import CLAIM_KINDS, Claim, Results, claims_frame, load_results
from dbrepro.tables import (BEYOND_PART, VERDICT_COLOURS, claims_table, control_caveats, control_verdicts,
                            controls_table, scorecard_parts, verdict_counts_table)

# -- Claim.needs and Claim.kind ---------------------------------------------------------------------


def test_claims_carry_kind_and_needs_and_old_files_still_load(tmp_path):
    r = Results("ch", "smoke", tmp_path / "ch")
    r.claim("a2-beats-a0", "A-2 beats A-0", "98.25 vs 97.87", "90.1 vs 90.0", "inconclusive", needs=["C1", "C2", "C1"])
    r.claim("dfi-ranks-domains", "IC ranks classes by domain frequency", "-", "+0.41", "reproduced", kind="beyond")
    r.save()
    old = tmp_path / "old" / "results.json"  # written before needs and kind existed
    old.parent.mkdir()
    old.write_text(json.dumps({"notebook": "old", "profile": "smoke", "numbers": {}, "claims": [
        {"id": "x", "claim": "c", "paper": "1", "ours": "2", "verdict": "reproduced", "section": "", "note": ""}]}))
    frame = claims_frame(load_results(tmp_path))
    assert list(frame.columns) == ["notebook", "id", "claim", "paper", "ours", "verdict", "section", "note", "needs", "kind"]
    rows = {r.id: r for r in frame.itertuples()}
    assert rows["a2-beats-a0"].needs == ["C1", "C2"] and rows["a2-beats-a0"].kind == "paper"  # duplicates dropped
    assert rows["dfi-ranks-domains"].kind == "beyond" and rows["dfi-ranks-domains"].needs == []
    assert rows["x"].needs == [] and rows["x"].kind == "paper"


@pytest.mark.parametrize(
    "kwargs, message",
    [({"kind": "baseline"}, f"kind must be one of {CLAIM_KINDS}"),
     ({"needs": "C2"}, "needs must be a list of control ids"),
     ({"needs": ["C2", "margins"]}, "needs must be a list of control ids"),
     ({"kind": "control", "id": "margins-help"}, "a control's id must be C1, C2"),
     ({"kind": "control", "id": "C2", "needs": ["C1"]}, "a control needs no other control")],
)
def test_bad_kind_or_needs_are_refused_naming_the_claim(kwargs, message):
    fields = {"id": "a", "claim": "c", "paper": "1", "ours": "2", "verdict": "reproduced", **kwargs}
    with pytest.raises(ValueError, match=re.escape(f"claim {fields['id']!r}: {message}")):
        Claim(**fields)


def test_a_damaged_stored_claim_names_its_notebook():
    with pytest.raises(ValueError, match="results of notebook 'ch': claim 'x': kind must be one of"):
        claims_frame([{"notebook": "ch", "claims": [{"id": "x", "claim": "c", "paper": "", "ours": "",
                                                      "verdict": "reproduced", "kind": "other"}]}])


# -- grouping, caveats, tables ------------------------------------------------------------------------


def frame(*rows):
    base = {"section": "", "note": "", "needs": [], "kind": "paper", "paper": "p", "ours": "o"}
    return pd.DataFrame([{**base, **r} for r in rows])


CLAIMS = frame(
    {"notebook": "calibration", "id": "C2", "claim": "margins help", "verdict": "not reproduced", "kind": "control"},
    {"notebook": "calibration", "id": "C1", "claim": "converged", "verdict": "reproduced", "kind": "control"},
    {"notebook": "calibration", "id": "C3", "claim": "difficulty order", "verdict": "inconclusive", "kind": "control"},
    {"notebook": "rl-02", "id": "a2", "claim": "A-2 beats A-0", "verdict": "reproduced", "needs": ["C1"]},
    {"notebook": "rl-02", "id": "a4", "claim": "A-4 worst", "verdict": "not reproduced", "needs": ["C1", "C2"]},
    {"notebook": "db-07", "id": "dbm", "claim": "DB beats CosFace", "verdict": "inconclusive", "needs": ["C3", "C5"]},
    {"notebook": "db-02", "id": "map", "claim": "the premise's map", "verdict": "reproduced", "kind": "beyond"},
    {"notebook": "lfw", "id": "lfw", "claim": "<b>LFW</b> & tail", "verdict": "not measured"},
)
PART_OF = {"calibration": "How this book works", "rl-02": "Part I — Range Loss", "db-07": "Part II — Domain Balancing",
           "db-02": "Part II — Domain Balancing", "lfw": "Real data"}
PARTS = ["Introduction", "How this book works", "Part I — Range Loss", "Part II — Domain Balancing", "Real data", "Results"]


def test_control_verdicts_and_caveats():
    verdicts = control_verdicts(CLAIMS)
    assert verdicts == {"C1": "reproduced", "C2": "not reproduced", "C3": "inconclusive"}
    assert control_caveats(["C1"], verdicts) == []
    assert control_caveats(["C1", "C2", "C3", "C5"], verdicts) == ["world fails C2", "C3 inconclusive", "C5 not checked"]
    twice = pd.concat([CLAIMS, frame({"notebook": "other", "id": "C1", "claim": "c", "verdict": "not reproduced",
                                      "kind": "control"})])
    assert control_verdicts(twice)["C1"] == "not reproduced"  # one chapter's failure fails the control
    assert control_verdicts(CLAIMS.iloc[0:0]) == {}


def test_claims_are_grouped_by_part_with_the_beyond_claims_last_and_no_controls():
    parts = scorecard_parts(CLAIMS, PART_OF, PARTS)
    assert [(name, list(rows["id"])) for name, rows in parts] == [
        ("Part I — Range Loss", ["a2", "a4"]), ("Part II — Domain Balancing", ["dbm"]), ("Real data", ["lfw"]),
        (BEYOND_PART, ["map"])]
    assert scorecard_parts(CLAIMS.iloc[0:0], PART_OF, PARTS) == []


def test_claims_table_names_each_chapter_once_colours_verdicts_and_escapes_text():
    rows = dict(scorecard_parts(CLAIMS, PART_OF, PARTS))
    html = claims_table(rows["Part I — Range Loss"], control_verdicts(CLAIMS), ["rl-02"])._repr_html_()
    assert html.count('<a href="rl-02.html">rl-02</a>') == 1 and 'rowspan="2"' in html
    assert "table-layout: fixed; width: 100%" in html and html.count("<col ") == 5
    fg, bg = VERDICT_COLOURS["not reproduced"]
    assert f"color: {fg}; background: {bg}" in html and "world fails C2" in html
    assert html.index("A-2 beats A-0") < html.index("A-4 worst")
    assert "part" not in html.split("</thead>")[0]  # no part column: a table per part
    lfw = claims_table(rows["Real data"], {}, [])._repr_html_()
    assert "&lt;b&gt;LFW&lt;/b&gt; &amp; tail" in lfw and "<b>LFW" not in lfw


def test_controls_table_in_id_order_with_how_many_claims_need_each():
    html = str(controls_table(CLAIMS))
    assert html.index(">C1<") < html.index(">C2<") < html.index(">C3<")
    body = html.split("<tbody>")[1]
    cells = [row.split("</td>") for row in body.split("<tr>")[1:]]
    needed = [row[-2].rsplit(">", 1)[1] for row in cells]
    assert needed == ["2", "1", "1"]  # C1: a2 and a4; C2: a4; C3: dbm


def test_verdict_counts_table_has_a_column_per_verdict():
    html = str(verdict_counts_table([{"part": "all", "claims": 3, "reproduced": 2, "inconclusive": 1}], first="part"))
    assert html.count("<col ") == 6 and ">3<" in html and ">2<" in html and ">0<" in html


# -- the scorecard notebook ---------------------------------------------------------------------------


def test_scorecard_without_controls_says_so_in_one_line_and_still_renders(tmp_path):
    chapter = notebook_md(
        """
        from dbrepro.results import Results
        r = Results("ch", PROFILE, OUTPUT_DIR)
        r.claim("x", "softmax on A-2 beats A-0", "98.25 vs 97.87", "90.0 vs 89.0", "reproduced", needs=["C2"])
        r.save()
        """)
    nb_dir, toc = write_book(tmp_path, {"ch": chapter}, ["intro"], parts={"Part I — Range Loss": ["ch"],
                                                                           "Results": ["scorecard"]})
    shutil.copy(ROOT / "notebooks" / "scorecard.md", nb_dir / "scorecard.md")
    (toc.parent / "intro.md").write_text("# Intro\n")
    build = tmp_path / "_build"
    result = run_cli("run", "--profile", "smoke", "--notebooks", str(nb_dir), "--toc", str(toc), "--build-dir", str(build))
    assert result.returncode == 0, result.stdout + result.stderr
    executed = json.loads((build / "smoke" / "notebooks" / "scorecard.ipynb").read_text())
    shown = "\n".join("".join(o.get("data", {}).get("text/markdown", "")) + "".join(o.get("data", {}).get("text/html", ""))
                      for c in executed["cells"] for o in c.get("outputs", []))
    assert shown.count("**No controls in this build:**") == 1
    assert "C2 not checked" in shown and "softmax on A-2 beats A-0" in str(shown)
    numbers = json.loads((build / "smoke" / "results" / "scorecard" / "results.json").read_text())["numbers"]
    assert numbers["controls"] == {} and numbers["claims_total"] == 1 and numbers["paper_claims"] == 1
