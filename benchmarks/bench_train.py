"""Trainer overhead against a bare PyTorch loop, and images/s of the small backbone in float32 and bfloat16.

Both loops train the same model (small backbone, cpu-profile sizes) with the same head, optimiser,
batches and flips on the same in-memory data; the bare loop is the minimum a hand-written script
does. Both run in float32 and under bfloat16 autocast (``TrainConfig.cpu_bf16``, what the cpu profile
trains in on a CPU with native bf16); the four are interleaved and each is timed ``--repeats`` times; the
best time of each counts. The last line is the bf16 speed-up of the trainer, within this one run.

    python benchmarks/bench_train.py [--images 4096] [--classes 500] [--size 32] [--batch 32] [--repeats 3]

``--batch`` defaults to the cpu profile's batch size, so that img/s is the cpu recipe's.

Target (issue 3): trainer overhead <= 3 %.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from dbrepro.config import cpu_has_native_bf16, get_profile
from dbrepro.data.base import TensorFaces
from dbrepro.data.samplers import RandomBatchSampler
from dbrepro.models import normalize_images
from dbrepro.train import TrainConfig, build, fit


def make_data(n: int, classes: int, size: int) -> TensorFaces:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = np.arange(n) % classes
    return TensorFaces(images, labels, classes, pd.DataFrame({"identity": labels}))


def bare_loop(cfg: TrainConfig, data: TensorFaces) -> float:
    """The hand-written loop; ``cfg.cpu_bf16`` puts the backbone's forward under bfloat16 autocast, as the trainer."""
    module = build(cfg, data.num_classes)
    model, head = module.model, module.objective.head
    opt = torch.optim.SGD(module.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    labels = torch.as_tensor(data.labels)
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        sampler = RandomBatchSampler(len(data), cfg.batch_size, seed=cfg.seed)
        sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(epoch)
        model.train()
        for idx in sampler:
            idx = torch.as_tensor(idx)
            x = data.images[idx]
            flip = torch.rand(len(x), generator=gen) < 0.5
            x = normalize_images(torch.where(flip[:, None, None, None], x.flip(-1), x))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.cpu_bf16):
                emb = model(x)
            loss = head(emb.float(), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def trainer_loop(cfg: TrainConfig, data: TensorFaces) -> float:
    t0 = time.perf_counter()
    fit(cfg, data, progress=False, device="cpu")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--classes", type=int, default=500)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=get_profile("cpu").batch_size, help="batch size (default: the cpu profile's)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    data = make_data(args.images, args.classes, args.size)
    cfg = TrainConfig(data={"kind": "bench"}, backbone="small", embedding_size=128, image_size=args.size,
                      head="cosface", head_kwargs={"s": 64.0, "m": 0.35}, epochs=args.epochs, batch_size=args.batch)
    configs = {"float32": cfg, "bfloat16": cfg.replace(cpu_bf16=True)}
    for c in configs.values():
        bare_loop(c, data)  # warm-up (allocator, oneDNN kernels of each precision)
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for precision, c in configs.items():
            times.setdefault(("bare", precision), []).append(bare_loop(c, data))
            times.setdefault(("trainer", precision), []).append(trainer_loop(c, data))
    n = args.epochs * (args.images // args.batch) * args.batch
    best = {k: min(v) for k, v in times.items()}
    print(f"{torch.get_num_threads()} threads, {args.images} images of {args.size} px, {args.classes} classes, "
          f"{args.epochs} epochs, batches of {args.batch}, best of {args.repeats}; native bf16: {cpu_has_native_bf16()}")
    print(f"{'loop':<10} {'precision':<10} {'seconds':>8} {'img/s':>8}")
    for (loop, precision), t in best.items():
        print(f"{loop:<10} {precision:<10} {t:8.2f} {n / t:8.0f}")
    for precision in configs:
        overhead = best[("trainer", precision)] / best[("bare", precision)] - 1
        print(f"trainer overhead, {precision}: {100 * overhead:+.1f} %  (target <= 3 %)")
    print(f"trainer img/s, bfloat16 / float32: {best[('trainer', 'float32')] / best[('trainer', 'bfloat16')]:.2f}x")


if __name__ == "__main__":
    main()
