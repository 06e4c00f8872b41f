"""Execute one notebook with papermill, in this interpreter's kernel, reporting each cell as it starts.

The notebook is converted from jupytext MyST Markdown in memory (the ``.md`` is never written) and handed
to papermill as a notebook object (no temp file). nbclient's ``on_cell_execute`` hook, which papermill
forwards to its nbclient engine as an engine keyword, reports each code cell as the kernel starts it: its
number among the notebook's code cells, its line in the ``.md`` and its first line. A failing notebook is
reported as one line naming it, the failing cell and the exception (:class:`NotebookFailed`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..paths import atomic_write_text
from .toc import read_notebook

#: ``on_cell(number, total, where, first_line)``: number is None for papermill's injected parameters.
CellHook = Callable[[int | None, int, str, str], None]


class NotebookFailed(Exception):
    """A notebook raised while executing; ``str()`` is the one line the user reads."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"notebook {name} failed: {message}")
        self.name = name


@contextlib.contextmanager
def this_interpreter_kernel(folder: str | os.PathLike | None = None) -> Iterator[str]:
    """Make the kernel named ``python3`` run ``sys.executable`` for the duration of the block.

    A ``python3`` kernelspec in the user's Jupyter folders could point at another Python; a kernelspec in a
    folder put first on ``JUPYTER_PATH`` takes precedence over all of them. The kernelspec is written into
    ``folder`` (the run's staging folder, so that nothing is left in /tmp after a kill), or into a temp
    folder when none is given; it is removed at the end of the block.
    """
    import shutil
    import tempfile

    if folder is None:
        root = Path(tempfile.mkdtemp(prefix="dbrepro-kernel-"))
    else:
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
    spec_dir = root / "kernels" / "python3"
    old = os.environ.get("JUPYTER_PATH")
    try:
        spec_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "argv": [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--IPKernelApp.log_level=CRITICAL"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "metadata": {"debugger": False},
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
        os.environ["JUPYTER_PATH"] = str(root) + (os.pathsep + old if old else "")
        yield "python3"
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (the kernel papermill starts inherits them)."""
    old = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def code_cells(md_path: Path, nb: Any) -> list[tuple[int | None, str]]:
    """For each code cell of ``nb`` (read from ``md_path``): the line of its ``{code-cell}`` fence in the
    ``.md`` and its first non-empty line."""
    fences = [i for i, line in enumerate(md_path.read_text().splitlines(), start=1)
              if re.match(r"^\s*(`{3,}|~{3,})\s*\{code-cell\}", line)]
    cells = [c for c in nb.cells if c.cell_type == "code"]
    return [(fences[i] if i < len(fences) else None, _first_line(c.source)) for i, c in enumerate(cells)]


def execute_notebook(
    md_path: Path,
    output_path: Path | None,
    parameters: dict[str, Any],
    cwd: Path,
    log_output: bool = False,
    kernel_name: str = "python3",
    *,
    on_cell: CellHook | None = None,
    env: Mapping[str, str] | None = None,
    display_root: Path | None = None,
) -> Any:
    """Execute one notebook with papermill; write it to ``output_path`` atomically (when given); return it.

    ``on_cell`` is called as each code cell starts; ``env`` is set for the kernel. papermill's
    ``input_path`` / ``output_path`` metadata are written relative to ``display_root`` when they lie
    inside it. Raises :class:`NotebookFailed` naming
    the failing cell (its number among the code cells, its line in the ``.md``, its first line) and the
    exception. Nothing is written on failure.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    name = md_path.stem
    nb = read_notebook(md_path)
    cells = code_cells(md_path, nb)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    where = _shown_path(md_path, display_root)

    def hook(cell: Any, cell_index: int, **_: Any) -> None:
        if on_cell is None:
            return
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            on_cell(None, len(cells), "", "")
            return
        number = next((i + 1 for i, src in enumerate(sources) if src == cell.source), None)
        line, first = cells[number - 1] if number else (None, _first_line(cell.source))
        on_cell(number, len(cells), f"{where}:{line}" if line else where, first)

    try:
        with environment(env or {}):
            executed = papermill.execute_notebook(
                nb,
                None,  # papermill writes nothing; the executed notebook is written below, atomically
                parameters=parameters,
                kernel_name=kernel_name,
                cwd=str(cwd),
                progress_bar=False,
                log_output=log_output,
                on_cell_execute=hook,  # forwarded by papermill's nbclient engine to nbclient.NotebookClient
            )
    except PapermillExecutionError as e:
        raise NotebookFailed(name, _describe_failed_cell(md_path, nb, e, where)) from None
    except Exception as e:  # kernel died, timed out, could not start, ...
        raise NotebookFailed(name, f"{type(e).__name__}: {_first_line(str(e))}") from None
    hide_injected_parameters(executed)
    executed.metadata.setdefault("papermill", {})
    executed.metadata.papermill["input_path"] = where
    executed.metadata.papermill["output_path"] = _shown_path(output_path, display_root) if output_path else None
    if output_path is not None:
        atomic_write_text(output_path, nbformat.writes(executed))
    return executed


def _shown_path(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` when inside it (how a person reads it), else as given."""
    if root is not None:
        with contextlib.suppress(ValueError):
            return str(Path(path).resolve().relative_to(Path(root).resolve()))
    return str(path)


def hide_injected_parameters(nb: Any) -> None:
    """Tag papermill's ``injected-parameters`` cell ``remove-cell``: kept in the executed notebook (it
    records how the notebook was run), left out of the site (it holds local paths, and the
    ``parameters`` cell above it already shows the reader the knobs)."""
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]


def _describe_failed_cell(md_path: Path, nb: Any, error: Any, where: str | None = None) -> str:
    """``code cell 4 (notebooks/x.md:57: `train(run)`): ValueError: ...`` for a papermill execution error."""
    # papermill's cell_index counts the cells of the executed notebook, which has one more code cell (the
    # injected parameters) right after the parameters cell; match the failing cell back by its source.
    code_sources = [c.source for c in nb.cells if c.cell_type == "code"]
    number = next((i + 1 for i, src in enumerate(code_sources) if src == error.source), None)
    label = f"code cell {number}" if number else f"cell {error.cell_index}"
    line = code_cells(md_path, nb)[number - 1][0] if number else None
    first = _first_line(error.source) or "(empty cell)"
    shown = where or str(md_path)
    location = f"{shown}:{line}" if line else shown
    evalue = _first_line(error.evalue)
    return f"{label} ({location}: `{first}`): {error.ename}" + (f": {evalue}" if evalue else "")


def _first_line(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text or "")
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
