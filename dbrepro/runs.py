"""The run cache: every training run is keyed by a hash of its full config.

A run lives in ``$DBREPRO_CACHE/runs/<key>/`` (see :mod:`dbrepro.paths`)::

    config.json       the full config the key was computed from
    log.txt           one line per epoch (and anything else worth keeping)
    checkpoint.pt     the last finished epoch, for resuming an interrupted run
    model.pt          the final weights (model + head), written before metrics.json
    metrics.json      training metrics; its presence is what makes a run *complete*
    eval-<hash>.json  evaluation results, keyed by what was evaluated

Every file is written atomically (temp file + rename), and ``metrics.json`` is written last, so
an interrupted run never looks complete: the next call resumes from ``checkpoint.pt``.

The key is ``sha256(CACHE_VERSION + canonical JSON of the config)``. Bump :data:`CACHE_VERSION`
when a change to the code makes old results wrong; old runs are then simply never found again
(``dbrepro runs clean --stale`` removes them).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .paths import atomic_write_json, atomic_write_text, cache_dir, canonical_json, config_hash

#: Part of every run key. Bump it when results computed by older code must not be reused.
CACHE_VERSION = "1"


def runs_root() -> Path:
    return cache_dir("runs")


def run_key(config: dict[str, Any]) -> str:
    return config_hash(config, CACHE_VERSION)


@dataclass(frozen=True)
class Run:
    """A handle on one run directory. Cheap to create; nothing is read until asked."""

    key: str
    dir: Path

    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def model_path(self) -> Path:
        return self.dir / "model.pt"

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.pt"

    @property
    def log_path(self) -> Path:
        return self.dir / "log.txt"

    @property
    def complete(self) -> bool:
        return self.metrics_path.exists() and self.model_path.exists()

    def config(self) -> dict[str, Any]:
        return json.loads(self.config_path.read_text())

    def metrics(self) -> dict[str, Any]:
        if not self.metrics_path.exists():
            raise FileNotFoundError(f"run {self.key} is not complete: {self.metrics_path} is missing")
        return json.loads(self.metrics_path.read_text())

    def log(self, line: str) -> None:
        """Append one timestamped line to ``log.txt`` (appends are not atomic; the log is informational)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line.rstrip()}\n")

    def finish(self, metrics: dict[str, Any]) -> None:
        """Mark the run complete by writing ``metrics.json`` (the model must already be saved)."""
        if not self.model_path.exists():
            raise RuntimeError(f"run {self.key}: save model.pt before metrics.json")
        atomic_write_json(self.metrics_path, metrics)

    # evaluation results keyed by what was evaluated -------------------------------------------
    def eval_path(self, what: dict[str, Any]) -> Path:
        return self.dir / f"eval-{config_hash(what, CACHE_VERSION, length=12)}.json"

    def load_eval(self, what: dict[str, Any]) -> dict[str, Any] | None:
        path = self.eval_path(what)
        return json.loads(path.read_text()) if path.exists() else None

    def save_eval(self, what: dict[str, Any], result: dict[str, Any]) -> None:
        atomic_write_json(self.eval_path(what), {"what": what, "result": result})

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.rglob("*") if p.is_file())


def get_run(config: dict[str, Any], root: Path | None = None) -> Run:
    """The run for ``config``, creating its directory and ``config.json`` if new."""
    key = run_key(config)
    run = Run(key, (root or runs_root()) / key)
    if not run.config_path.exists():
        run.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.config_path, json.dumps(json.loads(canonical_json(config)), indent=2, sort_keys=True) + "\n")
    return run


def find_run(key_prefix: str, root: Path | None = None) -> Run:
    """A run by its key or an unambiguous prefix of it (as ``dbrepro runs list`` shows them)."""
    root = root or runs_root()
    matches = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(key_prefix)] if root.exists() else []
    if not matches:
        raise KeyError(f"no run with key {key_prefix!r} in {root}")
    if len(matches) > 1:
        raise KeyError(f"run key prefix {key_prefix!r} is ambiguous: {', '.join(sorted(p.name for p in matches))}")
    return Run(matches[0].name, matches[0])


def iter_runs(root: Path | None = None) -> Iterator[Run]:
    root = root or runs_root()
    if not root.exists():
        return
    for p in sorted(root.iterdir()):
        if p.is_dir() and (p / "config.json").exists():
            yield Run(p.name, p)


def is_stale(run: Run) -> bool:
    """A run whose key no longer matches its config under the current cache version."""
    try:
        return run_key(run.config()) != run.key
    except (OSError, ValueError):
        return True


def clean(root: Path | None = None, *, incomplete: bool = False, stale: bool = False) -> list[Run]:
    """Delete runs: all of them by default, or only incomplete and/or stale ones. Returns what was removed."""
    removed = []
    for run in list(iter_runs(root)):
        if (incomplete or stale) and not ((incomplete and not run.complete) or (stale and is_stale(run))):
            continue
        shutil.rmtree(run.dir, ignore_errors=True)
        removed.append(run)
    return removed
