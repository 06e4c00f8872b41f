"""The book's structure and the executor's contract (dbrepro.book), without executing the real chapters.

- the toc and notebooks/ agree; every page the toc names exists; nothing built is tracked by git;
- every notebook opens with a ``parameters`` cell defining PROFILE, SEED, DEVICE="auto", OUTPUT_DIR (AST);
- ``python -m dbrepro.book run`` on a temporary book: parameters injected, the kernel is this venv's Python,
  a failing notebook is named with its cell and keeps its previous outputs, an unknown profile exits 2;
- the offline scan finds remote resources; the status page gives known answers.

Progress, typed parameters and kills: tests/test_book_executor.py; the built site: tests/test_site.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from book_helpers import HEADER, PARAMETERS, ROOT, notebook_md, run_cli, write_book

from dbrepro import book
from dbrepro.book import BookError
from dbrepro.config import PROFILE_NAMES

NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"
TOC = BOOK / "_toc.yml"

# -- the real book -----------------------------------------------------------------------------------


def test_toc_and_notebooks_agree():
    assert book.toc_problems(TOC, NOTEBOOKS, BOOK) == []


def test_toc_pages_exist_and_the_book_has_its_pages():
    files = [e.file for e in book.read_toc(TOC)]
    assert files[0] == "intro"
    for name in ("scorecard", "status", "bibliography"):
        assert name in files
    pages = [f for f in files if not (NOTEBOOKS / f"{f}.md").exists() and f not in book.GENERATED_PAGES]
    assert pages, "the toc names no book page"
    for page in pages:
        assert (BOOK / f"{page}.md").is_file(), f"toc names {page}, but book/{page}.md is missing"
    assert (BOOK / "references.bib").is_file() and (BOOK / "_config.yml").is_file()


def test_scorecard_is_executed_last():
    order = book.notebooks_in_order(TOC, NOTEBOOKS)
    assert order[-1] == "scorecard"
    assert sorted(order) == book.notebook_names(NOTEBOOKS)


@pytest.mark.parametrize("name", book.notebook_names(NOTEBOOKS))
def test_notebook_has_a_parameters_cell(name):
    nb = book.read_notebook(NOTEBOOKS / f"{name}.md")
    assert book.parameters_cell_problems(nb, name) == []


def test_no_notebook_outputs_are_tracked_by_git():
    if (ROOT / ".git").exists():
        tracked = subprocess.run(["git", "ls-files", "*.ipynb"], capture_output=True, text=True, cwd=ROOT, check=True)
        assert tracked.stdout.split() == []
    assert list(NOTEBOOKS.glob("*.ipynb")) == [] or not (ROOT / ".git").exists()
    assert "*.ipynb" in (ROOT / ".gitignore").read_text().split()


# -- the rules, on notebooks made to break them -------------------------------------------------------


def test_toc_problems_finds_a_notebook_missing_from_the_toc_and_a_missing_file(tmp_path):
    nb_dir, toc = write_book(tmp_path, {"a": notebook_md(), "b": notebook_md()}, ["a", "c", "status"])
    problems = book.toc_problems(toc, nb_dir, toc.parent)
    assert len(problems) == 2, problems
    assert "b.md is not in" in problems[0]
    assert "names 'c'" in problems[1]


def test_read_toc_keeps_reading_order_parts_and_sections(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: intro\nparts:\n"
        "  - caption: One\n    chapters:\n      - file: a.md\n        sections:\n          - file: a1\n"
        "  - caption: Two\n    chapters:\n      - file: b\n      - url: https://example.org\n        title: x\n"
    )
    assert [(e.file, e.part) for e in book.read_toc(toc)] == [
        ("intro", ""), ("a", "One"), ("a1", "One"), ("b", "Two")
    ]
    toc.write_text("format: jb-book\nparts: [\n")
    with pytest.raises(BookError, match="not valid YAML"):
        book.read_toc(toc)


@pytest.mark.parametrize(
    "parameters, problem",
    [
        (PARAMETERS.replace(":tags: [parameters]\n", ""), "not tagged 'parameters'"),
        (PARAMETERS.replace('DEVICE = "auto"', 'DEVICE = "cuda"'), "DEVICE must default to 'auto'"),
        (PARAMETERS.replace("SEED = 0\n", ""), "does not define SEED"),
        (PARAMETERS.replace("SEED = 0", 'SEED = "0"'), "SEED must be a int"),
        (PARAMETERS.replace('PROFILE = "cpu"', "PROFILE = pick()"), "PROFILE in the parameters cell must be a literal"),
        (PARAMETERS.replace("OUTPUT_DIR = None", "OUTPUT_DIR = 'out'"), "OUTPUT_DIR must default to None"),
    ],
)
def test_parameters_cell_rules(tmp_path, parameters, problem):
    path = tmp_path / "x.md"
    path.write_text(notebook_md("print(1)", parameters=parameters))
    problems = book.parameters_cell_problems(book.read_notebook(path), "x")
    assert len(problems) == 1 and problem in problems[0], problems


def test_parameters_cell_must_be_the_first_code_cell(tmp_path):
    path = tmp_path / "x.md"
    path.write_text(HEADER + "\n```{code-cell} ipython3\nimport os\n```\n\n" + PARAMETERS + "```\n")
    problems = book.parameters_cell_problems(book.read_notebook(path), "x")
    assert "x: the first code cell is not tagged 'parameters'" in problems


# -- parameters ---------------------------------------------------------------------------------------


def test_notebook_parameters_pass_only_declared_ones(tmp_path, monkeypatch):
    layout = book.BuildLayout(tmp_path / "_build", "smoke")
    data = tmp_path / "lfw"
    data.mkdir()
    env = {"DBREPRO_LFW": str(data), "DBREPRO_CASIA": str(tmp_path / "nope")}
    params = book.notebook_parameters("x", ["PROFILE", "OUTPUT_DIR", "SEED"], "smoke", layout, {}, env)
    assert params == {"PROFILE": "smoke", "OUTPUT_DIR": str(layout.output_dir("x").resolve())}
    params = book.notebook_parameters("x", ["PROFILE", "OUTPUT_DIR", "LFW_ROOT", "RESULTS_DIR"], "smoke", layout,
                                      {"OTHER": 1}, env)
    assert params["LFW_ROOT"] == str(data.resolve()) and params["RESULTS_DIR"] == str(layout.results.resolve())
    assert "OTHER" not in params
    monkeypatch.chdir(tmp_path)  # a relative path is made absolute: the notebook runs in notebooks/
    params = book.notebook_parameters("x", ["PROFILE", "OUTPUT_DIR", "LFW_ROOT"], "smoke", layout,
                                      {"LFW_ROOT": "lfw"}, env)
    assert params["LFW_ROOT"] == str(data.resolve())


def test_notebook_parameters_reject_bad_data_paths(tmp_path):
    layout = book.BuildLayout(tmp_path, "paper")
    declared = ["PROFILE", "OUTPUT_DIR", "CASIA_ROOT"]
    with pytest.raises(BookError, match=r"notebook x: CASIA_ROOT='/no/such/dir' \(from environment variable DBREPRO_CASIA\)"):
        book.notebook_parameters("x", declared, "paper", layout, {}, {"DBREPRO_CASIA": "/no/such/dir"})
    with pytest.raises(BookError, match="notebook x: the paper profile needs real data: set DBREPRO_CASIA"):
        book.notebook_parameters("x", declared, "paper", layout, {}, {})
    with pytest.raises(BookError, match="notebook x: the rehearsal profile needs real data: set DBREPRO_MS1MV2"):
        book.notebook_parameters("x", ["PROFILE", "OUTPUT_DIR", "MS1MV2_ROOT"], "rehearsal", layout, {}, {})
    with pytest.raises(BookError, match="does not declare OUTPUT_DIR"):
        book.notebook_parameters("x", ["PROFILE"], "smoke", layout, {}, {})


def test_run_refuses_a_toc_that_names_a_missing_notebook(tmp_path):
    nb_dir, toc = write_book(tmp_path, {"a": notebook_md("print(1)")}, ["a", "gone"])
    with pytest.raises(BookError, match="names 'gone', but neither"):
        book.run("smoke", notebooks_dir=nb_dir, toc_path=toc, build_dir=tmp_path / "_build", out=lambda *a, **k: None)


def test_run_rejects_a_param_no_notebook_declares_before_starting_a_kernel(tmp_path):
    nb_dir, toc = write_book(tmp_path, {"a": notebook_md("print(1)")}, ["a"])
    with pytest.raises(BookError, match="--param NOPE: declared by none of the notebooks"):
        book.run("smoke", notebooks_dir=nb_dir, toc_path=toc, build_dir=tmp_path / "_build", params={"NOPE": 1},
                 out=lambda *a, **k: None)
    assert not (tmp_path / "_build").exists()


# -- the executor on a temporary book -----------------------------------------------------------------

GOOD = notebook_md(
    """
    import json, os, sys
    from pathlib import Path
    out = Path(OUTPUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    facts = {"executable": sys.executable, "profile": PROFILE, "greeting": GREETING, "cwd": os.getcwd()}
    (out / "results.json").write_text(json.dumps({"notebook": "good", "profile": PROFILE, "numbers": facts, "claims": []}))
    """,
    extra_parameters='GREETING = "hi"\n',
)
BAD = notebook_md(
    """
    from pathlib import Path
    Path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
    (Path(OUTPUT_DIR) / "partial.txt").write_text("half")
    """,
    """
    x = 1
    raise ValueError("boom")
    """,
)


def test_failing_notebook_is_named_with_its_cell_and_keeps_its_previous_outputs(tmp_path):
    nb_dir, toc = write_book(tmp_path, {"good": GOOD, "bad": GOOD.replace('"good"', '"bad"')}, ["good", "bad"])
    build = tmp_path / "_build"
    smoke = build / "smoke"
    args = ("run", "--profile", "smoke", "--notebooks", str(nb_dir), "--toc", str(toc), "--build-dir", str(build))
    first = run_cli(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    previous = (smoke / "notebooks" / "bad.ipynb").read_bytes(), (smoke / "results" / "bad" / "results.json").read_bytes()
    (nb_dir / "bad.md").write_text(BAD)

    # a python3 kernelspec on the user's JUPYTER_PATH pointing at another Python must not be used
    decoy = tmp_path / "jupyter-path" / "kernels" / "python3"
    decoy.mkdir(parents=True)
    (decoy / "kernel.json").write_text(json.dumps(
        {"argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
         "display_name": "decoy", "language": "python"}))

    result = run_cli(*args, "--param", "GREETING=hello", env={"JUPYTER_PATH": str(tmp_path / "jupyter-path")})

    assert result.returncode == 1, result.stdout + result.stderr
    line = next(ln for ln in result.stderr.splitlines() if "failed" in ln)
    fence = 1 + BAD.splitlines().index('raise ValueError("boom")') - 2  # the ```{code-cell} line of cell 3
    assert line == f'notebook bad failed: code cell 3 (notebooks/bad.md:{fence}: `x = 1`): ValueError: boom'
    assert "[1/2] good ... " in result.stdout and "[2/2] bad ... FAILED" in result.stdout

    # the failed rerun replaced nothing: bad's previous executed notebook and results are as they were
    assert sorted(p.name for p in (smoke / "notebooks").iterdir()) == ["bad.ipynb", "good.ipynb"]
    assert sorted(p.name for p in (smoke / "results").iterdir()) == ["bad", "good"]
    assert (smoke / "notebooks" / "bad.ipynb").read_bytes() == previous[0]
    assert (smoke / "results" / "bad" / "results.json").read_bytes() == previous[1]
    assert sorted(p.name for p in (smoke / "results" / "bad").iterdir()) == ["results.json"]  # no partial.txt
    status = json.loads((smoke / "status.json").read_text())
    assert status["notebooks"]["good"]["status"] == "ok"
    bad = status["notebooks"]["bad"]
    assert bad["status"] == "failed" and "ValueError: boom" in bad["error"] and "previous outputs are kept" in bad["error"]
    record = json.loads(previous[0])["metadata"]["dbrepro"]
    assert bad["outputs"]["run"] == record["run"] and bad["outputs"]["results_sha256"] == record["results_sha256"]
    leftovers = [p for p in smoke.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []

    facts = json.loads((smoke / "results" / "good" / "results.json").read_text())["numbers"]
    assert Path(facts["executable"]).resolve() == Path(sys.executable).resolve()  # the venv's kernel
    assert facts["profile"] == "smoke" and facts["greeting"] == "hello"
    assert Path(facts["cwd"]).resolve() == nb_dir.resolve()
    executed = json.loads((smoke / "notebooks" / "good.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and 'PROFILE = "smoke"' in "".join(injected[0]["source"])
    # the record names where the results are now, not the staging folder they were written to
    assert f'OUTPUT_DIR = "{smoke / "results" / "good"}"' in "".join(injected[0]["source"])
    assert "remove-cell" in injected[0]["metadata"]["tags"]  # kept in the notebook, left out of the site
    shown = [c for c in executed["cells"] if "remove-cell" not in c["metadata"].get("tags", [])]
    assert any("parameters" in c["metadata"].get("tags", []) for c in shown)  # folded on the site, still there


def test_a_notebook_that_writes_no_results_fails(tmp_path):
    nb_dir, toc = write_book(tmp_path, {"quiet": notebook_md("print('no results')")}, ["quiet"])
    result = run_cli("run", "--profile", "smoke", "--notebooks", str(nb_dir), "--toc", str(toc),
                     "--build-dir", str(tmp_path / "_build"))
    assert result.returncode == 1
    assert "notebook quiet failed: it ran, but wrote no results.json into OUTPUT_DIR" in result.stderr
    assert list((tmp_path / "_build" / "smoke" / "notebooks").iterdir()) == []


def test_unknown_profile_is_one_line_and_exit_2():
    result = run_cli("run", "--profile", "gpu-huge")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: unknown profile 'gpu-huge': choose one of {', '.join(PROFILE_NAMES)}"
    ]


def test_build_names_the_notebooks_that_were_not_run(tmp_path):
    with pytest.raises(BookError, match="executed notebooks missing in .*: how-this-book-works.*run them first"):
        book.build("smoke", book_dir=BOOK, notebooks_dir=NOTEBOOKS, build_dir=tmp_path, out=lambda *a, **k: None)


# -- pages and the offline scan -----------------------------------------------------------------------


def test_status_markdown_lists_cold_and_cached_times_and_environment():
    status = {
        "profile": "cpu",
        "environment": {"python": "3.11.7", "implementation": "CPython", "cuda": False, "cpu_cores": 2,
                        "cpu_cores_usable": 2, "torch_threads": 2, "packages": {"torch": "2.14.1"}},
        "notebooks": {
            "a": {"status": "ok", "seconds": 1.25, "finished": "t1", "outputs": {"finished": "t1"},
                  "cold": {"seconds": 300.0, "date": "d0"}, "cached": {"seconds": 1.25, "date": "t1"}},
            "b": {"status": "failed", "seconds": 2.0, "finished": "t2", "outputs": {"finished": "t0"},
                  "cold": {"seconds": 20.04, "date": "d1"}},
        },
    }
    text = book.status_markdown(status, ["a", "b", "c"])
    assert "| chapter | last run | cold | cached |" in text
    assert "| {doc}`a` | ok, 1.2 s<br>t1 | 300.0 s<br>d0 | 1.2 s<br>t1 |" in text  # 1.25 rounds half to even
    assert "| {doc}`b` | failed, 2.0 s<br>t2<br>(shows the outputs of t0) | 20.0 s<br>d1 | not measured |" in text
    assert "| {doc}`c` | not run | | |" in text
    assert "| **total** | | **320.0 s** | **1.2 s** |" in text
    del status["notebooks"]["a"]["cached"]
    assert "| **total** | | **320.0 s** | not measured |" in book.status_markdown(status, ["a", "b"])
    assert "| device | CPU only |" in text and "| torch | 2.14.1 |" in text


def test_remote_resources_are_found_and_links_are_not(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<html><head><script src="https://cdn.example.org/mathjax.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/css">'
        '<link rel="canonical" href="https://book.example.org/">'
        '<script src="_static/local.js"></script><style>@import url("https://x.org/a.css");</style></head>'
        '<body><a href="https://example.org">a link</a><img src="_images/fig.png">'
        '<div style="background: url(http://x.org/bg.png)"></div></body></html>'
    )
    (tmp_path / "sub" / "theme.css").write_text('@font-face { src: url("../fonts/a.woff2") } @import "http://y.org/b.css";')
    assert book.remote_resources(tmp_path) == [
        "index.html: https://cdn.example.org/mathjax.js",
        "index.html: //fonts.example.org/css",
        "index.html: https://x.org/a.css",
        "index.html: http://x.org/bg.png",
        "sub/theme.css: http://y.org/b.css",
    ]
