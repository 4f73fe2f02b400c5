"""Modules that are also the public API function of their name.

``debiascl.train``, ``debiascl.evaluate`` and ``debiascl.discover`` are modules (their
functions, e.g. ``debiascl.evaluate.evaluate_run``, keep working; ``train`` and ``discover``
re-export :mod:`debiascl.training.run` and :mod:`debiascl.discovery.run`, where a test patches
them) and, called, are the public API functions :func:`debiascl.api.train`,
:func:`debiascl.api.evaluate` and :func:`debiascl.api.discover`: Python sets a package's
attribute to its submodule when the submodule is imported, so a function of the same name
would be replaced by the module the moment anything imports it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A module whose call is the function of its name in :mod:`debiascl.api`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call ``debiascl.api.<this module's name>(*args, **kwargs)``."""
        return getattr(importlib.import_module("debiascl.api"), self.api_name)(*args, **kwargs)

    @property
    def api_name(self) -> str:
        """The name of the API function: the module's last name component."""
        return self.__name__.rpartition(".")[2]


def make_callable(module_name: str) -> None:
    """Make the (imported) module ``module_name`` a :class:`CallableModule`."""
    sys.modules[module_name].__class__ = CallableModule
