"""The public ``debiascl.discover``: called, it is :func:`debiascl.api.discover` (a finished
run's bias discovery); as a module, it gives the functions of the per-run pipeline
(:mod:`debiascl.discovery.run`, where they live) under the path they have always had."""

from debiascl.callable_module import make_callable
from debiascl.discovery.run import (
    FoundBias,
    bias_encoder_key,
    check_bias_run,
    check_same_data,
    check_signal,
    default_signal,
    discover_run,
    ensure_discovery,
    find_bias,
    record_discovery,
)

__all__ = [
    "FoundBias",
    "bias_encoder_key",
    "check_bias_run",
    "check_same_data",
    "check_signal",
    "default_signal",
    "discover_run",
    "ensure_discovery",
    "find_bias",
    "record_discovery",
]

make_callable(__name__)  # calling debiascl.discover calls debiascl.api.discover
