"""The parameters a notebook receives: what its ``parameters`` cell declares, typed like its defaults.

papermill's inspection lists the names a parameters cell assigns, with the source of each default and a
type taken from an annotation or a type comment (``"None"`` when there is neither, as in this book). The
type of a parameter is therefore the annotation when there is one, else the type of its literal default:

=================  ============================================================================
default            accepted ``--param`` values
=================  ============================================================================
``int``            an integer (``3``; not ``3.5``, ``abc`` or ``true``)
``float``          a number (``0.1``, ``1e-3``, ``2``)
``bool``           ``true`` / ``false`` (any case)
``str``            any text, as written (``--param NAME=1`` gives the string ``"1"``)
``None``           any text, or ``none`` / ``null`` for None
list, dict, tuple  a Python literal of that type (``[5, 8]``)
=================  ============================================================================

``PROFILE``, ``OUTPUT_DIR`` and ``RESULTS_DIR`` belong to the executor (``--profile`` and the build
folder); a ``--param`` for them is refused.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..config import get_profile
from .layout import BookError, BuildLayout

#: Notebook parameters filled from environment variables when a notebook declares them.
DATA_PATH_ENV = {
    # paper and rehearsal profiles: InsightFace folders (train.rec, train.idx, property, *.bin packs)
    "CASIA_ROOT": "DBREPRO_CASIA",  # CASIA-WebFace: DB Tables 2-3, Fig. 7, the Range Loss chapters
    "MS1MV2_ROOT": "DBREPRO_MS1MV2",  # MS1MV2: DB Tables 4-7
    "LFW_ROOT": "DBREPRO_LFW",  # a folder holding lfw/ and lfw-protocol/ (see the LFW chapter)
}
#: the data roots a profile that reads real data cannot do without (the LFW chapter reads LFW in every profile)
REAL_DATA_ROOTS = ("CASIA_ROOT", "MS1MV2_ROOT")
#: Parameters only the executor sets, and how a user sets them instead.
EXECUTOR_PARAMETERS = {
    "PROFILE": "choose the profile with --profile",
    "OUTPUT_DIR": "each notebook writes into <build>/<profile>/results/<notebook>; choose the build folder with --build-dir",
    "RESULTS_DIR": "the scorecard reads <build>/<profile>/results; choose the build folder with --build-dir",
}
_NONE_WORDS = ("none", "null")
_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict, "tuple": tuple}


@dataclass(frozen=True)
class Parameter:
    """One name of a notebook's parameters cell: the source of its default, and the type it expects
    (``None`` for a None default, ``object`` when the default is not a literal and there is no annotation)."""

    name: str
    default: str
    type: type | None


def split_param(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` as given on the command line: the key and the raw text (typed later, per notebook)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise BookError(f"--param {text!r}: expected KEY=VALUE with KEY a Python name")
    if key in EXECUTOR_PARAMETERS:
        raise BookError(f"--param {key}: set by the executor, not by --param ({EXECUTOR_PARAMETERS[key]})")
    return key, raw


def declared_parameters(nb: Any) -> dict[str, Parameter]:
    """The parameters cell of ``nb`` (an nbformat notebook) by papermill's inspection, typed as above."""
    from papermill.translators import papermill_translators
    from papermill.utils import nb_kernel_name, nb_language

    # the first cell tagged "parameters", as papermill finds it (and, unlike papermill's helper, without
    # requiring every cell to carry a tags list)
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return {}
    translator = papermill_translators.find_translator(nb_kernel_name(nb), nb_language(nb))
    out = {}
    for p in translator.inspect(cell):
        out[p.name] = Parameter(p.name, p.default, _parameter_type(p.inferred_type_name, p.default))
    return out


def _parameter_type(annotation: str, default: str) -> type | None:
    base = annotation.split("[")[0].strip()
    if base in _TYPES:
        return _TYPES[base]
    try:
        value = ast.literal_eval(default)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return object
    return None if value is None else type(value)


def typed_value(notebook: str, parameter: Parameter, value: Any) -> Any:
    """``value`` (raw text from ``--param``, or a Python value from the API) as ``parameter`` expects it.

    Raises ``BookError`` naming the notebook, the parameter, what it expects and what it got.
    """
    expected = parameter.type
    if expected is object:
        return value
    if expected is None and isinstance(value, os.PathLike):
        value = os.fspath(value)
    typed = _from_text(value, expected) if isinstance(value, str) else value
    if not _accepts(expected, typed):
        raise BookError(f"notebook {notebook}: parameter {parameter.name} expects {_describe(expected)} "
                        f"(its default is {parameter.default}), got {value!r}")
    return typed


_INVALID = object()


def _from_text(raw: str, expected: type | None) -> Any:
    text = raw.strip()
    if expected is None:
        return None if text.lower() in _NONE_WORDS else raw
    if expected is str:
        return raw
    if expected is bool:
        return {"true": True, "false": False}.get(text.lower(), _INVALID)
    if expected is int:
        try:
            return int(text)
        except ValueError:
            return _INVALID
    if expected is float:
        try:
            return float(text)
        except ValueError:
            return _INVALID
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _INVALID
    return value


def _accepts(expected: type | None, value: Any) -> bool:
    if value is _INVALID:
        return False
    if expected is None:
        return value is None or isinstance(value, str)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _describe(expected: type | None) -> str:
    if expected is None:
        return "a text or None"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a text"}.get(
        expected, f"a {expected.__name__} literal")


def notebook_parameters(
    name: str,
    declared: Iterable[str] | dict[str, Parameter],
    profile: str,
    layout: BuildLayout,
    extra: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    output_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The parameters papermill injects into notebook ``name``: only those its parameters cell declares.

    ``PROFILE`` and ``OUTPUT_DIR`` (``output_dir``, by default ``layout.output_dir(name)``) always;
    ``RESULTS_DIR`` (the scorecard reads every results.json there); data paths from :data:`DATA_PATH_ENV`;
    then ``extra`` (``--param``), which wins, each typed against the declared default
    (:func:`typed_value`; a plain list of names types nothing). A data path that is given but does not
    exist, or a missing data path in a profile that needs real data, is a ``BookError``.
    """
    typed = declared if isinstance(declared, dict) else {k: Parameter(k, "", object) for k in declared}
    environ = os.environ if environ is None else environ
    for key in ("PROFILE", "OUTPUT_DIR"):
        if key not in typed:
            raise BookError(f"notebook {name}: its parameters cell does not declare {key}")
    for key in EXECUTOR_PARAMETERS:
        if key in (extra or {}):
            raise BookError(f"--param {key}: set by the executor, not by --param ({EXECUTOR_PARAMETERS[key]})")
    output = Path(output_dir) if output_dir is not None else layout.output_dir(name)
    params: dict[str, Any] = {"PROFILE": profile, "OUTPUT_DIR": str(output.resolve())}
    if "RESULTS_DIR" in typed:
        params["RESULTS_DIR"] = str(layout.results.resolve())
    sources: dict[str, str] = {}
    for key, var in DATA_PATH_ENV.items():
        if key in typed and environ.get(var):
            params[key] = environ[var]
            sources[key] = f"environment variable {var}"
    for key, value in (extra or {}).items():
        if key in typed:
            params[key] = typed_value(name, typed[key], value)
            sources[key] = f"--param {key}"
    for key, source in sources.items():
        if key in DATA_PATH_ENV and params[key] is not None:
            path = Path(str(params[key])).expanduser()
            if not path.exists():
                raise BookError(f"notebook {name}: {key}={params[key]!r} (from {source}) does not exist")
            params[key] = str(path.resolve())  # the notebook runs in notebooks/, not where it was given
    for key in REAL_DATA_ROOTS:
        if get_profile(profile).needs_data_path and key in typed and params.get(key) is None:
            raise BookError(
                f"notebook {name}: the {profile} profile needs real data: set {DATA_PATH_ENV[key]}=/path/to/data "
                f"or pass --param {key}=/path/to/data"
            )
    return params
