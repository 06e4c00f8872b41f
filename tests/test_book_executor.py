"""The book executor from the outside: progress while a notebook runs, typed parameters, cold and cached
times, outputs replaced only when complete, and kills at random points (SIGINT, SIGTERM, SIGKILL).

Every book here is a temporary one of two or three trivial notebooks; nothing of the real book runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from book_helpers import ROOT, book_command, notebook_md, run_cli, write_book

from dbrepro import book, progress
from dbrepro.book import BookError, NotebookProgress, Parameter, ProgressTail, typed_value

# -- dbrepro.progress ---------------------------------------------------------------------------------


def test_progress_is_silent_without_the_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    progress.report("epoch 1/2")
    progress.event("trained", run="k", seconds=1.5)
    assert capsys.readouterr() == ("", "") and list(tmp_path.iterdir()) == []


def test_progress_lines_and_events_round_trip(tmp_path, monkeypatch, capsys):
    path = tmp_path / "progress.log"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(path))
    progress.report("run 2 of 6, epoch 3/10,\nloss 4.21")
    progress.event("trained", run="abc", seconds=41.25, where=Path("/x"))
    progress.report(progress.EVENT_MARKER + "{not json")
    lines = path.read_text().splitlines()
    assert capsys.readouterr() == ("", "")  # notebook outputs stay clean
    assert [progress.parse(ln) for ln in lines] == [
        ("report", "run 2 of 6, epoch 3/10, loss 4.21"),
        ("event", {"kind": "trained", "run": "abc", "seconds": 41.25, "where": "/x"}),
        ("report", progress.EVENT_MARKER + "{not json"),  # shown to the person, never counted
    ]
    with pytest.raises(ValueError, match="non-empty string"):
        progress.event("")
    monkeypatch.setenv(progress.PROGRESS_ENV, str(tmp_path / "gone" / "progress.log"))
    progress.report("the folder is gone")  # never raises: progress never stops a computation


def test_progress_imports_nothing_heavy():
    code = "import sys, dbrepro.progress; print(sorted(m for m in ('torch', 'numpy', 'dbrepro.book') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout.strip() == "[]", result.stderr


def test_progress_lines_from_two_processes_never_interleave(tmp_path):
    path = tmp_path / "progress.log"
    code = ("import sys; from dbrepro import progress\n"
            "for i in range(300): progress.report(sys.argv[1] * 200 + f' {i}')")
    env = {**os.environ, progress.PROGRESS_ENV: str(path), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, c], env=env) for c in "ab"]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    lines = path.read_text().splitlines()
    assert len(lines) == 600
    assert all(ln in {c * 200 + f" {i}" for c in "ab" for i in range(300)} for ln in lines)


# -- what the console shows ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def printed(calls):
    return "".join(str(a[0]) + k.get("end", "\n") for a, k in calls)


def test_progress_lines_are_throttled_when_not_a_terminal():
    calls, clock = [], Clock()
    shown = NotebookProgress(lambda *a, **k: calls.append((a, k)), "[1/2] x", tty=False, every=5.0, clock=clock)
    shown.on_cell(1, 3, "notebooks/x.md:14", 'PROFILE = "cpu"')  # too soon after the start: not shown
    clock.t = 6.0
    shown.on_cell(2, 3, "notebooks/x.md:25", "train(runs)")
    shown.on_line("run 1 of 2, epoch 1/4")  # within 5 s of the last line: kept for later
    shown.on_line(progress.EVENT_MARKER + json.dumps({"kind": "trained", "run": "a"}))
    clock.t = 12.0
    shown.tick()
    shown.tick()  # nothing new: nothing printed
    shown.finish("3.2 s (1 trained)")
    assert printed(calls) == ("[1/2] x ... \n"
                              "    cell 2/3 (notebooks/x.md:25) train(runs)\n"
                              "    cell 2/3 (notebooks/x.md:25) train(runs) | run 1 of 2, epoch 1/4\n"
                              "[1/2] x ... 3.2 s (1 trained)\n")
    assert shown.computed() == {"trained": 1}


def test_a_quick_notebook_keeps_one_line_and_a_terminal_redraws_in_place():
    calls, clock = [], Clock()
    quick = NotebookProgress(lambda *a, **k: calls.append((a, k)), "[1/1] q", tty=False, every=5.0, clock=clock)
    quick.on_cell(1, 1, "q.md:3", "x = 1")
    quick.finish("0.4 s (nothing trained or rendered)")
    assert printed(calls) == "[1/1] q ... 0.4 s (nothing trained or rendered)\n"

    calls.clear()
    tty = NotebookProgress(lambda *a, **k: calls.append((a, k)), "[1/1] t", tty=True, every=0.0, clock=clock)
    tty.on_cell(1, 2, "t.md:3", "fit()")
    tty.on_line("epoch 1/2")
    tty.finish("1.0 s")
    assert printed(calls) == ("[1/1] t ... \r\x1b[K[1/1] t ... cell 1/2 (t.md:3) fit()"
                              "\r\x1b[K[1/1] t ... cell 1/2 (t.md:3) fit() | epoch 1/2\r\x1b[K[1/1] t ... 1.0 s\n")


def test_progress_tail_delivers_every_complete_line(tmp_path):
    path, got = tmp_path / "p.log", []
    with ProgressTail(path, got.append, poll=0.01):
        time.sleep(0.05)  # the file does not exist yet
        with open(path, "ab") as f:
            f.write(b"first\nsec")
            f.flush()
            time.sleep(0.05)
            f.write("ond \u00e9\nthird\n".encode())
    assert got == ["first", "second \u00e9", "third"]


# -- parameters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "default, given, expected",
    [("3", "7", 7), ("3", 7, 7), ("0.1", "1e-3", 1e-3), ("0.1", 2, 2), ("True", "FALSE", False),
     ('"hi"', "1", "1"), ("None", "/data", "/data"), ("None", "none", None), ("None", None, None),
     ("[5, 8]", "[1, 2]", [1, 2])],
)
def test_parameters_are_typed_like_their_defaults(default, given, expected):
    import ast

    value = ast.literal_eval(default)
    parameter = Parameter("X", default, None if value is None else type(value))
    assert typed_value("nb", parameter, given) == expected
    assert type(typed_value("nb", parameter, given)) is type(expected)


@pytest.mark.parametrize(
    "default, given, expects",
    [("3", "abc", "an integer"), ("3", "2.5", "an integer"), ("3", True, "an integer"), ("0.1", "fast", "a number"),
     ("True", "yes", "true or false"), ('"hi"', 3, "a text"), ("None", 3, "a text or None"),
     ("[5, 8]", "{1: 2}", "a list literal")],
)
def test_a_parameter_of_the_wrong_type_is_refused_naming_notebook_and_parameter(default, given, expects):
    import ast

    value = ast.literal_eval(default)
    parameter = Parameter("X", default, None if value is None else type(value))
    with pytest.raises(BookError, match=rf"notebook nb: parameter X expects {expects} \(its default is "):
        typed_value("nb", parameter, given)


def test_declared_parameters_take_annotations_and_literal_defaults(tmp_path):
    path = tmp_path / "x.md"
    path.write_text(notebook_md("print(1)", extra_parameters='EPOCHS = 3\nLR: float = 1\nNAME = "a"\nWHERE = None\n'
                                                         "FANCY = make()\n"))
    declared = book.declared_parameters(book.read_notebook(path))
    assert {k: p.type for k, p in declared.items()} == {
        "PROFILE": str, "SEED": int, "DEVICE": str, "OUTPUT_DIR": None, "EPOCHS": int, "LR": float, "NAME": str,
        "WHERE": None, "FANCY": object}


def small_book(tmp_path, **notebooks):
    names = list(notebooks)
    return write_book(tmp_path, notebooks, names)


def cli_run(nb_dir, toc, build, *extra, env=None):
    return run_cli("run", "--profile", "smoke", "--notebooks", str(nb_dir), "--toc", str(toc),
                   "--build-dir", str(build), *extra, env=env)


def test_profile_comes_from_profile_alone_and_bad_values_are_refused_before_a_kernel_starts(tmp_path):
    nb_dir, toc = small_book(tmp_path, a=notebook_md("print(EPOCHS)", extra_parameters="EPOCHS = 3\n"))
    build = tmp_path / "_build"
    result = cli_run(nb_dir, toc, build, "--param", "PROFILE=paper")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --param PROFILE: set by the executor, not by --param (choose the profile with --profile)"]
    result = cli_run(nb_dir, toc, build, "--param", "EPOCHS=abc")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: notebook a: parameter EPOCHS expects an integer (its default is 3), got 'abc'"]
    assert not build.exists()
    with pytest.raises(BookError, match="--param OUTPUT_DIR: set by the executor"):
        book.run("smoke", notebooks_dir=nb_dir, toc_path=toc, build_dir=build, params={"OUTPUT_DIR": "/x"},
                 out=lambda *a, **k: None)


# -- progress, cold and cached ---------------------------------------------------------------------------

TRAINS_ONCE = notebook_md(
    """
    import json, time
    from pathlib import Path
    from dbrepro import progress
    for epoch in range(1, 4):
        progress.report(f"run 1 of 1, epoch {epoch}/3, loss {4 - epoch:.2f}, 100 img/s")
        time.sleep(0.4)
    if not Path(CACHE).exists():  # stands in for the run cache
        progress.event("trained", run="r", seconds=1.2)
        Path(CACHE).write_text("trained")
    """,
    """
    Path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
    (Path(OUTPUT_DIR) / "results.json").write_text(json.dumps(
        {"notebook": "t", "profile": PROFILE, "numbers": {"cache": CACHE}, "claims": []}))
    """,
    extra_parameters='CACHE = "cache.txt"\n',
)


def test_progress_shows_the_cell_and_the_kernels_lines_and_status_keeps_cold_and_cached(tmp_path):
    nb_dir, toc = small_book(tmp_path, t=TRAINS_ONCE)
    build, cache = tmp_path / "_build", tmp_path / "cache.txt"
    args = ("--param", f"CACHE={cache}", "--progress-every", "0.3")
    cold = cli_run(nb_dir, toc, build, *args)
    assert cold.returncode == 0, cold.stdout + cold.stderr
    lines = cold.stdout.splitlines()
    assert lines[0] == "[1/1] t ... "
    fence = 1 + TRAINS_ONCE.splitlines().index("import json, time") - 1  # the ```{code-cell} line of cell 2
    assert any(ln.startswith(f"    cell 2/3 (notebooks/t.md:{fence}) import json, time | run 1 of 1, epoch ")
               and ln.endswith("img/s") for ln in lines), lines
    assert lines[-2].startswith("[1/1] t ... ") and lines[-2].endswith(" s (1 trained)"), lines
    status = json.loads((build / "smoke" / "status.json").read_text())["notebooks"]["t"]
    assert set(status) >= {"cold", "outputs"} and "cached" not in status and status["outputs"]["computed"] is True

    cached = cli_run(nb_dir, toc, build, *args)
    assert cached.returncode == 0 and "s (nothing trained or rendered)" in cached.stdout
    status = json.loads((build / "smoke" / "status.json").read_text())["notebooks"]["t"]
    assert status["cold"]["date"] <= status["cached"]["date"] and status["outputs"]["computed"] is False
    assert status["cold"]["seconds"] > 1.0 and status["cached"]["seconds"] > 1.0
    facts = json.loads((build / "smoke" / "results" / "t" / "results.json").read_text())["numbers"]
    assert facts["cache"] == str(cache)  # a str parameter keeps the text as given


def nonce_notebook(name: str) -> str:
    """A notebook that sleeps ``SLEEP`` seconds, then writes a random nonce into its results and its output."""
    return notebook_md(
        """
        import json, time, uuid
        from pathlib import Path
        from dbrepro import progress
        nonce = uuid.uuid4().hex
        for i in range(int(SLEEP * 10)):
            progress.report(f"tick {i}")
            time.sleep(0.1)
        """,
        """
        Path(OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
        (Path(OUTPUT_DIR) / "results.json").write_text(json.dumps(
            {"notebook": NAME, "profile": PROFILE, "numbers": {"nonce": nonce}, "claims": []}))
        print("nonce", nonce)
        """,
        extra_parameters=f"SLEEP = 0.0\nNAME = {name!r}\n",
    )


# -- the disk is the truth --------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_status_is_rebuilt_from_the_disk_and_broken_pairs_are_named(tmp_path):
    nb_dir, toc = small_book(tmp_path, a=nonce_notebook("a"), b=nonce_notebook("b"))
    build = tmp_path / "_build"
    smoke = build / "smoke"
    assert cli_run(nb_dir, toc, build).returncode == 0
    layout = book.BuildLayout(build, "smoke")
    good = json.loads((smoke / "status.json").read_text())

    (smoke / "status.json").write_text("{ truncated")  # lost: rebuilt from the run records
    status = book.read_status(smoke / "status.json")
    assert book.reconcile(status, layout) == {}
    assert {n: e["outputs"] for n, e in status["notebooks"].items()} == {n: e["outputs"] for n, e in good["notebooks"].items()}

    (smoke / "results" / "b" / "results.json").write_text('{"edited": true}')  # results of another run
    (smoke / "notebooks" / "a.ipynb").unlink()
    status = book.read_status(smoke / "status.json")
    assert book.reconcile(status, layout) == {
        "a": "results/a exists without its executed notebook",
        "b": "b.ipynb and results/b/results.json come from different runs"}
    with pytest.raises(BookError, match="executed notebooks missing in .*: a, b"):
        book.build("smoke", book_dir=toc.parent, notebooks_dir=nb_dir, build_dir=build, out=lambda *a, **k: None)

    rerun = cli_run(nb_dir, toc, build, "--only", "b")  # removes the broken halves, reruns only b
    assert rerun.returncode == 0, rerun.stderr
    assert "a: removed its broken outputs (results/a exists without its executed notebook)" in rerun.stderr
    assert not (smoke / "results" / "a").exists()
    status = json.loads((smoke / "status.json").read_text())["notebooks"]
    assert "a" not in status  # its record was lost with status.json, and nothing of it is left on disk
    assert status["b"]["outputs"]["results_sha256"] == sha256(smoke / "results" / "b" / "results.json")


def test_a_commit_half_done_by_a_killed_run_is_finished_or_undone(tmp_path):
    nb_dir, toc = small_book(tmp_path, a=nonce_notebook("a"), b=nonce_notebook("b"), c=nonce_notebook("c"))
    build = tmp_path / "_build"
    smoke = build / "smoke"
    assert cli_run(nb_dir, toc, build).returncode == 0
    first = {n: consistent_pair(smoke, n) for n in "abc"}
    # a second run, done by hand up to the point where each commit was killed
    staged = tmp_path / "second"
    assert cli_run(nb_dir, toc, staged).returncode == 0
    leftover = smoke / ".staging" / "20250101-000000-1-abcdef"
    for n in "ab":
        (leftover / n).mkdir(parents=True)
        (leftover / n / f"{n}.ipynb").write_bytes((staged / "smoke" / "notebooks" / f"{n}.ipynb").read_bytes())
    # a: killed after the new results moved into place, before the executed notebook followed
    os.replace(smoke / "results" / "a", leftover / "a" / "previous-results")
    os.replace(staged / "smoke" / "results" / "a", smoke / "results" / "a")
    # b: killed after the old results moved aside, before the new ones came in
    os.replace(smoke / "results" / "b", leftover / "b" / "previous-results")

    result = cli_run(nb_dir, toc, build, "--only", "c")
    assert result.returncode == 0, result.stderr
    assert "a: completed the commit a killed run left half done" in result.stderr
    assert "b: restored the outputs a killed run had begun to replace" in result.stderr
    assert consistent_pair(smoke, "a") != first["a"]  # the second run's
    assert consistent_pair(smoke, "b") == first["b"]  # the first run's
    assert not (smoke / ".staging").exists()


# -- kills at random points ----------------------------------------------------------------------------------

def consistent_pair(smoke: Path, name: str) -> str:
    """The nonce of notebook ``name``'s outputs after checking that its executed notebook and results come
    from one run and that status.json says so."""
    executed = json.loads((smoke / "notebooks" / f"{name}.ipynb").read_text())
    printed_nonces = [o["text"] for c in executed["cells"] for o in c.get("outputs", []) if o.get("name") == "stdout"]
    results = smoke / "results" / name / "results.json"
    nonce = json.loads(results.read_text())["numbers"]["nonce"]
    assert ["".join(t) for t in printed_nonces] == [f"nonce {nonce}\n"], name
    record = executed["metadata"]["dbrepro"]
    assert record["results_sha256"] == sha256(results), name
    return nonce


def assert_status_describes_disk(smoke: Path, names) -> None:
    status = json.loads((smoke / "status.json").read_text())["notebooks"]
    for name in names:
        executed = json.loads((smoke / "notebooks" / f"{name}.ipynb").read_text())
        assert status[name]["outputs"]["run"] == executed["metadata"]["dbrepro"]["run"], name
        assert status[name]["outputs"]["results_sha256"] == sha256(smoke / "results" / name / "results.json"), name


class Executor:
    """``python -m dbrepro.book run`` in a subprocess whose output is collected as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(book_command(*args), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in ln for ln in list(self.lines)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never saw {text!r}: {''.join(self.lines)}")
            time.sleep(0.05)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return rc, "".join(self.lines)


def test_kills_at_random_points_never_lose_or_mix_outputs(tmp_path):
    seed = int(os.environ.get("DBREPRO_KILL_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    names = ["n1", "n2"]
    nb_dir, toc = small_book(tmp_path, **{n: nonce_notebook(n) for n in names})
    build, tmp = tmp_path / "_build", tmp_path / "tmp"
    tmp.mkdir()
    smoke = build / "smoke"
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    args = ["run", "--profile", "smoke", "--notebooks", str(nb_dir), "--toc", str(toc), "--build-dir", str(build),
            "--progress-every", "0.5"]
    first = Executor(args, env)
    assert first.finish()[0] == 0
    for name in names:
        consistent_pair(smoke, name)

    # SIGKILL last: the final run must recover whatever it left (staging, a half-done commit)
    kills = [*rng.sample([signal.SIGINT, signal.SIGTERM], 2), signal.SIGKILL]
    for sig in kills:
        where = f"seed {seed}, {sig.name}"
        run = Executor(args + ["--param", "SLEEP=0.5"], env)
        run.wait_for("[1/2] n1 ...")
        time.sleep(rng.uniform(0.0, 5.0))
        run.proc.send_signal(sig)
        rc, output = run.finish()
        if "2 of 2 notebooks ran" in output:  # it finished before the signal came
            assert rc in (0, 128 + sig, -sig), (where, rc, output)
        elif sig == signal.SIGKILL:
            assert rc == -signal.SIGKILL, (where, output)
        else:
            assert rc == 128 + sig, (where, rc, output)
            assert "Traceback" not in output, (where, output)
            assert sum("interrupted by" in ln for ln in output.splitlines()) == 1, (where, output)
            assert f"interrupted by {sig.name}" in output.splitlines()[-1], (where, output)
            assert not (smoke / ".staging").exists(), where  # no staging, no lock left
            assert_status_describes_disk(smoke, names)
        if sig != signal.SIGKILL or rc == 0:
            assert not [p for p in tmp.iterdir() if p.name.startswith("dbrepro-")], where
            # every notebook still has one complete pair, its previous one or the new one; no empty folder
            for name in names:
                consistent_pair(smoke, name)
            assert sorted(p.name for p in (smoke / "results").iterdir()) == names, where
        # after a SIGKILL (which may land between the two renames of a commit) the next run recovers
        # the pair before its first notebook starts; the next iteration or the final run checks it

    final = Executor(args, env)
    rc, output = final.finish()
    assert rc == 0, (seed, output)
    for name in names:
        consistent_pair(smoke, name)
    assert_status_describes_disk(smoke, names)
    assert not (smoke / ".staging").exists() and not [p for p in tmp.iterdir() if p.name.startswith("dbrepro-")]


def test_a_second_executor_on_the_same_build_folder_is_refused(tmp_path):
    from dbrepro.book.runner import BuildLock

    nb_dir, toc = small_book(tmp_path, a=nonce_notebook("a"))
    build = tmp_path / "_build"
    lock = BuildLock(build / "smoke" / ".staging").acquire()
    try:
        result = cli_run(nb_dir, toc, build)
    finally:
        lock.release()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: another executor (pid {os.getpid()}) is running in {build / 'smoke'}; wait for it or stop it"]
    assert not (build / "smoke" / ".staging").exists()  # released: the lock and its folder are gone


def test_a_signal_taken_by_another_thread_waits_for_the_commit():
    """SIGTERM sent while a commit runs, and taken by a thread that does not mask it (as the kernel
    client's threads do not): the commit finishes first, then the run is interrupted, once."""
    from dbrepro.book.runner import Interrupted, interrupts_deferred, interrupts_raise

    steps = []
    with pytest.raises(Interrupted) as caught:
        with interrupts_raise():
            with interrupts_deferred():
                steps.append("commit begins")
                killer = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM))
                killer.start()
                killer.join()
                for _ in range(1000):  # bytecodes: Python would run a handler here
                    time.sleep(0)
                steps.append("commit ends")
            steps.append("after the commit")  # not reached: the signal is delivered as the block ends
    assert steps == ["commit begins", "commit ends"]
    assert caught.value.signame == "SIGTERM"
