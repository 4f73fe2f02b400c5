"""The choices and defaults of evaluation and comparison that the command line shows.

They live apart from the modules that use them (discovery, evaluation, selection, compare:
all import torch), so that parsing arguments, ``--help`` and argument errors import nothing
heavy.
"""

from __future__ import annotations

DEFAULT_K = 10
"""Neighbours per sample of the bias discovery (SPEC 9)."""
DEFAULT_THRESHOLD = 0.5
"""The discovery flags samples whose conflict score exceeds it (SPEC 9)."""

PROBE_GROUPS = {
    "discovered": "discovered groups (class x E_b flag; no bias label used)",
    "true": "true groups (class x bias attribute; oracle, uses bias labels)",
}
"""Group-robust probes: name -> what balances its loss (``results.json`` key ``probe_<name>``)."""

SELECT_RULES = ("auto", "worst_group", "accuracy", "worst_class", "discovered_worst_group")
"""``--select``: the val metric of each run's main evaluation that picks a method's grid point.

auto: worst_group where the val split has bias labels, else accuracy; discovered_worst_group: the
worst accuracy over the groups the bias encoder discovered on val (no bias label used; needs the
discovered-groups probe)."""

DEFAULT_REFERENCE = "simclr"
"""The method that compare's paired differences are taken against."""
