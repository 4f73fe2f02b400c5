"""debiascl: debiased contrastive representation learning (WCL, SimCLR, DCL, HCL, triplet).

Importing the package imports the modules that register the built-in methods, backbones,
heads, augmentations and data sets (:mod:`debiascl.registry`), so every part of it (the
config's choices first) sees them all.

The public API (:mod:`debiascl.api`): :func:`train`, :func:`discover`, :func:`evaluate`,
:func:`load_encoder` and :func:`load_classifier`, loaded on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from debiascl import data, methods, models  # noqa: F401  (they fill the registries)
from debiascl.errors import DebiasclError

_LAZY = {
    "train": "debiascl.train",
    "discover": "debiascl.discover",
    "evaluate": "debiascl.evaluate",
    "load_encoder": "debiascl.api",
    "load_classifier": "debiascl.api",
}
"""Public name -> the module that gives it, imported when the name is first used.
``train``, ``discover`` and ``evaluate`` are the modules of those names, which are callable
(:mod:`debiascl.callable_module`): ``debiascl.train(config, run_dir)`` is
:func:`debiascl.api.train`."""

__all__ = ["DebiasclError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """The public API names of :data:`_LAZY`, imported on first access."""
    if name not in _LAZY:
        raise AttributeError(f"module 'debiascl' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    return module if module.__name__.endswith(f".{name}") else getattr(module, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
