"""A chapter's runs trained outside the book: ``dbrepro train`` builds the chapter's config (same run key), and
``torchrun -m dbrepro train`` leaves a complete run that the chapter's ``experiments.train`` then serves cached.

The chapter side is built as the notebooks build their cells (db-05's Table 2 rows and Table 3 K values,
db-06's two methods, db-07's five methods, rl-02's nine splits); the CLI side is the README's own commands
(subsection "Training a chapter's runs on several GPUs"), so that the README cannot drift from the chapters.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dbrepro import chapter, cli, experiments, recipes, runs
from dbrepro.data import rehearsal

REPO = Path(__file__).resolve().parent.parent
SECTION = "### Training a chapter's runs on several GPUs"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("cache")
    mp.setenv("DBREPRO_CACHE", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def folder(cache, tmp_path_factory):
    """The rehearsal folder: a real InsightFace folder (40 identities at 112 px) the paper profile reads."""
    return rehearsal.write_folder(tmp_path_factory.mktemp("rehearsal"))


def cli_config(argv: list[str]):
    """The config ``dbrepro train ARGV`` trains."""
    return cli._config_from_args(cli.build_parser().parse_args(argv))


def run_key(cfg) -> str:
    return runs.run_key(runs.keyed_config(cfg.to_dict()))


def readme_commands(data: dict[str, str]) -> dict[str, list[list[str]]]:
    """Chapter -> the ``dbrepro train`` argument lists of the README's subsection, ``$T`` and the data
    variables expanded (``data``: variable -> folder)."""
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION)
    end = re.compile(r"^#{2,3} ", re.M).search(text, start + len(SECTION))
    section = text[start:end.start() if end else len(text)]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    prefix, current, out = None, None, {}
    for line in block.splitlines():
        line = line.split("  #")[0].strip()
        for name, path in data.items():
            line = line.replace(f"${name}", path)
        if line.startswith('T="'):
            words = shlex.split(line[2:])[0].split()
            prefix = words[words.index("dbrepro") + 1:]  # torchrun ... -m dbrepro | train --profile ...
        elif header := re.match(r"# ([a-z0-9-]+): ", line):
            current = header.group(1)
            out[current] = []
        elif line.startswith("$T "):
            assert prefix is not None and current is not None, line
            out[current].append(prefix + shlex.split(line)[1:])
    return out


def chapter_run_keys(folder: Path) -> dict[str, set[str]]:
    """The run keys each main chapter trains in the paper profile on ``folder``, built as its notebook does."""
    casia = chapter.setup("db-05-ablation", "paper", data_root=str(folder), dataset="casia")
    ms1mv2 = chapter.setup("db-07-benchmarks", "paper", data_root=str(folder), dataset="ms1mv2")
    n = casia.num_classes
    large = casia.profile.backbone_large
    ablation = [dict(rbm=None, dbm=False), dict(rbm="ungated", dbm=False), dict(rbm="soft", dbm=False),
                dict(rbm=None, dbm=True), dict(rbm="soft", dbm=True)]  # db-05's ABLATION (Table 2)
    db05 = [casia.config("db", seed=s, **kw) for kw in ablation for s in casia.seeds]
    db05 += [casia.config("db", k=recipes.scaled_k(k, n), seed=s) for k in (0, 100, 1000, 3000, 6000)
             for s in casia.seeds]  # Table 3's K, scaled
    db06 = [casia.config("db", seed=s, backbone=large, **kw) for kw in (dict(rbm=None, dbm=False),
                                                                        dict(rbm="soft", dbm=True))
            for s in casia.seeds]
    db07 = [ms1mv2.config(recipe, seed=s, backbone=ms1mv2.profile.backbone_large)
            for recipe in ("softmax", "sphereface", "cosface", "arcface", "db") for s in ms1mv2.seeds]
    splits = ["A-0", "A-1", "A-2", "A-3", "A-4", "B-0", "B-1", "B-2", "B-3"]
    rl02 = [casia.config("softmax", data=recipes.range_split(casia.data.train_spec, split, n), seed=s)
            for split in splits for s in (casia.seeds[:1] if split in ("B-1", "B-2") else casia.seeds)]
    return {name: {run_key(c) for c in cfgs} for name, cfgs in
            (("db-05-ablation", db05), ("db-06-per-domain", db06), ("db-07-benchmarks", db07),
             ("rl-02-softmax-long-tail", rl02))}


def test_the_readme_commands_train_exactly_each_chapters_runs(folder):
    commands = readme_commands({"DBREPRO_CASIA": str(folder), "DBREPRO_MS1MV2": str(folder)})
    expected = chapter_run_keys(folder)
    assert set(commands) == set(expected)
    for name, argvs in commands.items():
        keys = [run_key(cli_config(argv)) for argv in argvs]
        assert len(set(keys)) == len(keys), f"{name}: two README commands train the same run"
        assert set(keys) == expected[name], name


@pytest.mark.parametrize("argv, build", [
    (["--recipe", "db", "--arg", "rbm=ungated", "--arg", "dbm=false"],
     lambda ch: ch.config("db", seed=0, rbm="ungated", dbm=False)),
    (["--recipe", "db", "--paper-k", "3000"],
     lambda ch: ch.config("db", k=recipes.scaled_k(3000, ch.num_classes), seed=0)),
    (["--recipe", "db", "--arg", "k=7", "--seed", "3"], lambda ch: ch.config("db", k=7, seed=3)),
    (["--recipe", "softmax", "--split", "B-2"],
     lambda ch: ch.config("softmax", data=recipes.range_split(ch.data.train_spec, "B-2", ch.num_classes), seed=0)),
    (["--recipe", "contrastive", "--split", "A-2"], lambda ch: ch.config("contrastive", split="A-2", seed=0)),
    (["--recipe", "softmax_pk", "--split", "A-0"], lambda ch: ch.config("softmax_pk", split="A-0", seed=0)),
    (["--recipe", "db", "--large-backbone"],
     lambda ch: ch.config("db", seed=0, backbone=ch.profile.backbone_large)),
], ids=["db-ungated", "db-paper-k", "db-k-seed", "softmax-B-2", "contrastive-A-2", "softmax_pk-A-0", "db-ir50"])
def test_the_cli_builds_the_chapters_config(folder, argv, build):
    ch = chapter.setup("rl-02-softmax-long-tail", "paper", data_root=str(folder), dataset="casia")
    cfg = cli_config(["train", "--profile", "paper", "--data", str(folder), *argv])
    assert cfg.to_dict() == build(ch).to_dict() and run_key(cfg) == run_key(build(ch))


def test_recipe_arguments_are_checked(folder):
    def message(*argv: str) -> str:
        with pytest.raises(SystemExit) as exc:
            cli_config(["train", "--profile", "paper", "--data", str(folder), *argv])
        return str(exc.value)

    assert "--paper-k is DB Table 3's K for --recipe db" in message("--recipe", "cosface", "--paper-k", "100")
    assert "not both" in message("--recipe", "db", "--paper-k", "100", "--arg", "k=3")
    assert "--arg expects NAME=VALUE" in message("--recipe", "db", "--arg", "rbm")
    assert "use --seed" in message("--recipe", "db", "--arg", "seed=2")
    assert "unexpected keyword argument 'nope'" in message("--recipe", "cosface", "--arg", "nope=1")
    with pytest.raises(SystemExit, match="trains on real data: give --data DIR"):
        cli_config(["train", "--recipe", "cosface", "--profile", "paper"])


def test_torchrun_trains_a_run_that_the_chapter_then_finds_in_the_cache(folder, cache, monkeypatch):
    # the rehearsal profile's IR-ResNet-18 at a quarter of its widths, one epoch: seconds on two CPU processes
    argv = ["train", "--recipe", "cosface", "--profile", "rehearsal", "--data", str(folder), "--seed", "0",
            "--device", "cpu", "--workers", "0", "--quiet", "--set", "epochs=1", "--set", "milestones=null",
            "--set", "backbone_kwargs.widths=[4, 4, 8, 8]"]
    env = {**os.environ, "DBREPRO_CACHE": str(cache), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "dbrepro", *argv], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cfg = cli_config(argv)
    run = runs.get_run(cfg.to_dict())
    assert done.stdout.count(f"run {run.key} at ") == 1  # rank 0 alone reports
    assert run.verify().state is runs.RunState.COMPLETE
    assert run.metrics()["world_size"] == 2 and run.metrics()["epochs_done"] == 1

    def no_training(*args, **kwargs):
        raise AssertionError("experiments.train trained again instead of serving the cached run")

    monkeypatch.setattr(experiments, "fit", no_training)
    assert experiments.train(cfg, device="cpu").key == run.key
    experiments.load(run)  # the weights load with the config that made them


def test_a_damaged_run_is_not_rebuilt_under_torchrun(folder, cache, monkeypatch, capsys):
    argv = ["train", "--recipe", "arcface", "--profile", "rehearsal", "--data", str(folder), "--device", "cpu"]
    run = runs.get_run(cli_config(argv).to_dict())
    (run.dir / "metrics.json").write_text("{}")  # metrics without a model: damaged
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit, match=r"is damaged.*under torchrun it is not rebuilt.*runs clean --damaged"):
        cli.main(argv)
