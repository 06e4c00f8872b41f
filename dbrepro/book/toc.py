"""The book's table of contents (``book/_toc.yml``), its notebooks, and the rule for their first cell."""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .layout import BookError

#: The scorecard aggregates every other notebook's results; it always runs last and gets RESULTS_DIR.
SCORECARD = "scorecard"
#: Pages the build generates (toc entries that are neither a notebook nor a file in book/).
GENERATED_PAGES = ("status",)
#: Parameters every notebook's first code cell must define, with the required literal default where fixed.
REQUIRED_PARAMETERS: dict[str, Any] = {"PROFILE": str, "SEED": int, "DEVICE": "auto", "OUTPUT_DIR": None}


@dataclass(frozen=True)
class TocEntry:
    """One page of the book: ``file`` as written in ``_toc.yml`` and the caption of its part."""

    file: str
    part: str


def read_toc(toc_path: str | os.PathLike) -> list[TocEntry]:
    """Every page of a Jupyter Book 1 ``_toc.yml`` in reading order (root first).

    Raises ``BookError`` naming the file when it is missing, not YAML, or not a ``jb-book`` toc.
    """
    import yaml

    toc_path = Path(toc_path)
    try:
        data = yaml.safe_load(toc_path.read_text())
    except FileNotFoundError:
        raise BookError(f"{toc_path}: table of contents not found") from None
    except yaml.YAMLError as e:
        raise BookError(f"{toc_path}: not valid YAML ({e})") from None
    if not isinstance(data, dict) or "root" not in data:
        raise BookError(f"{toc_path}: a jb-book toc needs a 'root' entry")
    entries = [TocEntry(_strip_suffix(str(data["root"])), "")]

    def walk(items: Any, part: str, where: str) -> None:
        if items is None:
            return
        if not isinstance(items, list):
            raise BookError(f"{toc_path}: {where} must be a list")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise BookError(f"{toc_path}: {where}[{i}] must be a mapping, got {item!r}")
            if "file" in item:
                entries.append(TocEntry(_strip_suffix(str(item["file"])), part))
            elif "url" not in item and "glob" not in item:
                raise BookError(f"{toc_path}: {where}[{i}] has no 'file'")
            walk(item.get("sections"), part, f"{where}[{i}].sections")

    for i, part in enumerate(data.get("parts") or []):
        if not isinstance(part, dict):
            raise BookError(f"{toc_path}: parts[{i}] must be a mapping")
        walk(part.get("chapters"), str(part.get("caption", "")), f"parts[{i}].chapters")
    walk(data.get("chapters"), "", "chapters")
    return entries


def _strip_suffix(name: str) -> str:
    for suffix in (".md", ".ipynb"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def notebook_names(notebooks_dir: str | os.PathLike) -> list[str]:
    """The chapters: every ``*.md`` in the notebooks folder, by name."""
    return sorted(p.stem for p in Path(notebooks_dir).glob("*.md"))


def toc_problems(toc_path: str | os.PathLike, notebooks_dir: str | os.PathLike, book_dir: str | os.PathLike) -> list[str]:
    """What is wrong between the toc and the files: one sentence per problem (empty when consistent)."""
    toc_path, notebooks_dir, book_dir = Path(toc_path), Path(notebooks_dir), Path(book_dir)
    entries = read_toc(toc_path)
    names = [e.file for e in entries]
    notebooks = set(notebook_names(notebooks_dir))
    problems = []
    for name in sorted(notebooks - set(names)):
        problems.append(f"notebook {notebooks_dir / (name + '.md')} is not in {toc_path}")
    for name in names:
        if name in notebooks or name in GENERATED_PAGES:
            continue
        if not (book_dir / f"{name}.md").exists():
            problems.append(f"{toc_path} names {name!r}, but neither {notebooks_dir / (name + '.md')} "
                            f"nor {book_dir / (name + '.md')} exists")
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{toc_path} lists {name!r} more than once")
    for name in sorted(notebooks & {p.stem for p in book_dir.glob("*.md")}):
        problems.append(f"{name!r} exists both as a notebook and as a page in {book_dir}")
    return problems


def notebooks_in_order(toc_path: str | os.PathLike, notebooks_dir: str | os.PathLike) -> list[str]:
    """The notebooks in toc order, with the scorecard moved last."""
    available = set(notebook_names(notebooks_dir))
    order = [e.file for e in read_toc(toc_path) if e.file in available]
    if SCORECARD in order:
        order = [n for n in order if n != SCORECARD] + [SCORECARD]
    return order


def read_notebook(md_path: str | os.PathLike):
    """A jupytext MyST Markdown notebook as an ``nbformat`` notebook (nothing is written)."""
    import jupytext

    md_path = Path(md_path)
    try:
        return jupytext.read(md_path, fmt="md:myst")
    except FileNotFoundError:
        raise BookError(f"{md_path}: notebook not found") from None
    except Exception as e:  # jupytext raises assorted errors on malformed files
        raise BookError(f"{md_path}: cannot be read as a jupytext MyST notebook ({type(e).__name__}: {e})") from None


def parameters_cell_problems(nb: Any, name: str = "notebook") -> list[str]:
    """Check the book's rule for the first code cell, by parsing it (AST, not regex).

    The first code cell must be tagged ``parameters`` and assign ``PROFILE`` (a string), ``SEED`` (an int),
    ``DEVICE = "auto"`` and ``OUTPUT_DIR = None``, each a literal.
    """
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    if not code_cells:
        return [f"{name}: has no code cell"]
    cell = code_cells[0]
    problems = []
    if "parameters" not in cell.metadata.get("tags", []):
        problems.append(f"{name}: the first code cell is not tagged 'parameters'")
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as e:
        return problems + [f"{name}: the parameters cell is not valid Python ({e.msg}, line {e.lineno})"]
    values: dict[str, Any] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name) and node.value is not None:
                try:
                    values[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    values[target.id] = _NOT_LITERAL
    for key, rule in REQUIRED_PARAMETERS.items():
        if key not in values:
            problems.append(f"{name}: the parameters cell does not define {key}")
        elif values[key] is _NOT_LITERAL:
            problems.append(f"{name}: {key} in the parameters cell must be a literal")
        elif isinstance(rule, type):
            if type(values[key]) is not rule:
                problems.append(f"{name}: {key} must be a {rule.__name__}, got {values[key]!r}")
        elif values[key] != rule:
            problems.append(f"{name}: {key} must default to {rule!r}, got {values[key]!r}")
    return problems


_NOT_LITERAL = object()
