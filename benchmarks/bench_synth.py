"""Synthetic world: render time per preset, images/s, cache write and load time, distractor rate.

    python benchmarks/bench_synth.py                      # smoke and cpu presets
    python benchmarks/bench_synth.py --presets paper      # the 112 px world (slow on a laptop)

The renderer always runs on one torch thread (``synth.single_thread``: its many small element-wise
ops gain little from OpenMP and lose a lot when another process holds the cores), so there is no
thread count to compare. Loading includes the cache's checks (the world's digest is recomputed).
Worlds are written to a temporary cache folder (never the user's cache). Prints one table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def bench_preset(preset: str, seed: int) -> dict[str, float]:
    from dbrepro.data import synth

    cfg = synth.world_config(preset)
    t0 = time.perf_counter()
    world = synth.make_world(preset, seed=seed, cache=False)
    build = time.perf_counter() - t0
    n_train = len(world.train)
    n_suite = sum(len(m) for m in world.suite_images.values())
    path = synth.world_path(cfg, seed)
    t0 = time.perf_counter()
    synth.save_world(world, path)
    write = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = synth.make_world(preset, seed=seed)
    load = time.perf_counter() - t0
    assert synth.world_digest(again) == synth.world_digest(world)
    n_dis = min(2048, cfg.megaface_distractors)
    t0 = time.perf_counter()
    world.suites["megaface"].distractors.render(0, n_dis)
    dis_time = time.perf_counter() - t0
    return {
        "images": n_train + n_suite, "train": n_train, "suites": n_suite, "size": cfg.image_size,
        "build_s": build, "img_per_s": (n_train + n_suite) / build, "write_s": write, "load_s": load,
        "mb": path.stat().st_size / 2**20, "distractors_per_s": n_dis / dis_time,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["smoke", "cpu"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    for preset in args.presets:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["DBREPRO_CACHE"] = tmp
            rows.append((preset, bench_preset(preset, args.seed)))
    head = (f"{'preset':8} {'px':>4} {'images':>7} {'train':>6} {'suites':>6} {'render s':>9} {'img/s':>7} "
            f"{'write s':>8} {'load s':>7} {'MiB':>6} {'distr/s':>8}")
    print(head)
    print("-" * len(head))
    for preset, r in rows:
        print(f"{preset:8} {r['size']:>4} {r['images']:>7} {r['train']:>6} {r['suites']:>6} {r['build_s']:>9.1f} "
              f"{r['img_per_s']:>7.0f} {r['write_s']:>8.2f} {r['load_s']:>7.2f} {r['mb']:>6.1f} "
              f"{r['distractors_per_s']:>8.0f}")


if __name__ == "__main__":
    main()
