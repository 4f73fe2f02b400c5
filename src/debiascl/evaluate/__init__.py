"""Linear evaluation of a trained run: linear probe, weighted kNN and group metrics (SPEC 7).

Representations h = f(x) of the chosen encoder are extracted ONCE per split (no augmentation,
eval mode) and frozen; the linear probe and the kNN classifier are trained on the train split's
features and scored on the test split (or, with ``split="val"``, on the val split, e.g. for
model selection or to report on val as the WCL paper does) with
:func:`debiascl.metrics.group_metrics`. Supervised methods (``method.supervised``) are
additionally scored on their own classifier's predictions, which is their main result. Every
number in ``results.json`` carries a protocol label, so a linear evaluation is never confused
with the trainer's online kNN monitor. Every probe an evaluation fits is saved in the run
directory (:func:`debiascl.rundir.probe_path`, :func:`save_probe`), so ``debiascl export`` ships
exactly the probe that was scored.

The package's modules, whose public names it re-exports:

- :mod:`~debiascl.evaluate.probes`: the linear probe (:class:`ProbeSpec`,
  :func:`fit_linear_probe`, :class:`LinearProbe`, the protocols) and its saved files;
- :mod:`~debiascl.evaluate.loaded_run`: a finished run loaded once (:func:`load_run`), its
  features extracted once per split (:meth:`LoadedRun.features`);
- :mod:`~debiascl.evaluate.probe_groups`: the groups that balance a group-robust probe, one
  registered function per kind (:func:`register_probe_groups`);
- :mod:`~debiascl.evaluate.evaluation`: :func:`evaluate_splits` and :func:`evaluate_run`.

The module is also callable: ``debiascl.evaluate(run_dir, ...)`` is :func:`debiascl.api.evaluate`
(:mod:`debiascl.callable_module`).
"""

from __future__ import annotations

from debiascl.callable_module import make_callable
from debiascl.evaluate.evaluation import (
    SUMMARY_METRICS,
    evaluate_run,
    evaluate_splits,
)
from debiascl.evaluate.loaded_run import LoadedRun, load_run
from debiascl.evaluate.probe_groups import (
    ProbeGroupInputs,
    probe_groups_of,
    register_probe_groups,
)
from debiascl.evaluate.probes import (
    LinearProbe,
    ProbeData,
    ProbeSpec,
    fit_linear_probe,
    linear_probe,
    probe_digest,
    read_probe,
    register_probe_protocol,
    save_probe,
)

__all__ = [
    "SUMMARY_METRICS",
    "LinearProbe",
    "LoadedRun",
    "ProbeData",
    "ProbeGroupInputs",
    "ProbeSpec",
    "evaluate_run",
    "evaluate_splits",
    "fit_linear_probe",
    "linear_probe",
    "load_run",
    "probe_digest",
    "probe_groups_of",
    "read_probe",
    "register_probe_groups",
    "register_probe_protocol",
    "save_probe",
]

make_callable(__name__)  # calling debiascl.evaluate calls debiascl.api.evaluate
