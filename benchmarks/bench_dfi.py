"""Time and peak memory of the DFI's inter-class compactness (DB Eq. 1) at MS1MV2 scale.

Compares :func:`dbrepro.dfi.inter_class_compactness` (chunked matmul + top-k, several chunk
sizes) with an exact faiss ``IndexFlatIP`` search for the k + 1 nearest prototypes (self
removed afterwards). Each method runs in its own child process so that its peak resident
memory (Linux ``VmHWM``) is its own; "extra MB" is that peak minus the resident memory just
before the call (the prototypes themselves are already in memory).

    .venv/bin/python benchmarks/bench_dfi.py                    # 85,742 x 512, k = 100
    .venv/bin/python benchmarks/bench_dfi.py --classes 20000 --chunks 256 512 2048   # quicker, chunk sizes

At full scale each method takes a few minutes on 2 CPU cores (a 7.5 TFLOP matrix product).

Prototypes are random Gaussian vectors (the timing does not depend on their values).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


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


def child(method: str, chunk: int, classes: int, dim: int, k: int, s: float, out: str) -> None:
    from dbrepro.dfi import inter_class_compactness

    weight = torch.randn(classes, dim, generator=torch.Generator().manual_seed(0))
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    if method == "torch":
        ic = inter_class_compactness(weight, k=k, s=s, chunk=chunk)
    else:
        ic = _faiss_ic(weight, k, s)
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    np.save(out, ic.numpy())
    print(json.dumps({"seconds": seconds, "extra_mb": peak - before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=85_742)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--s", type=float, default=64.0)
    parser.add_argument("--chunks", type=int, nargs="+", default=[512])
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "CHUNK"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.classes, args.dim, args.k, args.s, args.out)
        return

    runs = [("torch", c) for c in args.chunks] + [("faiss", 0)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method, chunk in runs:
            out = str(Path(tmp) / f"{method}-{chunk}.npy")
            cmd = [sys.executable, __file__, "--child", method, str(chunk), "--out", out,
                   "--classes", str(args.classes), "--dim", str(args.dim), "--k", str(args.k), "--s", str(args.s)]
            result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            rows.append((method, chunk, result, np.load(out)))
    reference = rows[0][3]
    print(f"IC (DB Eq. 1) for {args.classes:,} x {args.dim} prototypes, k = {args.k}, s = {args.s:g}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'method':<22}{'seconds':>10}{'extra MB':>12}{'max |dIC|':>12}{'x faster':>10}")
    base = rows[0][2]["seconds"]
    for method, chunk, result, ic in rows:
        name = f"torch chunk={chunk}" if method == "torch" else "faiss IndexFlatIP"
        diff = float(np.abs(ic - reference).max())
        print(f"{name:<22}{result['seconds']:>10.1f}{result['extra_mb']:>12.0f}{diff:>12.2e}"
              f"{base / result['seconds']:>10.2f}")


if __name__ == "__main__":
    main()
