"""debiascl: debiased contrastive representation learning (WCL, SimCLR, DCL, HCL, triplet)."""

from debiascl.errors import DebiasclError

__version__ = "0.1.0"
__all__ = ["DebiasclError", "__version__"]
