"""``python -m dbrepro.book run|build|check`` (also ``dbrepro book ...``)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Sequence

from ..config import DEFAULT_PROFILE, get_profile
from .layout import BookError
from .offline import check
from .params import split_param
from .runner import interrupts_raise, run
from .site import build


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dbrepro.book",
        description="Execute the book's notebooks (papermill), build the site (Jupyter Book 1), check it renders offline.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,build,check}")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", default=DEFAULT_PROFILE,
                       help="smoke, cpu (default), paper (reads DBREPRO_CASIA and DBREPRO_MS1MV2) or rehearsal (the "
                            "paper path on the folder `dbrepro rehearsal DIR` writes)")
        p.add_argument("--build-dir", default="_build", help="build folder (default: _build)")

    p = sub.add_parser("run", help="execute notebooks with papermill, in toc order (the scorecard last)")
    common(p)
    p.add_argument("--only", nargs="+", default=[], metavar="NAME", help="run only these notebooks")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter for every notebook that declares it, typed like its default (repeatable; "
                        "not PROFILE: use --profile)")
    p.add_argument("--notebooks", default="notebooks", help="notebooks folder (default: notebooks)")
    p.add_argument("--toc", default="book/_toc.yml", help="table of contents (default: book/_toc.yml)")
    p.add_argument("--keep-going", action="store_true", help="run the remaining notebooks after a failure")
    p.add_argument("--log-output", action="store_true", help="stream each cell's output while it runs")
    p.add_argument("--progress-every", type=float, default=None, metavar="SECONDS",
                   help="seconds between two progress lines when the output is not a terminal (default: 5)")

    p = sub.add_parser("build", help="build the Jupyter Book 1 site from the executed notebooks")
    common(p)
    p.add_argument("--warnings-as-errors", action="store_true", help="fail on any Sphinx warning")
    p.add_argument("--book", default="book", help="book folder with _config.yml and _toc.yml (default: book)")
    p.add_argument("--notebooks", default="notebooks", help="notebooks folder (default: notebooks)")
    p.add_argument("--mathjax", default=None, help="vendored MathJax 3 es5 folder (default: <build>/vendor/...)")

    p = sub.add_parser("check", help="render a page with math and a figure in headless Chromium, offline")
    common(p)
    p.add_argument("--page", action="append", default=[], metavar="PAGE",
                   help="page to render (repeatable; default: the first page with math and a figure, "
                        "and the scorecard)")
    p.add_argument("--width", type=int, default=1300, help="browser window width in pixels (default: 1300)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; SIGINT and SIGTERM end any command with one line and exit status 128 + signal."""
    try:
        with interrupts_raise():
            return _main(argv)
    except KeyboardInterrupt as e:  # Interrupted (SIGINT, SIGTERM), or a Ctrl-C before the handlers were in place
        signum = getattr(e, "signum", signal.SIGINT)
        if not getattr(e, "reported", False):
            print(f"interrupted by {signal.Signals(signum).name}", file=sys.stderr, flush=True)
        return 128 + int(signum)


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        profile = get_profile(args.profile).name
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if args.command == "run":
            params = dict(split_param(p) for p in args.param)
            failures = run(profile, notebooks_dir=args.notebooks, toc_path=args.toc, build_dir=args.build_dir,
                           only=args.only, params=params, keep_going=args.keep_going, log_output=args.log_output,
                           progress_every=args.progress_every)
            return 1 if failures else 0
        if args.command == "build":
            build(profile, book_dir=args.book, notebooks_dir=args.notebooks, build_dir=args.build_dir,
                  warnings_as_errors=args.warnings_as_errors, mathjax=args.mathjax)
            return 0
        reports = check(profile, build_dir=args.build_dir, pages=args.page or None, width=args.width)
        problems = [p for r in reports for p in r.problems]
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1 if problems else 0
    except BookError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

