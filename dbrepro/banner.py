"""The box at the top of every chapter: which profile and which data its numbers come from.

In the smoke profile it is a warning (the numbers test the code and mean nothing); in the others a note
naming the data (the synthetic world and its version, or the user's data set by name and fingerprint:
never a local path, which would leak the build machine into a published page).
"""

from __future__ import annotations

import html


class Banner:
    """A note or warning box (HTML in the book and JupyterLab, Markdown elsewhere)."""

    def __init__(self, title: str, text: str, level: str = "note") -> None:
        if level not in ("note", "warning"):
            raise ValueError(f"Banner level must be 'note' or 'warning', got {level!r}")
        self.title, self.text, self.level = title, text, level

    def _repr_html_(self) -> str:
        colour = "#f0ad4e" if self.level == "warning" else "#5bc0de"
        return (
            f'<div class="admonition {self.level} dbrepro-banner" style="border-left: 4px solid {colour}; '
            'padding: 0.4em 0.8em;">'
            f'<p class="admonition-title" style="font-weight: bold;">{html.escape(self.title)}</p>'
            f"<p>{html.escape(self.text)}</p></div>"
        )

    def _repr_markdown_(self) -> str:
        return f"> **{self.title}** {self.text}"

    def __repr__(self) -> str:
        return f"{self.title} {self.text}"


def banner(profile_name: str, numbers_meaningful: bool, data: str) -> Banner:
    """The banner of a page computed in ``profile_name`` from ``data`` (a description, e.g.
    ``"the synthetic world (version 16: 600 identities, 10,820 images)"``)."""
    if not numbers_meaningful:
        return Banner(
            f"{profile_name.capitalize()} profile: these numbers mean nothing.",
            f"This page was executed in the {profile_name} profile, which runs every notebook end to end on a tiny "
            f"data set ({data}) in seconds to test the code. Read the numbers of the cpu profile (make book) "
            "instead.", level="warning")
    return Banner(f"Numbers on this page: {profile_name} profile.", f"Every number here is computed from {data}.")
