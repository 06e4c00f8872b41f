"""Fault injection from the outside: nothing wrong is ever served from the run cache, nothing good is lost.

Everything goes through the command line (``dbrepro.cli.main`` in this process, or ``python -m dbrepro``
in real processes where a process boundary is the point: a crafted pickle during ``dbrepro eval``, two
identical trainings at once, a training killed while it holds its run's lock). The data is a tiny
identity-folder tree (8 identities x 10 images of 8 x 8 px) written here, the model a 3-layer CNN trained
for one epoch: every training takes about a second.

One module-wide cache holds two finished runs, A (seed 0, evaluated once) and B (seed 1); each test
works on its own copy of that cache, so damage never leaks from one test into another.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dbrepro import runs
from dbrepro.cli import main
from dbrepro.data.formats import write_bin_pairs
from dbrepro.runs import RunState
from dbrepro.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]


# -- data, configs and the command line -------------------------------------------------------------

def write_faces(root: Path, identities: int, per_identity: int, seed: int = 0) -> Path:
    """``root/<id>/<i>.png``: each identity a random 8 x 8 pattern plus noise."""
    g = np.random.default_rng(seed)
    for c in range(identities):
        pattern = g.integers(0, 256, (8, 8, 3))
        (root / f"id{c:02d}").mkdir(parents=True)
        for i in range(per_identity):
            pixels = np.clip(pattern + g.normal(0, 20, pattern.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"id{c:02d}" / f"{i}.png")
    return root


def config(data: Path, **changes) -> dict:
    cfg = {
        "data": {"kind": "folder", "root": str(data), "image_size": 8},
        "backbone": "small", "backbone_kwargs": {"width": [4, 4, 8]}, "embedding_size": 8, "image_size": 8,
        "head": "softmax", "epochs": 1, "batch_size": 8, "lr": 0.05, "seed": 0, "amp": False,
    }
    cfg.update(changes)
    return cfg


def run_of(cfg: dict) -> runs.Run:
    """The run ``dbrepro train --config`` uses for ``cfg`` (the config completed with its defaults)."""
    return runs.get_run(TrainConfig.from_dict(cfg).to_dict())


def config_file(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``dbrepro ARGV`` in this process: ``(exit code, stdout, stderr)``; a SystemExit message joins stderr."""
    capsys.readouterr()
    message = ""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        message = "" if isinstance(e.code, int) or e.code is None else f"{e.code}\n"
    out, err = capsys.readouterr()
    return code, out, err + message


def env(cache: Path) -> dict[str, str]:
    return {**os.environ, "DBREPRO_CACHE": str(cache), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def cli_process(cache: Path, *argv: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dbrepro", *argv], env=env(cache), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def losses(metrics: dict) -> list[float]:
    return [h["loss"] for h in metrics["history"]]


def accuracy_line(out: str) -> dict[str, str]:
    """The fields ``dbrepro eval`` printed for the pack (``eval: accuracy=..., ...``)."""
    (line,) = [line for line in out.splitlines() if line.startswith("eval: ")]
    return dict(field.split("=", 1) for field in line.removeprefix("eval: ").split(", "))


class Marker:
    """Unpickled with code execution, this creates ``path``; with ``weights_only=True`` it is refused."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_eval_pack(path: Path, data: Path) -> Path:
    """20 verification pairs of the training identities, alternately genuine (images 0, 1 of one identity)
    and impostor (image 2 of one, image 3 of the next): every one of the 10 folds holds one of each."""
    def image(c: int, i: int) -> bytes:
        return (data / f"id{c % 8:02d}" / f"{i}.png").read_bytes()

    blobs, issame = [], []
    for k in range(10):
        blobs += [image(k, 0), image(k, 1), image(k, 2), image(k + 1, 3)]
        issame += [True, False]
    return write_bin_pairs(path, blobs, issame)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny batches: one intra-op thread is many times faster than several fighting over a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base(one_thread, tmp_path_factory):
    """Data, an eval pack, and a cache with runs A (seed 0, evaluated) and B (seed 1), written under umask 002."""
    root = tmp_path_factory.mktemp("faults")
    data = write_faces(root / "faces", 8, 10)
    pack = write_eval_pack(root / "eval.bin", data)
    files = {name: config_file(root / f"{name}.yaml", config(data, seed=seed)) for name, seed in (("A", 0), ("B", 1))}
    cache = root / "cache"
    old = os.umask(0o002)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DBREPRO_CACHE", str(cache))
            for name in ("A", "B"):
                assert main(["train", "--config", str(files[name]), "--quiet", "--device", "cpu"]) == 0
            keyed = {name: run_of(config(data, seed=seed)) for name, seed in (("A", 0), ("B", 1))}
            assert main(["eval", "--run", keyed["A"].key, "--bin", str(pack), "--device", "cpu"]) == 0
    finally:
        os.umask(old)
    return {"root": root, "data": data, "pack": pack, "files": files, "cache": cache,
            "keys": {name: run.key for name, run in keyed.items()}}


@pytest.fixture
def cache(base, tmp_path, monkeypatch):
    """A private copy of the module's cache: ``(cache path, {"A": run, "B": run})``."""
    copy = tmp_path / "cache"
    shutil.copytree(base["cache"], copy)
    monkeypatch.setenv("DBREPRO_CACHE", str(copy))
    return copy, {name: runs.Run(key, copy / "runs" / key) for name, key in base["keys"].items()}


def evaluate(capsys, base, run) -> tuple[int, str, str]:
    return cli(capsys, "eval", "--run", run.key, "--bin", str(base["pack"]), "--device", "cpu")


def listed(capsys) -> dict[str, tuple[str, str]]:
    """``dbrepro runs list`` as {key: (state, why)}."""
    code, out, _ = cli(capsys, "runs", "list")
    assert code == 0
    rows: dict[str, tuple[str, str]] = {}
    key = None
    for line in out.splitlines()[1:]:
        if line.lstrip().startswith("why: "):
            rows[key] = (rows[key][0], line.split("why: ", 1)[1])
        else:
            key, state = line.split()[:2]
            rows[key] = (state, "")
    return rows


# -- the data changes under a path ------------------------------------------------------------------------

def test_data_swapped_at_a_path_is_a_new_run_never_the_cached_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DBREPRO_CACHE", str(tmp_path / "cache"))
    data = write_faces(tmp_path / "faces", 8, 10)
    cfg = config_file(tmp_path / "run.yaml", config(data))
    code, out, _ = cli(capsys, "train", "--config", str(cfg), "--quiet", "--device", "cpu")
    assert code == 0 and "80 images, 8 classes" in out
    first = run_of(config(data))

    shutil.rmtree(data)
    write_faces(data, 4, 5, seed=1)  # same path, same config file: other data
    code, out, _ = cli(capsys, "train", "--config", str(cfg), "--quiet", "--device", "cpu")
    assert code == 0 and "cached" not in out and "20 images, 4 classes" in out
    second = run_of(config(data))
    assert second.key != first.key and second.metrics()["num_classes"] == 4
    assert listed(capsys) == {first.key: ("complete", ""), second.key: ("complete", "")}  # the old run is kept
    code, out, _ = cli(capsys, "train", "--config", str(cfg), "--quiet", "--device", "cpu")
    assert code == 0 and f"cached ({second.key})" in out


# -- every file of a finished run, truncated or swapped -----------------------------------------------------

def swap_in_model_of_b(runs_: dict, base) -> str:
    shutil.copy(runs_["B"].model_path, runs_["A"].model_path)
    return "model.pt"


def truncate_model(runs_: dict, base) -> str:
    path = runs_["A"].model_path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "model.pt"


def edit_config(runs_: dict, base) -> str:
    path = runs_["A"].config_path
    path.write_text(json.dumps({**json.loads(path.read_text()), "lr": 0.5}, indent=2))
    return "config.json"


def garbage_config(runs_: dict, base) -> str:
    runs_["A"].config_path.write_bytes(os.urandom(64))
    return "config.json"


def truncate_metrics(runs_: dict, base) -> str:
    path = runs_["A"].metrics_path
    path.write_text(path.read_text()[:40])
    return "metrics.json"


def swap_in_metrics_of_b(runs_: dict, base) -> str:
    shutil.copy(runs_["B"].metrics_path, runs_["A"].metrics_path)
    return "metrics.json"


@pytest.mark.parametrize("damage", [swap_in_model_of_b, truncate_model, edit_config, garbage_config,
                                    truncate_metrics, swap_in_metrics_of_b], ids=lambda f: f.__name__)
def test_a_damaged_run_is_listed_refused_and_retrained(base, cache, capsys, damage):
    _, rs = cache
    code, out, _ = evaluate(capsys, base, rs["A"])
    good_accuracy = accuracy_line(out)  # served from the eval cache of the intact run
    good_metrics = rs["A"].metrics()
    name = damage(rs, base)
    path = rs["A"].dir / name

    state, why = listed(capsys)[rs["A"].key]
    assert state == "damaged" and why.startswith(str(path))
    code, out, err = evaluate(capsys, base, rs["A"])
    assert code != 0 and out == ""  # no number printed, cached or not
    (line,) = err.strip().splitlines()
    assert line.startswith(f"run {rs['A'].key} is damaged: {path}")

    code, out, _ = cli(capsys, "train", "--config", str(base["files"]["A"]), "--quiet", "--device", "cpu")
    assert code == 0
    assert re.search(rf"run {rs['A'].key} is damaged: {re.escape(str(path))}.*; training it again from scratch", out)
    assert losses(rs["A"].metrics()) == losses(good_metrics)  # trained again: the same numbers
    code, out, _ = evaluate(capsys, base, rs["A"])
    assert code == 0 and accuracy_line(out) == good_accuracy  # recomputed from the retrained model: the same
    assert runs.verify(rs["B"]).state is RunState.COMPLETE  # nothing good is lost


def test_an_eval_result_of_another_model_or_truncated_is_recomputed(base, cache, capsys):
    _, rs = cache
    code, out, _ = evaluate(capsys, base, rs["A"])
    accuracy_a = accuracy_line(out)
    (eval_a,) = rs["A"].dir.glob("eval-*.json")
    code, out, _ = evaluate(capsys, base, rs["B"])
    accuracy_b = accuracy_line(out)
    assert accuracy_b != accuracy_a
    shutil.copy(rs["B"].dir / eval_a.name, eval_a)  # B's result for the same pack, under A's name
    code, out, _ = evaluate(capsys, base, rs["A"])
    assert accuracy_line(out) == accuracy_a
    eval_a.write_text(eval_a.read_text()[:30])
    code, out, _ = evaluate(capsys, base, rs["A"])
    assert code == 0 and accuracy_line(out) == accuracy_a


def test_clean_removes_damaged_and_failed_runs_only(base, cache, capsys):
    _, rs = cache
    truncate_model(rs, base)
    too_big = config_file(base["root"] / "big-batch.yaml", config(base["data"], batch_size=128))
    code, _, err = cli(capsys, "train", "--config", str(too_big), "--quiet", "--device", "cpu")
    (why,) = err.strip().splitlines()
    assert code == 2 and "batch_size=128" in why  # 80 images give no batch of 128: the training raises
    failed = run_of(config(base["data"], batch_size=128))
    rows = listed(capsys)
    assert rows[failed.key] == ("failed", f"ValueError: {why.removeprefix('dbrepro train: ')}")
    assert {k: s for k, (s, _) in rows.items()} == {rs["A"].key: "damaged", rs["B"].key: "complete",
                                                    failed.key: "failed"}
    assert cli(capsys, "runs", "clean", "--damaged")[0] == 0
    assert set(listed(capsys)) == {rs["B"].key, failed.key}
    assert cli(capsys, "runs", "clean", "--failed")[0] == 0
    assert set(listed(capsys)) == {rs["B"].key}


# -- files that would run code -----------------------------------------------------------------------------

def test_a_crafted_model_pt_never_runs_during_eval(base, cache, tmp_path, capsys):
    cache_dir, rs = cache
    marker = tmp_path / "pwned"
    run = rs["A"]
    torch.save({"config": run.config(), "num_classes": 8, "module": Marker(marker)}, run.model_path)
    code, out, err = evaluate(capsys, base, run)
    assert code != 0 and out == "" and not marker.exists()
    (line,) = err.strip().splitlines()  # found by its size before anything loads it
    assert line.startswith(f"run {run.key} is damaged: {run.model_path}: ") and "when the run finished" in line
    # a whole crafted cache (manifest rewritten to match), in a real `dbrepro eval`: the load refuses the file
    runs._write_manifest(run, {name: runs._file_record(run.dir / name) for name in runs.SEALED_FILES})
    proc = cli_process(cache_dir, "eval", "--run", run.key, "--bin", str(base["pack"]), "--device", "cpu")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and out == "" and not marker.exists()
    (line,) = err.strip().splitlines()
    assert line.startswith(f"dbrepro eval: {run.model_path}: not a loadable weights file (UnpicklingError: "), line


def genuine_checkpoint(base) -> bytes:
    return runs.Run(base["keys"]["A"], base["cache"] / "runs" / base["keys"]["A"]).checkpoint_path.read_bytes()


@pytest.mark.parametrize("fault", ["crafted pickle", "truncated", "garbage", "another config's"])
def test_an_unusable_checkpoint_is_named_and_training_starts_over(base, tmp_path, monkeypatch, capsys, fault):
    monkeypatch.setenv("DBREPRO_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "pwned"
    run = run_of(config(base["data"]))
    assert run.key == base["keys"]["A"]
    if fault == "crafted pickle":
        torch.save({"config_key": "x", "module": Marker(marker)}, run.checkpoint_path)
    elif fault == "truncated":
        run.checkpoint_path.write_bytes(genuine_checkpoint(base)[:1000])
    elif fault == "garbage":
        run.checkpoint_path.write_bytes(os.urandom(4096))
    else:
        key_b = base["keys"]["B"]
        shutil.copy(base["cache"] / "runs" / key_b / "checkpoint.pt", run.checkpoint_path)
    assert runs.verify(run).state is RunState.PARTIAL

    code, out, err = cli(capsys, "train", "--config", str(base["files"]["A"]), "--quiet", "--device", "cpu")
    assert code == 0 and not marker.exists()
    (line,) = [line for line in out.splitlines() if "checkpoint.pt" in line]
    assert str(run.checkpoint_path) in line and line.endswith("discarding it and training from scratch")
    good = runs.Run(base["keys"]["A"], base["cache"] / "runs" / base["keys"]["A"]).metrics()
    assert losses(run.metrics()) == losses(good)  # from scratch: the same numbers as a clean training


# -- processes ------------------------------------------------------------------------------------------------

def read_until(stream, pattern: str, timeout: float) -> str:
    """Lines of ``stream`` up to the first containing ``pattern`` (AssertionError after ``timeout`` s)."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            line = stream.readline()
            seen.append(line)
            if pattern in line:
                return "".join(seen)
            if line == "":
                break
    raise AssertionError(f"no {pattern!r} within {timeout} s; got {''.join(seen)!r}")


def test_two_identical_trainings_train_once(base, tmp_path):
    import fcntl

    cache = tmp_path / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DBREPRO_CACHE", str(cache))
        run = run_of(config(base["data"]))
    argv = ("train", "--config", str(base["files"]["A"]), "--quiet", "--device", "cpu")
    with open(run.lock_path, "a") as held:  # both processes must meet at the lock: hold it until both wait
        fcntl.flock(held, fcntl.LOCK_EX)
        procs = [cli_process(cache, *argv) for _ in range(2)]
        errs = [read_until(p.stderr, "waiting for it to finish", timeout=120) for p in procs]
        fcntl.flock(held, fcntl.LOCK_UN)
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    outs = [out for (out, _), _ in results]
    assert [code for _, code in results] == [0, 0], [err for (_, err), _ in results]
    assert sorted("trained in" in out for out in outs) == [False, True]
    (waiter,) = [out for out in outs if "trained in" not in out]
    assert re.search(rf"cached \({run.key}\), trained by another process while this one waited", waiter)
    assert all(f"run {run.key}: another process is training it" in err for err in errs)
    epochs = [line for line in run.log_path.read_text().splitlines() if " epoch=" in line]
    assert len(epochs) == 1  # one training, one log line per epoch
    assert runs.verify(run).state is RunState.COMPLETE


def test_a_killed_training_releases_its_lock(base, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DBREPRO_CACHE", str(cache))
    run = run_of(config(base["data"]))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from dbrepro import runs; r = runs.Run(sys.argv[1], __import__('pathlib').Path(sys.argv[2]))\n"
        "with r.lock():\n    print('locked', flush=True); time.sleep(60)"), run.key, str(run.dir)],
        env=env(cache), stdout=subprocess.PIPE, text=True)
    try:
        assert read_until(holder.stdout, "locked", timeout=60)
        assert run.in_use()
        assert listed(capsys)[run.key] == ("new", "being trained by another process right now")
        assert runs.clean() == [] and run.dir.exists()  # a run in training is never cleaned away
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        holder.kill()
    assert listed(capsys)[run.key] == ("new", "")
    with run.lock() as waited:
        assert waited == 0.0


def test_cache_files_are_readable_to_the_group_under_umask_002(base):
    run_dir = base["cache"] / "runs" / base["keys"]["A"]
    modes = {p.name: p.stat().st_mode & 0o777 for p in run_dir.iterdir()}
    assert {"config.json", "model.pt", "checkpoint.pt", "metrics.json", "manifest.json", "log.txt", "lock"} <= set(modes)
    assert all(mode == 0o664 for mode in modes.values()), modes
