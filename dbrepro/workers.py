"""Worker processes that train runs side by side on the CPU, one thread each.

Why: the cpu profile's network is small and its batches are 32 images, so a step is many small
operations, and two PyTorch threads spend much of each step waking each other up. On the 2-core
development machine (2026-12-02) one process with 2 threads took 15.4 ms a step with passive OpenMP
waiting (the setting that keeps it from collapsing when the other core is busy) and 7.5 ms spinning on a
quiet machine, while two 1-thread processes side by side took 12.6 ms a step *each*: 6.3 ms a step for
the pair. End to end, with worker start-up, four one-epoch cpu runs took 13.7 s in two workers against 25.8 s
in one 2-thread process (1.88x, ``benchmarks/bench_parallel.py``). Independent runs are the book's common case
(methods x splits x seeds), so :func:`dbrepro.experiments.train_many` hands them to these workers.

A worker is a fresh interpreter (``python -m dbrepro.workers THREADS``, never a fork of a process that
has started OpenMP threads, and never a re-import of the caller's ``__main__``, which a script or a
notebook may not guard). It reads one task per line on stdin, a JSON object ``{"fn": "module:function",
"arg": ...}``, calls the function and answers one JSON line on its stdout (``{"ok": true, "result": ...}``
or ``{"ok": false, "error": ...}``); whatever the task prints goes to stderr. It uses ``THREADS``
PyTorch threads, ignores SIGINT (the parent decides: an interrupt there terminates every worker) and dies
with its parent (Linux ``PR_SET_PDEATHSIG``), so a killed kernel leaves no orphan training. A killed worker
leaves what an interrupted training leaves: a resumable partial run, its lock released.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import selectors
import signal
import subprocess
import sys
import traceback
from typing import Any, Iterable, Iterator

#: environment variable: how many runs train at once on the CPU (1: one at a time, in-process)
JOBS_ENV = "DBREPRO_JOBS"


class WorkerError(RuntimeError):
    """A task failed in a worker; the message carries the worker's exception and traceback."""


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def jobs_from_env(default: int) -> int:
    """``$DBREPRO_JOBS`` if set (a whole number >= 0, else a ``ValueError`` naming it), else ``default``;
    ``0`` means one job per usable core."""
    raw = os.environ.get(JOBS_ENV, "").strip()
    value = default
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"${JOBS_ENV} must be a whole number of parallel trainings, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"jobs must be >= 0 (0: one per usable core), got {value} (${JOBS_ENV}={raw!r})")
    return usable_cores() if value == 0 else value


def imap_unordered(fn: str, args: Iterable[Any], jobs: int, threads: int = 1) -> Iterator[Any]:
    """``fn(arg)`` for every arg, in ``jobs`` worker processes of ``threads`` PyTorch threads; results as
    they finish. ``fn`` is ``"module:function"``; args and results must be JSON. A task that raises in a
    worker raises :class:`WorkerError` here; on any error, interrupt or early stop the remaining tasks are
    dropped and every worker is killed."""
    pending = list(args)
    procs = [subprocess.Popen([sys.executable, "-m", "dbrepro.workers", str(threads)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, bufsize=1)
             for _ in range(max(1, min(jobs, len(pending))))]
    sel = selectors.DefaultSelector()
    busy = 0
    try:
        for p in procs:
            if pending:
                _send(p, fn, pending.pop(0))
                busy += 1
            sel.register(p.stdout, selectors.EVENT_READ, p)
        while busy:
            for key, _ in sel.select():
                p = key.data
                line = p.stdout.readline()
                if not line:
                    raise WorkerError(f"a worker (pid {p.pid}) died with exit status {p.wait()} while running {fn}")
                busy -= 1
                answer = json.loads(line)
                if not answer["ok"]:
                    raise WorkerError(answer["error"])
                if pending:
                    _send(p, fn, pending.pop(0))
                    busy += 1
                yield answer["result"]
    finally:
        sel.close()
        for p in procs:
            if busy or p.poll() is not None:
                p.kill()
            else:
                p.stdin.close()  # end of tasks: the worker leaves its loop
        for p in procs:
            p.wait()
            p.stdout.close()


def _send(p: subprocess.Popen, fn: str, arg: Any) -> None:
    p.stdin.write(json.dumps({"fn": fn, "arg": arg}) + "\n")
    p.stdin.flush()


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (a no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() == 1:  # the parent is already gone
        os._exit(1)


def main(argv: list[str]) -> int:
    """The worker's loop (``python -m dbrepro.workers THREADS``)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a task prints, from Python or from C, goes to stderr: never into the answers
    sys.stdout = sys.stderr
    import torch

    torch.set_num_threads(int(argv[0]) if argv else 1)
    for line in sys.stdin:
        task = json.loads(line)
        try:
            module, name = task["fn"].split(":")
            result = {"ok": True, "result": getattr(importlib.import_module(module), name)(task["arg"])}
        except Exception as e:  # reported to the parent, which raises it
            result = {"ok": False, "error": f"{type(e).__name__}: {e}\n(in a worker, pid {os.getpid()})\n"
                                            + traceback.format_exc()}
        answers.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
