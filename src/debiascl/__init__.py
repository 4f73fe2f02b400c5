"""debiascl: debiased contrastive representation learning (WCL, SimCLR, DCL, HCL, triplet).

Importing the package imports the modules that register the built-in methods, backbones,
heads, augmentations and data sets (:mod:`debiascl.registry`), so every part of it (the
config's choices first) sees them all.
"""

__version__ = "0.1.0"

from debiascl import data, methods, models  # noqa: F401  (they fill the registries)
from debiascl.errors import DebiasclError

__all__ = ["DebiasclError", "__version__"]
