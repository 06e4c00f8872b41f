"""The built site as a reader sees it, on a temporary book in the smoke profile: the real scorecard over a
calibration chapter and a chapter of claims, a page too wide on purpose, and the status page.

- the parameters cell and a setup cell tagged ``hide-input`` are folded, code left untagged is shown,
  ``remove-input`` leaves only the output; a chapter opens with its title and its claim;
- no absolute path of the build machine in any built file (build folder, book folder, repository, home,
  run cache), although the chapter prints some and raises a traceback through the package;
- the scorecard opens with the controls, groups claims by part, colours verdicts, shows "world fails C2";
- in headless Chromium at 1,300 px the scorecard and the chapter fit the text column (and the probe does
  flag the page made too wide); the status page gives each chapter's cold and cached time and date.

Building the site needs the vendored MathJax (``make mathjax``) and the layout check needs Chromium
(``make browser``): without them these tests fail in CI (``CI=true``) and are skipped elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from book_helpers import ROOT, notebook_md, run_cli, write_book

from dbrepro import book
from dbrepro.paths import cache_root

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MATHJAX = Path(os.environ.get("DBREPRO_MATHJAX") or ROOT / "_build" / book.MATHJAX_IN_BUILD)


def missing(what: str, make_target: str) -> None:
    message = f"{what}: run `make {make_target}`"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


CALIBRATION = notebook_md(
    """
    from dbrepro import progress
    from dbrepro.results import Results
    progress.event("rendered", world="w")  # this chapter computes something: a cold run
    r = Results("calibration", PROFILE, OUTPUT_DIR)
    r.claim("C1", "Every recipe ends on a plateau of its training loss", "last epoch lowers it by < 2 %",
            "1.1 % at most", "reproduced", kind="control")
    r.claim("C2", "CosFace and ArcFace beat softmax by at least 1 point on the mean of the four suites",
            ">= 1 point", "-2.3 points", "not reproduced", kind="control")
    r.claim("C3", "LFW-like above CALFW- and AgeDB-like, above CPLFW-like, for every method",
            "strict order", "holds for 4 of 5 methods", "inconclusive", kind="control")
    r.save()
    """,
    title="Calibration",
    intro="We check that the world behaves like face data before it judges a paper.",
)
LONG = ("with the class-balanced identity sampler of the paper's section 3.2, trained for the recipe's full schedule "
        "on the default synthetic world and evaluated on every LFW-like suite")
CHAPTER = notebook_md(
    (["hide-input"], """
    import warnings
    from pathlib import Path

    import pandas as pd

    import dbrepro
    from dbrepro.results import Claim, Results
    """),
    """
    def range_loss_intra(distances):  # the equation's implementation: the reader sees this
        return len(distances) / sum(1 / d for d in distances)

    range_loss_intra([1.0, 2.0, 4.0])
    """,
    (["remove-input"], 'print("only this output is shown")'),
    """
    # a local path printed by a chapter, and a warning that names a file: the site shows placeholders
    print("results go to", OUTPUT_DIR)
    print("the package is at", dbrepro.__file__, "and the home folder is", Path.home())
    warnings.warn_explicit("a warning from the package", UserWarning, dbrepro.__file__, 1)
    """,
    """
    import traceback  # papermill refuses error outputs, so a traceback reaches a page only as printed text
    try:
        Claim("x", "c", "1", "2", "probably")
    except ValueError:
        traceback.print_exc()
    """,
    """
    from dbrepro.tables import seeds_table  # a chapter's usual table: methods by seeds, mean and std
    methods = ["softmax", "SphereFace", "CosFace", "ArcFace", "Domain Balancing (RBM + DBM)"]
    seeds_table({m: {s: 0.9 + 0.01 * i + 0.001 * s for s in range(3)} for i, m in enumerate(methods)})
    """,
    """
    r = Results("chapter", PROFILE, OUTPUT_DIR)
    r.claim("a2-beats-a0", "Softmax trained on A-2 (50 % of the tail) beats softmax trained on A-0 " + LONG,
            "LFW 98.25 vs 97.87 (Table 2)", "90.12 ± 0.31 vs 89.98 ± 0.40", "inconclusive", section="Table 2",
            needs=["C1", "C2"])
    r.claim("a4-worst", "A-4 (no tail at all) is the worst A split for softmax " + LONG,
            "LFW 96.73, the lowest", "A-4 89.1 ± 0.2, A-0 89.9 ± 0.3", "reproduced", needs=["C1"])
    r.claim("b3-beats-b0", "With a smaller set, fewer tail identities is better: B-3 beats B-0 " + LONG,
            "LFW 98.10 vs 97.65 (Table 3)", "88.0 ± 0.5 vs 88.4 ± 0.4", "not reproduced", needs=["C3"])
    r.claim("ic-ranks-domains", "Inter-class compactness ranks classes by their true domain frequency " + LONG,
            "(not in the papers)", "Spearman +0.41", "reproduced", kind="beyond")
    r.save()
    """,
    extra_parameters=f"LONG = {LONG!r}\n",
    title="Softmax on long-tailed splits",
    intro="**Claim.** Softmax trained on A-2 beats softmax trained on A-0 (Range Loss, Table 2).",
)
WIDE = notebook_md(
    """
    import json
    from pathlib import Path
    from IPython.display import HTML
    Path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
    (Path(OUTPUT_DIR) / "results.json").write_text(json.dumps({"notebook": "wide", "profile": PROFILE, "numbers": {}, "claims": []}))
    HTML('<table style="width: 1800px; max-width: none; table-layout: fixed"><tr><td>too wide on purpose</td></tr></table>')
    """,
    title="A page too wide on purpose",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if not (MATHJAX / book.MATHJAX_ENTRY).exists():
        missing(f"MathJax 3 is not vendored at {MATHJAX}", "mathjax")
    root = tmp_path_factory.mktemp("site-book")
    nb_dir, toc = write_book(root, {"calibration": CALIBRATION, "chapter": CHAPTER, "wide": WIDE}, ["intro"], parts={
        "How this book works": ["calibration"], "Part I — Range Loss": ["chapter"], "Tests": ["wide"],
        "Results": ["scorecard", "status"]})
    shutil.copy(ROOT / "notebooks" / "scorecard.md", nb_dir / "scorecard.md")
    for name in ("_config.yml", "references.bib"):
        shutil.copy(ROOT / "book" / name, toc.parent / name)
    shutil.copytree(ROOT / "book" / "_static", toc.parent / "_static")
    (toc.parent / "intro.md").write_text("# A test book\n\nSee the {doc}`scorecard` and the {doc}`status` page.\n")
    build = root / "_build"
    common = ("--profile", "smoke", "--notebooks", str(nb_dir), "--build-dir", str(build))
    result = run_cli("run", *common, "--toc", str(toc))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_cli("build", *common, "--book", str(toc.parent), "--warnings-as-errors", "--mathjax", str(MATHJAX))
    assert result.returncode == 0, result.stdout + result.stderr
    return build / "smoke" / "site" / "html"


def article(page: Path) -> str:
    text = page.read_text()
    return text[text.index('<article class="bd-article">'):text.index("</article>")]


def test_no_path_of_the_build_machine_in_the_site(site):
    build = site.parent.parent.parent
    folders = [build, build.parent, ROOT, Path.home(), cache_root(), ROOT / ".venv"]
    assert book.leaked_paths(site, folders) == []
    # the placeholders that replaced them are there: the scrub did run on outputs and tracebacks
    chapter = article(site / "chapter.html")
    assert "&lt;OUTPUT_DIR&gt;" in chapter and "&lt;repo&gt;/dbrepro/__init__.py" in chapter
    assert re.search(r"File \"&lt;repo&gt;/dbrepro/results\.py\", line \d+", chapter)  # the traceback's frames


def test_leaked_paths_finds_a_folder_only_as_a_path(tmp_path):
    (tmp_path / "a.html").write_text("<p>/home/me/book/x and /home/meadow</p>")
    (tmp_path / "b.json").write_text('{"traceback": "\\u001b[0;32m/home/me/book/y.py"}')
    (tmp_path / "c.js").write_text("var p = 'data/home/me/book';")
    assert book.leaked_paths(tmp_path, ["/home/me/book/", "/home/other"]) == ["a.html: /home/me/book",
                                                                                "b.json: /home/me/book"]


def test_parameters_and_setup_are_folded_and_the_chapter_opens_with_its_claim(site):
    chapter = article(site / "chapter.html")
    after_title = chapter[chapter.index("</h1>") + len("</h1>"):].lstrip()
    assert after_title.startswith("<p><strong>Claim.</strong> Softmax trained on A-2"), after_title[:200]
    cells = re.split(r'(?=<div class="cell[ "])', chapter)[1:]
    parameters = [c for c in cells if "tag_parameters" in c.split(">")[0]]
    setup = [c for c in cells if "tag_hide-input" in c.split(">")[0] and "tag_parameters" not in c.split(">")[0]]
    assert len(parameters) == 1 and '<details class="admonition hide above-input">' in parameters[0]
    assert len(setup) == 1 and '<details class="admonition hide above-input">' in setup[0] and "warnings" in setup[0]
    visible = next(c for c in cells if "range_loss_intra" in c)
    assert "<details" not in visible and "cell_input" in visible  # the equation's code is shown
    removed = next(c for c in cells if "only this output is shown" in c)
    assert "cell_input" not in removed  # remove-input: the output alone
    assert "injected-parameters" not in chapter and "tag_remove-cell" not in chapter


def test_scorecard_opens_with_the_controls_then_parts_with_coloured_verdicts(site):
    page = article(site / "scorecard.html")
    controls, claims = page.index("dbrepro-controls"), page.index("dbrepro-claims")
    assert controls < claims
    assert "the world does not pass C2, C3" in page
    for cid in ("C1", "C2", "C3"):
        assert f"<strong>{cid}</strong>" in page
    part1, beyond = page.index("Part I — Range Loss"), page.index("Beyond the papers")
    assert controls < part1 < beyond
    assert "world fails C2" in page and "C3 inconclusive" in page
    assert "color: #1a7f37" in page and "color: #cf222e" in page  # reproduced, not reproduced
    assert page.count('<a href="chapter.html">chapter</a>') == 2  # once in Part I, once beyond the papers


def test_scorecard_and_a_chapter_fit_a_1300_px_window_and_the_probe_sees_a_wide_page(site):
    if not book.find_chromium():
        missing("Chromium is not installed", "browser")
    build = site.parent.parent.parent
    reports = book.check("smoke", build_dir=build, pages=["scorecard", "chapter", "wide"], width=1300,
                         out=lambda *a, **k: None)
    by_page = {r.page: r for r in reports}
    for page in ("scorecard.html", "chapter.html"):
        assert by_page[page].problems == [], by_page[page].problems
        assert 500 < by_page[page].column_width < 1300 and by_page[page].screenshot.stat().st_size > 0
    wide = by_page["wide.html"]
    assert wide.measured and wide.too_wide, "the probe did not flag a table 1,800 px wide"
    assert all("does not fit the text column" in p for p in wide.problems)


def test_status_page_gives_cold_and_cached_times_with_dates(site):
    page = article(site / "status.html")
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr[^>]*>\s*<td[^>]*><p>.*?href="(\w+)\.html".*?</tr>',
                                                         page, re.S)}
    assert set(rows) >= {"calibration", "chapter", "scorecard"}
    date = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
    cells = lambda name: re.findall(r"<td[^>]*>(.*?)</td>", rows[name], re.S)  # noqa: E731
    calibration, chapter = cells("calibration"), cells("chapter")
    assert re.search(rf"\d+\.\d s<br\s*/?>{date}", calibration[2]) and "not measured" in calibration[3]  # cold
    assert "not measured" in chapter[2] and re.search(rf"\d+\.\d s<br\s*/?>{date}", chapter[3])  # cached
