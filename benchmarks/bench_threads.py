"""Training throughput of the cpu recipe's network with 1 and 2 threads, with PyTorch's OpenMP threads waiting
actively (spinning, the default) or passively (``OMP_WAIT_POLICY=PASSIVE``, what dbrepro sets), on an idle
machine and with a competing process on the other core.

    python benchmarks/bench_threads.py [--seconds 8]

Each setting runs in its own process (the wait policy is read when torch loads OpenMP); the competing load is
a busy Python loop on one core. Prints img/s per setting; ratios are within one run of this script.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time

WORKER = r"""
import sys, time, torch
from dbrepro.models import build_model
from dbrepro.losses import CosFace
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
m = build_model("small", 128, 32); h = CosFace(128, 600, s=16.0)
opt = torch.optim.SGD(list(m.parameters()) + list(h.parameters()), lr=0.1, momentum=0.9)
x = torch.randn(64, 3, 32, 32); y = torch.randint(0, 600, (64,))
for _ in range(5):
    loss = h(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
t, n = time.time(), 0
while time.time() - t < float(sys.argv[2]):
    loss = h(m(x), y); opt.zero_grad(); loss.backward(); opt.step(); n += 64
print(n / (time.time() - t))
"""


def busy(stop: float) -> None:
    while time.time() < stop:
        pass


def measure(threads: int, policy: str, seconds: float) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", WORKER, str(threads), str(seconds)], env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="timed seconds per setting (default 8)")
    args = ap.parse_args()
    settings = [(1, "default"), (2, "default"), (2, "PASSIVE")]
    print(f"{'load':<10} {'threads':>7} {'wait policy':>12} {'img/s':>8}")
    for load in ("idle", "1 busy"):
        for threads, policy in settings:
            proc = None
            if load != "idle":
                proc = mp.Process(target=busy, args=(time.time() + args.seconds + 30,))
                proc.start()
            try:
                rate = measure(threads, policy, args.seconds)
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.join()
            print(f"{load:<10} {threads:>7} {policy:>12} {rate:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
