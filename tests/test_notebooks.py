"""Every notebook of the book, executed in the smoke profile; then the site, then its offline render check.

Run with ``pytest -m notebooks`` (``make test`` does). The notebooks are executed by the book's own
executor (``python -m dbrepro.book run --profile smoke``) into a temporary build folder, in this venv's
Python, exactly as ``make book`` runs them in the cpu profile.

The run cache is the real one (``$DBREPRO_CACHE``, default ``~/.cache/dbrepro``), not a temporary one:
runs are keyed by their full configuration plus a cache version, so a cached smoke run is exactly what a
fresh one would compute, and CI reruns skip training they have already done. Delete the cache (or
``dbrepro runs clean``) to force a cold run.

The LFW chapter reads ``DBREPRO_LFW``; when it is unset and a development copy exists at
``../shared/data`` beside the repository, that copy is used.

The rehearsal runs beside the smoke book: ``dbrepro rehearsal`` writes a tiny InsightFace folder and every
notebook runs in the rehearsal profile on it (the paper profile's code path: RecordIO, ``.bin`` packs,
IR-ResNets at 112 px, DataLoader workers); each chapter that reads CASIA-WebFace or MS1MV2 must have read
that folder.

The site must show no folder of the build machine, and its scorecard and first page with math and a
figure must fit the text column of a 1,300-px window (``dbrepro.book check``). The site check needs the
vendored MathJax (``make mathjax``) and Chromium (``make browser``). Without
them these tests fail in CI (``CI=true``) and are skipped elsewhere, saying which make target to run.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from dbrepro import book
from dbrepro.paths import cache_root
from dbrepro.results import VERDICTS

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
TOC = ROOT / "book" / "_toc.yml"
ORDER = book.notebooks_in_order(TOC, NOTEBOOKS)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: the smoke book and the rehearsal run side by side: each gets half the usable cores as PyTorch threads, so
#: that the two do not oversubscribe the machine (two 2-thread kernels on 2 cores slow each other several-fold)
BOOK_THREADS = str(max(1, len(os.sched_getaffinity(0)) // 2))


def missing(what: str, make_target: str) -> None:
    message = f"{what}: run `make {make_target}`"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def dbrepro_book(*args: str, timeout: int = 3600, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": BOOK_THREADS, **env_vars}
    shared = ROOT.parent / "shared" / "data"
    if not env.get("DBREPRO_LFW") and (shared / "lfw").is_dir():
        env["DBREPRO_LFW"] = str(shared)
    return subprocess.run([sys.executable, "-m", "dbrepro.book", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def check_executed(build: Path, profile: str, name: str) -> dict:
    """The executed notebook ran every cell without an error; its results file, read back."""
    nb = nbformat.read(build / profile / "notebooks" / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in code)
    assert all(c.get("execution_count") for c in code if c.source.strip()), "a code cell was not executed"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
    results = json.loads((build / profile / "results" / name / "results.json").read_text())
    assert results["notebook"] == name
    assert results["profile"] == profile
    assert isinstance(results["numbers"], dict)
    for claim in results["claims"]:
        assert claim["verdict"] in VERDICTS, claim
        assert claim["claim"] and claim["id"], claim
    return results


@pytest.fixture(scope="module")
def rehearsal_started(tmp_path_factory):
    """The rehearsal (see :func:`rehearsal_build`) started in the background, beside the smoke book: each book is
    one kernel at a time, mostly single-threaded, so on 2 cores the two together take little more than the longer.
    Yields (build folder, the process, its log file)."""
    build = tmp_path_factory.mktemp("rehearsal-build")
    folder = build / "insightface"
    log = build / "rehearsal.log"
    python, q = shlex.quote(sys.executable), shlex.quote
    script = (f"{python} -m dbrepro rehearsal {q(str(folder))} && "
              f"{python} -m dbrepro.book run --profile rehearsal --build-dir {q(str(build))} --keep-going")
    env = {**os.environ, "OMP_NUM_THREADS": BOOK_THREADS, "DBREPRO_CASIA": str(folder), "DBREPRO_MS1MV2": str(folder)}
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    yield build, proc, log
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory, rehearsal_started) -> Path:
    """Every notebook executed once in the smoke profile (the rehearsal running beside it); the build folder."""
    build = tmp_path_factory.mktemp("book-build")
    result = dbrepro_book("run", "--profile", "smoke", "--build-dir", str(build), "--keep-going")
    print(result.stdout)
    if result.returncode != 0:
        pytest.fail(f"dbrepro.book run --profile smoke failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return build


@pytest.fixture(scope="module")
def smoke_site(smoke_build) -> Path:
    """The site built from the smoke-executed notebooks, with Sphinx warnings as errors."""
    mathjax = Path(os.environ.get("DBREPRO_MATHJAX") or ROOT / "_build" / book.MATHJAX_IN_BUILD)
    if not (mathjax / book.MATHJAX_ENTRY).exists():
        missing(f"MathJax 3 is not vendored at {mathjax}", "mathjax")
    result = dbrepro_book("build", "--profile", "smoke", "--build-dir", str(smoke_build), "--warnings-as-errors",
                          "--mathjax", str(mathjax))
    if result.returncode != 0:
        pytest.fail(f"the book did not build without warnings:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return smoke_build / "smoke" / "site" / "html"


@pytest.mark.parametrize("name", ORDER)
def test_notebook_runs_in_the_smoke_profile(smoke_build, name):
    results = check_executed(smoke_build, "smoke", name)
    if name != "scorecard":
        assert results["numbers"]["data"]["kind"] in ("synthetic", "lfw"), results["numbers"]["data"]


def test_status_records_every_notebook(smoke_build):
    status = json.loads((smoke_build / "smoke" / "status.json").read_text())
    assert status["profile"] == "smoke"
    assert {n: s["status"] for n, s in status["notebooks"].items()} == {n: "ok" for n in ORDER}
    assert status["environment"]["python"] == ".".join(map(str, sys.version_info[:3]))
    for name, entry in status["notebooks"].items():  # the outputs on disk, and this run as cold or cached
        executed = json.loads((smoke_build / "smoke" / "notebooks" / f"{name}.ipynb").read_text())
        assert entry["outputs"]["run"] == executed["metadata"]["dbrepro"]["run"], name
        assert ("cold" if entry["outputs"]["computed"] else "cached") in entry, name


def test_book_builds_with_warnings_as_errors(smoke_site):
    assert (smoke_site / "index.html").is_file()
    for name in ORDER + ["status", "bibliography"]:
        assert (smoke_site / f"{name}.html").is_file(), name
    status = (smoke_site / "status.html").read_text()
    for name in ORDER:
        assert f"{name}.html" in status
    assert (smoke_site / "_static" / "mathjax" / book.MATHJAX_ENTRY).is_file()


def test_site_shows_no_path_of_the_build_machine(smoke_site, smoke_build):
    folders = [smoke_build, ROOT, Path.home(), cache_root(), ROOT.parent / "shared" / "data"]
    assert book.leaked_paths(smoke_site, folders) == []


def test_site_renders_offline_in_chromium(smoke_site, smoke_build):
    if not book.find_chromium():
        missing("Chromium is not installed", "browser")
    result = dbrepro_book("check", "--profile", "smoke", "--build-dir", str(smoke_build), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "math elements typeset" in result.stdout
    assert "checked scorecard.html offline at 1300 px" in result.stdout  # the scorecard fits the column
    assert list((smoke_build / "smoke" / "check").glob("*.png"))


# -- the rehearsal: every chapter through the paper profile's code path, on an InsightFace folder -------------

@pytest.fixture(scope="module")
def rehearsal_build(rehearsal_started) -> Path:
    """``dbrepro rehearsal DIR`` (a real InsightFace folder: train.rec/.idx/property and the .bin packs, 112 px),
    then every notebook executed in the rehearsal profile on it, as ``make rehearsal`` does; the build folder."""
    build, proc, log = rehearsal_started
    rc = proc.wait(timeout=3600)
    output = log.read_text()
    print(output)
    if rc != 0:
        pytest.fail(f"the rehearsal (dbrepro rehearsal, then dbrepro.book run --profile rehearsal) failed:\n{output}",
                    pytrace=False)
    return build


@pytest.mark.parametrize("name", ORDER)
def test_notebook_runs_in_the_rehearsal_profile(rehearsal_build, name):
    results = check_executed(rehearsal_build, "rehearsal", name)
    if name == "scorecard":
        return
    data = results["numbers"]["data"]
    if data["dataset"] in ("casia", "ms1mv2"):  # the paper profile's branch: the user's folder, never a world
        assert data["kind"] == "insightface", data
    else:  # the world's own chapter, LFW's
        assert data["dataset"] in ("synthetic", "lfw") and data["kind"] == data["dataset"], data


def test_rehearsal_runs_every_chapter_on_the_insightface_folder(rehearsal_build):
    status = json.loads((rehearsal_build / "rehearsal" / "status.json").read_text())
    assert {n: s["status"] for n, s in status["notebooks"].items()} == {n: "ok" for n in ORDER}
    read_real = [n for n in ORDER if n != "scorecard" and json.loads(
        (rehearsal_build / "rehearsal" / "results" / n / "results.json").read_text())["numbers"]["data"]["kind"] == "insightface"]
    assert sorted(set(ORDER) - set(read_real)) == ["00-synthetic-faces", "lfw-long-tail", "scorecard"], read_real
