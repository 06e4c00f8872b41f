"""The facts of the machine a build ran on, for the status page: Python, torch, device, cores, packages."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from .status import now

#: Packages whose versions the status page reports.
REPORTED_PACKAGES = (
    "torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn", "matplotlib", "openTSNE",
    "papermill", "jupytext", "nbclient", "ipykernel", "jupyter-book", "sphinx", "myst-nb", "sphinx-book-theme",
)


def environment_info(profile: str) -> dict[str, Any]:
    """Python, torch, CUDA or CPU, cores, key package versions, date and git commit: the status page's facts."""
    from importlib import metadata

    import torch

    info: dict[str, Any] = {
        "profile": profile,
        "date": now(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cuda_version": torch.version.cuda,
        "packages": {},
        "git_commit": _git_commit(),
    }
    for package in REPORTED_PACKAGES:
        try:
            info["packages"][package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info["packages"][package] = None
    return info


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
