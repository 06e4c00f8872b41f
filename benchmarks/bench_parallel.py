"""A chapter's independent runs, one after the other in one process against side by side in worker processes
(``dbrepro.experiments.train_many``, ``dbrepro.workers``): wall time of the same cpu-profile runs.

    python benchmarks/bench_parallel.py [--runs 4] [--epochs 1]

Both ways train the same configs (the cpu recipe's CosFace, ``--runs`` seeds, ``--epochs`` epochs at the
full learning rate) from an empty run cache of their own; the cpu world is rendered into a shared world
cache first and not timed. "one process" is how the book trained before: one run at a time with all the
usable cores as PyTorch threads (OpenMP waiting passively, as dbrepro sets it); "workers" is
``train_many(jobs=0)``: one worker per usable core, one thread each. The ratio is within one run of this
script; on a shared machine, run it when nothing else runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

TRAIN = r"""
import sys, time
from dbrepro import experiments, recipes
runs, epochs, jobs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cfgs = [recipes.cosface("cpu", seed=s).replace(epochs=epochs, milestones=None) for s in range(runs)]
t = time.perf_counter()
if jobs == 1:
    for c in cfgs:
        experiments.train(c, device="cpu", verbose=False)
else:
    experiments.train_many(cfgs, device="cpu", jobs=0, verbose=False)
print(time.perf_counter() - t)
"""


def timed(runs: int, epochs: int, jobs: int, world_cache: str) -> float:
    with tempfile.TemporaryDirectory() as cache:
        os.symlink(os.path.join(world_cache, "worlds"), os.path.join(cache, "worlds"))
        env = {**os.environ, "DBREPRO_CACHE": cache, "OMP_WAIT_POLICY": "PASSIVE"}
        env.pop("DBREPRO_JOBS", None)
        out = subprocess.run([sys.executable, "-c", TRAIN, str(runs), str(epochs), str(jobs)], env=env, check=True,
                             capture_output=True, text=True)
        return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=4, help="independent runs (seeds) to train (default 4)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per run (default 1)")
    args = ap.parse_args()
    from dbrepro import workers

    with tempfile.TemporaryDirectory() as world_cache:
        os.makedirs(os.path.join(world_cache, "worlds"))
        subprocess.run([sys.executable, "-c", "from dbrepro.data.synth import make_world; make_world('cpu')"],
                       env={**os.environ, "DBREPRO_CACHE": world_cache}, check=True)
        one = timed(args.runs, args.epochs, 1, world_cache)
        many = timed(args.runs, args.epochs, 0, world_cache)
    cores = workers.usable_cores()
    print(f"{args.runs} cpu-profile CosFace runs of {args.epochs} epoch(s), {cores} usable cores")
    print(f"{'one process, ' + str(cores) + ' threads':<34} {one:8.1f} s")
    print(f"{'workers: ' + str(cores) + ' x 1 thread':<34} {many:8.1f} s")
    print(f"speed-up {one / many:.2f}x")


if __name__ == "__main__":
    main()
