"""Training methods behind one interface, one module each: simclr, dcl, hcl, triplet, wcl
(SPEC 2-3), cnc (cross-group contrast), erm, jtt, gce, gdro (SPEC 10).

:mod:`debiascl.methods.base` defines what a method is (:class:`Method`, its
:class:`MethodOptions`, :func:`register_method`); every other module is one method: its class,
its ``Options`` (settings, defaults and checks) and the helpers only it uses. Importing the
package registers the built-in methods; a new method is one module of the same shape, here or
in a plugin (README, "Adding a method").
"""

from debiascl.methods.base import (
    DebiasedOptions,
    Logs,
    Method,
    MethodOptions,
    SingleEncoderContrastive,
    bias_discovery_method,
    build_method,
    register_method,
)
from debiascl.methods.cnc import CrossGroupContrast, cross_group_contrast
from debiascl.methods.dcl import DCL
from debiascl.methods.erm import ERM, supervised_logs
from debiascl.methods.gce import GCE
from debiascl.methods.gdro import GroupDRO, group_dro_update
from debiascl.methods.hcl import HCL
from debiascl.methods.jtt import JTT
from debiascl.methods.simclr import SimCLR
from debiascl.methods.triplet import Triplet, TripletOptions, make_triplet_criterion
from debiascl.methods.wcl import WCL
from debiascl.registry import METHODS

__all__ = [
    "DCL",
    "ERM",
    "GCE",
    "HCL",
    "JTT",
    "METHODS",
    "WCL",
    "CrossGroupContrast",
    "DebiasedOptions",
    "GroupDRO",
    "Logs",
    "Method",
    "MethodOptions",
    "SimCLR",
    "SingleEncoderContrastive",
    "Triplet",
    "TripletOptions",
    "bias_discovery_method",
    "build_method",
    "cross_group_contrast",
    "group_dro_update",
    "make_triplet_criterion",
    "register_method",
    "supervised_logs",
]
