"""What the first optimiser step costs in a new process: ``torch.optim.SGD`` against the loop's CPU SGD
(``dbrepro.train.sgd``).

    python benchmarks/bench_optimizer_start.py [--repeats 5]

Each measurement is a fresh interpreter that imports torch and dbrepro's training modules (not timed: the
training loop imports both either way), then builds the optimiser over a
small model and takes one step (timed): what every chapter's kernel, every training worker and every
``torchrun`` rank pays once. ``torch.optim`` imports ``torch._dynamo`` there; the loop's SGD does not. The two
ways alternate, so that a change in the machine's load falls on both; the table gives the median and the
range of ``--repeats`` processes each, and the time saved per process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CHILD = r"""
import sys, time
import torch
from dbrepro.train.sgd import SGD  # the training loop's modules, imported by either way's process
model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.PReLU(), torch.nn.Linear(64, 10))
t0 = time.perf_counter()
if sys.argv[1] == "torch":
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
else:
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
model(torch.randn(8, 64)).sum().backward()
opt.step()
print(time.perf_counter() - t0, "torch._dynamo" in sys.modules)
"""

WAYS = {"torch": "torch.optim.SGD", "dbrepro": "dbrepro.train.sgd.SGD"}


def first_step(way: str) -> tuple[float, bool]:
    out = subprocess.run([sys.executable, "-c", CHILD, way], capture_output=True, text=True, check=True)
    seconds, dynamo = out.stdout.split()
    return float(seconds), dynamo == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per optimiser (default: 5)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {w: [] for w in WAYS}
    dynamo: dict[str, bool] = {}
    for i in range(args.repeats):
        for way in WAYS:
            t, d = first_step(way)
            times[way].append(t)
            dynamo[way] = d
        print(f"  {i + 1}/{args.repeats}", file=sys.stderr, flush=True)
    print("| optimiser | first build + step in a new process (median, min-max) | imports torch._dynamo |")
    print("|---|---|---|")
    for way, name in WAYS.items():
        ts = times[way]
        print(f"| {name} | {statistics.median(ts):.3f} s ({min(ts):.3f}-{max(ts):.3f}) | {dynamo[way]} |")
    saved = statistics.median(times["torch"]) - statistics.median(times["dbrepro"])
    print(f"\nsaved per new training process: {saved:.2f} s (difference of the medians)")


if __name__ == "__main__":
    main()
