"""``run``: execute the book's notebooks one at a time, replacing each one's outputs only when complete.

For each notebook, in toc order (the scorecard last):

1. its parameters are checked before the first kernel starts (declared names only, typed like their
   defaults; ``PROFILE`` comes from ``--profile`` alone, see :mod:`.params`);
2. it runs with ``OUTPUT_DIR`` in a staging folder, ``<build>/<profile>/.staging/<run>/<notebook>/``,
   with ``DBREPRO_PROGRESS`` naming a progress file there that the executor tails (:mod:`.console`);
3. only when it succeeded and wrote its ``results.json`` are its results folder and executed notebook
   moved into place (renames on one file system, with SIGINT and SIGTERM held back meanwhile), and
   ``status.json`` rewritten atomically. A failed or interrupted notebook leaves its previous outputs as
   they were; ``status.json`` says its last attempt failed and which outputs are on disk.

A lock in the staging folder keeps two executors out of one build folder. At the start of a run (the
lock held), staging leftovers of a killed run are deleted and ``status.json`` is reconciled with the disk
(:func:`.status.reconcile`): half-committed pairs are removed and said so. SIGINT and SIGTERM stop the run
with one line (exit status 130 / 143): the kernel is shut down, staging removed, nothing else touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..config import get_profile
from ..progress import PROGRESS_ENV
from ..results import RESULTS_FILE
from .console import NotebookProgress, ProgressTail, is_terminal
from .environment import environment_info


def kernel_env() -> dict[str, str]:
    """Thread settings for the kernels (:data:`dbrepro.CPU_THREAD_ENV`), unless the user set their own."""
    from .. import CPU_THREAD_ENV

    return {k: os.environ.get(k, v) for k, v in CPU_THREAD_ENV.items()}
from .execute import NotebookFailed, execute_notebook, this_interpreter_kernel
from .layout import BookError, BuildLayout, remove
from .params import declared_parameters, notebook_parameters
from .status import notebook_record, now, read_status, reconcile, record_attempt, sha256_or_none, write_status
from .toc import notebooks_in_order, parameters_cell_problems, read_notebook, toc_problems

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``reported`` once the executor has printed its one line about it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.signame = signal.Signals(signum).name
        self.reported = False


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` once; later ones are ignored so that
    the cleanup they trigger finishes. Previous handlers come back at the end (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum: int, frame: Any) -> None:
        if fired:
            return
        fired.append(signum)
        _quiet_event_loop()
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _quiet_event_loop() -> None:
    """After an interruption, the task nbclient was running when the signal came ends with the kernel's
    shutdown (``DeadKernelError``) and nobody awaits it; asyncio would print its traceback when it is
    collected. The run is stopping: drop such reports on this thread's event loop."""
    import asyncio

    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except Exception:  # no loop in this thread: nothing to quieten
        return

    def ignore_orphaned_tasks(loop: Any, context: dict[str, Any]) -> None:
        if "never retrieved" in str(context.get("message", "")) or "was destroyed but it is pending" in str(
                context.get("message", "")):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(ignore_orphaned_tasks)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block (a commit); a pending one is delivered right after.

    Masking the signals in this thread is not enough: the kernel client's threads do not mask them, the
    kernel of the process takes one on any of them, and Python then runs its handler in the main thread at
    the next bytecode, in the middle of the commit. So the Python handlers are swapped for one that only
    remembers, and the first remembered signal is raised again once the block is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in _SIGNALS}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        for s, h in previous.items():
            signal.signal(s, h)
        if pending:
            signal.raise_signal(pending[0])


class BuildLock:
    """An exclusive lock on ``<build>/<profile>`` for one executor (a ``flock`` on ``.staging/lock``).

    A second executor on the same build folder is refused, naming the process holding the lock; the lock
    dies with its process (even on SIGKILL). :meth:`release` removes the staging folder.
    """

    def __init__(self, staging: Path) -> None:
        self.staging, self.path = staging, staging / "lock"
        self.fd: int | None = None

    def acquire(self) -> "BuildLock":
        while True:
            self.staging.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise BookError(f"another executor (pid {holder}) is running in {self.staging.parent}; "
                                "wait for it or stop it") from None
            try:  # the lock file may have been removed by the executor that held it before
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self.fd = fd
                return self
            os.close(fd)

    def clear_leftovers(self) -> list[str]:
        """Delete what killed runs left in the staging folder; returns their names."""
        left = sorted(p.name for p in self.staging.iterdir() if p.name != "lock")
        for name in left:
            remove(self.staging / name)
        return left

    def release(self) -> None:
        if self.fd is None:
            return
        for p in self.staging.iterdir():
            if p.name != "lock":
                remove(p)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None
        with contextlib.suppress(OSError):
            self.staging.rmdir()


def run(
    profile: str,
    *,
    notebooks_dir: str | os.PathLike = "notebooks",
    toc_path: str | os.PathLike = "book/_toc.yml",
    build_dir: str | os.PathLike = "_build",
    only: Sequence[str] = (),
    params: dict[str, Any] | None = None,
    keep_going: bool = False,
    log_output: bool = False,
    out: Callable[..., None] = print,
    progress_every: float | None = None,
    tty: bool | None = None,
) -> int:
    """Execute the notebooks (see the module docstring). Returns the number of notebooks that failed.

    ``params`` are ``--param`` values: raw text (typed per notebook against its parameters cell) or Python
    values (checked against it). ``progress_every``: seconds between two progress lines when ``out`` is not
    a terminal (default :data:`.console.DEFAULT_EVERY`); ``tty``: whether to redraw progress in place
    (default: ``out`` is ``print`` and stdout is a terminal). Raises :class:`Interrupted` on SIGINT/SIGTERM
    (after printing one line) and ``BookError`` for anything the user must fix.
    """
    profile = get_profile(profile).name
    notebooks_dir, layout = Path(notebooks_dir).resolve(), BuildLayout(Path(build_dir).resolve(), profile)
    display_root = notebooks_dir.parent
    tty = (out is print and is_terminal(sys.stdout)) if tty is None else tty
    with interrupts_raise():
        plan = _plan(profile, notebooks_dir, Path(toc_path), layout, only, params or {})
        lock = BuildLock(layout.staging)
        try:
            lock.acquire()
            return _run_plan(plan, params or {}, profile, notebooks_dir, layout, lock, display_root, keep_going,
                             log_output, out, progress_every, tty)
        finally:
            lock.release()


def _plan(profile: str, notebooks_dir: Path, toc_path: Path, layout: BuildLayout, only: Sequence[str],
          params: dict[str, Any]) -> list[tuple[str, Any]]:
    """Check everything that can be checked before the first kernel starts: ``[(name, declared), ...]``."""
    if not notebooks_dir.is_dir():
        raise BookError(f"{notebooks_dir}: notebooks folder not found")
    problems = toc_problems(toc_path, notebooks_dir, toc_path.parent)
    if problems:
        raise BookError("; ".join(problems))
    order = notebooks_in_order(toc_path, notebooks_dir)
    if only:
        unknown = [n for n in only if n not in order]
        if unknown:
            raise BookError(f"--only: no notebook named {', '.join(unknown)} (the book has: {', '.join(order)})")
        order = [n for n in order if n in set(only)]
    if not order:
        raise BookError(f"no notebooks to run in {notebooks_dir}")
    plan, used = [], set()
    for name in order:
        nb = read_notebook(notebooks_dir / f"{name}.md")
        problems = parameters_cell_problems(nb, name)
        if problems:
            raise BookError("; ".join(problems))
        declared = declared_parameters(nb)
        notebook_parameters(name, declared, profile, layout, params)  # raises on a bad value or data path
        plan.append((name, declared))
        used |= set(declared) & set(params)
    unused = sorted(set(params) - used)
    if unused:
        raise BookError(f"--param {', '.join(unused)}: declared by none of the notebooks to run ({', '.join(order)})")
    return plan


def _run_plan(plan: list[tuple[str, Any]], params: dict[str, Any], profile: str, notebooks_dir: Path,
              layout: BuildLayout, lock: BuildLock, display_root: Path, keep_going: bool, log_output: bool,
              out: Callable[..., None], every: float | None, tty: bool) -> int:
    layout.notebooks.mkdir(parents=True, exist_ok=True)
    layout.results.mkdir(parents=True, exist_ok=True)
    status = read_status(layout.status_json)
    broken = reconcile(status, layout)
    if broken:
        for name, how in _recover(layout, lock.staging, broken).items():
            out(f"{name}: {how}", file=sys.stderr, flush=True)
        for name, reason in reconcile(status, layout).items():
            remove(layout.executed(name))
            remove(layout.output_dir(name))
            if name in status["notebooks"]:
                status["notebooks"][name]["outputs"] = None
            out(f"{name}: removed its broken outputs ({reason})", file=sys.stderr, flush=True)
    lock.clear_leftovers()
    status.update(profile=profile, environment=environment_info(profile))
    write_status(layout.status_json, status)

    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    stage = lock.staging / run_id
    failures = 0
    with this_interpreter_kernel(stage / "kernel") as kernel:
        for i, (name, declared) in enumerate(plan, start=1):
            nb_stage = stage / name
            staged_results = nb_stage / "results"
            staged_results.mkdir(parents=True)
            parameters = notebook_parameters(name, declared, profile, layout, params,
                                             output_dir=staged_results)
            display = NotebookProgress(out, f"[{i}/{len(plan)}] {name}", tty=tty, every=every)
            progress_file = nb_stage / "progress.log"
            started = time.perf_counter()
            try:
                with ProgressTail(progress_file, display.on_line, on_idle=display.tick):
                    executed = execute_notebook(
                        notebooks_dir / f"{name}.md", None, parameters, notebooks_dir, log_output=log_output,
                        kernel_name=kernel, on_cell=display.on_cell, env={PROGRESS_ENV: str(progress_file), **kernel_env()},
                        display_root=display_root)
                sha = sha256_or_none(staged_results / RESULTS_FILE)
                if sha is None:
                    raise NotebookFailed(name, f"it ran, but wrote no {RESULTS_FILE} into OUTPUT_DIR")
            except NotebookFailed as e:
                seconds = time.perf_counter() - started
                display.finish(f"FAILED after {seconds:.1f} s")
                out(str(e), file=sys.stderr, flush=True)
                kept = " (its previous outputs are kept)" if status["notebooks"].get(name, {}).get("outputs") else ""
                with interrupts_deferred():
                    record_attempt(status, name, "failed", seconds, error=str(e) + kept)
                    write_status(layout.status_json, status)
                remove(nb_stage)
                failures += 1
                if keep_going:
                    continue
                break
            except Interrupted as e:
                seconds = time.perf_counter() - started
                kept = "its previous outputs are kept" if status["notebooks"].get(name, {}).get("outputs") else \
                    "it has no outputs"
                display.finish(f"interrupted by {e.signame} after {seconds:.1f} s; {kept}")
                e.reported = True
                with interrupts_deferred():
                    record_attempt(status, name, "interrupted", seconds, error=f"interrupted by {e.signame}")
                    write_status(layout.status_json, status)
                raise
            seconds = time.perf_counter() - started
            computed = display.computed()
            outputs = {"run": run_id, "finished": now(), "seconds": round(seconds, 1), "computed": bool(computed),
                       "results_sha256": sha}
            executed.metadata["dbrepro"] = outputs
            with interrupts_deferred():
                _commit(layout, name, nb_stage, staged_results, executed, layout.executed(name), display_root)
                record_attempt(status, name, "ok", seconds, outputs=outputs, computed=bool(computed))
                write_status(layout.status_json, status)
            remove(nb_stage)
            done = ", ".join(f"{n} {k}" for k, n in computed.items()) if computed else "nothing trained or rendered"
            display.finish(f"{seconds:.1f} s ({done})")
    ran = [name for name, _ in plan]
    total = sum(float(status["notebooks"][n].get("seconds") or 0) for n in ran if n in status["notebooks"])
    out(f"{len(plan) - failures} of {len(plan)} notebooks ran in the {profile} profile ({total:.1f} s); "
        f"executed notebooks in {layout.notebooks}")
    return failures


def _commit(layout: BuildLayout, name: str, nb_stage: Path, staged_results: Path, executed: Any, target: Path,
            display_root: Path) -> None:
    """Move the staged results folder and the executed notebook into place (the old results aside first)."""
    import nbformat

    from .publish import scrub

    staged_nb = nb_stage / f"{name}.ipynb"
    final = layout.output_dir(name)
    # the record says where the outputs are now, not where they were staged
    executed = nbformat.from_dict(scrub(dict(executed), [(str(staged_results.resolve()), str(final))]))
    executed.metadata.setdefault("papermill", {})["output_path"] = _relative(target, display_root)
    staged_nb.write_text(nbformat.writes(executed))
    if final.exists():
        os.replace(final, nb_stage / "previous-results")
    os.replace(staged_results, final)
    os.replace(staged_nb, target)


def _recover(layout: BuildLayout, staging: Path, broken: dict[str, str]) -> dict[str, str]:
    """Finish or undo the commits a killed run left half done, from what its staging folder still holds.

    A commit moves the old results aside (``<run>/<name>/previous-results``), the new results into place,
    then the new executed notebook: when the new results are in place and the staged notebook that goes
    with them is still staged, it is moved into place (roll forward); when the executed notebook in place
    is the old one and its results are aside, they are moved back (roll back). Returns ``{name: what}``.
    """
    done = {}
    for name in broken:
        final, target = layout.output_dir(name), layout.executed(name)
        results_sha = sha256_or_none(final / RESULTS_FILE)
        current = notebook_record(target) or {}
        for leftover in sorted(staging.glob(f"*/{name}")):
            staged_nb = leftover / f"{name}.ipynb"
            previous = leftover / "previous-results"
            if results_sha and staged_nb.exists() and (notebook_record(staged_nb) or {}).get("results_sha256") == results_sha:
                os.replace(staged_nb, target)
                done[name] = "completed the commit a killed run left half done"
                break
            if current.get("results_sha256") and sha256_or_none(previous / RESULTS_FILE) == current["results_sha256"]:
                remove(final)
                os.replace(previous, final)
                done[name] = "restored the outputs a killed run had begun to replace"
                break
    return done


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
