"""Where dbrepro keeps what it computes: one cache root, set by an environment variable.

``DBREPRO_CACHE`` (default ``$XDG_CACHE_HOME/dbrepro``, i.e. ``~/.cache/dbrepro``) holds

- ``runs/``   the run cache (:mod:`dbrepro.runs`): trained models and their metrics,
- ``worlds/`` rendered synthetic worlds (:mod:`dbrepro.data.synth`), keyed by config hash.

Nothing in the repository is written to; delete the folder (or ``dbrepro runs clean``) to start afresh.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, BinaryIO, Callable


def cache_root() -> Path:
    env = os.environ.get("DBREPRO_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dbrepro"


def cache_dir(kind: str) -> Path:
    """``cache_root() / kind``, created if missing."""
    path = cache_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) for hashing configs."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot put {type(obj).__name__} into a config hash")


def config_hash(obj: Any, version: str | int = "", length: int = 16) -> str:
    """A short sha256 of the canonical JSON of ``obj`` plus a cache ``version``."""
    h = hashlib.sha256(f"{version}\n{canonical_json(obj)}".encode())
    return h.hexdigest()[:length]


def jsonable(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON data (dicts, lists, strings, numbers, booleans, None).

    What :meth:`dbrepro.results.Results.add` records and what :func:`dbrepro.experiments.evaluate` caches
    both go through here, by these rules:

    - a mapping becomes a dict with ``str`` keys (``{1e-05: x}`` -> ``{"1e-05": x}``); a list or tuple a
      list; a set a sorted list;
    - a torch tensor (detached, on the CPU) or a numpy array becomes nested lists; a numpy scalar the
      Python number (``np.float32(0.5)`` -> ``0.5``, ``np.int64(3)`` -> ``3``, ``np.bool_`` -> ``bool``);
    - a pandas DataFrame becomes ``{column: {index: value}}`` (``DataFrame.to_dict()``), a Series
      ``{index: value}``, any other object with a ``to_dict()`` (a :class:`~dbrepro.train.TrainConfig`) its dict,
      and one with a ``tolist()`` (a pandas Index or Categorical) its list;
    - a float that is NaN or infinite becomes None, wherever it stands (a scalar, inside a list, an array or
      a tensor): JSON has no NaN, so the files stay standard JSON that any reader parses;
    - a :class:`~pathlib.Path` becomes its ``str``; strings, ints, bools and None stay as they are.

    Anything else is a ``TypeError`` naming where it stands in ``value`` (``where`` names ``value`` itself).
    """
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")  # neither can be in value unless imported
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v, where) for v in value)
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        finite = not value.is_complex() and (not value.is_floating_point() or bool(value.isfinite().all()))
        return value.tolist() if finite else jsonable(value.tolist(), where)
    if np is not None and isinstance(value, np.ndarray):
        finite = value.dtype.kind in "biu" or (value.dtype.kind == "f" and bool(np.isfinite(value).all()))
        return value.tolist() if finite else jsonable(value.tolist(), where)
    if np is not None and isinstance(value, np.generic):
        return jsonable(value.item(), where)
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict(), where)
    if hasattr(value, "tolist"):  # a pandas Index or Categorical
        return jsonable(value.tolist(), where)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, (str, int)):
        return value
    raise TypeError(f"{where}: cannot write a value of type {type(value).__name__} as JSON "
                    "(give numbers, strings, lists, dicts, arrays, tensors or DataFrames)")


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 (hex) of a file's bytes, read 1 MiB at a time (a model of gigabytes is never held whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def temp_file_beside(path: str | os.PathLike) -> tuple[int, str]:
    """Create a new, empty temp file in ``path``'s folder: ``(descriptor open for writing, its path)``.

    Unlike :func:`tempfile.mkstemp` (always mode 0600) the file is created with mode 0666 less the
    process umask, as ``open()`` would create it, so a cache shared with colleagues (umask 002 or
    022) stays readable to them once the temp file is renamed into place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), str(tmp)
        except FileExistsError:  # another writer drew the same name: draw again
            continue


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(f)`` on a temp file in ``path``'s folder, fsync it, then ``os.replace`` it onto ``path``.

    A reader sees the old file or the whole new one, never half of it; on any error the temp file
    is removed and ``path`` is untouched. The file's mode follows the umask (see :func:`temp_file_beside`).
    """
    path = Path(path)
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically, streamed (no second in-memory copy of a large object)."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_default) + "\n")
