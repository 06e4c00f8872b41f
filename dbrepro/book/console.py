"""What ``python -m dbrepro.book run`` prints while a notebook runs.

One line per notebook, ``[3/16] rl-02-softmax-long-tail ... 84.2 s (trained 6)``. While it runs, the
executor shows the code cell being executed (its number of N, its line in the ``.md``, its first line)
and the latest line the kernel reported through :mod:`dbrepro.progress` (the run k of n, the epoch, the
loss, img/s), indented under the notebook's line:

- on a terminal, one status line redrawn in place (at most ten times a second);
- otherwise (CI, a log file), a new line at most every ``every`` seconds, and only when it says
  something new, so a log stays short and ``make book`` is never silent for minutes.

:class:`ProgressTail` follows the kernel's progress file from a thread; :class:`NotebookProgress`
decides what to print. Both are driven by :func:`dbrepro.book.runner.run`.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..progress import COMPUTING_EVENTS, parse

#: Seconds between two progress lines when the output is not a terminal.
DEFAULT_EVERY = 5.0
_TTY_EVERY = 0.1
_INDENT = "    "
_MAX_LINE = 160
_MAX_CELL_LINE = 48  # of a cell's first line, so that the kernel's report fits beside it


class NotebookProgress:
    """The console lines of one notebook: its opening line, its progress, its closing line.

    ``out`` is ``print``-like. Thread-safe: the cell hook runs in the main thread, reports arrive from the
    :class:`ProgressTail` thread.
    """

    def __init__(self, out: Callable[..., None], prefix: str, *, tty: bool = False, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out, self.prefix, self.tty = out, prefix, tty
        self.every = (_TTY_EVERY if tty else DEFAULT_EVERY) if every is None else every
        self.clock = clock
        self.lock = threading.RLock()
        self.cell = ""
        self.report = ""
        self.events: list[dict[str, Any]] = []
        self.shown = ""  # the last progress text printed
        self.lines = 0  # progress lines printed (not a terminal)
        self.last = clock()
        self.out(f"{prefix} ... ", end="", flush=True)

    # -- inputs ----------------------------------------------------------------------------------------

    def on_cell(self, number: int | None, total: int, where: str, first_line: str) -> None:
        """The kernel starts code cell ``number`` of ``total`` (None: papermill's injected parameters)."""
        label = f"cell {number}/{total}" if number else "injected parameters"
        if len(first_line) > _MAX_CELL_LINE:
            first_line = first_line[:_MAX_CELL_LINE - 1].rstrip() + "\u2026"
        with self.lock:
            self.cell = f"{label} ({where}) {first_line}".rstrip() if where else f"{label} {first_line}".rstrip()
            self.report = ""
        self.tick()

    def on_line(self, line: str) -> None:
        """One line of the kernel's progress file."""
        kind, value = parse(line)
        with self.lock:
            if kind == "event":
                self.events.append(value)
                return
            if value.strip():
                self.report = value.strip()
        self.tick()

    # -- output ----------------------------------------------------------------------------------------

    def text(self) -> str:
        with self.lock:
            return " | ".join(t for t in (self.cell, self.report) if t)

    def tick(self, force: bool = False) -> None:
        """Print the current state if it is new and the last print is ``every`` seconds old."""
        text = self.text()
        with self.lock:
            now = self.clock()
            if not text or text == self.shown or (not force and now - self.last < self.every):
                return
            self.shown, self.last = text, now
            if self.tty:
                width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
                line = f"{self.prefix} ... {text}"
                self.out("\r\x1b[K" + line[:width], end="", flush=True)
            else:
                if self.lines == 0:
                    self.out("", flush=True)  # end the notebook's opening line
                self.lines += 1
                self.out(_INDENT + text[:_MAX_LINE], flush=True)

    def computed(self) -> dict[str, int]:
        """How many computing events (:data:`dbrepro.progress.COMPUTING_EVENTS`) of each kind were seen."""
        with self.lock:
            counts: dict[str, int] = {}
            for e in self.events:
                if e["kind"] in COMPUTING_EVENTS:
                    counts[e["kind"]] = counts.get(e["kind"], 0) + 1
            return counts

    def finish(self, text: str) -> None:
        """Close the notebook's line: ``[3/16] name ... <text>``."""
        with self.lock:
            if self.tty:
                self.out(f"\r\x1b[K{self.prefix} ... {text}", flush=True)
            elif self.lines:
                self.out(f"{self.prefix} ... {text}", flush=True)
            else:
                self.out(text, flush=True)


class ProgressTail:
    """Follows a progress file from a thread and hands every complete line to ``on_line``.

    The file need not exist yet; lines written before :meth:`stop` are all delivered (the thread reads
    what is left before it ends).
    """

    def __init__(self, path: Path, on_line: Callable[[str], None], on_idle: Callable[[], None] = lambda: None,
                 poll: float = 0.2) -> None:
        self.path, self.on_line, self.on_idle, self.poll = Path(path), on_line, on_idle, poll
        self._stop = threading.Event()
        self._offset = 0
        self._partial = b""
        self._thread = threading.Thread(target=self._run, name="dbrepro-progress", daemon=True)

    def __enter__(self) -> "ProgressTail":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._read()
            self.on_idle()
            self._stop.wait(self.poll)
        self._read()

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        if not data:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            try:
                self.on_line(raw.decode("utf-8", errors="replace"))
            except Exception:  # a display problem must never stop the book
                pass


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (and ``TERM`` is not ``dumb``)."""
    try:
        return bool(stream.isatty()) and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False
