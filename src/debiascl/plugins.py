"""Plugins: modules outside the package that register methods (or data sets, backbones ...).

A plugin is a Python module whose import registers its parts, e.g. a method class decorated
with :func:`debiascl.methods.register_method`. Importing it yourself is enough in a Python
program; the CLI imports, before it reads its arguments:

- each ``--plugin`` given (a module name on ``sys.path``, or the path of a ``.py`` file),
- the modules or files listed in the environment variable ``DEBIASCL_PLUGINS``
  (separated by commas),
- the modules of the installed packages' entry points in the group ``debiascl.plugins``
  (``[project.entry-points."debiascl.plugins"] toy = "toy_method"`` in a pyproject.toml).

A run trained with a plugin's method needs the plugin again to be evaluated, resumed or
compared: its ``config.yaml`` names the method.

A plugin that fails to import (a syntax error, an exception, a missing dependency, a name that
clashes with a registered one) is one :class:`~debiascl.errors.DebiasclError` naming the plugin,
the exception's type and message and the plugin's own innermost ``file:line``; with
``DEBIASCL_DEBUG=1`` the original exception propagates with its full traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from debiascl.errors import DebiasclError

PLUGINS_ENV = "DEBIASCL_PLUGINS"
ENTRY_POINT_GROUP = "debiascl.plugins"
DEBUG_ENV = "DEBIASCL_DEBUG"
"""Set to 1: a failing plugin raises its own exception with the full traceback."""
PACKAGE_DIR = Path(__file__).resolve().parent
_LOADED: list[str] = []
"""The plugins :func:`load_plugin` imported in this process (files as absolute paths)."""


def _where(error: BaseException) -> str:
    """The innermost ``file:line`` of ``error`` outside debiascl and Python's import machinery
    (for a syntax error: where it is), or "" when there is none."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}"
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        path = Path(frame.filename)
        if frame.filename.startswith("<") or PACKAGE_DIR in path.resolve().parents:
            continue
        return f"{frame.filename}:{frame.lineno}"
    return ""


def _imported(spec: str, load: Callable[[], ModuleType]) -> ModuleType:
    """``load()``, any exception of the plugin's own made one DebiasclError (one line)."""
    try:
        return load()
    except DebiasclError:
        raise
    except Exception as error:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        where = _where(error)
        message = str(error).splitlines()[0] if str(error) else ""
        raise DebiasclError(
            f"plugin '{spec}' failed to import: {type(error).__name__}: {message}"
            + (f" (at {where})" if where else "")
            + f"; {DEBUG_ENV}=1 shows the full traceback"
        ) from None


def _import_file(path: Path) -> ModuleType:
    """Import the module in file ``path`` once, under its file name's stem."""
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DebiasclError(f"plugin '{path}': not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_plugin(spec: str) -> ModuleType:
    """Import one plugin: a module name, or the path of a ``.py`` file (imported once).

    Raises:
        DebiasclError: the file or module does not exist, or importing it failed (one line:
            :func:`_imported`).
    """
    if spec.endswith(".py"):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise DebiasclError(f"plugin '{spec}': no such file")
        return _remember(str(path), _imported(spec, lambda: _import_file(path)))
    if spec.startswith("."):
        raise DebiasclError(
            f"plugin '{spec}': a relative module name; give an absolute module name or the "
            "path of a .py file"
        )

    def load() -> ModuleType:
        try:
            return importlib.import_module(spec)
        except ModuleNotFoundError as error:
            if error.name is not None and spec.startswith(error.name):
                raise DebiasclError(
                    f"plugin '{spec}': no module of that name on the Python path"
                ) from None
            raise

    return _remember(spec, _imported(spec, load))


def _remember(spec: str, module: ModuleType) -> ModuleType:
    if spec not in _LOADED:
        _LOADED.append(spec)
    return module


def loaded_plugins() -> list[str]:
    """The plugins imported in this process so far, as :func:`load_plugin` specs (a
    comparison's worker processes import them too)."""
    return list(_LOADED)


def load_plugins(specs: Sequence[str] = ()) -> list[ModuleType]:
    """Import ``specs``, then those listed in ``DEBIASCL_PLUGINS``, then the entry points."""
    listed = [part.strip() for part in os.environ.get(PLUGINS_ENV, "").split(",")]
    modules = [load_plugin(spec) for spec in [*specs, *listed] if spec.strip()]
    modules += [
        _imported(f"{entry.name} = {entry.value}", entry.load)
        for entry in entry_points(group=ENTRY_POINT_GROUP)
    ]
    return modules
