"""Test-wide settings: PyTorch's OpenMP threads wait passively (dbrepro.CPU_THREAD_ENV), set before any test
module imports torch, so that the suite stays fast on a busy 2-core machine."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
