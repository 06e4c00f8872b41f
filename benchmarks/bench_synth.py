"""Synthetic world: render time per preset, images/s, cache write and load time, distractor rate.

    python benchmarks/bench_synth.py                      # smoke and cpu presets
    python benchmarks/bench_synth.py --presets paper      # the 112 px world (slow on a laptop)
    python benchmarks/bench_synth.py --threads 1 2        # compare torch thread counts

Worlds are rendered into a temporary cache folder (never the user's cache). Prints one table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch


def bench_preset(preset: str, seed: int) -> dict[str, float]:
    from dbrepro.data import synth

    cfg = synth.world_config(preset)
    t0 = time.perf_counter()
    world = synth.make_world(preset, seed=seed)  # renders and writes the cache
    build = time.perf_counter() - t0
    n_train = len(world.train)
    n_suite = sum(len(m) for m in world.suite_images.values())
    t0 = time.perf_counter()
    again = synth.make_world(preset, seed=seed)
    load = time.perf_counter() - t0
    assert torch.equal(again.train.images, world.train.images)
    n_dis = min(2048, cfg.megaface_distractors)
    t0 = time.perf_counter()
    for _ in world.suites["megaface"].distractors.chunks(512):
        n_dis -= 512
        if n_dis <= 0:
            break
    dis_time = time.perf_counter() - t0
    n_dis = min(2048, cfg.megaface_distractors)
    return {
        "images": n_train + n_suite, "train": n_train, "suites": n_suite, "size": cfg.image_size,
        "build_s": build, "img_per_s": (n_train + n_suite) / build, "load_s": load,
        "distractors_per_s": n_dis / dis_time,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["smoke", "cpu"])
    ap.add_argument("--threads", nargs="+", type=int, default=[torch.get_num_threads()])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for preset in args.presets:
            with tempfile.TemporaryDirectory() as tmp:
                os.environ["DBREPRO_CACHE"] = tmp
                rows.append((preset, threads, bench_preset(preset, args.seed)))
    head = f"{'preset':8} {'thr':>3} {'px':>4} {'images':>7} {'train':>6} {'suites':>6} {'render s':>9} {'img/s':>7} {'load s':>7} {'distr/s':>8}"
    print(head)
    print("-" * len(head))
    for preset, threads, r in rows:
        print(f"{preset:8} {threads:>3} {r['size']:>4} {r['images']:>7} {r['train']:>6} {r['suites']:>6} "
              f"{r['build_s']:>9.1f} {r['img_per_s']:>7.0f} {r['load_s']:>7.2f} {r['distractors_per_s']:>8.0f}")


if __name__ == "__main__":
    main()
