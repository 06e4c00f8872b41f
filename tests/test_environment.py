"""The pinned environment is stated three times; these tests keep the statements in step.

pyproject.toml (dependencies + the dev and lab extras) is the source of truth; environment.yml (conda, for a GPU
box) must carry exactly the same pins, and constraints.txt (the full resolved set) must agree with them.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)\s*$")


def normalize(name: str) -> str:
    """PEP 503 name normalisation: case-insensitive, runs of -_. are one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines: list[str], source: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for i, line in enumerate(lines, start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN.match(line)
        if not m:
            raise AssertionError(f"{source} line {i}: {line!r} is not an exact pin NAME==VERSION")
        name = normalize(m.group(1))
        assert name not in pins, f"{source}: {name} pinned twice"
        pins[name] = m.group(2)
    return pins


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return parse_pins(project["dependencies"] + extras["dev"] + extras["lab"], "pyproject.toml")


def environment_yml() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def environment_pins() -> dict[str, str]:
    deps = environment_yml()["dependencies"]
    pip_lists = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml needs exactly one pip: list"
    return parse_pins(pip_lists[0], "environment.yml")


def test_parse_pins_reads_exact_pins_and_rejects_ranges():
    assert parse_pins(["Foo_Bar==1.2", "  # comment", "baz==0.1.post1  # why"], "x") == {
        "foo-bar": "1.2",
        "baz": "0.1.post1",
    }
    with pytest.raises(AssertionError, match="line 1: 'torch>=2' is not an exact pin"):
        parse_pins(["torch>=2"], "x")


def test_environment_yml_has_exactly_the_pyproject_pins():
    ours, conda = pyproject_pins(), environment_pins()
    assert set(ours) == set(conda), (
        f"only in pyproject.toml: {sorted(set(ours) - set(conda))}; "
        f"only in environment.yml: {sorted(set(conda) - set(ours))}"
    )
    differ = {n: (ours[n], conda[n]) for n in ours if ours[n] != conda[n]}
    assert not differ, f"versions differ (pyproject, environment.yml): {differ}"


def test_environment_yml_python_matches_requires_python():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    deps = environment_yml()["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert pythons == ["python=3.11"], pythons
    assert ">=3.11" in requires and "<3.12" in requires, requires
    assert "pip" in deps


def test_constraints_agree_with_pyproject():
    ours = pyproject_pins()
    constraints = parse_pins((ROOT / "constraints.txt").read_text().splitlines(), "constraints.txt")
    missing = sorted(set(ours) - set(constraints))
    assert not missing, f"pinned in pyproject.toml but absent from constraints.txt: {missing}"
    differ = {n: (ours[n], constraints[n]) for n in ours if ours[n] != constraints[n]}
    assert not differ, f"versions differ (pyproject, constraints.txt): {differ}"
