"""Temporary books for the executor and site tests: MyST notebooks, a toc, the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEADER = textwrap.dedent(
    """\
    ---
    jupytext:
      text_representation:
        extension: .md
        format_name: myst
    kernelspec:
      display_name: Python 3
      language: python
      name: python3
    ---
    """
)
PARAMETERS = textwrap.dedent(
    """\
    ```{code-cell} ipython3
    :tags: [parameters]

    PROFILE = "cpu"
    SEED = 0
    DEVICE = "auto"
    OUTPUT_DIR = None
    """
)


def notebook_md(*cells: str, parameters: str = PARAMETERS, extra_parameters: str = "", title: str = "A test notebook",
                intro: str = "") -> str:
    """A MyST notebook: the header, a title, ``intro`` (Markdown), the parameters cell (plus extra lines),
    then the cells.

    A cell is code, or a ``(tags, code)`` pair for a tagged code cell, or Markdown when it starts with
    ``"md:"``.
    """
    text = HEADER + f"\n# {title}\n\n" + (intro.strip() + "\n\n" if intro else "") + parameters + extra_parameters + "```\n"
    for cell in cells:
        if isinstance(cell, str) and cell.startswith("md:"):
            text += "\n" + textwrap.dedent(cell[3:]).strip() + "\n"
            continue
        tags, source = cell if isinstance(cell, tuple) else ((), cell)
        options = f":tags: [{', '.join(tags)}]\n\n" if tags else ""
        text += "\n```{code-cell} ipython3\n" + options + textwrap.dedent(source).strip() + "\n```\n"
    return text


def write_book(root: Path, notebooks: dict[str, str], toc_files: list[str], parts: dict[str, list[str]] | None = None
               ) -> tuple[Path, Path]:
    """A temporary book: notebooks/<name>.md and book/_toc.yml listing ``toc_files`` in order (the first is
    the root), in one part "Tests", or in ``parts`` ({caption: [files]}) when given."""
    nb_dir, book_dir = root / "notebooks", root / "book"
    nb_dir.mkdir(parents=True)
    book_dir.mkdir(parents=True, exist_ok=True)
    for name, text in notebooks.items():
        (nb_dir / f"{name}.md").write_text(text)
    parts = parts or {"Tests": toc_files[1:]}
    body = "".join(f"  - caption: {caption}\n    chapters:\n" + "".join(f"      - file: {f}\n" for f in files)
                   for caption, files in parts.items())
    (book_dir / "_toc.yml").write_text(f"format: jb-book\nroot: {toc_files[0]}\nparts:\n{body}")
    return nb_dir, book_dir / "_toc.yml"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m dbrepro.book ARGS`` in the repository, this interpreter, the environment plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "dbrepro.book", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})},
    )


def book_command(*args: str) -> list[str]:
    """The argv of ``python -m dbrepro.book ARGS`` (for a subprocess a test signals)."""
    return [sys.executable, "-m", "dbrepro.book", *args]
