"""debiascl: debiased contrastive representation learning (WCL, SimCLR, DCL, HCL, triplet).

Importing the package is light: it imports neither torch nor the modules that define the
methods, models and data sets. Their names are declared in :mod:`debiascl.registry` (so the
config's choices and the command line's listings need no import), and a registry imports the
module of a name when its entry is used. The public names below load on first access
(PEP 562), e.g. ``debiascl.methods`` or ``from debiascl import data``.

The public API (:mod:`debiascl.api`): :func:`train`, :func:`discover`, :func:`evaluate`,
:func:`load_encoder` and :func:`load_classifier`, loaded on first use as well.
"""

from __future__ import annotations

import importlib
from typing import Any

from debiascl.errors import DebiasclError

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "data": "debiascl.data",
    "methods": "debiascl.methods",
    "models": "debiascl.models",
    "train": "debiascl.train",
    "discover": "debiascl.discover",
    "evaluate": "debiascl.evaluate",
    "load_encoder": "debiascl.api",
    "load_classifier": "debiascl.api",
}
"""Public name -> the module that defines it (a module's own name: the module itself).
``train``, ``discover`` and ``evaluate`` are the modules of those names, which are callable
(:mod:`debiascl.callable_module`): ``debiascl.train(config, run_dir)`` is
:func:`debiascl.api.train`."""

_SUBPACKAGES = ("data", "methods", "models")
"""Names of :data:`_LAZY` that are sub-packages: reachable as attributes, not the public API."""

__all__ = ["DebiasclError", "__version__", *(name for name in _LAZY if name not in _SUBPACKAGES)]


def __getattr__(name: str) -> Any:
    """Import the module behind a public name of :data:`_LAZY` on first access."""
    if name not in _LAZY:
        raise AttributeError(f"module 'debiascl' has no attribute '{name}'")
    module = importlib.import_module(_LAZY[name])
    return module if module.__name__.rpartition(".")[2] == name else getattr(module, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
