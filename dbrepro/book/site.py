"""``build``: stage the site's sources and build it with Jupyter Book 1 (execution off).

``<build>/<profile>/site-src/`` = ``book/*`` (with ``_static/dbrepro.css``) + the executed notebooks as
the site shows them (:func:`.publish.for_site`: parameters folded, no local paths) + a generated
``status.md`` + the vendored MathJax 3; ``jupyter-book build`` turns it into ``<build>/<profile>/site/html/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import get_profile
from ..paths import atomic_write_text
from .layout import BookError, BuildLayout, remove
from .publish import for_site
from .status import read_status, reconcile
from .toc import notebook_names, read_toc, toc_problems

#: MathJax 3 as vendored by ``make mathjax`` (the npm package's es5 folder), relative to the build dir.
MATHJAX_IN_BUILD = Path("vendor") / "node_modules" / "mathjax" / "es5"
MATHJAX_ENTRY = "tex-chtml.js"  # must match mathjax_path in book/_config.yml


def status_markdown(status: dict[str, Any], order: Sequence[str]) -> str:
    """The status page: each chapter's last run, its last cold and cached times with their dates, and the
    environment. *Cold* is the last successful run that trained or rendered something, *cached* the last
    that found everything in the caches: together they say what a rebuild costs."""
    env = status.get("environment", {})
    profile = status.get("profile", "?")
    lines = [
        "# Status",
        "",
        f"Every notebook of this build was executed by papermill in the **{profile}** profile, one at a time, "
        "before the site was built (the book build itself executes nothing). Times are wall-clock seconds "
        "including the kernel's start. **Cold** is the last run of a chapter that trained or rendered "
        "something, **cached** the last one that found all it needed in the run cache: a rebuild after a "
        "change costs between the two.",
        "",
        "| chapter | last run | cold | cached |",
        "|---|---|---|---|",
    ]
    notebooks = status.get("notebooks", {})
    totals = {"cold": 0.0, "cached": 0.0}
    counted = {"cold": 0, "cached": 0}
    for name in order:
        entry = notebooks.get(name)
        if entry is None:
            lines.append(f"| {{doc}}`{name}` | not run | | |")
            continue
        last = f"{entry.get('status', '?')}, {_seconds(entry.get('seconds'))}<br>{entry.get('finished', '')}"
        if entry.get("status") != "ok":
            outputs = entry.get("outputs")
            last += f"<br>(shows the outputs of {outputs.get('finished')})" if outputs else "<br>(no outputs)"
        cells = []
        for kind in ("cold", "cached"):
            record = entry.get(kind)
            if record:
                totals[kind] += float(record.get("seconds") or 0.0)
                counted[kind] += 1
                cells.append(f"{_seconds(record.get('seconds'))}<br>{record.get('date', '')}")
            else:
                cells.append("not measured")
        lines.append(f"| {{doc}}`{name}` | {last} | {cells[0]} | {cells[1]} |")
    total = {k: f"**{_seconds(totals[k])}**" if counted[k] else "not measured" for k in totals}
    lines += [f"| **total** | | {total['cold']} | {total['cached']} |",
              "", "## Environment", ""]
    device = f"CUDA: {env.get('device')} (CUDA {env.get('cuda_version')})" if env.get("cuda") else "CPU only"
    cores = f"{env.get('cpu_cores_usable')} usable of {env.get('cpu_cores')}; torch threads {env.get('torch_threads')}"
    rows = [
        ("profile", profile),
        ("date", env.get("date")),
        ("Python", f"{env.get('python')} ({env.get('implementation')})"),
        ("platform", env.get("platform")),
        ("device", device),
        ("CPU cores", cores),
        ("git commit", env.get("git_commit") or "(not a git checkout)"),
    ]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {_md_cell(v)} |" for k, v in rows]
    packages = env.get("packages", {})
    if packages:
        lines += ["", "### Package versions", "", "| package | version |", "|---|---|"]
        lines += [f"| {k} | {_md_cell(v) if v else 'not installed'} |" for k, v in packages.items()]
    return "\n".join(lines) + "\n"


def _seconds(value: Any) -> str:
    return f"{float(value or 0):.1f} s"


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def find_mathjax(explicit: str | os.PathLike | None, build_dir: Path) -> Path:
    """The vendored MathJax 3 ``es5`` folder: ``--mathjax``, else ``$DBREPRO_MATHJAX``, else the build dir's vendor copy."""
    candidate = Path(explicit or os.environ.get("DBREPRO_MATHJAX") or build_dir / MATHJAX_IN_BUILD)
    entry = candidate / MATHJAX_ENTRY
    if not entry.exists():
        raise BookError(
            f"MathJax 3 not found at {candidate} (no {MATHJAX_ENTRY}): run `make mathjax` "
            f"(npm install --prefix {build_dir / 'vendor'} mathjax@3) or pass --mathjax DIR"
        )
    package = candidate.parent / "package.json"
    if package.exists():
        version = json.loads(package.read_text()).get("version", "")
        if not version.startswith("3."):
            raise BookError(f"{package}: MathJax {version} found, the book's config expects MathJax 3")
    return candidate


def _copy_mathjax(src: Path, dest: Path) -> None:
    """Copy what ``tex-chtml.js`` may load at view time: its components, CHTML fonts, menu and a11y extras."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        skip = set()
        for n in names:
            if here == src and n.endswith(".js") and n != MATHJAX_ENTRY and (here / n).is_file():
                skip.add(n)  # the other combined bundles (tex-svg.js, mml-chtml.js, ...)
            if here == src / "output" and n.startswith("svg"):
                skip.add(n)
        return skip

    shutil.copytree(src, dest, ignore=ignore)


def build(
    profile: str,
    *,
    book_dir: str | os.PathLike = "book",
    notebooks_dir: str | os.PathLike = "notebooks",
    build_dir: str | os.PathLike = "_build",
    warnings_as_errors: bool = False,
    mathjax: str | os.PathLike | None = None,
    out: Callable[..., None] = print,
) -> Path:
    """Stage ``site-src`` and build the HTML site with Jupyter Book 1. Returns the path of ``index.html``."""
    profile = get_profile(profile).name
    book_dir, notebooks_dir = Path(book_dir).resolve(), Path(notebooks_dir).resolve()
    layout = BuildLayout(Path(build_dir).resolve(), profile)
    toc_path = book_dir / "_toc.yml"
    problems = toc_problems(toc_path, notebooks_dir, book_dir)
    if problems:
        raise BookError("; ".join(problems))
    entries = read_toc(toc_path)
    notebooks = set(notebook_names(notebooks_dir))
    order = [e.file for e in entries if e.file in notebooks]
    status = read_status(layout.status_json)
    broken = reconcile(status, layout, order)  # the disk, not the record, decides what can be shown
    missing = [n for n in order if not status["notebooks"].get(n, {}).get("outputs")]
    if missing:
        why = "; ".join(f"{n}: {broken[n]}" for n in missing if n in broken)
        raise BookError(
            f"executed notebooks missing in {layout.notebooks}: {', '.join(missing)} "
            f"(run them first: python -m dbrepro.book run --profile {profile})" + (f"; {why}" if why else "")
        )
    stale = [n for n in order if status["notebooks"][n].get("status") != "ok"]
    for name in stale:
        out(f"warning: the last run of {name} did not succeed; the site shows its outputs of "
            f"{status['notebooks'][name]['outputs'].get('finished')}", file=sys.stderr)
    mathjax_src = find_mathjax(mathjax, layout.build_dir)

    started = time.perf_counter()
    remove(layout.site_src)
    shutil.copytree(book_dir, layout.site_src, ignore=shutil.ignore_patterns("_build", ".*", "__pycache__"))
    import nbformat

    for name in order:
        nb = nbformat.read(layout.executed(name), as_version=4)
        nbformat.write(for_site(nb, layout.build_dir, notebooks_dir.parent), layout.site_src / f"{name}.ipynb")
    status.setdefault("profile", profile)
    atomic_write_text(layout.site_src / "status.md", status_markdown(status, order))
    # html_extra_path (see _config.yml), not _static: Jupyter Book 1 adds every .js under _static to every page
    _copy_mathjax(mathjax_src, layout.site_src / "_vendor" / "_static" / "mathjax")

    tmp_out = layout.root / ".site-build"
    remove(tmp_out)
    cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(layout.site_src), "--path-output", str(tmp_out), "--builder", "html"]
    if warnings_as_errors:
        cmd += ["-W", "--keep-going"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except BaseException:  # interrupted (SIGINT, SIGTERM): subprocess.run has stopped jupyter-book
        remove(tmp_out)
        raise
    log = result.stdout + result.stderr
    warnings = [ln for ln in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", ln)]
    for ln in warnings:
        out(ln, file=sys.stderr)
    html_dir = tmp_out / "_build" / "html"
    if result.returncode != 0 or not (html_dir / "index.html").exists():
        tail = "\n".join(log.splitlines()[-40:])
        remove(tmp_out)
        raise BookError(
            f"jupyter-book build failed for the {profile} profile ({len(warnings)} warnings/errors"
            f"{', treated as errors' if warnings_as_errors else ''}); last lines of its log:\n{tail}"
        )
    remove(layout.site.parent)
    layout.site.parent.mkdir(parents=True)
    os.replace(html_dir, layout.site)
    remove(tmp_out)
    index = layout.site / "index.html"
    out(f"built the {profile} site in {time.perf_counter() - started:.1f} s "
        f"({len(warnings)} warnings): {index}")
    return index
