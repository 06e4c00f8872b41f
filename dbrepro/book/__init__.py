"""Execute the book's notebooks with papermill, build the Jupyter Book 1 site, check it renders offline.

The pipeline (``python -m dbrepro.book --help``)::

    notebooks/X.md --jupytext--> .ipynb --papermill (PROFILE, OUTPUT_DIR, ...)--> <build>/<profile>/notebooks/X.ipynb
                                                                                   <build>/<profile>/results/X/results.json
    book/* + executed notebooks + status.md --jupyter-book (execution off)--> <build>/<profile>/site/html/
    site --headless Chromium, no network--> math typeset? figure loaded? nothing loaded from http(s)?

``run``
    Executes the notebooks one at a time in the order of ``book/_toc.yml`` (the scorecard last), each in
    its own kernel running *this* interpreter (``sys.executable``), with ``cwd = notebooks/``. A notebook
    receives only the parameters its ``parameters`` cell declares (papermill's inspection), typed like
    their defaults: ``PROFILE`` (from ``--profile`` only), ``OUTPUT_DIR``, ``RESULTS_DIR`` (the scorecard),
    data paths from environment variables (:data:`DATA_PATH_ENV`) and ``--param KEY=VALUE``. While a
    notebook runs, the executor prints the cell being executed and the lines the kernel reports through
    :mod:`dbrepro.progress`. Outputs are staged and committed by rename when complete: a failed or
    interrupted notebook keeps its previous outputs. ``<build>/<profile>/status.json`` mirrors the disk
    (which run's outputs are there, each chapter's last cold and cached time, the environment). SIGINT and
    SIGTERM stop the run with one line.
``build``
    Stages ``book/*``, the executed notebooks as the site shows them (parameters folded, the build
    machine's folders replaced by placeholders: :mod:`.publish`), a generated ``status.md`` and the
    vendored MathJax into ``<build>/<profile>/site-src/`` and runs ``jupyter-book build`` on it (Jupyter
    Book 1, execution off).
``check``
    Serves the site on localhost, renders pages in headless Chromium at 1,300 px with every other host
    unresolvable, and verifies that MathJax typeset the math (``mjx-container`` elements), the figures
    loaded, no request failed, nothing is wider than the text column, and no built page or stylesheet
    loads an http(s) resource.

Directories are parameters (``--notebooks``, ``--book``, ``--build-dir``), so tests run the executor on a
temporary book. Everything a user sees on failure is one line naming the notebook (and cell) and the error.

Modules: :mod:`.toc` (the table of contents and the parameters-cell rule), :mod:`.params` (what a notebook
receives), :mod:`.execute` (one notebook), :mod:`.runner` (``run``: staging, commits, signals, the lock),
:mod:`.console` (progress lines), :mod:`.status` (``status.json``), :mod:`.environment` (the machine's
facts), :mod:`.publish` (a notebook as the site shows it), :mod:`.site` (``build``), :mod:`.offline`
(``check``), :mod:`.layout` (where build products live), :mod:`.cli` (the command line). The box a chapter
shows at its top is not the builder's: it is :mod:`dbrepro.banner`.
"""

from .cli import main
from .console import NotebookProgress, ProgressTail
from .environment import environment_info
from .execute import NotebookFailed, execute_notebook, this_interpreter_kernel
from .layout import BookError, BuildLayout
from .offline import CheckReport, check, find_chromium, leaked_paths, pages_with_math_and_figure, remote_resources
from .params import DATA_PATH_ENV, EXECUTOR_PARAMETERS, Parameter, declared_parameters, notebook_parameters, split_param, typed_value
from .publish import for_site
from .runner import Interrupted, run
from .site import MATHJAX_ENTRY, MATHJAX_IN_BUILD, build, find_mathjax, status_markdown
from .status import read_status, reconcile
from .toc import (
    GENERATED_PAGES,
    REQUIRED_PARAMETERS,
    SCORECARD,
    TocEntry,
    notebook_names,
    notebooks_in_order,
    parameters_cell_problems,
    read_notebook,
    read_toc,
    toc_problems,
)

__all__ = [
    "BookError", "BuildLayout", "CheckReport", "DATA_PATH_ENV", "EXECUTOR_PARAMETERS", "GENERATED_PAGES",
    "Interrupted", "MATHJAX_ENTRY", "MATHJAX_IN_BUILD", "NotebookFailed", "NotebookProgress", "Parameter",
    "ProgressTail", "REQUIRED_PARAMETERS", "SCORECARD", "TocEntry", "build", "check", "declared_parameters",
    "environment_info", "execute_notebook", "find_chromium", "find_mathjax", "for_site", "leaked_paths", "main",
    "notebook_names", "notebook_parameters", "notebooks_in_order", "pages_with_math_and_figure",
    "parameters_cell_problems", "read_notebook", "read_status", "read_toc", "reconcile", "remote_resources", "run",
    "split_param", "status_markdown", "this_interpreter_kernel", "toc_problems", "typed_value",
]
