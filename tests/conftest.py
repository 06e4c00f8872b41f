"""Test-wide settings: PyTorch's OpenMP threads wait passively (dbrepro.CPU_THREAD_ENV), set before any test
module imports torch, so that the suite stays fast on a busy 2-core machine."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Under pytest-xdist (`make test` runs the unit tests on every core, `-n`), each worker is one process on one
# core: one PyTorch thread each, so that two workers do not fight over the same two cores with four threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)
