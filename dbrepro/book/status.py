"""``<build>/<profile>/status.json``: what each notebook's last run did, and which outputs are on disk.

::

    {"profile": "cpu", "environment": {...},
     "notebooks": {"rl-02-softmax-long-tail": {
         "status": "ok" | "failed" | "interrupted",   # the last attempt
         "seconds": 84.2, "finished": "2025-06-01 10:12:00 UTC", "error": "...",   # of the last attempt
         "outputs": {"run": "3f2a...", "finished": ..., "seconds": ..., "computed": true,
                     "results_sha256": "..."} | null,   # the executed notebook and results on disk
         "cold":   {"seconds": 312.0, "date": ...},    # the last successful run that computed something
         "cached": {"seconds": 9.1, "date": ...}}}}    # the last successful run that computed nothing

The disk is the truth and ``status.json`` its mirror. A notebook's outputs are a pair, the executed
notebook ``notebooks/<name>.ipynb`` and ``results/<name>/results.json``; the executor writes into the
notebook's metadata (``metadata.dbrepro``) the run's id and the sha256 of the results it committed with
it, so a pair is complete when both exist and the hash matches. :func:`reconcile` derives ``outputs``
from the disk (after a kill, a deleted file, a lost ``status.json``) and names the notebooks whose pair
is broken; the executor removes those halves, ``build`` refuses them.

"Computed" means the notebook's kernel reported a ``trained`` or ``rendered`` event
(:mod:`dbrepro.progress`); the status page shows the last cold and the last cached time of every chapter.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Iterable

from ..paths import atomic_write_json, file_sha256
from ..results import RESULTS_FILE
from .layout import BuildLayout

#: Key of the executor's record in an executed notebook's metadata.
METADATA_KEY = "dbrepro"


def now() -> str:
    """The current UTC time as the status page shows it."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def read_status(path: Path) -> dict[str, Any]:
    """The build's ``status.json``, or an empty record (a status file is a mirror, not an input: an
    unreadable one is rebuilt from the disk by :func:`reconcile`)."""
    if path.exists():
        try:
            status = json.loads(path.read_text())
            if isinstance(status, dict) and isinstance(status.get("notebooks"), dict):
                return status
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            pass
    return {"notebooks": {}}


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Write ``status.json`` atomically (temp file, fsync, rename)."""
    atomic_write_json(path, status)


def sha256_or_none(path: Path) -> str | None:
    """The sha256 of a file (:func:`dbrepro.paths.file_sha256`), or None when it does not exist or cannot be read."""
    try:
        return file_sha256(path)
    except OSError:
        return None


def notebook_record(path: Path) -> dict[str, Any] | None:
    """The executor's record in an executed notebook (``metadata.dbrepro``); ``{}`` for a readable notebook
    without one (written before records existed), None when the file is missing or not a notebook."""
    try:
        nb = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(nb, dict) or not isinstance(nb.get("metadata"), dict):
        return None
    record = nb["metadata"].get(METADATA_KEY)
    return dict(record) if isinstance(record, dict) else {}


def outputs_on_disk(layout: BuildLayout, name: str, entry: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, str]:
    """The complete outputs of notebook ``name`` on disk, and a reason when they are broken.

    Returns ``(outputs, "")`` for a complete pair, ``(None, "")`` when neither half exists, and
    ``(None, reason)`` for a broken pair. A pair written before the executor recorded hashes counts as
    complete when ``entry`` (its old status entry) says it ran ``ok``.
    """
    executed, results_dir = layout.executed(name), layout.output_dir(name)
    if not executed.exists() and not results_dir.exists():
        return None, ""
    if not executed.exists():
        return None, f"results/{name} exists without its executed notebook"
    record = notebook_record(executed)
    if record is None:
        return None, f"{executed.name} is not a readable notebook"
    sha = sha256_or_none(results_dir / RESULTS_FILE)
    if sha is None:
        return None, f"results/{name}/{RESULTS_FILE} is missing"
    if not record:  # before the executor wrote records: trust an "ok" entry
        if entry and entry.get("status") == "ok":
            return {"run": None, "finished": entry.get("finished"), "seconds": entry.get("seconds"),
                    "computed": None, "results_sha256": sha}, ""
        return None, f"{executed.name} carries no run record"
    if record.get("results_sha256") != sha:
        return None, f"{executed.name} and results/{name}/{RESULTS_FILE} come from different runs"
    return {k: record.get(k) for k in ("run", "finished", "seconds", "computed", "results_sha256")}, ""


def names_on_disk(layout: BuildLayout) -> set[str]:
    """Every notebook with an executed notebook or a results folder in the build."""
    names = {p.stem for p in layout.notebooks.glob("*.ipynb")} if layout.notebooks.is_dir() else set()
    if layout.results.is_dir():
        names |= {p.name for p in layout.results.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return names


def reconcile(status: dict[str, Any], layout: BuildLayout, names: Iterable[str] = ()) -> dict[str, str]:
    """Make every entry's ``outputs`` describe the disk; returns ``{name: reason}`` for broken pairs.

    Looks at ``names``, every notebook ``status`` knows and every notebook on disk. A notebook found on
    disk without an entry gets one from its run record (``status.json`` was lost).
    """
    notebooks = status.setdefault("notebooks", {})
    broken = {}
    for name in sorted(set(names) | set(notebooks) | names_on_disk(layout)):
        entry = notebooks.get(name)
        outputs, reason = outputs_on_disk(layout, name, entry)
        if reason:
            broken[name] = reason
        if entry is None:
            if outputs is None:
                continue
            entry = notebooks[name] = {"status": "ok", "seconds": outputs.get("seconds"),
                                       "finished": outputs.get("finished")}
        entry["outputs"] = outputs
    return broken


def record_attempt(
    status: dict[str, Any],
    name: str,
    outcome: str,
    seconds: float,
    *,
    error: str | None = None,
    outputs: dict[str, Any] | None = None,
    computed: bool | None = None,
) -> dict[str, Any]:
    """Record the end of one attempt at notebook ``name``: ``ok`` (with its committed ``outputs`` and
    whether it ``computed`` something), ``failed`` or ``interrupted`` (the previous outputs stay)."""
    entry = status.setdefault("notebooks", {}).setdefault(name, {})
    date = now()
    entry.update(status=outcome, seconds=round(seconds, 1), finished=date)
    entry.pop("error", None)
    if error:
        entry["error"] = error
    if outcome == "ok":
        entry["outputs"] = outputs
        entry["cold" if computed else "cached"] = {"seconds": round(seconds, 1), "date": date}
    else:
        entry.setdefault("outputs", None)
    return entry
