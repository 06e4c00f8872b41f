"""The run cache: keys (content-addressed data), the verified states of a run, eval results, cleaning.

Runs here are written through the public API with small stand-in files (no training); the trainer's
own files and the CLI are exercised from the outside in ``tests/test_faults.py``.
"""

import json
import os
import shutil
import time

import numpy as np
import pytest
import torch
from PIL import Image

from dbrepro import runs
from dbrepro.data import specs
from dbrepro.data.formats import write_recordio
from dbrepro.paths import atomic_torch_save, atomic_write_json, atomic_write_text, canonical_json, config_hash
from dbrepro.runs import RunState

COMPLETE, PARTIAL, NEW, FAILED, DAMAGED, STALE = (RunState.COMPLETE, RunState.PARTIAL, RunState.NEW, RunState.FAILED,
                                                  RunState.DAMAGED, RunState.STALE)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DBREPRO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def finished(config: dict, weights: torch.Tensor | None = None, metrics: dict | None = None) -> runs.Run:
    """A run finished the way the trainer finishes one: model.pt (with its config), then finish()."""
    run = runs.get_run(config)
    w = weights if weights is not None else torch.arange(6.0)
    atomic_torch_save(run.model_path, {"config": run.config(), "num_classes": 2, "module": {"w": w}})
    run.finish(metrics if metrics is not None else {"acc": 0.9})
    return run


def state(run: runs.Run) -> RunState:
    return runs.verify(run).state


# -- keys -------------------------------------------------------------------------------------------

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


def test_synthetic_and_data_free_configs_keep_their_keys(cache):
    """No fingerprint for the synthetic world: the book's cached runs keep their keys."""
    from dbrepro import recipes

    cfg = recipes.cosface("smoke", seed=3).to_dict()
    assert cfg["data"]["kind"] == "synth"
    assert runs.get_run(cfg).key == config_hash(cfg, runs.CACHE_VERSION) == runs.run_key(cfg)
    assert json.loads(runs.get_run(cfg).config_path.read_text()) == json.loads(canonical_json(cfg))
    toy = {"what": "toy", "steps": 3}
    assert runs.get_run(toy).key == config_hash(toy, runs.CACHE_VERSION)


def face_folder(root, counts: dict[str, int], seed: int = 0):
    g = np.random.default_rng(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(g.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_a_folder_spec_is_keyed_by_its_content(cache, tmp_path):
    root = face_folder(tmp_path / "faces", {"a": 3, "b": 2})
    cfg = {"head": "softmax", "data": {"kind": "folder", "root": str(root), "image_size": 8}}
    run = runs.get_run(cfg)
    fp = run.config()["data"]["fingerprint"]
    assert fp["files"] == 5 and fp["bytes"] == sum(p.stat().st_size for p in root.rglob("*.png"))
    assert runs.get_run(cfg).key == run.key  # same data, same run
    assert runs.get_run(run.config()).key == run.key  # a stored config (with its fingerprint) finds its run
    (root / "notes.txt").write_text("not an image")  # not read by the reader: no new run
    (root / "a" / ".hidden.png").write_bytes(b"x")
    assert runs.get_run(cfg).key == run.key

    shutil.rmtree(root)
    face_folder(root, {"a": 3, "b": 2}, seed=1)  # same names, same sizes, other pixels
    assert runs.get_run(cfg).key != run.key
    new = runs.get_run(cfg).key
    os.utime(root / "b" / "1.png", ns=(1, 1))  # touched: a new key (mtimes are part of it)
    assert runs.get_run(cfg).key != new
    (root / "b" / "1.png").unlink()
    assert runs.get_run(cfg).config()["data"]["fingerprint"]["files"] == 4


def test_training_set_refuses_data_that_changed_under_a_stored_fingerprint(cache, tmp_path):
    root = face_folder(tmp_path / "faces", {"a": 2, "b": 2})
    spec = runs.get_run({"data": {"kind": "folder", "root": str(root), "image_size": 8}}).config()["data"]
    assert len(specs.training_set(spec)) == 4
    face_folder(root, {"c": 2})
    with pytest.raises(ValueError, match=f"the data at {root} changed since this run's key was computed"):
        specs.training_set(spec)
    assert len(specs.training_set({k: v for k, v in spec.items() if k != "fingerprint"})) == 6  # not the memo


def test_a_recordio_spec_is_keyed_by_index_property_and_rec_stat(cache, tmp_path, monkeypatch):
    images = [(torch.full((3, 4, 4), 10 * k, dtype=torch.uint8), k // 2) for k in range(6)]
    root = write_recordio(images, tmp_path / "rec", encoding="png")
    cfg = {"data": {"kind": "recordio", "root": str(root)}}
    key = runs.get_run(cfg).key
    fp = runs.get_run(cfg).config()["data"]["fingerprint"]
    assert fp["records"] == 6 + 3 + 1 and fp["bytes"] == (root / "train.rec").stat().st_size

    reads = []
    real = specs.Path.read_bytes
    monkeypatch.setattr(specs.Path, "read_bytes", lambda self: reads.append(self.name) or real(self))
    assert runs.get_run(cfg).key == key and reads == []  # the index is hashed again only when its stat changes
    (root / "property").write_text("3,4,4\n")  # same content, rewritten
    assert runs.get_run(cfg).key == key and sorted(reads) == ["property", "train.idx"]
    monkeypatch.undo()

    os.utime(root / "train.rec", ns=(5, 5))
    assert runs.get_run(cfg).key != key  # the .rec's mtime is part of the key
    write_recordio(images[:4], root, encoding="png")
    assert runs.get_run(cfg).config()["data"]["fingerprint"]["records"] == 4 + 2 + 1


def test_an_lfw_spec_covers_its_pairs_file(cache, tmp_path):
    lfw = face_folder(tmp_path / "lfw", {"A": 2, "B": 1})
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\nA\t1\t2\n")
    cfg = {"data": {"kind": "lfw", "root": str(lfw), "exclude_pairs": str(pairs)}}
    key = runs.get_run(cfg).key
    pairs.write_text("1\nA\t1\t1\n")
    assert runs.get_run(cfg).key != key
    pairs.unlink()
    with pytest.raises(FileNotFoundError, match="pairs.txt: pairs file not found"):
        runs.get_run(cfg)
    with pytest.raises(FileNotFoundError, match="nowhere: image folder not found"):
        runs.get_run({"data": {"kind": "folder", "root": str(tmp_path / "nowhere")}})


# -- states ----------------------------------------------------------------------------------------

def test_new_partial_failed_complete(cache):
    run = runs.get_run({"x": 1})
    assert run.dir.parent == cache / "runs"
    assert json.loads(run.config_path.read_text()) == {"x": 1}
    assert state(run) is NEW and not run.complete
    run.checkpoint_path.write_bytes(b"epoch 1")
    assert runs.verify(run) == runs.Verdict(PARTIAL, "interrupted; training again resumes it from checkpoint.pt")
    run.mark_failed("NonFiniteLossError: loss became nan at epoch 2")
    assert runs.verify(run) == runs.Verdict(FAILED, "NonFiniteLossError: loss became nan at epoch 2")
    with pytest.raises(RuntimeError, match="model.pt"):
        run.finish({"acc": 1.0})  # metrics before the model would make an unfinished run look complete
    run.model_path.write_bytes(b"weights")
    run.finish({"acc": 0.9})
    assert state(run) is COMPLETE and run.complete and run.metrics() == {"acc": 0.9}
    assert not run.failed_path.exists()
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["key"] == run.key and manifest["files"]["model.pt"]["size"] == 7
    run.log("epoch 1 done")
    assert "epoch 1 done" in run.log_path.read_text()


def test_an_unfinished_run_has_no_metrics(cache):
    run = runs.get_run({"x": 2})
    with pytest.raises(FileNotFoundError, match="not complete"):
        run.metrics()
    with pytest.raises(FileNotFoundError, match=f"run {run.key} is not complete; train it first"):
        run.require_complete()


def damage(run: runs.Run, how: str) -> None:
    if how == "truncated model.pt":
        run.model_path.write_bytes(run.model_path.read_bytes()[:100])
    elif how == "same-size model.pt of other weights":
        blob = torch.load(run.model_path, weights_only=True)
        blob["module"]["w"] = blob["module"]["w"] + 1
        st = run.model_path.stat()
        atomic_torch_save(run.model_path, blob)
        assert run.model_path.stat().st_size == st.st_size
        os.utime(run.model_path, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime set back: ctime still moves
    elif how == "model.pt missing":
        run.model_path.unlink()
    elif how == "truncated metrics.json":
        run.metrics_path.write_text(run.metrics_path.read_text()[:5])
    elif how == "edited metrics.json":
        run.metrics_path.write_text(run.metrics_path.read_text().replace("0.9", "0.8"))
    elif how == "garbage config.json":
        run.config_path.write_bytes(b"\x00\xff garbage")
    elif how == "edited config.json":
        run.config_path.write_text(json.dumps({**run.config(), "lr": 0.5}))
    elif how == "config.json missing":
        run.config_path.unlink()
    elif how == "truncated manifest.json":
        run.manifest_path.write_text("{")
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how, file, why", [
    ("truncated model.pt", "model.pt", "truncated or replaced"),
    ("same-size model.pt of other weights", "model.pt", "content changed since the run finished"),
    ("model.pt missing", "model.pt", "missing"),
    ("truncated metrics.json", "metrics.json", "truncated or replaced"),
    ("edited metrics.json", "metrics.json", "content changed since the run finished"),
    ("garbage config.json", "config.json", "unreadable|not valid JSON"),
    ("edited config.json", "config.json", "does not hash to the run's key"),
    ("config.json missing", "config.json", "missing"),
    ("truncated manifest.json", "manifest.json", "not valid JSON"),
])
def test_every_damage_is_found_and_names_the_file(cache, how, file, why):
    run = finished({"x": 3, "lr": 0.1})
    run.save_eval({"suite": "lfw"}, {"accuracy": 0.9})
    other = finished({"x": 4})
    damage(run, how)
    verdict = runs.verify(run)
    assert verdict.state is DAMAGED
    assert verdict.reason.startswith(str(run.dir / file)) and __import__("re").search(why, verdict.reason)
    assert not run.complete
    with pytest.raises(runs.DamagedRunError, match=f"run {run.key} is damaged: {run.dir / file}"):
        run.require_complete()
    with pytest.raises(runs.DamagedRunError):
        run.metrics()
    assert state(other) is COMPLETE  # nothing good is lost


def test_another_runs_model_and_manifest_are_found(cache):
    a, b = finished({"x": 5}), finished({"x": 6})
    shutil.copy2(b.model_path, a.model_path)  # cp -p: the other run's mtime comes along
    assert "model.pt: its content changed" in runs.verify(a).reason
    shutil.copy2(b.manifest_path, a.manifest_path)
    assert runs.verify(a) == runs.Verdict(DAMAGED, f"{a.manifest_path}: belongs to run {b.key}")


def test_intact_files_with_a_new_stat_are_rehashed_once(cache, monkeypatch):
    run = finished({"x": 7})
    hashed = []
    real = runs.file_sha256
    monkeypatch.setattr(runs, "file_sha256", lambda path: hashed.append(path.name) or real(path))
    assert state(run) is COMPLETE and hashed == []  # opening a run stats its files, hashes none
    copy = runs.Run(run.key, cache / "elsewhere" / run.key)
    shutil.copytree(run.dir, copy.dir)  # new inodes: rehashed, found intact, stat remembered
    assert state(copy) is COMPLETE and sorted(hashed) == ["metrics.json", "model.pt"]
    assert state(copy) is COMPLETE and len(hashed) == 2


def test_a_run_finished_by_older_code_is_checked_once_and_adopted(cache):
    config = {"x": 8}
    run = runs.get_run(config)
    torch.save({"config": config, "num_classes": 2, "module": {"w": torch.ones(2)}}, run.model_path)
    atomic_write_json(run.metrics_path, {"acc": 0.7})
    atomic_write_json(run.eval_path({"suite": "lfw"}), {"what": {"suite": "lfw"}, "result": {"accuracy": 0.6}})
    assert not run.manifest_path.exists()
    assert state(run) is COMPLETE and run.manifest_path.exists()
    assert run.load_eval({"suite": "lfw"})["result"] == {"accuracy": 0.6}

    other = runs.get_run({"x": 9})
    torch.save({"config": {"x": 8}, "num_classes": 2, "module": {}}, other.model_path)
    atomic_write_json(other.metrics_path, {"acc": 0.7})
    assert runs.verify(other) == runs.Verdict(
        DAMAGED, f"{other.model_path}: holds the weights of another config (x=8 (this run: 9))")
    other.model_path.write_bytes(b"PK\x03\x04 truncated zip")
    assert "not a loadable weights file" in runs.verify(other).reason


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_crafted_pickle_never_runs(cache, tmp_path):
    run = runs.get_run({"x": 10})
    marker = tmp_path / "pwned"
    torch.save({"config": {"x": 10}, "module": _Marker(str(marker))}, run.model_path)
    atomic_write_json(run.metrics_path, {})
    verdict = runs.verify(run)
    assert verdict.state is DAMAGED and verdict.reason.startswith(f"{run.model_path}: not a loadable weights file")
    assert not marker.exists()


def test_stale_runs(cache, monkeypatch):
    run = finished({"x": 11})
    assert state(run) is COMPLETE
    version = runs.CACHE_VERSION
    monkeypatch.setattr(runs, "CACHE_VERSION", "other")
    assert runs.verify(run) == runs.Verdict(STALE, f"finished under cache version {version!r} (now 'other')")
    partial = runs.Run(runs.run_key({"x": 12}), cache / "runs" / "0123456789abcdef")
    partial.dir.mkdir()
    atomic_write_text(partial.config_path, "{}")
    assert state(partial) is DAMAGED  # no manifest: a key that does not match cannot be told from an edit
    assert [r.key for r in runs.clean(stale=True)] == [run.key]


# -- evaluation results ---------------------------------------------------------------------------------

def test_eval_results_are_served_only_for_the_model_they_came_from(cache):
    run = runs.get_run({"x": 13})
    what = {"suite": "lfw", "digest": "abc"}
    run.model_path.write_bytes(b"weights")
    run.finish({})
    assert run.load_eval(what) is None
    run.save_eval(what, {"accuracy": 0.9})
    assert run.load_eval(what)["result"] == {"accuracy": 0.9}
    assert run.load_eval({**what, "flip": True}) is None
    run.model_path.write_bytes(b"retrain")  # a new model.pt, finished again: its old results are not its own
    run.finish({})
    assert run.load_eval(what) is None
    run.save_eval(what, {"accuracy": 0.8})
    run.eval_path(what).write_text('{"what": ')  # truncated: recomputed, never a raw JSON error
    assert run.load_eval(what) is None


# -- listing and cleaning ---------------------------------------------------------------------------------

def test_find_list_clean_by_state(cache):
    done = finished({"x": 14})
    new = runs.get_run({"x": 15})
    partial = runs.get_run({"x": 16})
    partial.checkpoint_path.write_bytes(b"c")
    failed = runs.get_run({"x": 17})
    failed.mark_failed("ValueError: boom")
    damaged = finished({"x": 18})
    damage(damaged, "garbage config.json")
    assert {r.key for r in runs.iter_runs()} == {r.key for r in (done, new, partial, failed, damaged)}
    assert runs.find_run(done.key[:8]).key == done.key
    with pytest.raises(KeyError, match="no run"):
        runs.find_run("zzzz")
    assert [r.key for r in runs.clean(damaged=True)] == [damaged.key]
    assert [r.key for r in runs.clean(failed=True)] == [failed.key]
    assert {r.key for r in runs.clean(incomplete=True)} == {new.key, partial.key}
    assert [r.key for r in runs.iter_runs()] == [done.key]
    runs.clean()
    assert list(runs.iter_runs()) == []


def test_reset_keeps_the_log_and_rewrites_the_config(cache):
    run = finished({"x": 19})
    run.log("first training")
    damage(run, "edited config.json")
    run.reset({"x": 19})
    assert sorted(p.name for p in run.dir.iterdir()) == ["config.json", "log.txt"]
    assert state(run) is NEW and "first training" in run.log_path.read_text()


def test_lock_reports_the_wait_and_clean_skips_a_run_in_use(cache):
    import subprocess
    import sys

    run = runs.get_run({"x": 20})
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(1.5)"), str(run.lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run.in_use()
        assert runs.clean() == [] and run.dir.exists()
        t0 = time.perf_counter()
        with run.lock() as waited:
            assert waited > 0.5 and time.perf_counter() - t0 >= waited
    finally:
        holder.wait(timeout=10)
    assert not run.in_use()
    with run.lock() as waited:
        assert waited == 0.0


# -- files ------------------------------------------------------------------------------------------------

def test_atomic_write_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": Boom()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["m.json"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_cache_files_follow_the_umask(cache, umask, mode):
    old = os.umask(umask)
    try:
        run = finished({"x": 21, "umask": umask})
    finally:
        os.umask(old)
    for name in ("config.json", "model.pt", "metrics.json", "manifest.json"):
        assert (run.dir / name).stat().st_mode & 0o777 == mode, name


def test_canonical_json_and_hash():
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert config_hash({"a": 1}) != config_hash({"a": 1}, version="2")
