"""Runs trained side by side in worker processes (dbrepro.workers, experiments.train_many)."""

import os
import time

import pytest
import torch

from dbrepro import experiments, recipes, workers
from dbrepro import chapter
from dbrepro.runs import RunState, get_run


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DBREPRO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(workers.JOBS_ENV, raising=False)
    return tmp_path / "cache"


def _children() -> set[int]:
    """Live processes whose parent is this one."""
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                out.add(int(pid))
    return out


def test_results_come_back_from_every_worker_and_the_workers_exit(monkeypatch):
    before = _children()
    got = sorted(workers.imap_unordered("math:sqrt", [1, 4, 9, 16, 25], jobs=2))
    assert got == [1.0, 2.0, 3.0, 4.0, 5.0]
    monkeypatch.setenv("DBREPRO_PROGRESS", "/tmp/where-progress-goes")  # the cache, progress: inherited
    assert list(workers.imap_unordered("os:getenv", ["DBREPRO_PROGRESS"] * 3, jobs=3)) == ["/tmp/where-progress-goes"] * 3
    assert _children() == before


def test_a_failing_task_raises_here_with_the_workers_error_and_kills_the_others():
    before = _children()
    with pytest.raises(workers.WorkerError, match=r"ValueError: math domain error[\s\S]*in a worker"):
        list(workers.imap_unordered("math:sqrt", [4, -1, 9, 16], jobs=2))
    assert _children() == before


def test_stopping_early_kills_the_busy_workers():
    before = _children()
    gen = workers.imap_unordered("time:sleep", [0, 120], jobs=2)
    assert next(gen) is None
    t0 = time.perf_counter()
    gen.close()  # the worker still sleeping is killed, not waited for
    assert time.perf_counter() - t0 < 60  # a kill check, not a speed test: waiting would take 120 s
    assert _children() == before


def test_jobs_from_the_environment(monkeypatch):
    monkeypatch.delenv(workers.JOBS_ENV, raising=False)
    assert workers.jobs_from_env(3) == 3
    assert workers.jobs_from_env(0) == workers.usable_cores()
    monkeypatch.setenv(workers.JOBS_ENV, "1")
    assert workers.jobs_from_env(0) == 1
    for bad in ("two", "-1"):
        monkeypatch.setenv(workers.JOBS_ENV, bad)
        with pytest.raises(ValueError, match=workers.JOBS_ENV):
            workers.jobs_from_env(0)


def test_train_many_trains_each_distinct_run_once_in_workers_and_returns_them_in_order(cache, capsys):
    cfgs = [recipes.cosface("smoke", seed=s) for s in (0, 1, 0)]
    runs = experiments.train_many(cfgs, jobs=2)
    out = capsys.readouterr().out
    assert "training 2 runs, 2 at a time (1 thread each)" in out
    assert [r.key for r in runs] == [get_run(c.to_dict()).key for c in cfgs]
    assert runs[0].key == runs[2].key != runs[1].key
    assert all(r.verify().state is RunState.COMPLETE for r in runs)
    again = experiments.train_many(cfgs, jobs=2)
    out = capsys.readouterr().out
    assert "training" not in out.replace("trained", "") and out.count("cached") == 3
    assert [r.key for r in again] == [r.key for r in runs]


def test_a_run_trained_in_a_worker_is_the_run_trained_here_on_one_thread(cache, tmp_path, monkeypatch):
    cfg, other = recipes.softmax("smoke", seed=0), recipes.softmax("smoke", seed=1)
    worker_runs = experiments.train_many([cfg, other], jobs=2)
    worker_model = torch.load(worker_runs[0].dir / "model.pt", weights_only=True)
    monkeypatch.setenv("DBREPRO_CACHE", str(tmp_path / "here"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = experiments.train(cfg, device="cpu", verbose=False)
    finally:
        torch.set_num_threads(threads)
    here_model = torch.load(here.dir / "model.pt", weights_only=True)
    assert here.key == worker_runs[0].key
    assert here.metrics()["history"][-1]["loss"] == worker_runs[0].metrics()["history"][-1]["loss"]
    flat = lambda d: {k: v for k, v in d.items() if isinstance(v, torch.Tensor)}  # noqa: E731
    for name, tensor in flat(here_model).items():
        assert torch.equal(tensor, flat(worker_model)[name]), name


def test_one_job_or_one_run_trains_in_this_process(cache, capsys, monkeypatch):
    monkeypatch.setenv(workers.JOBS_ENV, "1")
    experiments.train_many([recipes.cosface("smoke", seed=s) for s in (0, 1)], jobs=0)
    assert "at a time" not in capsys.readouterr().out
    monkeypatch.delenv(workers.JOBS_ENV)
    experiments.train_many([recipes.cosface("smoke", seed=2)], jobs=2)
    assert "at a time" not in capsys.readouterr().out


def test_chapter_train_all_keeps_the_shape_it_was_given(cache):
    ch = chapter.setup("t", "smoke")
    cfgs = {("a", 0): ch.config("cosface", seed=0), ("a", 1): ch.config("cosface", seed=1)}
    runs = ch.train_all(cfgs)
    assert list(runs) == list(cfgs) and all(r.verify().state is RunState.COMPLETE for r in runs.values())
    as_list = ch.train_all(list(cfgs.values()))
    assert [r.key for r in as_list] == [r.key for r in runs.values()]
