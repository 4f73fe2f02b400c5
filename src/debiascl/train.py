"""The public ``debiascl.train``: called, it is :func:`debiascl.api.train`; as a module, it gives
:func:`train` and the driver lookup of :mod:`debiascl.training.run` (where they live, with what a
run writes) under the path they have always had."""

from debiascl.callable_module import make_callable
from debiascl.training.run import Driver, method_driver, train

__all__ = ["Driver", "method_driver", "train"]

make_callable(__name__)  # calling debiascl.train calls debiascl.api.train
