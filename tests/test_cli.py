"""The ``dbrepro`` command line, in-process (``dbrepro.cli.main``) and once as ``python -m dbrepro``.

One tiny run is trained through the CLI itself (``dbrepro train --config``) on a fake LFW tree written
here -- the LFW people who are not in the fake ``pairsDevTest.txt`` -- in a temporary run cache; the
list / clean / export / eval commands then work on it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from PIL import Image

from dbrepro import papers, recipes, runs
from dbrepro.cli import main
from dbrepro.data.formats import lfw_pair_suite
from dbrepro.eval import evaluate_suite
from dbrepro.models import normalize_images
from dbrepro.train import load_trained

SUBCOMMANDS = ("train", "eval", "runs", "export", "world", "book")
#: The fake LFW: the people of the pairs file (3 images each) and the training people (not in it).
PAIR_PEOPLE = [f"Pair_Person{i}" for i in range(5)]
TRAIN_PEOPLE = {"Train_A": 4, "Train_B": 3, "Train_C": 2, "Train_D": 1}


def write_fake_lfw(root: Path) -> tuple[Path, Path]:
    """An LFW-a-like tree (250 x 250 greyscale JPEGs, one pattern per person) and a View 1 pairs file."""
    lfw = root / "lfw"
    people = {**{p: 3 for p in PAIR_PEOPLE}, **TRAIN_PEOPLE}
    for k, (name, count) in enumerate(people.items()):
        g = np.random.default_rng(k)
        pattern = np.kron(g.integers(0, 256, (10, 10)), np.ones((25, 25)))  # blocks survive the 128-px crop
        (lfw / name).mkdir(parents=True)
        for i in range(1, count + 1):
            pixels = np.clip(pattern + g.normal(0, 8, pattern.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(lfw / name / f"{name}_{i:04d}.jpg", quality=90)
    matched = [f"{p}\t{i}\t{j}" for p in PAIR_PEOPLE for i, j in ((1, 2), (2, 3))]  # 10
    mismatched = [f"{PAIR_PEOPLE[a]}\t{1 + a % 3}\t{PAIR_PEOPLE[(a + d) % 5]}\t{1 + d % 3}"
                  for a in range(5) for d in (1, 2)]  # 10
    pairs = root / "pairsDevTest.txt"
    pairs.write_text("\n".join(["10", *matched, *mismatched]) + "\n")
    return lfw, pairs


def tiny_config(lfw: Path, pairs: Path) -> dict:
    """A TrainConfig (as a dict) that trains in a second: the fake LFW's training people, 16 px."""
    return {
        "data": {"kind": "lfw", "root": str(lfw), "exclude_pairs": str(pairs), "image_size": 16, "min_images": 1},
        "backbone": "small", "backbone_kwargs": {"width": [8, 8, 16]}, "embedding_size": 16, "image_size": 16,
        "head": "softmax", "epochs": 2, "batch_size": 4, "lr": 0.05, "seed": 0,
    }


def run_cli(*argv: str) -> int:
    return main(list(argv))


def cli_exit_message(*argv: str) -> str:
    """The message of a command that must stop with SystemExit (argparse-style error exit)."""
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code not in (0, None)
    return str(exc.value.code)


@pytest.fixture(scope="module")
def lfw_data(tmp_path_factory) -> tuple[Path, Path]:
    return write_fake_lfw(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, lfw_data) -> runs.Run:
    """A complete run, trained by ``dbrepro train --config``, in a module-wide temporary cache."""
    cache = tmp_path_factory.mktemp("cache")
    config = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(*lfw_data)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DBREPRO_CACHE", str(cache))
        assert run_cli("train", "--config", str(config), "--quiet", "--device", "cpu") == 0
        (run,) = runs.iter_runs()
        assert run.complete
        yield run


@pytest.fixture
def in_trained_cache(trained, monkeypatch) -> runs.Run:
    monkeypatch.setenv("DBREPRO_CACHE", str(trained.dir.parent.parent))
    return trained


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DBREPRO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# -- help -----------------------------------------------------------------------------------------

def test_python_m_dbrepro_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "dbrepro", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: dbrepro")
    for command in SUBCOMMANDS:
        assert f"    {command} " in result.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--help" in out


# -- train --print-config ---------------------------------------------------------------------------

def printed_config(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert run_cli("train", *argv, "--print-config") == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_print_config_of_a_recipe_is_the_recipe(capsys):
    got = printed_config(capsys, "--recipe", "range", "--profile", "smoke", "--seed", "2", "--split", "A-1")
    assert got == recipes.range_loss("smoke", seed=2, split="A-1").to_dict()


def test_config_file_with_set_overrides(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(recipes.cosface("smoke").to_dict()))
    got = printed_config(capsys, "--config", str(path), "--set", "lr=0.01", "--set", "head_kwargs.s=30",
                         "--set", "milestones=[1]", "--set", "data.split=A-2")
    want = recipes.cosface("smoke").to_dict()
    want.update(lr=0.01, milestones=[1])
    want["head_kwargs"] = {"s": 30, "m": papers.COSFACE_M}  # merged into, not replaced
    want["data"] = {**want["data"], "split": "A-2"}
    assert got == want
    # the printed config is itself a valid --config file that gives the same config back
    path.write_text(yaml.safe_dump(got))
    assert printed_config(capsys, "--config", str(path)) == got


def test_unknown_recipe_names_the_choices():
    message = cli_exit_message("train", "--recipe", "nope", "--print-config")
    assert "--recipe 'nope' is unknown" in message and "cosface" in message and "range" in message


@pytest.mark.parametrize("setting, expected", [
    ("lr", "--set expects KEY=VALUE, got 'lr'"),
    ("lrate=0.1", "unknown training config keys ['lrate']"),
    ("epochs=0", "epochs must be an integer >= 1, got 0"),
    ("head=softmaxx", "head 'softmaxx' is unknown: choose one of softmax, sphereface, cosface, arcface, dbm"),
])
def test_bad_set_is_a_clear_error(setting, expected):
    assert expected in cli_exit_message("train", "--recipe", "softmax", "--profile", "smoke", "--set", setting,
                                        "--print-config")


#: a value of every kind of wrong, and the line that must name the field and what it may be
BAD_VALUES = [
    ("weight_decay=abc", "weight_decay must be a finite number >= 0, got 'abc'"),
    ("head_kwargs.zz=1", "head_kwargs of 'cosface': unknown argument(s) ['zz']; allowed: s, m"),
    ("head_kwargs.s=big", "head_kwargs.s must be a finite number (default 64.0), got 'big'"),
    ("epochs=2.5", "epochs must be an integer >= 1, got 2.5"),
    ("lr=inf", "lr must be a finite number > 0, got 'inf'"),  # YAML reads inf as a string, .inf as a float
    ("lr=.inf", "lr must be a finite number > 0, got inf"),
    ("lr=abc", "lr must be a finite number > 0, got 'abc'"),
    ("batch_size=true", "batch_size must be an integer >= 1, got True"),
    ("milestones=[5, 1]", "milestones must be null or strictly increasing integers inside (0, epochs=2)"),
    ("milestones=[2]", "milestones must be null or strictly increasing integers inside (0, epochs=2)"),
    ("momentum=1", "momentum must be a finite number in [0, 1), got 1"),
    ("pk=[16, x]", "pk must be two integers >= 1 (P identities x K images), got [16, 'x']"),
    ("flip=maybe", "flip must be true or false, got 'maybe'"),
    ("seed=-1", "seed must be an integer >= 0, got -1"),
    ("backbone_kwargs.zz=1", "backbone_kwargs of 'small': unknown argument(s) ['zz']"),
    ("grad_clip=0", "grad_clip must be null or a finite number > 0, got 0"),
]


@pytest.mark.parametrize("setting, expected", BAD_VALUES, ids=[s for s, _ in BAD_VALUES])
def test_every_field_is_checked_by_print_config_and_from_dict(setting, expected):
    message = cli_exit_message("train", "--recipe", "cosface", "--profile", "smoke", "--set", setting, "--print-config")
    assert message.startswith(f"invalid training config: {expected}")
    from dbrepro.cli import _merge, _parse_set
    from dbrepro.train import TrainConfig

    with pytest.raises(ValueError) as exc:  # the same check at construction, whatever the caller
        TrainConfig.from_dict(_merge(recipes.cosface("smoke").to_dict(), _parse_set([setting])))
    assert str(exc.value).startswith(expected)


def test_bad_config_files_are_clear_errors(tmp_path):
    missing = tmp_path / "missing.yaml"
    assert f"--config {missing}: no such file" in cli_exit_message("train", "--config", str(missing))
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: [0.1\n")
    assert "not valid YAML/JSON" in cli_exit_message("train", "--config", str(broken))
    listing = tmp_path / "list.yaml"
    listing.write_text("- lr\n- 0.1\n")
    assert "expected a mapping of TrainConfig fields" in cli_exit_message("train", "--config", str(listing))


# -- runs list / clean ----------------------------------------------------------------------------------

def test_runs_list_on_an_empty_cache(empty_cache, capsys):
    assert run_cli("runs", "list") == 0
    assert capsys.readouterr().out.strip() == f"no runs in {empty_cache / 'runs'}"


def test_runs_list_shows_state_and_description(in_trained_cache, lfw_data, capsys):
    run = in_trained_cache
    assert run_cli("runs", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["key", "state", "MB", "description"]
    (row,) = lines[1:]
    key, state, size, *description = row.split()
    assert (key, state) == (run.key, "complete")
    assert float(size) == pytest.approx(run.size_bytes() / 1e6, abs=0.06)
    assert description == ["softmax", f"data=lfw:{lfw_data[0]}", "seed=0"]


def copy_of_trained_cache(trained: runs.Run, dest: Path) -> runs.Run:
    """The trained run, copied into a fresh cache at ``dest``."""
    shutil.copytree(trained.dir, dest / "runs" / trained.key)
    return runs.Run(trained.key, dest / "runs" / trained.key)


def test_runs_clean_needs_yes(trained, empty_cache, capsys):
    copy_of_trained_cache(trained, empty_cache)
    new = runs.get_run({**trained.config(), "epochs": 3})
    assert "add --yes to confirm" in cli_exit_message("runs", "clean")
    assert len(list(runs.iter_runs())) == 2

    assert run_cli("runs", "list") == 0
    states = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert states == {trained.key: "complete", new.key: "new"}

    assert run_cli("runs", "clean", "--incomplete") == 0
    assert [r.key for r in runs.iter_runs()] == [trained.key]
    assert run_cli("runs", "clean", "--yes") == 0
    assert "removed 1 run(s)" in capsys.readouterr().out
    assert list(runs.iter_runs()) == []


# -- export ----------------------------------------------------------------------------------------------

def test_export_end_to_end(in_trained_cache, tmp_path, capsys):
    run = in_trained_cache
    out = tmp_path / "model.onnx"
    assert run_cli("export", "--run", run.key[:6], str(out)) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    module, _ = load_trained(run)
    x = normalize_images(torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        expected = module.model(x)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(["embeddings"], {"images": x.numpy()})[0])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_export_of_an_incomplete_run_is_refused(trained, empty_cache, tmp_path, capsys):
    partial = runs.get_run(trained.config())  # same config in an empty cache: config.json only
    assert run_cli("export", "--run", partial.key, str(tmp_path / "m.onnx")) == 2
    assert f"dbrepro export: run {partial.key} is not complete" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


# -- eval ------------------------------------------------------------------------------------------------

def test_eval_on_lfw_pairs_reports_the_protocols_accuracy(in_trained_cache, lfw_data, capsys):
    run = in_trained_cache
    lfw, pairs = lfw_data
    assert run_cli("eval", "--run", run.key, "--lfw-pairs", str(pairs), "--lfw-root", str(lfw), "--device", "cpu") == 0
    (line,) = capsys.readouterr().out.splitlines()
    name, _, fields = line.partition(": ")
    printed = dict(field.split("=", 1) for field in fields.split(", "))
    assert name == "pairsDevTest"
    assert printed["kind"] == "pairs" and printed["n_pairs"] == "20"
    # the same number, computed here from the trained model and the suite
    module, cfg = load_trained(run)
    expected = evaluate_suite(module.model, lfw_pair_suite(pairs, lfw, image_size=cfg.image_size), device="cpu")
    assert float(printed["accuracy"]) == pytest.approx(expected["accuracy"], abs=5e-5)
    assert len(list(run.dir.glob("eval-*.json"))) == 1  # cached next to the run


def test_eval_needs_lfw_root_and_a_suite(in_trained_cache, lfw_data):
    run = in_trained_cache
    assert "--lfw-pairs needs --lfw-root" in cli_exit_message("eval", "--run", run.key, "--lfw-pairs", str(lfw_data[1]))
    assert "nothing to evaluate" in cli_exit_message("eval", "--run", run.key)
    assert "this run was not trained on it" in cli_exit_message("eval", "--run", run.key, "--suites", "lfw")


def test_eval_of_an_incomplete_or_unknown_run_errors(trained, empty_cache, lfw_data):
    partial = runs.get_run(trained.config())
    lfw, pairs = lfw_data
    message = cli_exit_message("eval", "--run", partial.key, "--lfw-pairs", str(pairs), "--lfw-root", str(lfw))
    assert message == f"run {partial.key} is not complete; train it first (dbrepro train ...)"
    assert "no run with key 'ffff'" in cli_exit_message("eval", "--run", "ffff", "--lfw-pairs", str(pairs))


def test_eval_of_a_missing_pairs_file_is_one_line(in_trained_cache, lfw_data, tmp_path, capsys):
    missing = tmp_path / "pairs.txt"
    code = run_cli("eval", "--run", in_trained_cache.key, "--lfw-pairs", str(missing), "--lfw-root", str(lfw_data[0]))
    assert code == 2
    assert f"{missing}: pairs file not found" in capsys.readouterr().err


# -- eval --folder: your own photographs -------------------------------------------------------------------

def printed_results(lines: list[str]) -> dict[str, dict[str, str]]:
    """``name: key=value, ...`` result lines -> {name: {key: value}}."""
    out = {}
    for line in lines:
        name, _, fields = line.partition(": ")
        out[name] = dict(field.split("=", 1) for field in fields.split(", "))
    return out


def test_eval_help_explains_the_folder_protocol(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    for words in ("--folder DIR", "10 folds", "pairs.txt", "--pairs FILE", "rank-1", "distractors", "--crop"):
        assert words in out


def test_eval_on_a_folder_writes_its_pairs_and_reports_both_protocols(in_trained_cache, lfw_data, tmp_path,
                                                                      monkeypatch, capsys):
    from dbrepro.eval.folder_protocol import folder_protocol

    run, lfw = in_trained_cache, lfw_data[0]
    monkeypatch.chdir(tmp_path)
    before = set(run.dir.glob("eval-*.json"))
    assert run_cli("eval", "--run", run.key, "--folder", str(lfw), "--crop", "128", "--device", "cpu") == 0
    described, written, *lines = capsys.readouterr().out.splitlines()
    assert described.startswith(f"{lfw}: 25 images of 9 identities; 40 pairs in 10 folds of 2 matched + 2 mismatched")
    assert written == "pairs written to lfw-pairs.txt (LFW pairs.txt format; --pairs lfw-pairs.txt reuses them)"
    printed = printed_results(lines)
    assert list(printed) == ["lfw (verification)", "lfw (identification)"]
    assert printed["lfw (verification)"]["n_pairs"] == "40"
    assert (printed["lfw (identification)"]["num_probes"], printed["lfw (identification)"]["num_distractors"]) == ("16", "1")
    # the same numbers, computed here from the trained model and the folder
    module, cfg = load_trained(run)
    protocol = folder_protocol(lfw, image_size=cfg.image_size, crop=128)
    pairs = evaluate_suite(module.model, protocol.verification, device="cpu")
    ident = evaluate_suite(module.model, protocol.identification, device="cpu")
    assert float(printed["lfw (verification)"]["accuracy"]) == pytest.approx(pairs["accuracy"], abs=5e-5)
    assert float(printed["lfw (identification)"]["rank1"]) == pytest.approx(ident["rank1"], abs=5e-5)
    assert len(set(run.dir.glob("eval-*.json")) - before) == 2  # cached next to the run
    # reusing the written pairs: the same protocol, so the same cached results
    cached = set(run.dir.glob("eval-*.json"))
    assert run_cli("eval", "--run", run.key, "--folder", str(lfw), "--crop", "128", "--pairs", "lfw-pairs.txt") == 0
    described, *again = capsys.readouterr().out.splitlines()
    assert "(read from lfw-pairs.txt)" in described and printed_results(again) == printed
    assert set(run.dir.glob("eval-*.json")) == cached
    # drawing other pairs over the written file is refused; elsewhere it is fine
    message = cli_exit_message("eval", "--run", run.key, "--folder", str(lfw), "--crop", "128", "--seed", "1")
    assert message.startswith("lfw-pairs.txt exists and holds other pairs: reuse them with --pairs lfw-pairs.txt")
    assert run_cli("eval", "--run", run.key, "--folder", str(lfw), "--crop", "128", "--seed", "1",
                   "--write-pairs", "seed1.txt") == 0
    assert (tmp_path / "seed1.txt").read_text() != (tmp_path / "lfw-pairs.txt").read_text()


def test_eval_folder_options_need_a_folder_and_one_source_of_pairs(in_trained_cache, tmp_path):
    run = in_trained_cache
    assert cli_exit_message("eval", "--run", run.key, "--pairs", "p.txt") == "--pairs needs --folder (a folder of identity folders)"
    assert cli_exit_message("eval", "--run", run.key, "--crop", "0.8", "--bin", "x.bin").startswith("--crop needs --folder")
    message = cli_exit_message("eval", "--run", run.key, "--folder", str(tmp_path), "--pairs", "p.txt",
                               "--write-pairs", "q.txt")
    assert message == "--pairs reads the pairs from a file, --write-pairs writes drawn ones: give one of them"


def test_eval_folder_errors_are_one_line_naming_the_folder(in_trained_cache, tmp_path, monkeypatch, capsys):
    run = in_trained_cache
    monkeypatch.chdir(tmp_path)
    few = tmp_path / "few"
    for name, count in (("alice", 3), ("bob", 1)):
        (few / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((20, 20), 40 * i, dtype=np.uint8)).save(few / name / f"{i}.png")
    assert run_cli("eval", "--run", run.key, "--folder", str(few)) == 2
    assert capsys.readouterr().err.strip() == (f"dbrepro eval: {few}: 1 of 2 identities hold two or more images; "
                                               "matched pairs and a gallery need at least 2 such identities (one "
                                               "sub-folder per person, two or more images in each)")
    for name in ("alice", "bob"):  # 5 images each: 20 matched pairs, enough for 10 folds
        for i in range(3 if name == "alice" else 1, 5):
            Image.fromarray(np.full((20, 20), 40 * i, dtype=np.uint8)).save(few / name / f"{i}.png")
    (few / "bob" / "4.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert run_cli("eval", "--run", run.key, "--folder", str(few)) == 2
    assert f"dbrepro eval: {few / 'bob' / '4.png'}: cannot decode image" in capsys.readouterr().err
    assert not list(tmp_path.glob("*-pairs.txt"))


def test_eval_folder_on_a_damaged_run_is_refused(trained, empty_cache, lfw_data):
    copy = copy_of_trained_cache(trained, empty_cache)
    with open(copy.model_path, "r+b") as f:
        f.truncate(100)
    message = cli_exit_message("eval", "--run", copy.key, "--folder", str(lfw_data[0]))
    assert message.startswith(f"run {copy.key} is damaged: ") and "model.pt" in message
