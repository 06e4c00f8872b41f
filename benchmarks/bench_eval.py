"""Speed and memory of the evaluation protocols.

Prints one table:

* 10-fold verification of 6,000 pairs (LFW size);
* exact TAR at FAR / AUC / EER on a few million all-vs-all pair scores;
* MegaFace-style rank-1 of 10^4 probes against a 10^4 gallery plus 10^6 x 512 random distractor
  embeddings: streamed chunk by chunk (distractors generated on the fly, never resident), the
  same scan over a resident distractor tensor, and faiss ``IndexFlatIP`` (exact inner-product
  search, which needs all 2 GB of distractors resident) on the same data. Peak resident memory
  of each phase is read from ``VmHWM`` after resetting it (Linux ``/proc/self/clear_refs``).

Usage::

    python benchmarks/bench_eval.py                      # the full 10^6 distractors (~10 min on 2 cores)
    python benchmarks/bench_eval.py --distractors 100000 --repeat 5  # smaller, best of 5
    python benchmarks/bench_eval.py --device cuda --no-faiss
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from dbrepro.eval import GallerySearch, auc, eer, tar_at_far, verification


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def distractor_chunks(count: int, dim: int, chunk: int, device: str) -> Iterator[torch.Tensor]:
    """Deterministic random distractor embeddings, one chunk at a time."""
    for start in range(0, count, chunk):
        gen = torch.Generator(device=device).manual_seed(1_000 + start)
        yield torch.randn(min(chunk, count - start), dim, generator=gen, device=device)


def world(probes: int, gallery: int, dim: int, device: str):
    gen = torch.Generator(device=device).manual_seed(0)
    gallery_ids = np.arange(gallery)
    gal = F.normalize(torch.randn(gallery, dim, generator=gen, device=device), dim=1)
    probe_ids = np.arange(probes) % gallery
    # mate cosine about 0.3: above most random distractors (max ~0.2 of 10^6), not all
    noise = F.normalize(torch.randn(probes, dim, generator=gen, device=device), dim=1)
    pro = 0.3 * gal[torch.from_numpy(probe_ids).to(device)] + math.sqrt(1 - 0.09) * noise
    return pro, probe_ids, gal, gallery_ids


def rank_k(pro, probe_ids, gal, gallery_ids, distractors, ks, chunk, probe_chunk) -> dict[int, float]:
    """dbrepro's closed-set rank-k: one GallerySearch, the distractors added chunk by chunk."""
    search = GallerySearch(pro, probe_ids, gal, gallery_ids, chunk=chunk, probe_chunk=probe_chunk)
    for block in distractors:
        search.add_distractors(block)
    return search.rank_k(ks)


def faiss_rank_k(pro, probe_ids, gal, gallery_ids, distractors, ks):
    import faiss

    index = faiss.IndexFlatIP(gal.shape[1])
    index.add(gal.cpu().numpy())
    index.add(distractors)  # already unit rows
    _, labels = index.search(F.normalize(pro, dim=1).cpu().numpy(), max(ks))
    hit_ids = np.where(labels < len(gallery_ids), gallery_ids[np.minimum(labels, len(gallery_ids) - 1)], -1)
    hits = hit_ids == probe_ids[:, None]
    return {k: float(hits[:, :k].any(axis=1).mean()) for k in ks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distractors", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=10_000)
    parser.add_argument("--gallery", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument("--probe-chunk", type=int, default=4096)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved dbrepro/faiss repeats (best of)")
    parser.add_argument("--no-faiss", action="store_true", help="skip the resident and faiss runs")
    args = parser.parse_args()
    ks = (1, 5, 10)
    rows: list[tuple[str, str, str]] = []
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")

    # --- verification and ROC -------------------------------------------------------------
    rng = np.random.default_rng(0)
    issame = rng.random(6000) < 0.5
    scores = rng.normal(size=6000) + 2 * issame
    t, _ = timed(lambda: verification(scores, issame), repeat=20)
    rows.append(("verification, 6,000 pairs x 10 folds (exact thresholds)", f"{t * 1e3:.2f} ms", ""))
    n = 5_000_000
    issame = rng.random(n) < 0.01
    scores = (rng.normal(size=n) + 3 * issame).astype(np.float32)
    t, _ = timed(lambda: tar_at_far(scores, issame, [1e-5, 1e-4, 1e-3]))
    rows.append((f"tar_at_far x3, {n:,} pair scores", f"{t:.2f} s", ""))
    t, _ = timed(lambda: (auc(scores, issame), eer(scores, issame)))
    rows.append((f"auc + eer, {n:,} pair scores", f"{t:.2f} s", ""))

    # --- identification ---------------------------------------------------------------------
    m, d = args.distractors, args.dim
    pro, probe_ids, gal, gallery_ids = world(args.probes, args.gallery, d, args.device)
    label = f"{args.probes:,} probes, {args.gallery:,} gallery, {m:,} x {d} distractors"

    t_gen, _ = timed(lambda: sum(len(c) for c in distractor_chunks(m, d, args.chunk, args.device)))
    reset_peak_rss()
    base = rss_mb("VmRSS")
    t_stream, ranks_stream = timed(lambda: rank_k(
        pro, probe_ids, gal, gallery_ids, distractor_chunks(m, d, args.chunk, args.device),
        ks=ks, chunk=args.chunk, probe_chunk=args.probe_chunk,
    ))
    peak_stream = rss_mb("VmHWM") - base
    block_mb = args.probe_chunk * args.chunk * 5 / 2**20
    rows.append((f"rank-k streamed ({label}; generation included)", f"{t_stream:.1f} s",
                 f"+{peak_stream:.0f} MB peak RSS (score block {block_mb:.0f} MB)"))
    rows.append(("  of which generating the distractors", f"{t_gen:.1f} s", ""))

    if not args.no_faiss:
        distractors = np.empty((m, d), dtype=np.float32)
        for i, c in enumerate(distractor_chunks(m, d, args.chunk, args.device)):
            distractors[i * args.chunk : i * args.chunk + len(c)] = F.normalize(c, dim=1).cpu().numpy()
        # interleaved repeats, best of each: other processes on a shared machine hit both alike
        t_ours = t_faiss = math.inf
        peak_ours = peak_faiss = 0.0
        for _ in range(args.repeat):
            reset_peak_rss()
            base = rss_mb("VmRSS")
            t, ranks_ours = timed(lambda: rank_k(
                pro, probe_ids, gal, gallery_ids, [torch.from_numpy(distractors).to(args.device)],
                ks=ks, chunk=args.chunk, probe_chunk=args.probe_chunk,
            ))
            t_ours, peak_ours = min(t_ours, t), max(peak_ours, rss_mb("VmHWM") - base)
            reset_peak_rss()
            base = rss_mb("VmRSS")
            t, ranks_faiss = timed(lambda: faiss_rank_k(pro, probe_ids, gal, gallery_ids, distractors, ks))
            t_faiss, peak_faiss = min(t_faiss, t), max(peak_faiss, rss_mb("VmHWM") - base)
        rows.append(("rank-k, resident distractors (dbrepro)", f"{t_ours:.1f} s", f"+{peak_ours:.0f} MB peak RSS"))
        rows.append(("rank-k, faiss IndexFlatIP (add + search k=10)", f"{t_faiss:.1f} s",
                     f"+{peak_faiss:.0f} MB peak RSS"))
        rows.append(("  dbrepro resident / faiss", f"{t_ours / t_faiss:.2f}x", ""))
        rows.append(("  rank-1/5/10 dbrepro (stream, resident) vs faiss",
                     f"{ranks_stream[1]:.4f}/{ranks_stream[5]:.4f}/{ranks_stream[10]:.4f}",
                     f"{ranks_ours[1]:.4f} / faiss {ranks_faiss[1]:.4f}/{ranks_faiss[5]:.4f}/{ranks_faiss[10]:.4f}"))
    else:
        rows.append(("  rank-1/5/10", f"{ranks_stream[1]:.4f}/{ranks_stream[5]:.4f}/{ranks_stream[10]:.4f}", ""))

    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'time':>10}  notes")
    for what, value, note in rows:
        print(f"{what:<{width}}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
