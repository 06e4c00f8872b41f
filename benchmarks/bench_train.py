"""Trainer overhead against a bare PyTorch loop, and images/s of the small backbone.

Both loops train the same model (small backbone, cpu-profile sizes) with the same head, optimiser,
batches and flips on the same in-memory data; the bare loop is the minimum a hand-written script
does. The two are interleaved and each is timed ``--repeats`` times; the best time of each counts.

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

from dbrepro.config import get_profile
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
            loss = head(model(x), labels[idx])
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
    bare_loop(cfg, data)  # warm-up (allocator, oneDNN kernels)
    bare, trainer = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(cfg, data))
        trainer.append(trainer_loop(cfg, data))
    n = args.epochs * (args.images // args.batch) * args.batch
    b, t = min(bare), min(trainer)
    print(f"{torch.get_num_threads()} threads, {args.images} images of {args.size} px, {args.classes} classes, "
          f"{args.epochs} epochs, batches of {args.batch}, best of {args.repeats}")
    print(f"{'loop':<10} {'seconds':>8} {'img/s':>8}")
    print(f"{'bare':<10} {b:8.2f} {n / b:8.0f}")
    print(f"{'trainer':<10} {t:8.2f} {n / t:8.0f}")
    print(f"trainer overhead: {100 * (t / b - 1):+.1f} %  (target <= 3 %)")


if __name__ == "__main__":
    main()
