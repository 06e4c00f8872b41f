"""The run cache: every training run is keyed by a hash of its full config, and verified when opened.

A run lives in ``$DBREPRO_CACHE/runs/<key>/`` (see :mod:`dbrepro.paths`)::

    config.json       the full config the key was computed from (on-disk data: with its fingerprint)
    log.txt           one line per epoch (and anything else worth keeping)
    checkpoint.pt     the last finished epoch, for resuming an interrupted run
    model.pt          the final weights (model + head), written first when a run finishes
    metrics.json      training metrics, written second
    manifest.json     written last: the key, and the size, sha256 and stat of model.pt and metrics.json
    failed.json       why the last training attempt raised (removed when the run finishes)
    eval-<hash>.json  evaluation results, keyed by what was evaluated and by the sha256 of model.pt
    lock              the lock file a training holds (:meth:`Run.lock`)

**The key** is ``sha256(CACHE_VERSION + canonical JSON of the config)``, where :func:`get_run` first
adds a fingerprint of on-disk training data to the config (:func:`dbrepro.data.specs.with_fingerprint`):
new data at the same path is a new key, so a run trained on the old data is never served for it.
Synthetic-world specs carry their world version instead and are keyed as they are. Bump
:data:`CACHE_VERSION` when a change to the code makes old results wrong.

**The state** of a run is what :func:`verify` says, every time a run is opened; it reads the small
JSON files and stats the others, and hashes ``model.pt`` again only when its stat changed:

- ``complete``: ``manifest.json`` exists, ``config.json`` hashes to the run's key, every file the
  manifest lists has its recorded size and sha256, and ``metrics.json`` parses;
- ``partial``: interrupted before it finished (``checkpoint.pt`` and/or ``model.pt``, no manifest):
  training again resumes it;
- ``failed``: the last training attempt raised; ``failed.json`` holds the reason;
- ``damaged``: anything else (a file missing, truncated, unparseable, edited, or another run's);
  the reason names the file;
- ``stale``: finished under an older :data:`CACHE_VERSION`; never found by :func:`get_run` again;
- ``new``: nothing but ``config.json`` (or not even that).

A finished run written before manifests existed (``model.pt`` + ``metrics.json``, no manifest) is
checked once in full (``model.pt`` loads with ``weights_only=True`` and holds this run's config) and
then given its manifest, so older caches keep being served.

Nothing is ever unpickled with code execution: weights are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .paths import atomic_write_json, atomic_write_text, cache_dir, canonical_json, config_hash, file_sha256

try:  # POSIX; elsewhere trainings of one run are not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

#: Part of every run key. Bump it when results computed by older code must not be reused.
#: 2: the probe loss every epoch records (:func:`dbrepro.train.loop.probe_loss`) normalises with batch
#: statistics and measures SphereFace at its annealing floor; histories of version 1 hold the eval-mode probe
CACHE_VERSION = "2"

#: The files a finished run's manifest records (size, sha256, stat).
SEALED_FILES = ("model.pt", "metrics.json")


class RunState(str, enum.Enum):
    NEW = "new"
    PARTIAL = "partial"
    COMPLETE = "complete"
    FAILED = "failed"
    DAMAGED = "damaged"
    STALE = "stale"


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify` found: a state and, unless complete or new, why (naming the file)."""

    state: RunState
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.state.value}: {self.reason}" if self.reason else self.state.value


class DamagedRunError(ValueError):
    """A run's files are missing, unreadable, or disagree with its key; the message names the file."""


def runs_root() -> Path:
    return cache_dir("runs")


def run_key(config: dict[str, Any]) -> str:
    return config_hash(config, CACHE_VERSION)


def keyed_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it is keyed: an on-disk data spec under ``"data"`` gets its data's current fingerprint.

    Configs without a data spec (or with a synthetic one) are returned unchanged, so their keys are
    what they always were.
    """
    data = config.get("data")
    if not isinstance(data, dict):
        return config
    from .data import specs

    fingerprinted = specs.with_fingerprint(data)
    return config if fingerprinted is data else {**config, "data": fingerprinted}


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
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def failed_path(self) -> Path:
        return self.dir / "failed.json"

    @property
    def log_path(self) -> Path:
        return self.dir / "log.txt"

    @property
    def lock_path(self) -> Path:
        return self.dir / "lock"

    def verify(self) -> Verdict:
        return verify(self)

    @property
    def complete(self) -> bool:
        """Whether :func:`verify` finds the run complete (files present, parsed, matching the key)."""
        return verify(self).state is RunState.COMPLETE

    def require_complete(self) -> None:
        """Return if the run is complete; else one line saying what it is and which file is at fault.

        ``FileNotFoundError`` for a new or partial run (train it first), :class:`DamagedRunError`
        for a damaged, failed or stale one.
        """
        verdict = verify(self)
        if verdict.state is RunState.COMPLETE:
            return
        if verdict.state in (RunState.NEW, RunState.PARTIAL):
            raise FileNotFoundError(f"run {self.key} is not complete; train it first (dbrepro train ...)")
        if verdict.state is RunState.DAMAGED:
            raise DamagedRunError(f"run {self.key} is damaged: {verdict.reason}; training its config again "
                                  "retrains it, dbrepro runs clean --damaged removes it")
        raise DamagedRunError(f"run {self.key} is {verdict}")

    def config(self) -> dict[str, Any]:
        config = read_json(self.config_path)
        if not isinstance(config, dict):
            raise DamagedRunError(f"{self.config_path}: expected a JSON object, got {type(config).__name__}")
        return config

    def metrics(self) -> dict[str, Any]:
        """The training metrics of a complete run (:class:`DamagedRunError` when it is not sound)."""
        verdict = verify(self)
        if verdict.state is RunState.COMPLETE:
            return read_json(self.metrics_path)
        if verdict.state in (RunState.NEW, RunState.PARTIAL):
            raise FileNotFoundError(f"run {self.key} is not complete: {self.metrics_path} is missing")
        raise DamagedRunError(f"run {self.key} is {verdict}")

    def log(self, line: str) -> None:
        """Append one timestamped line to ``log.txt`` (appends are not atomic; the log is informational)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line.rstrip()}\n")

    def finish(self, metrics: dict[str, Any]) -> None:
        """Mark the run complete: write ``metrics.json``, then ``manifest.json`` (``model.pt`` must be saved)."""
        if not self.model_path.exists():
            raise RuntimeError(f"run {self.key}: save model.pt before metrics.json")
        atomic_write_json(self.metrics_path, metrics)
        _write_manifest(self, {name: _file_record(self.dir / name) for name in SEALED_FILES})
        with contextlib.suppress(FileNotFoundError):
            self.failed_path.unlink()

    def mark_failed(self, reason: str) -> None:
        """Record that training raised (``failed.json``); the run is then *failed*, not *partial*."""
        atomic_write_json(self.failed_path, {"reason": reason, "time": time.strftime("%Y-%m-%d %H:%M:%S")})

    def reset(self, config: dict[str, Any]) -> None:
        """Remove everything a training wrote (but the log and the lock) and write ``config.json`` afresh."""
        for path in self.dir.iterdir():
            if path.name in ("log.txt", "lock"):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        _write_config(self, config)

    @contextlib.contextmanager
    def lock(self) -> Iterator[float]:
        """Hold this run's lock (``fcntl.flock`` on ``lock``); yields the seconds spent waiting for it.

        One training of a run at a time: a second process asking for the lock waits until the first
        is done (saying so once on stderr), then finds the run complete. The lock is released when
        the process dies, however it dies. Not taken under ``torchrun`` (``WORLD_SIZE`` > 1), whose
        ranks must all reach the same decision, nor where ``fcntl`` does not exist.
        """
        if fcntl is None or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            yield 0.0
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as f:
            waited = 0.0
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"run {self.key}: another process is training it; waiting for it to finish", file=sys.stderr,
                      flush=True)
                t0 = time.perf_counter()
                fcntl.flock(f, fcntl.LOCK_EX)
                waited = time.perf_counter() - t0
            try:
                yield waited
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def in_use(self) -> bool:
        """Whether another process holds this run's lock right now (it is training)."""
        if fcntl is None or not self.lock_path.exists():
            return False
        with open(self.lock_path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False

    # evaluation results keyed by what was evaluated, and by the model they were computed from ----
    def eval_path(self, what: dict[str, Any]) -> Path:
        return self.dir / f"eval-{config_hash(what, CACHE_VERSION, length=12)}.json"

    def load_eval(self, what: dict[str, Any]) -> dict[str, Any] | None:
        """A cached result for ``what``, or ``None``: none, unreadable, or computed from another ``model.pt``.

        Serve it only for a run :func:`verify` finds complete (:func:`dbrepro.experiments.evaluate` does).
        """
        path = self.eval_path(what)
        try:
            cached = read_json(path)
        except (FileNotFoundError, DamagedRunError):
            return None
        model = _sealed_sha256(self, "model.pt")
        ok = isinstance(cached, dict) and cached.get("what") == json.loads(canonical_json(what))
        return cached if ok and model is not None and cached.get("model_sha256") == model else None

    def save_eval(self, what: dict[str, Any], result: dict[str, Any]) -> None:
        atomic_write_json(self.eval_path(what), {"what": what, "result": result,
                                                 "model_sha256": _sealed_sha256(self, "model.pt")})

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.rglob("*") if p.is_file())


def get_run(config: dict[str, Any], root: Path | None = None) -> Run:
    """The run for ``config`` (its on-disk data fingerprinted now), creating its folder and ``config.json`` if new.

    This is the one way from a config to its run: :func:`dbrepro.experiments.train`, the CLI and the
    grids all come through here, so changed data always means another run.
    """
    config = keyed_config(config)
    key = run_key(config)
    run = Run(key, (root or runs_root()) / key)
    if not run.config_path.exists():
        _write_config(run, config)
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
    """Every run folder (damaged ones included, whatever their ``config.json`` says)."""
    root = root or runs_root()
    if not root.exists():
        return
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.name.startswith("."):
            yield Run(p.name, p)


# -- verification -----------------------------------------------------------------------------------

def verify(run: Run) -> Verdict:
    """The state of ``run`` from its files (see the module docstring); never raises for bad files."""
    if not run.dir.is_dir():
        return Verdict(RunState.NEW)
    try:
        config = run.config()
    except FileNotFoundError:
        others = [p.name for p in run.dir.iterdir() if p.name not in ("lock", "log.txt")]
        return Verdict(RunState.DAMAGED, f"{run.config_path}: missing") if others else Verdict(RunState.NEW)
    except DamagedRunError as e:
        return Verdict(RunState.DAMAGED, str(e))
    manifest = None
    if run.manifest_path.exists():
        try:
            manifest = _read_manifest(run)
        except DamagedRunError as e:
            return Verdict(RunState.DAMAGED, str(e))

    if run_key(config) != run.key:
        version = manifest.get("cache_version") if manifest else None
        if version is not None and version != CACHE_VERSION and config_hash(config, version) == run.key:
            return Verdict(RunState.STALE, f"finished under cache version {version!r} (now {CACHE_VERSION!r})")
        return Verdict(RunState.DAMAGED, f"{run.config_path}: does not hash to the run's key {run.key} "
                                         "(edited, or another run's)")

    if manifest is not None:
        if manifest.get("key") != run.key:
            return Verdict(RunState.DAMAGED, f"{run.manifest_path}: belongs to run {manifest.get('key')}")
        refreshed = False
        for name in SEALED_FILES:
            problem, fresh = _check_file(run.dir / name, manifest["files"][name])
            if problem:
                return Verdict(RunState.DAMAGED, problem)
            refreshed |= fresh
        try:
            read_json(run.metrics_path)
        except DamagedRunError as e:
            return Verdict(RunState.DAMAGED, str(e))
        if refreshed:  # the files are intact but were copied or touched: remember their new stat
            with contextlib.suppress(OSError):
                _write_manifest(run, manifest["files"])
        return Verdict(RunState.COMPLETE)

    if run.failed_path.exists():
        try:
            reason = str(read_json(run.failed_path).get("reason", "no reason recorded"))
        except (DamagedRunError, AttributeError):
            reason = f"{run.failed_path} is unreadable"
        return Verdict(RunState.FAILED, reason)
    has_model, has_metrics = run.model_path.exists(), run.metrics_path.exists()
    if has_model and has_metrics:
        return _adopt(run, config)
    if has_metrics:
        return Verdict(RunState.DAMAGED, f"{run.model_path}: missing beside {run.metrics_path.name}")
    if run.checkpoint_path.exists():
        return Verdict(RunState.PARTIAL, "interrupted; training again resumes it from checkpoint.pt")
    if has_model:
        return Verdict(RunState.PARTIAL, "interrupted while finishing (model.pt, no metrics.json); "
                                         "training again starts over")
    return Verdict(RunState.NEW)


def config_difference(stored: Any, expected: dict[str, Any]) -> str | None:
    """``None`` when ``stored`` is ``expected`` (ignoring the data fingerprint), else the first fields that differ."""
    if not isinstance(stored, dict):
        return f"no config (a {type(stored).__name__})"
    a, b = _without_fingerprint(json.loads(canonical_json(stored))), _without_fingerprint(json.loads(canonical_json(expected)))
    if a == b:
        return None
    fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}={a.get(k)!r} (this run: {b.get(k)!r})" for k in fields[:3])


def model_problem(path: Path, config: dict[str, Any]) -> str | None:
    """Why ``path`` is not the model of a run with ``config`` (``None`` if it is): unloadable, or another config's.

    Loads with ``weights_only=True``: a file that would run code is refused, not executed.
    """
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return f"{path}: missing"
    except Exception as e:  # truncated zip, garbage, or a pickle of something other than weights
        return f"{path}: not a loadable weights file ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
    if isinstance(blob, dict) and "config" in blob:
        difference = config_difference(blob["config"], config)
        if difference:
            return f"{path}: holds the weights of another config ({difference})"
    return None


def _adopt(run: Run, config: dict[str, Any]) -> Verdict:
    """A finished run without a manifest (older code, or killed between metrics.json and the manifest)."""
    try:
        read_json(run.metrics_path)
    except DamagedRunError as e:
        return Verdict(RunState.DAMAGED, str(e))
    problem = model_problem(run.model_path, config)
    if problem:
        return Verdict(RunState.DAMAGED, problem)
    with contextlib.suppress(OSError):  # a read-only cache is still served; it is checked in full again next time
        _write_manifest(run, {name: _file_record(run.dir / name) for name in SEALED_FILES})
        model = _sealed_sha256(run, "model.pt")
        for path in run.dir.glob("eval-*.json"):  # computed from this (now checked) model.pt
            with contextlib.suppress(DamagedRunError):
                cached = read_json(path)
                if isinstance(cached, dict) and "model_sha256" not in cached:
                    atomic_write_json(path, {**cached, "model_sha256": model})
    return Verdict(RunState.COMPLETE)


def _check_file(path: Path, record: dict[str, Any]) -> tuple[str | None, bool]:
    """``(problem or None, whether the stat changed)``: size first, sha256 only when the stat moved."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{path}: missing (it was there when the run finished)", False
    if st.st_size != record["size"]:
        return f"{path}: {st.st_size} bytes, {record['size']} when the run finished (truncated or replaced)", False
    if _stat_signature(st) == record["stat"]:
        return None, False
    if file_sha256(path) != record["sha256"]:
        return f"{path}: its content changed since the run finished (sha256 differs)", False
    record["stat"] = _stat_signature(path.stat())
    return None, True


def _stat_signature(st: os.stat_result) -> list[int]:
    """mtime, ctime and inode. Writing a file (or renaming one onto it) moves its ctime, which no user can set back."""
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _file_record(path: Path) -> dict[str, Any]:
    digest = file_sha256(path)
    st = path.stat()
    return {"size": st.st_size, "sha256": digest, "stat": _stat_signature(st)}


def _write_manifest(run: Run, files: dict[str, dict[str, Any]]) -> None:
    atomic_write_json(run.manifest_path, {"key": run.key, "cache_version": CACHE_VERSION, "files": files})


def _read_manifest(run: Run) -> dict[str, Any]:
    manifest = read_json(run.manifest_path)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    ok = isinstance(files, dict) and all(
        isinstance(files.get(name), dict) and {"size", "sha256", "stat"} <= set(files[name]) for name in SEALED_FILES)
    if not ok:
        raise DamagedRunError(f"{run.manifest_path}: not a run manifest (needs size, sha256 and stat of "
                              f"{' and '.join(SEALED_FILES)})")
    return manifest


def _sealed_sha256(run: Run, name: str) -> str | None:
    try:
        return _read_manifest(run)["files"][name]["sha256"]
    except (FileNotFoundError, DamagedRunError):
        return None


def _write_config(run: Run, config: dict[str, Any]) -> None:
    run.dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.config_path, json.dumps(json.loads(canonical_json(config)), indent=2, sort_keys=True) + "\n")


def _without_fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    data = config.get("data")
    if isinstance(data, dict) and "fingerprint" in data:
        return {**config, "data": {k: v for k, v in data.items() if k != "fingerprint"}}
    return config


def read_json(path: Path) -> Any:
    """``json.loads`` of a run file; :class:`DamagedRunError` naming the file when it does not parse."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise DamagedRunError(f"{path}: unreadable ({e})") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise DamagedRunError(f"{path}: not valid JSON ({e}); truncated or overwritten?") from None


# -- cleaning -------------------------------------------------------------------------------------------

def clean(root: Path | None = None, *, incomplete: bool = False, stale: bool = False, damaged: bool = False,
          failed: bool = False) -> list[Run]:
    """Delete runs: all of them by default, or only those in the chosen states. Returns what was removed.

    ``incomplete`` = new or partial. A run another process is training (its lock held) is left alone.
    """
    chosen = {RunState.NEW, RunState.PARTIAL} if incomplete else set()
    chosen |= {RunState.STALE} if stale else set()
    chosen |= {RunState.DAMAGED} if damaged else set()
    chosen |= {RunState.FAILED} if failed else set()
    removed = []
    for run in list(iter_runs(root)):
        if chosen and verify(run).state not in chosen:
            continue
        if run.in_use():
            print(f"run {run.key}: being trained by another process; left alone", file=sys.stderr)
            continue
        shutil.rmtree(run.dir, ignore_errors=True)
        removed.append(run)
    return removed
