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
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from debiascl.errors import DebiasclError

PLUGINS_ENV = "DEBIASCL_PLUGINS"
ENTRY_POINT_GROUP = "debiascl.plugins"


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
        DebiasclError: the file or module does not exist.
    """
    if spec.endswith(".py"):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise DebiasclError(f"plugin '{spec}': no such file")
        return _import_file(path)
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as error:
        if error.name is not None and spec.startswith(error.name):
            raise DebiasclError(
                f"plugin '{spec}': no module of that name on the Python path"
            ) from None
        raise


def load_plugins(specs: Sequence[str] = ()) -> list[ModuleType]:
    """Import ``specs``, then those listed in ``DEBIASCL_PLUGINS``, then the entry points."""
    listed = [part.strip() for part in os.environ.get(PLUGINS_ENV, "").split(",")]
    modules = [load_plugin(spec) for spec in [*specs, *listed] if spec.strip()]
    modules += [entry.load() for entry in entry_points(group=ENTRY_POINT_GROUP)]
    return modules
