"""Progress lines for whoever runs a notebook: the book's executor shows them under the notebook's line.

A notebook's output stays clean: :func:`report` and :func:`event` write nothing to stdout or stderr, in a
terminal or in a notebook. They append to the file named by the environment variable
:data:`PROGRESS_ENV` when it is set (``python -m dbrepro.book run`` sets it for each notebook's kernel
and tails the file while the notebook runs) and do nothing otherwise.

Two kinds of line:

- a **report** is free text for a person (``"run 2 of 6, epoch 3/10, loss 4.21, 1830 img/s"``); the
  executor prints the latest one, at most every few seconds when its output is not a terminal;
- an **event** is one machine-readable fact, :data:`EVENT_MARKER` followed by a JSON object with a
  ``kind`` (``{"kind": "trained", "run": "...", "seconds": 41.2}``). The executor counts ``trained`` and
  ``rendered`` events: a notebook that emitted one computed something (a *cold* run), one that emitted
  none was served from the caches (a *cached* run); the status page shows the last time of each.

Each line is one ``write`` on a file opened with ``O_APPEND``, so lines from several processes (data
loader workers, a ``torchrun`` group) never interleave. Errors writing the file are swallowed: progress
reporting never stops a computation. This module imports nothing beyond the standard library, so the
bottom of the one-way flow (data, models, train) can use it.
"""

from __future__ import annotations

import json
import os
from typing import Any

#: The environment variable naming the file progress lines are appended to.
PROGRESS_ENV = "DBREPRO_PROGRESS"
#: The prefix of an event line; the rest of the line is a JSON object with a ``kind`` field.
EVENT_MARKER = "@dbrepro-event "
#: Event kinds that mean "this notebook computed something" (a cold run).
COMPUTING_EVENTS = ("trained", "rendered")


def _append(line: str) -> None:
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    data = (line.replace("\n", " ").rstrip() + "\n").encode("utf-8", errors="replace")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        os.write(fd, data)  # one write: atomic with respect to other appenders for lines this short
    except OSError:
        pass
    finally:
        os.close(fd)


def report(line: str) -> None:
    """Append one line of progress for a person (``"run 2 of 6, epoch 3/10, ..."``); a no-op without
    :data:`PROGRESS_ENV`. Newlines inside ``line`` become spaces."""
    _append(str(line))


def event(kind: str, **fields: Any) -> None:
    """Append one machine-readable event, e.g. ``event("trained", run=key, seconds=41.2)``.

    ``kind`` must be a non-empty string; ``fields`` must be JSON-serialisable (other values are written
    with ``str``). A no-op without :data:`PROGRESS_ENV`.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"progress event kind must be a non-empty string, got {kind!r}")
    if "kind" in fields:
        raise ValueError("progress event fields cannot be named 'kind'")
    _append(EVENT_MARKER + json.dumps({"kind": kind, **fields}, default=str, sort_keys=True))


def parse(line: str) -> tuple[str, Any]:
    """One line of a progress file: ``("event", {...})`` for an event, ``("report", text)`` otherwise.

    A line that starts with :data:`EVENT_MARKER` but holds no JSON object with a string ``kind`` is
    returned as a report (shown to the person, never counted).
    """
    line = line.rstrip("\n")
    if line.startswith(EVENT_MARKER):
        try:
            data = json.loads(line[len(EVENT_MARKER):])
        except json.JSONDecodeError:
            return "report", line
        if isinstance(data, dict) and isinstance(data.get("kind"), str):
            return "event", data
    return "report", line
