"""Where a profile's build products live, and the error every command reports as one line."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path


class BookError(Exception):
    """A problem the user must fix; the command line prints its message as one line and exits non-zero."""


@dataclass
class BuildLayout:
    """Where one profile's build products live: ``<build>/<profile>/...``."""

    build_dir: Path
    profile: str

    @property
    def root(self) -> Path:
        return self.build_dir / self.profile

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def status_json(self) -> Path:
        return self.root / "status.json"

    @property
    def site_src(self) -> Path:
        return self.root / "site-src"

    @property
    def site(self) -> Path:
        return self.root / "site" / "html"

    @property
    def check_dir(self) -> Path:
        return self.root / "check"

    @property
    def staging(self) -> Path:
        """Where a run writes a notebook's outputs before it commits them (and holds its lock)."""
        return self.root / ".staging"

    def executed(self, name: str) -> Path:
        return self.notebooks / f"{name}.ipynb"

    def output_dir(self, name: str) -> Path:
        return self.results / name


def remove(path: Path) -> None:
    """Delete a file or a folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
