"""benchmarks/gpu_check.py without a GPU: ``--quick`` end to end on the CPU, and the rehearsal's bookkeeping.

The real check runs only where a CUDA device is lent (README, "GPU check"); here it must import and run
``--quick`` with CUDA hidden, and refuse to start the full check without CUDA.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_runs_on_the_cpu_and_reports_every_section(tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--work", str(tmp_path / "w")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert set(report) == {"version", "quick", "budget_s", "environment", "dfi", "train", "rehearsal", "seconds"}
    assert report["quick"] is True and report["environment"]["device"] == "cpu" and report["environment"]["gpu"] is None

    train = report["train"]
    assert {"backbone", "image_size", "batch_size", "autocast", "steps_per_epoch", "trainer_img_s", "bare_img_s",
            "trainer_over_bare", "overhead_percent"} <= set(train)
    assert train["backbone"] == "ir50" and train["autocast"] is None  # no float16 autocast on the CPU
    assert train["trainer_img_s"] > 0 and train["bare_img_s"] > 0
    assert train["trainer_over_bare"] == pytest.approx(train["trainer_img_s"] / train["bare_img_s"], rel=1e-2)

    dfi = report["dfi"]
    assert {"classes", "dim", "k", "best_s", "median_s", "seconds", "share_of_training", "refresh_every"} <= set(dfi)
    assert dfi["finite"] and len(dfi["seconds"]) == dfi["repeats"] and dfi["best_s"] == min(dfi["seconds"])

    rehearsal = report["rehearsal"]
    assert rehearsal["status"] == "skipped" and "--quick" in rehearsal["reason"]
    assert "-m dbrepro rehearsal" in rehearsal["commands"][0]
    assert "--profile rehearsal" in rehearsal["commands"][1] and "--keep-going" in rehearsal["commands"][1]
    assert "how-this-book-works" in rehearsal["not_reached"] and rehearsal["runs"]["count"] == 0
    assert "dbrepro / bare" in result.stdout and "DFI refresh, 2,000 x 64, K = 10" in result.stdout


def test_the_full_check_refuses_to_start_without_cuda(gpu_check, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "r.json")]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_the_rehearsal_is_not_started_without_enough_budget(gpu_check, tmp_path):
    report = gpu_check.check_rehearsal(tmp_path, budget_s=10, chapters=["db-05-ablation"], skip_reason=None)
    assert report["status"] == "skipped" and report["reason"].startswith("only 10 s of the budget left")
    assert report["not_reached"] == ["db-05-ablation"] and "--only db-05-ablation" in report["commands"][1]
    assert not (tmp_path / "cache").exists()


def test_every_data_root_but_lfw_points_at_the_rehearsal_folder(gpu_check, tmp_path):
    from dbrepro.book.params import DATA_PATH_ENV

    env = gpu_check.data_environment(tmp_path)
    assert set(env.values()) == {str(tmp_path)}
    assert {"DBREPRO_CASIA", "DBREPRO_MS1MV2"} <= set(env) and DATA_PATH_ENV["LFW_ROOT"] not in env
    assert {var for key, var in DATA_PATH_ENV.items() if key != "LFW_ROOT"} <= set(env)


def test_chapters_are_read_from_the_executors_status(gpu_check, tmp_path):
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"notebooks": {
        "a": {"status": "ok", "seconds": 3.5}, "b": {"status": "failed", "seconds": 1.0, "error": "ValueError: x"}}}))
    done, missing = gpu_check.chapter_summary(status, ["a", "b", "c"])
    assert done == {"a": {"status": "ok", "seconds": 3.5, "error": None},
                    "b": {"status": "failed", "seconds": 1.0, "error": "ValueError: x"}}
    assert missing == ["c"]
    assert gpu_check.chapter_summary(tmp_path / "none.json", ["a"]) == ({}, ["a"])


def test_trained_runs_say_where_they_ran_and_with_amp(gpu_check, tmp_path):
    for key, device, amp in (("r1", "cuda", True), ("r2", "cuda", False), ("r3", "cpu", True)):
        run = tmp_path / "runs" / key
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"device": device}))
        (run / "config.json").write_text(json.dumps({"amp": amp}))
    (tmp_path / "runs" / "unfinished").mkdir()  # no metrics.json: not counted
    assert gpu_check.trained_runs(tmp_path) == {"count": 3, "devices": {"cuda": 2, "cpu": 1}, "with_amp_on_cuda": 1}


def test_a_command_past_its_time_is_stopped(gpu_check, tmp_path):
    t0 = time.perf_counter()
    code, seconds = gpu_check._run([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), 1.0,
                                   tmp_path / "log")
    assert code is None and 1.0 <= seconds < 15 and time.perf_counter() - t0 < 15
    code, _ = gpu_check._run([sys.executable, "-c", "print('hi')"], dict(os.environ), 30.0, tmp_path / "log")
    assert code == 0 and (tmp_path / "log").read_text().strip() == "hi"
