"""GPU check: the rehearsal on CUDA with AMP, IR-ResNet-50 training speed, the DFI refresh at MS1MV2 scale.

One script, at most ``--budget`` seconds (five minutes) on one GPU, for a machine with CUDA; it is never
part of the test suite, whose ``tests/test_gpu_check.py`` runs only ``--quick`` (CPU, tiny sizes)::

    python benchmarks/gpu_check.py --out gpu-check.json             # on the GPU machine
    python benchmarks/gpu_check.py --out /tmp/q.json --quick        # anywhere: the smoke test of this script

It prints a table and writes every number to ``--out`` (JSON). Three sections, run cheapest first, so
that when time runs short it is the rehearsal's last chapters that are left out, never a measurement:

``dfi``
    :func:`dbrepro.dfi.domain_frequency_indicator` (DB Eq. 1-2) on 85,742 x 512 random prototypes
    (MS1MV2's classes, 512-D), K = 100, s = 64, eps = 5.5, on the GPU: one warm-up call, then the best and
    median of ``--dfi-repeats`` timed calls, the peak of GPU memory above the prototypes, and the share of
    training time a refresh every ``dfi_refresh_every`` iterations (the paper profile's) costs at the
    IR-ResNet-50 step time measured in ``train``.
``train``
    IR-ResNet-50 at 112 x 112, batches of 256, float16 autocast, CosFace over 10,575 classes, on an
    in-memory set of random images: :func:`dbrepro.train.fit` (the book's loop) against a bare PyTorch
    loop of the same model, head, optimiser, batches and flips. Each runs one warm-up epoch (cuDNN's
    kernel search) and one measured epoch of ``--train-steps`` steps; img/s of the measured epochs and
    their ratio (dbrepro / bare) are reported.
``rehearsal``
    ``dbrepro rehearsal DIR`` (the tiny InsightFace folder), then the book's executor
    ``python -m dbrepro.book run --profile rehearsal --keep-going`` on it, in a fresh run cache and build
    folder, every data root of the chapters pointed at the folder (LFW left out). The notebooks pick CUDA
    and train with AMP there. Whatever the budget leaves is the executor's time; if it runs out, the
    executor is stopped cleanly (SIGTERM) and the chapters not reached are listed. Every trained run's
    device and AMP flag are read back from the run cache, which is what shows that the rehearsal really
    ran on the GPU. ``--chapters`` restricts it to some chapters.

Nothing here needs a GPU to import or to run ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere: import this tree's dbrepro
    sys.path.insert(0, str(REPO))

from dbrepro.config import get_profile  # noqa: E402
from dbrepro.data.base import TensorFaces  # noqa: E402
from dbrepro.data.samplers import RandomBatchSampler  # noqa: E402
from dbrepro.dfi import domain_frequency_indicator  # noqa: E402
from dbrepro.models import normalize_images  # noqa: E402
from dbrepro.train import TrainConfig, build, fit  # noqa: E402
from dbrepro.train.loop import random_flip  # noqa: E402

#: the sizes of the real check and of ``--quick`` (CPU, seconds)
FULL = {
    "dfi": {"classes": 85_742, "dim": 512, "k": 100},
    "train": {"backbone_kwargs": {}, "image_size": 112, "batch_size": 256, "embedding_size": 512, "classes": 10_575},
}
QUICK = {
    "dfi": {"classes": 2_000, "dim": 64, "k": 10},
    "train": {"backbone_kwargs": {"widths": [8, 8, 16, 16]}, "image_size": 32, "batch_size": 16, "embedding_size": 32,
              "classes": 40},
}
#: the DFI's scale and eps: DB §4.2
DFI_S, DFI_EPS = 64.0, 5.5
#: seconds kept back at the end of the budget (the executor's clean stop, this script's report)
MARGIN_S = 20.0
#: the rehearsal is not started with less than this left
MIN_REHEARSAL_S = 60.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> dict[str, Any]:
    cuda = device.type == "cuda"
    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


# -- dfi --------------------------------------------------------------------------------------------

def check_dfi(device: torch.device, classes: int, dim: int, k: int, repeats: int) -> dict[str, Any]:
    """Seconds of one DFI refresh (DB Eq. 1-2) over ``classes`` x ``dim`` prototypes on ``device``."""
    weight = torch.randn(classes, dim, generator=torch.Generator().manual_seed(0)).to(device)
    domain_frequency_indicator(weight, k=k, s=DFI_S, eps=DFI_EPS)  # warm-up: kernels, cuBLAS handles
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    seconds = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        dfi = domain_frequency_indicator(weight, k=k, s=DFI_S, eps=DFI_EPS)
        _sync(device)
        seconds.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else None
    finite = bool(torch.isfinite(dfi).all())
    del weight, dfi
    return {"classes": classes, "dim": dim, "k": k, "s": DFI_S, "eps": DFI_EPS, "repeats": repeats,
            "seconds": [round(s, 4) for s in seconds], "best_s": round(min(seconds), 4),
            "median_s": round(statistics.median(seconds), 4), "peak_extra_mb": None if peak is None else round(peak, 1),
            "finite": finite}


# -- train ------------------------------------------------------------------------------------------

def synthetic_faces(n: int, classes: int, size: int) -> TensorFaces:
    """``n`` random uint8 images (the speed of a step does not depend on their content)."""
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = np.arange(n) % classes
    return TensorFaces(images, labels, classes, pd.DataFrame({"identity": labels}), name="gpu-check")


def train_config(sizes: dict[str, Any], epochs: int) -> TrainConfig:
    return TrainConfig(data={"kind": "gpu-check"}, backbone="ir50", backbone_kwargs=dict(sizes["backbone_kwargs"]),
                       embedding_size=sizes["embedding_size"], image_size=sizes["image_size"], head="cosface",
                       epochs=epochs, batch_size=sizes["batch_size"], amp=True, flip=True)


def trainer_img_s(cfg: TrainConfig, data: TensorFaces, device: torch.device) -> float:
    """img/s of the last epoch of :func:`dbrepro.train.fit` (earlier epochs are the warm-up)."""
    result = fit(cfg, data, device=device, progress=False)
    return float(result.history[-1]["images_per_s"])


def bare_img_s(cfg: TrainConfig, data: TensorFaces, device: torch.device) -> float:
    """img/s of the last epoch of the minimum a hand-written script does, on the same model, data and batches."""
    torch.backends.cudnn.benchmark = device.type == "cuda"
    module = build(cfg, data.num_classes).to(device)
    model, head = module.model, module.objective.head
    opt = torch.optim.SGD(module.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    labels = torch.as_tensor(data.labels)
    rate = 0.0
    for epoch in range(cfg.epochs):
        sampler = RandomBatchSampler(len(data), cfg.batch_size, seed=cfg.seed)
        sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(epoch)
        model.train()
        _sync(device)
        t0, seen = time.perf_counter(), 0
        for idx in sampler:
            idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
            x = normalize_images(random_flip(data.images[idx], gen).to(device, non_blocking=True))
            y = labels[idx].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                emb = model(x)
            loss = head(emb.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            seen += len(idx)
        _sync(device)
        rate = seen / (time.perf_counter() - t0)
    return rate


def check_train(device: torch.device, sizes: dict[str, Any], steps: int) -> dict[str, Any]:
    """IR-ResNet-50 training img/s through dbrepro's loop and through a bare loop (module docstring)."""
    cfg = train_config(sizes, epochs=2)
    data = synthetic_faces(steps * cfg.batch_size, sizes["classes"], cfg.image_size)
    bare = bare_img_s(cfg, data, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    trainer = trainer_img_s(cfg, data, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"backbone": cfg.backbone, "backbone_kwargs": cfg.backbone_kwargs, "image_size": cfg.image_size,
            "batch_size": cfg.batch_size, "classes": sizes["classes"], "head": cfg.head,
            "autocast": "float16" if device.type == "cuda" and cfg.amp else None, "steps_per_epoch": steps,
            "epochs": cfg.epochs, "measured_epoch": cfg.epochs, "trainer_img_s": round(trainer, 1),
            "bare_img_s": round(bare, 1), "trainer_over_bare": round(trainer / bare, 4),
            "overhead_percent": round(100 * (bare / trainer - 1), 2)}


# -- rehearsal --------------------------------------------------------------------------------------

def data_environment(folder: Path) -> dict[str, str]:
    """Every data-root variable the executor reads (but LFW's) pointed at ``folder``."""
    from dbrepro.book.params import DATA_PATH_ENV

    names = {var for key, var in DATA_PATH_ENV.items() if key != "LFW_ROOT"}
    names |= {"DBREPRO_CASIA", "DBREPRO_MS1MV2"}  # what `dbrepro rehearsal` tells a user to set
    return {name: str(folder) for name in sorted(names)}


def rehearsal_commands(folder: Path, build_dir: Path, chapters: list[str]) -> list[list[str]]:
    only = ["--only", *chapters] if chapters else []
    return [[sys.executable, "-m", "dbrepro", "rehearsal", str(folder)],
            [sys.executable, "-m", "dbrepro.book", "run", "--profile", "rehearsal", "--build-dir", str(build_dir),
             "--keep-going", *only]]


def chapter_summary(status_json: Path, chapters: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each chapter's status, seconds and error from the executor's ``status.json``, and the chapters it
    never reached (absent from it)."""
    from dbrepro.book.status import read_status

    notebooks = read_status(status_json)["notebooks"]
    done = {name: {"status": notebooks[name].get("status"), "seconds": notebooks[name].get("seconds"),
                   "error": notebooks[name].get("error")} for name in chapters if name in notebooks}
    return done, [name for name in chapters if name not in notebooks]


def trained_runs(cache: Path) -> dict[str, Any]:
    """How many runs the rehearsal trained, on which devices, how many with AMP on."""
    devices: dict[str, int] = {}
    amp = count = 0
    for metrics_path in sorted((cache / "runs").glob("*/metrics.json")):
        metrics = json.loads(metrics_path.read_text())
        config = json.loads((metrics_path.parent / "config.json").read_text())
        device = str(metrics.get("device"))
        devices[device] = devices.get(device, 0) + 1
        amp += bool(config.get("amp")) and device.startswith("cuda")
        count += 1
    return {"count": count, "devices": devices, "with_amp_on_cuda": amp}


def _run(command: list[str], env: dict[str, str], timeout: float, log: Path) -> tuple[int | None, float]:
    """Run ``command``, its output to ``log``; past ``timeout`` stop it with SIGTERM (then SIGKILL).

    Returns the exit status (None when it had to be stopped) and the seconds it ran.
    """
    t0 = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            return proc.wait(timeout=max(timeout, 1.0)), time.perf_counter() - t0
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the executor stops cleanly, keeping what finished
            try:
                proc.wait(timeout=MARGIN_S / 2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return None, time.perf_counter() - t0


def check_rehearsal(work: Path, budget_s: float, chapters: list[str], skip_reason: str | None) -> dict[str, Any]:
    """The rehearsal through the book's executor within ``budget_s`` seconds (module docstring)."""
    from dbrepro.book.toc import notebooks_in_order

    folder, build_dir, cache = work / "rehearsal-data", work / "book", work / "cache"
    commands = rehearsal_commands(folder, build_dir, chapters)
    planned = chapters or notebooks_in_order(REPO / "book" / "_toc.yml", REPO / "notebooks")
    out: dict[str, Any] = {"status": "skipped", "reason": skip_reason, "budget_s": round(budget_s, 1),
                           "commands": [" ".join(c) for c in commands], "folder_seconds": None,
                           "executor_seconds": None, "chapters": {}, "not_reached": planned,
                           "runs": {"count": 0, "devices": {}, "with_amp_on_cuda": 0}, "log": None}
    if skip_reason is None and budget_s < MIN_REHEARSAL_S:
        out["reason"] = f"only {budget_s:.0f} s of the budget left (it needs at least {MIN_REHEARSAL_S:.0f} s)"
    if out["reason"] is not None:
        return out
    for path in (build_dir, cache):
        shutil.rmtree(path, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "rehearsal.log"
    log.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "DBREPRO_LFW"}
    env.update(data_environment(folder), DBREPRO_CACHE=str(cache),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    started = time.perf_counter()
    code, out["folder_seconds"] = _run(commands[0], env, budget_s, log)
    if code != 0:
        out.update(status="failed", reason=f"`dbrepro rehearsal` {'ran out of time' if code is None else f'exited {code}'}")
    else:
        code, out["executor_seconds"] = _run(commands[1], env, budget_s - (time.perf_counter() - started), log)
        out["chapters"], out["not_reached"] = chapter_summary(build_dir / "rehearsal" / "status.json", planned)
        failed = [name for name, c in out["chapters"].items() if c["status"] != "ok"]
        if failed:
            out.update(status="failed", reason=f"{len(failed)} chapter(s) failed: {', '.join(failed)}")
        elif code is None or out["not_reached"]:
            out.update(status="cut", reason=f"the budget ran out; not reached: {', '.join(out['not_reached'])}")
        elif code != 0:
            out.update(status="failed", reason=f"the executor exited {code}")
        else:
            out.update(status="ok", reason=None)
    out["runs"] = trained_runs(cache)
    out["log"] = str(log)
    return out


# -- the report -------------------------------------------------------------------------------------

def table(report: dict[str, Any]) -> str:
    env, train, dfi, reh = report["environment"], report["train"], report["dfi"], report["rehearsal"]
    rows = [("device", env["gpu"] or env["device"])]
    if train:
        rows += [(f"{train['backbone']} {train['image_size']} px, batch {train['batch_size']}, "
                  f"{train['autocast'] or 'float32'}: dbrepro.train.fit", f"{train['trainer_img_s']:,.0f} img/s"),
                 ("  bare PyTorch loop, same model, data and batches", f"{train['bare_img_s']:,.0f} img/s"),
                 ("  dbrepro / bare", f"{train['trainer_over_bare']:.3f} ({train['overhead_percent']:+.1f} % overhead)")]
    if dfi:
        rows += [(f"DFI refresh, {dfi['classes']:,} x {dfi['dim']}, K = {dfi['k']}",
                  f"{dfi['best_s']:.3f} s best, {dfi['median_s']:.3f} s median of {dfi['repeats']}")]
        if dfi.get("share_of_training") is not None:
            rows += [(f"  one refresh every {dfi['refresh_every']} steps", f"{100 * dfi['share_of_training']:.2f} % "
                      "of the training time")]
    chapters = reh["chapters"]
    ok = sum(c["status"] == "ok" for c in chapters.values())
    rows += [("rehearsal (--profile rehearsal)", f"{reh['status']}: {ok}/{len(chapters) + len(reh['not_reached'])} "
              f"chapters ok" + (f" in {reh['executor_seconds']:.0f} s" if reh["executor_seconds"] else "")),
             ("  trained runs (device: count)", ", ".join(f"{d}: {n}" for d, n in reh["runs"]["devices"].items()) or "none")]
    if reh["reason"]:
        rows.append(("  why", reh["reason"]))
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the JSON report to write")
    parser.add_argument("--quick", action="store_true",
                        help="CPU, tiny sizes, no rehearsal: a smoke test of this script (seconds)")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for everything (default 300)")
    parser.add_argument("--work", default=str(REPO / "_build" / "gpu-check"),
                        help="folder for the rehearsal data, its run cache, build and log (default _build/gpu-check)")
    parser.add_argument("--chapters", nargs="+", default=[], metavar="NAME",
                        help="rehearse only these chapters (default: the whole book)")
    parser.add_argument("--skip", action="append", default=[], choices=("dfi", "train", "rehearsal"),
                        help="leave a section out (repeatable)")
    parser.add_argument("--train-steps", type=int, default=None, help="steps per epoch (default 30, --quick 3)")
    parser.add_argument("--dfi-repeats", type=int, default=None, help="timed DFI refreshes (default 3, --quick 2)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.quick:
        torch.set_num_threads(1)  # a smoke test: on a busy machine several threads only contend
    device = torch.device("cpu") if args.quick else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not args.quick and device.type != "cuda":
        print("gpu_check: torch sees no CUDA device; run it on a GPU machine, or with --quick to smoke-test it",
              file=sys.stderr)
        return 2
    sizes = QUICK if args.quick else FULL
    steps = args.train_steps or (3 if args.quick else 30)
    repeats = args.dfi_repeats or (2 if args.quick else 3)
    report: dict[str, Any] = {"version": 1, "quick": args.quick, "budget_s": args.budget,
                              "environment": environment(device), "dfi": None, "train": None}

    def section(name: str, run: Callable[[], dict[str, Any]]) -> None:
        if name not in args.skip:
            t0 = time.perf_counter()
            report[name] = {**run(), "section_seconds": round(time.perf_counter() - t0, 1)}
            print(f"gpu_check: {name} done in {report[name]['section_seconds']:.1f} s", flush=True)

    section("dfi", lambda: check_dfi(device, repeats=repeats, **sizes["dfi"]))
    section("train", lambda: check_train(device, sizes["train"], steps))
    if report["dfi"] and report["train"]:
        every = get_profile("paper").dfi_refresh_every
        step_s = report["train"]["batch_size"] / report["train"]["trainer_img_s"]
        report["dfi"].update(refresh_every=every, share_of_training=round(report["dfi"]["best_s"] / (every * step_s), 5))
    left = args.budget - (time.perf_counter() - started) - MARGIN_S
    skip = "--quick (the rehearsal takes minutes)" if args.quick else "--skip rehearsal" if "rehearsal" in args.skip else None
    report["rehearsal"] = check_rehearsal(Path(args.work), left, args.chapters, skip)
    report["seconds"] = round(time.perf_counter() - started, 1)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"gpu_check: {report['seconds']:.0f} s in all; report in {out}")
    return 1 if report["rehearsal"]["status"] == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
