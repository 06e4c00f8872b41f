"""The banner a notebook shows when its profile's numbers are not meant to be read."""

from __future__ import annotations

import html

from ..config import get_profile


class Banner:
    """A warning box shown at the top of a notebook (HTML in the book and JupyterLab, Markdown elsewhere)."""

    def __init__(self, title: str, text: str) -> None:
        self.title, self.text = title, text

    def _repr_html_(self) -> str:
        return (
            '<div class="admonition warning" style="border-left: 4px solid #f0ad4e; padding: 0.4em 0.8em;">'
            f'<p class="admonition-title" style="font-weight: bold;">{html.escape(self.title)}</p>'
            f"<p>{html.escape(self.text)}</p></div>"
        )

    def _repr_markdown_(self) -> str:
        return f"> **{self.title}** {self.text}"

    def __repr__(self) -> str:
        return f"{self.title} {self.text}"


def banner(profile: str) -> Banner | None:
    """The smoke banner for a profile whose numbers are not meant to be read; ``None`` otherwise."""
    p = get_profile(profile)
    if p.numbers_meaningful:
        return None
    return Banner(
        f"{p.name.capitalize()} profile: these numbers mean nothing.",
        f"This page was executed in the {p.name} profile, which runs every notebook end to end on a tiny "
        "synthetic world in seconds to test the code. Read the numbers of the cpu profile (make book) instead.",
    )
