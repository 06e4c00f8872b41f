"""Showing the library's own code and docstrings in a chapter, whole or by name (never sliced at offsets).

- :func:`source` shows a function, class or module, or one named *region* of it: the lines between
  ``# region: NAME`` and ``# endregion`` comments (an editor convention, so the regions fold there too);
- :func:`doc` shows a docstring, or one named *section* of it: a heading underlined with dashes
  (numpy/reStructuredText style) and the text up to the next heading.

Rewording a docstring or moving code around a region therefore never breaks a chapter; renaming a
region or a section does, loudly (the error lists the names there are).
"""

from __future__ import annotations

import inspect
import re
import textwrap
from typing import Any

_REGION = re.compile(r"^\s*#\s*region:\s*(?P<name>.+?)\s*$")
_ENDREGION = re.compile(r"^\s*#\s*endregion\b")


class Code:
    """Python source that renders highlighted in a notebook and the book (HTML) and as text elsewhere."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        return highlight(self.text, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))

    def _repr_markdown_(self) -> str:
        return f"```python\n{self.text}\n```"

    def __repr__(self) -> str:
        return self.text


class Doc:
    """A docstring (or a section of one), shown as Markdown (Sphinx roles such as ``:func:`x``` become code)."""

    def __init__(self, text: str) -> None:
        self.text = re.sub(r":[a-z]+:`~?\.?([^`]+)`", r"`\1`", text).replace("``", "`")

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def regions(obj: Any) -> dict[str, str]:
    """The named regions of ``obj``'s source (name -> dedented code, markers excluded)."""
    lines = inspect.getsource(obj).splitlines()
    out: dict[str, str] = {}
    open_name, start = None, 0
    for i, line in enumerate(lines):
        m = _REGION.match(line)
        if m:
            open_name, start = m.group("name"), i + 1
        elif _ENDREGION.match(line) and open_name is not None:
            out[open_name] = textwrap.dedent("\n".join(lines[start:i])).strip("\n")
            open_name = None
    return out


def source(*objs: Any, region: str | None = None) -> Code:
    """The source of ``objs`` (functions, classes, modules; blank line between them), or of one region.

    Region markers are left out of what is shown.
    """
    if not objs:
        raise ValueError("source: give at least one function, class or module")
    if region is not None:
        if len(objs) != 1:
            raise ValueError("source: a region belongs to one object; give exactly one")
        found = regions(objs[0])
        if region not in found:
            raise KeyError(f"{_name(objs[0])} has no region {region!r}; its regions: {', '.join(found) or 'none'}")
        return Code(found[region])
    texts = []
    for obj in objs:
        lines = [ln for ln in inspect.getsource(obj).splitlines() if not (_REGION.match(ln) or _ENDREGION.match(ln))]
        texts.append(textwrap.dedent("\n".join(lines)).strip("\n"))
    return Code("\n\n\n".join(texts))


def sections(obj: Any) -> dict[str, str]:
    """The sections of ``obj``'s docstring: heading -> text (a heading is a line underlined with ``---``)."""
    lines = (inspect.getdoc(obj) or "").splitlines()
    out: dict[str, str] = {}
    heading, body = None, []
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"-{3,}", nxt.strip()) and len(nxt.strip()) >= len(line.strip()) - 2:
            if heading is not None:
                out[heading] = "\n".join(body).strip()
            heading, body = line.strip(), []
        elif heading is not None and not re.fullmatch(r"-{3,}", line.strip()):
            body.append(line)
    if heading is not None:
        out[heading] = "\n".join(body).strip()
    return out


def doc(obj: Any, section: str | None = None) -> Doc:
    """``obj``'s docstring, or its section ``section`` (see :func:`sections`), as Markdown."""
    if section is None:
        return Doc(inspect.getdoc(obj) or "")
    found = sections(obj)
    if section not in found:
        raise KeyError(f"the docstring of {_name(obj)} has no section {section!r}; its sections: "
                       f"{', '.join(found) or 'none'}")
    return Doc(found[section])


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
