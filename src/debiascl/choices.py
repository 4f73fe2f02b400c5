"""The choices and defaults of evaluation and comparison that the command line shows, and the
check of a comparison's names.

They live apart from the modules that use them (discovery, evaluation, selection, compare:
all import torch), so that parsing arguments, ``--help`` and argument errors import nothing
heavy.
"""

from __future__ import annotations

from collections.abc import Sequence

from debiascl.errors import DebiasclError
from debiascl.registry import METHODS, check_dataset

DEFAULT_K = 10
"""Neighbours per sample of the bias discovery (SPEC 9)."""
DEFAULT_THRESHOLD = 0.5
"""The discovery flags samples whose conflict score exceeds it (SPEC 9)."""
SIGNALS = ("knn", "erm", "gce")
"""The discovery signals; ``erm`` and ``gce`` read the classifier of a run of that method."""
DEFAULT_SIGNAL = "knn"
"""The signal a comparison discovers with (``compare --signal``): knn reads E_b (the triplet run
of the seed, or WCL's and triplet's own); erm and gce the classifier of a short run of that
method (``train.groups_epochs`` epochs) planned per seed."""

SELECT_RULES = ("auto", "worst_group", "accuracy", "worst_class", "discovered_worst_group")
"""``--select``: the val metric of each run's main evaluation that picks a method's grid point.

auto: worst_group where the val split has bias labels, else accuracy; discovered_worst_group: the
worst accuracy over the groups the bias encoder discovered on val (no bias label used; needs the
discovered-groups probe)."""

DEFAULT_REFERENCE = "simclr"
"""The method that compare's paired differences are taken against."""

MAX_RUNS = 1000
"""A comparison planning more runs (methods x grid points x seeds) needs an explicit
``max_runs`` (``--max-runs``): a seed range such as 0-9999999 is a typo, not a plan."""


def check_comparison(dataset: str, methods: Sequence[str], seeds: Sequence[int]) -> None:
    """Check a comparison's data set, methods and seeds by name (imports nothing heavy).

    Raises:
        DebiasclError: an unknown data set or method, no method or seed, a negative seed, or an
            entry given twice.
    """
    check_dataset(dataset)
    if not methods:
        raise DebiasclError(f"methods: give at least one of {', '.join(METHODS)}")
    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise DebiasclError(
            f"methods: unknown method(s) {', '.join(unknown)}; available: {', '.join(METHODS)}"
        )
    if not seeds:
        raise DebiasclError("seeds: give at least one seed, e.g. 0,1,2")
    if any(seed < 0 for seed in seeds):
        raise DebiasclError(f"seeds: seeds must be >= 0, got {list(seeds)}")
    for name, values in (("methods", methods), ("seeds", seeds)):
        if len(set(values)) != len(values):
            raise DebiasclError(f"{name}: each entry may appear once, got {list(values)}")
