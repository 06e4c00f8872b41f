"""Time and peak memory of the DFI's inter-class compactness (DB Eq. 1) at MS1MV2 scale.

Three ways to the same K nearest prototypes of every class, each followed by the same logsumexp:

- ``dbrepro``: :func:`dbrepro.dfi.inter_class_compactness` (each pair of ``chunk``-row blocks
  multiplied once, only the cosines above each class's current K-th largest selected), at one or
  more chunk sizes;
- ``rowblocks``: the plain way, kept as a yardstick: blocks of 512 rows times all prototypes,
  the block's own diagonal masked, ``torch.topk`` over every full row;
- ``faiss``: an exact faiss ``IndexFlatIP`` search for the K + 1 nearest (self removed afterwards).

Each run is a child process so that its peak resident memory (Linux ``VmHWM``) is its own; "extra
MB" is that peak minus the resident memory just before the call (the prototypes themselves are
already in memory). The methods take turns (``--rounds`` rounds of all of them), so a drift in the
machine's speed hits them alike; the table shows each method's median time over the rounds and its
largest extra memory, and "x faiss" is the median over the rounds of the time over faiss's time in
the same round.

    .venv/bin/python benchmarks/bench_dfi.py                  # 85,742 x 512, K = 100, 2 rounds
    .venv/bin/python benchmarks/bench_dfi.py --classes 20000 --chunks 2048 4096 6144 --rounds 3

At full scale one round takes several minutes on 2 CPU cores (a 7.5 TFLOP matrix product for
rowblocks and faiss, about half of it for dbrepro). Other processes on the machine slow the
2-thread runs unevenly; run it on a quiet machine, or compare ``--threads 1``.

Prototypes are random Gaussian vectors (the timing does not depend on their values).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dbrepro import dfi

ROWBLOCK = 512


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def _faiss_ic(weight: torch.Tensor, k: int, s: float) -> torch.Tensor:
    import faiss

    unit = torch.nn.functional.normalize(weight, dim=1).numpy()
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    sims, ids = index.search(unit, k + 1)
    # drop each row's own entry; if a tie pushed it out of the k + 1, drop the last neighbour
    is_self = ids == np.arange(len(unit))[:, None]
    no_self = ~is_self.any(axis=1)
    is_self[no_self, -1] = True
    nearest = sims[~is_self].reshape(len(unit), k)
    return torch.logsumexp(s * torch.from_numpy(nearest), dim=1)


def _rowblocks_ic(weight: torch.Tensor, k: int, s: float) -> torch.Tensor:
    unit = torch.nn.functional.normalize(weight, dim=1)
    num_classes = len(unit)
    ic = torch.empty(num_classes)
    block = torch.empty(min(ROWBLOCK, num_classes), num_classes)
    for start in range(0, num_classes, ROWBLOCK):
        stop = min(start + ROWBLOCK, num_classes)
        cos = torch.mm(unit[start:stop], unit.T, out=block[: stop - start])
        rows = torch.arange(stop - start)
        cos[rows, rows + start] = float("-inf")
        ic[start:stop] = torch.logsumexp(s * cos.topk(k, dim=1, sorted=False).values, dim=1)
    return ic


def child(method: str, chunk: int, classes: int, dim: int, k: int, s: float, threads: int, out: str) -> None:
    from dbrepro.dfi import inter_class_compactness

    if threads:
        torch.set_num_threads(threads)
        if method == "faiss":
            import faiss

            faiss.omp_set_num_threads(threads)
    weight = torch.randn(classes, dim, generator=torch.Generator().manual_seed(0))
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    if method == "dbrepro":
        ic = inter_class_compactness(weight, k=k, s=s, chunk=chunk)
    elif method == "rowblocks":
        ic = _rowblocks_ic(weight, k, s)
    else:
        ic = _faiss_ic(weight, k, s)
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    np.save(out, ic.numpy())
    print(json.dumps({"seconds": seconds, "extra_mb": peak - before, "threads": torch.get_num_threads()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=85_742)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--s", type=float, default=64.0)
    parser.add_argument("--chunks", type=int, nargs="+", default=[dfi.DEFAULT_CHUNK], help="dbrepro's chunk sizes (default: the library's)")
    parser.add_argument("--methods", nargs="+", default=["dbrepro", "rowblocks", "faiss"],
                        choices=["dbrepro", "rowblocks", "faiss"])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all the methods, taking turns")
    parser.add_argument("--threads", type=int, default=0, help="threads for torch and faiss (0: their default)")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "CHUNK"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.classes, args.dim, args.k, args.s, args.threads, args.out)
        return

    runs = [(m, c) for m in args.methods for c in (args.chunks if m == "dbrepro" else [0])]
    results: dict[tuple[str, int], list[dict]] = {run: [] for run in runs}
    ics: dict[tuple[str, int], np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for method, chunk in runs:
                out = str(Path(tmp) / f"{method}-{chunk}.npy")
                cmd = [sys.executable, __file__, "--child", method, str(chunk), "--out", out,
                       "--classes", str(args.classes), "--dim", str(args.dim), "--k", str(args.k),
                       "--s", str(args.s), "--threads", str(args.threads)]
                done = subprocess.run(cmd, check=True, capture_output=True, text=True)
                results[(method, chunk)].append(json.loads(done.stdout))
                ics[(method, chunk)] = np.load(out)
    threads = results[runs[0]][0]["threads"]
    print(f"IC (DB Eq. 1) for {args.classes:,} x {args.dim} prototypes, k = {args.k}, s = {args.s:g}, "
          f"{threads} threads, {args.rounds} rounds, {time.strftime('%Y-%m-%d %H:%M')}")
    reference = ics[runs[0]]
    print(f"{'method':<22}{'seconds':>10}{'(min-max)':>16}{'extra MB':>10}{'max |dIC|':>12}{'x faiss':>9}")
    for run in runs:
        method, chunk = run
        seconds = [r["seconds"] for r in results[run]]
        name = {"dbrepro": f"dbrepro chunk={chunk}", "rowblocks": f"row blocks of {ROWBLOCK} + topk",
                "faiss": "faiss IndexFlatIP"}[method]
        spread = f"({min(seconds):.1f}-{max(seconds):.1f})"
        extra = max(r["extra_mb"] for r in results[run])
        diff = float(np.abs(ics[run] - reference).max())
        ratio = ""
        if ("faiss", 0) in results:
            per_round = [r["seconds"] / f["seconds"] for r, f in zip(results[run], results[("faiss", 0)])]
            ratio = f"{statistics.median(per_round):.2f}"
        print(f"{name:<22}{statistics.median(seconds):>10.1f}{spread:>16}{extra:>10.0f}{diff:>12.2e}{ratio:>9}")


if __name__ == "__main__":
    main()
