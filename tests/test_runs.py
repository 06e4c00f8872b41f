import json
import os

import pytest

from dbrepro import runs
from dbrepro.paths import atomic_write_json, canonical_json, config_hash


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DBREPRO_CACHE", str(tmp_path))
    return tmp_path


def test_key_is_content_hash_independent_of_dict_order(cache):
    a = {"lr": 0.1, "head": "cosface", "data": {"split": "A-2", "seed": 0}}
    b = {"data": {"seed": 0, "split": "A-2"}, "head": "cosface", "lr": 0.1}
    assert runs.run_key(a) == runs.run_key(b)
    assert runs.run_key(a) != runs.run_key({**a, "lr": 0.01})


def test_key_depends_on_cache_version(cache, monkeypatch):
    cfg = {"x": 1}
    before = runs.run_key(cfg)
    monkeypatch.setattr(runs, "CACHE_VERSION", runs.CACHE_VERSION + "-next")
    assert runs.run_key(cfg) != before


def test_run_directory_layout_and_completion(cache):
    run = runs.get_run({"x": 1})
    assert run.dir.parent == cache / "runs"
    assert json.loads(run.config_path.read_text()) == {"x": 1}
    assert not run.complete
    with pytest.raises(RuntimeError, match="model.pt"):
        run.finish({"acc": 1.0})  # metrics before the model would make an incomplete run look complete
    run.model_path.write_bytes(b"weights")
    run.finish({"acc": 0.9})
    assert run.complete and run.metrics() == {"acc": 0.9}
    run.log("epoch 1 done")
    assert "epoch 1 done" in run.log_path.read_text()


def test_incomplete_run_raises_on_metrics(cache):
    run = runs.get_run({"x": 2})
    with pytest.raises(FileNotFoundError, match="not complete"):
        run.metrics()


def test_eval_results_cached_by_what(cache):
    run = runs.get_run({"x": 3})
    what = {"suite": "lfw", "digest": "abc"}
    assert run.load_eval(what) is None
    run.save_eval(what, {"accuracy": 0.9})
    assert run.load_eval(what)["result"] == {"accuracy": 0.9}
    assert run.load_eval({**what, "flip": True}) is None


def test_find_list_clean(cache):
    done = runs.get_run({"x": 4})
    done.model_path.write_bytes(b"w")
    done.finish({})
    partial = runs.get_run({"x": 5})
    assert {r.key for r in runs.iter_runs()} == {done.key, partial.key}
    assert runs.find_run(done.key[:8]).key == done.key
    with pytest.raises(KeyError, match="no run"):
        runs.find_run("zzzz")
    removed = runs.clean(incomplete=True)
    assert [r.key for r in removed] == [partial.key]
    assert [r.key for r in runs.iter_runs()] == [done.key]
    runs.clean()
    assert list(runs.iter_runs()) == []


def test_stale_runs(cache, monkeypatch):
    run = runs.get_run({"x": 6})
    assert not runs.is_stale(run)
    monkeypatch.setattr(runs, "CACHE_VERSION", "other")
    assert runs.is_stale(run)
    assert [r.key for r in runs.clean(stale=True)] == [run.key]


def test_atomic_write_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": Boom()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["m.json"]


def test_canonical_json_and_hash():
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert config_hash({"a": 1}) != config_hash({"a": 1}, version="2")
