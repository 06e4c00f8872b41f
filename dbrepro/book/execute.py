"""``run``: execute the notebooks with papermill, one at a time, in this interpreter's kernel.

Each notebook is converted from jupytext MyST Markdown in memory (the ``.md`` is never written), receives
only the parameters its ``parameters`` cell declares (papermill's inspection), runs with ``cwd`` the
notebooks folder, and is written to ``<build>/<profile>/notebooks/<name>.ipynb`` through a temp file and a
rename. A failing notebook is reported as one line naming it, the failing cell and the exception, and
leaves neither its executed notebook nor its results folder behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..config import get_profile
from ..paths import atomic_write_json, atomic_write_text
from ..results import RESULTS_FILE
from .layout import BookError, BuildLayout, now, read_status, remove
from .toc import notebooks_in_order, parameters_cell_problems, read_notebook, toc_problems

#: Notebook parameters filled from environment variables when a notebook declares them.
DATA_PATH_ENV = {
    "DATA_ROOT": "DBREPRO_DATA",  # training data (paper profile: an InsightFace folder, train.rec/.idx/property)
    "LFW_ROOT": "DBREPRO_LFW",  # a folder holding lfw/ and lfw-protocol/ (see the LFW chapter)
}
#: Packages whose versions the status page reports.
REPORTED_PACKAGES = (
    "torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn", "matplotlib", "openTSNE",
    "papermill", "jupytext", "nbclient", "ipykernel", "jupyter-book", "sphinx", "myst-nb", "sphinx-book-theme",
)


class NotebookFailed(Exception):
    """A notebook raised while executing; ``str()`` is the one line the user reads."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"notebook {name} failed: {message}")
        self.name = name


def parse_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with papermill ``-p`` typing: int, float, True/False/None, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise BookError(f"--param {text!r}: expected KEY=VALUE with KEY a Python name")
    value: Any = raw
    lowered = raw.lower()
    if lowered in ("true", "false"):
        value = lowered == "true"
    elif lowered in ("none", "null"):
        value = None
    else:
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                pass
    return key, value


def notebook_parameters(
    name: str,
    declared: Iterable[str],
    profile: str,
    layout: BuildLayout,
    extra: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The parameters papermill injects into notebook ``name``: only those its parameters cell declares.

    ``PROFILE`` and ``OUTPUT_DIR`` always; ``RESULTS_DIR`` (the scorecard reads every results.json there);
    data paths from :data:`DATA_PATH_ENV`; then ``extra`` (``--param``), which wins. A data path that is given
    but does not exist, or a missing data path in a profile that needs real data, is a ``BookError``.
    """
    declared = set(declared)
    environ = os.environ if environ is None else environ
    for key in ("PROFILE", "OUTPUT_DIR"):
        if key not in declared:
            raise BookError(f"notebook {name}: its parameters cell does not declare {key}")
    params: dict[str, Any] = {"PROFILE": profile, "OUTPUT_DIR": str(layout.output_dir(name).resolve())}
    if "RESULTS_DIR" in declared:
        params["RESULTS_DIR"] = str(layout.results.resolve())
    sources: dict[str, str] = {}
    for key, var in DATA_PATH_ENV.items():
        if key in declared and environ.get(var):
            params[key] = environ[var]
            sources[key] = f"environment variable {var}"
    for key, value in (extra or {}).items():
        if key in declared:
            params[key] = value
            sources[key] = f"--param {key}"
    for key, source in sources.items():
        if key in DATA_PATH_ENV and params[key] is not None:
            path = Path(str(params[key])).expanduser()
            if not path.exists():
                raise BookError(f"notebook {name}: {key}={params[key]!r} (from {source}) does not exist")
            params[key] = str(path.resolve())  # the notebook runs in notebooks/, not where it was given
    if get_profile(profile).needs_data_path and "DATA_ROOT" in declared and params.get("DATA_ROOT") is None:
        raise BookError(
            f"notebook {name}: the {profile} profile needs real data: set {DATA_PATH_ENV['DATA_ROOT']}=/path/to/data "
            f"or pass --param DATA_ROOT=/path/to/data"
        )
    return params


@contextlib.contextmanager
def this_interpreter_kernel() -> Iterator[str]:
    """Make the kernel named ``python3`` run ``sys.executable`` for the duration of the block.

    A ``python3`` kernelspec in the user's Jupyter folders could point at another Python; a kernelspec in a
    folder put first on ``JUPYTER_PATH`` takes precedence over all of them.
    """
    with tempfile.TemporaryDirectory(prefix="dbrepro-kernel-") as tmp:
        spec_dir = Path(tmp) / "kernels" / "python3"
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--IPKernelApp.log_level=CRITICAL"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "metadata": {"debugger": False},
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = tmp + (os.pathsep + old if old else "")
        try:
            yield "python3"
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def execute_notebook(
    md_path: Path,
    output_path: Path,
    parameters: dict[str, Any],
    cwd: Path,
    log_output: bool = False,
    kernel_name: str = "python3",
) -> None:
    """Execute one notebook with papermill and write it to ``output_path`` atomically.

    Raises :class:`NotebookFailed` naming the failing cell (its number among the code cells, its line in
    the ``.md`` and its first line) and the exception. Nothing is written on failure.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    name = md_path.stem
    nb = read_notebook(md_path)
    with tempfile.TemporaryDirectory(prefix="dbrepro-nb-") as tmp:
        source_ipynb = Path(tmp) / f"{name}.ipynb"
        nbformat.write(nb, source_ipynb)
        try:
            executed = papermill.execute_notebook(
                str(source_ipynb),
                None,  # papermill writes nothing; the executed notebook is written below, atomically
                parameters=parameters,
                kernel_name=kernel_name,
                cwd=str(cwd),
                progress_bar=False,
                log_output=log_output,
            )
        except PapermillExecutionError as e:
            raise NotebookFailed(name, _describe_failed_cell(md_path, nb, e)) from None
        except Exception as e:  # kernel died, timed out, could not start, ...
            raise NotebookFailed(name, f"{type(e).__name__}: {_first_line(str(e))}") from None
    hide_injected_parameters(executed)
    executed.metadata.setdefault("papermill", {})
    executed.metadata.papermill["input_path"] = str(md_path)
    executed.metadata.papermill["output_path"] = str(output_path)
    atomic_write_text(output_path, nbformat.writes(executed))


def hide_injected_parameters(nb: Any) -> None:
    """Tag papermill's ``injected-parameters`` cell ``remove-cell``: kept in the executed notebook (it
    records how the notebook was run), left out of the site (it holds local paths, and the
    ``parameters`` cell above it already shows the reader the knobs)."""
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]


def _describe_failed_cell(md_path: Path, nb: Any, error: Any) -> str:
    """``code cell 4 (notebooks/x.md:57: `train(run)`): ValueError: ...`` for a papermill execution error."""
    # papermill's cell_index counts the cells of the executed notebook, which has one more code cell (the
    # injected parameters) right after the parameters cell; match the failing cell back by its source.
    code_sources = [c.source for c in nb.cells if c.cell_type == "code"]
    number = next((i + 1 for i, src in enumerate(code_sources) if src == error.source), None)
    where = f"code cell {number}" if number else f"cell {error.cell_index}"
    line = _code_cell_line(md_path, number) if number else None
    first = _first_line(error.source) or "(empty cell)"
    location = f"{md_path}:{line}" if line else str(md_path)
    evalue = _first_line(error.evalue)
    return f"{where} ({location}: `{first}`): {error.ename}" + (f": {evalue}" if evalue else "")


def _code_cell_line(md_path: Path, number: int) -> int | None:
    """The line of the ``{code-cell}`` fence that opens code cell ``number`` (1-based) in a MyST notebook."""
    count = 0
    for lineno, line in enumerate(md_path.read_text().splitlines(), start=1):
        if re.match(r"^\s*(`{3,}|~{3,})\s*\{code-cell\}", line):
            count += 1
            if count == number:
                return lineno
    return None


def _first_line(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text or "")
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def run(
    profile: str,
    *,
    notebooks_dir: str | os.PathLike = "notebooks",
    toc_path: str | os.PathLike = "book/_toc.yml",
    build_dir: str | os.PathLike = "_build",
    only: Sequence[str] = (),
    params: dict[str, Any] | None = None,
    keep_going: bool = False,
    log_output: bool = False,
    out: Callable[..., None] = print,
) -> int:
    """Execute the notebooks (see module docstring). Returns the number of notebooks that failed."""
    profile = get_profile(profile).name
    notebooks_dir, layout = Path(notebooks_dir).resolve(), BuildLayout(Path(build_dir).resolve(), profile)
    if not notebooks_dir.is_dir():
        raise BookError(f"{notebooks_dir}: notebooks folder not found")
    problems = toc_problems(toc_path, notebooks_dir, Path(toc_path).parent)
    if problems:
        raise BookError("; ".join(problems))
    order = notebooks_in_order(toc_path, notebooks_dir)
    if only:
        unknown = [n for n in only if n not in order]
        if unknown:
            raise BookError(f"--only: no notebook named {', '.join(unknown)} (the book has: {', '.join(order)})")
        order = [n for n in order if n in set(only)]
    if not order:
        raise BookError(f"no notebooks to run in {notebooks_dir}")

    # Check everything that can be checked before the first kernel starts.
    plan: list[tuple[str, dict[str, Any]]] = []
    used: set[str] = set()
    for name in order:
        nb = read_notebook(notebooks_dir / f"{name}.md")
        problems = parameters_cell_problems(nb, name)
        if problems:
            raise BookError("; ".join(problems))
        declared = _declared_parameters(nb)
        plan.append((name, notebook_parameters(name, declared, profile, layout, params)))
        used |= set(declared) & set(params or {})
    unused = sorted(set(params or {}) - used)
    if unused:
        raise BookError(f"--param {', '.join(unused)}: declared by none of the notebooks to run ({', '.join(order)})")

    layout.notebooks.mkdir(parents=True, exist_ok=True)
    layout.results.mkdir(parents=True, exist_ok=True)
    status = read_status(layout.status_json)
    status.update(profile=profile, environment=environment_info(profile))
    failures = 0
    with this_interpreter_kernel() as kernel:
        for i, (name, parameters) in enumerate(plan, start=1):
            out(f"[{i}/{len(plan)}] {name} ... ", end="", flush=True)
            executed, results = layout.executed(name), layout.output_dir(name)
            remove(executed)  # a rerun replaces the previous outputs; a failed one leaves none
            remove(results)
            started = time.perf_counter()
            try:
                execute_notebook(notebooks_dir / f"{name}.md", executed, parameters, notebooks_dir,
                                 log_output=log_output, kernel_name=kernel)
                if not (results / RESULTS_FILE).exists():
                    raise NotebookFailed(name, f"it ran, but wrote no {RESULTS_FILE} into OUTPUT_DIR ({results})")
            except BaseException as e:
                remove(executed)
                remove(results)
                seconds = time.perf_counter() - started
                if not isinstance(e, NotebookFailed):
                    out(f"interrupted after {seconds:.1f} s", flush=True)
                    raise
                out(f"FAILED after {seconds:.1f} s", flush=True)
                out(str(e), file=sys.stderr, flush=True)
                status["notebooks"][name] = {"status": "failed", "seconds": round(seconds, 1),
                                             "finished": now(), "error": str(e)}
                atomic_write_json(layout.status_json, status)
                failures += 1
                if keep_going:
                    continue
                break
            seconds = time.perf_counter() - started
            out(f"{seconds:.1f} s", flush=True)
            status["notebooks"][name] = {"status": "ok", "seconds": round(seconds, 1), "finished": now()}
            atomic_write_json(layout.status_json, status)
    total = sum(v["seconds"] for k, v in status["notebooks"].items() if k in dict(plan))
    out(f"{len(plan) - failures} of {len(plan)} notebooks ran in the {profile} profile ({total:.1f} s); "
        f"executed notebooks in {layout.notebooks}")
    return failures


def _declared_parameters(nb: Any) -> list[str]:
    """Names the notebook's parameters cell declares, by papermill's own inspection."""
    import nbformat
    from papermill.inspection import inspect_notebook

    with tempfile.TemporaryDirectory(prefix="dbrepro-inspect-") as tmp:
        path = Path(tmp) / "nb.ipynb"
        nbformat.write(nb, path)
        return list(inspect_notebook(str(path)))


def environment_info(profile: str) -> dict[str, Any]:
    """Python, torch, CUDA or CPU, cores, key package versions, date and git commit: the status page's facts."""
    from importlib import metadata

    import torch

    info: dict[str, Any] = {
        "profile": profile,
        "date": now(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cuda_version": torch.version.cuda,
        "packages": {},
        "git_commit": _git_commit(),
    }
    for package in REPORTED_PACKAGES:
        try:
            info["packages"][package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info["packages"][package] = None
    return info


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
