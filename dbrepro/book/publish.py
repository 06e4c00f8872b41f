"""What an executed notebook looks like on the site: knobs folded away, no path of the build machine.

The executed notebook in ``<build>/<profile>/notebooks/`` is the full record of a run and stays as it is.
The copy staged for the site (:func:`for_site`) differs in two ways:

- **Hidden plumbing.** The ``parameters`` cell gets the ``hide-input`` tag (a collapsed "show code cell
  source"; its outputs, if any, stay visible), so a chapter opens with its title and claim. Tags already
  in a notebook are honoured by Jupyter Book as they are: ``hide-input`` for a chapter's setup cell,
  ``remove-input`` / ``remove-cell`` where even a fold would distract; code the reader should see carries
  no tag. papermill's ``injected-parameters`` cell is ``remove-cell`` (:mod:`.execute`).
- **No local paths.** Every string of the notebook (cell sources, outputs, tracebacks and warnings,
  papermill's metadata) has the absolute folders of the build machine replaced by placeholders: each
  path-valued parameter the notebook ran with (``<OUTPUT_DIR>``, ``<RESULTS_DIR>``, ``<LFW_ROOT>``,
  ``<DATA_ROOT>``), the build folder (``<build>``), the repository of this package (``<repo>``; a book
  kept elsewhere is ``<book>``), the run cache (``<cache>``), the Python installation (``<python>``), the
  temp folder (``<tmp>``) and the home folder (``~``), longest first, so that ``/home/me/dbrepro/.venv/lib/...`` reads ``<repo>/.venv/lib/...``. A
  warning or traceback therefore still says which file it comes from, relative to a folder every reader has.

Chapters should still not print paths: a sentence reads better than a placeholder.
"""

from __future__ import annotations

import copy
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..paths import cache_root

# a folder counts where it starts a path: after a colour code (IPython tracebacks), or not inside a longer
# path or word; and where it ends a path component
_PATH_START = r"(?P<pre>\x1b\[[0-9;]*m|(?<![\w.~/-]))"
_PATH_END = r"(?=$|[/\\\s'\"`:;,()\[\]{}<>|=\x1b])"


#: The repository this package runs from (``<repo>``; a book elsewhere is ``<book>``).
PACKAGE_REPO = Path(__file__).resolve().parents[2]


def machine_paths(build_dir: Path, book_root: Path, parameters: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """``(absolute folder, placeholder)`` pairs for :func:`scrub`, the most specific first.

    ``book_root`` is the folder holding the book's ``notebooks/`` (the repository, for this book). Each
    folder is given as written and resolved (symlinks followed), when they differ.
    """
    named: list[tuple[Any, str]] = []
    for key, value in (parameters or {}).items():
        if isinstance(value, str) and os.path.isabs(value):
            named.append((value, f"<{key}>"))
    named += [(build_dir, "<build>"), (PACKAGE_REPO, "<repo>"), (book_root, "<book>"), (cache_root(), "<cache>"),
              (sys.prefix, "<python>"), (sys.base_prefix, "<python>"), (tempfile.gettempdir(), "<tmp>"),
              (Path.home(), "~")]
    pairs: dict[str, str] = {}
    for folder, placeholder in named:
        for form in {str(folder), os.path.realpath(folder)}:
            form = form.rstrip("/")
            if len(form) > 1 and os.path.isabs(form) and form not in pairs:
                pairs[form] = placeholder
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


def scrub(value: Any, pairs: Iterable[tuple[str, str]]) -> Any:
    """``value`` (a string, or a JSON-like structure of them) with every folder of ``pairs`` replaced."""
    pairs = list(pairs)
    if not pairs:
        return value
    pattern = re.compile(_PATH_START + "(?P<path>" + "|".join(re.escape(p) for p, _ in pairs) + ")" + _PATH_END)
    lookup = dict(pairs)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return pattern.sub(lambda m: m.group("pre") + lookup[m.group("path")], v)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    return walk(value)


def hide_parameters_cell(nb: Any) -> None:
    """Tag the ``parameters`` cell ``hide-input`` unless it is already hidden or removed."""
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags and not {"hide-input", "remove-input", "remove-cell"} & set(tags):
            cell.setdefault("metadata", {})["tags"] = [*tags, "hide-input"]


def for_site(nb: Any, build_dir: Path, book_root: Path) -> Any:
    """A copy of an executed notebook (an nbformat notebook or its JSON dict) ready for the site."""
    import nbformat

    data = copy.deepcopy(dict(nb))
    parameters = data.get("metadata", {}).get("papermill", {}).get("parameters", {})
    data = scrub(data, machine_paths(Path(build_dir), Path(book_root), parameters))
    out = nbformat.from_dict(data)
    hide_parameters_cell(out)
    return out
