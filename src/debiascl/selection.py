"""Choosing and judging in a comparison: the grid point each method is reported at, and paired
differences to a reference method over seeds.

Both read results records (:class:`debiascl.results.RunResults`): the selection the val results
of every grid point x seed, the paired differences the test results of the reported points, each
judged by the :func:`debiascl.results.headline_metric` rule. Their Markdown is rendered by
:mod:`debiascl.report.text`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from debiascl.errors import DebiasclError
from debiascl.grid import select_point
from debiascl.results import RunResults, headline_metric
from debiascl.stats import paired_difference


@dataclass(frozen=True)
class Selection:
    """The grid point a method is reported at.

    Attributes:
        point: the point's name (:func:`debiascl.grid.point_name`).
        metric: the val metric of the main evaluation that chose it.
        score: its mean over the point's seeds (None where no val result holds it).
        points: the number of points in the method's grid.
    """

    point: str
    metric: str
    score: float | None
    points: int


SELECT_FALLBACK = "accuracy"
"""``--select auto``'s metric where the val split has no bias labels."""


def _main_metric(results: RunResults, metric: str) -> float | None:
    """``metric`` of a run's headline evaluation (None when it does not have it)."""
    value = results.headline.metrics.get(metric)
    return None if value is None else float(value)


def selection_metric(rule: str, val_results: Sequence[RunResults]) -> str:
    """The val metric a :data:`debiascl.choices.SELECT_RULES` rule stands for: ``auto`` is
    worst_group when any val result has group metrics (the val split has bias labels), else
    accuracy (:func:`debiascl.results.headline_metric`)."""
    if rule != "auto":
        return rule
    headlines = [results.headline.metrics for results in val_results]
    return headline_metric(headlines, fallback=SELECT_FALLBACK, any_holds=True)


def select_points(
    val_runs: Sequence[tuple[str, str, RunResults | None]], rule: str
) -> dict[str, Selection]:
    """Per method, the grid point with the best mean val score over its seeds.

    Args:
        val_runs: (method, point name, its val results or None) of every run of the comparison
            (every method x point x seed).
        rule: a :data:`debiascl.choices.SELECT_RULES` entry.

    Returns:
        method -> :class:`Selection` (a method with one point keeps it, scored or not).

    Raises:
        DebiasclError: a method with several points none of whose val results has the metric.
    """
    metric = selection_metric(rule, [results for *_, results in val_runs if results is not None])
    selections = {}
    for method in dict.fromkeys(method for method, *_ in val_runs):
        scores: dict[str, list[float]] = {}
        for run_method, point, results in val_runs:
            if run_method == method:
                values = scores.setdefault(point, [])
                value = None if results is None else _main_metric(results, metric)
                values += [] if value is None else [value]
        if len(scores) == 1:
            chosen = next(iter(scores))
        elif not any(scores.values()):
            raise DebiasclError(
                f"select {rule}: no val result of method '{method}' has {metric}; choose "
                "another --select"
            )
        else:
            chosen = select_point(scores)
        values = scores[chosen]
        mean = sum(values) / len(values) if values else None
        selections[method] = Selection(chosen, metric, mean, len(scores))
    return selections


def paired_differences(
    test_of: dict[tuple[str, int], RunResults], reference: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each method's mean paired difference to ``reference`` over their common seeds, on test.

    The metrics are accuracy and the headline metric of the main evaluation
    (:func:`debiascl.results.headline_metric`: worst-group accuracy, worst-class where the data
    has no bias labels); each difference has its 95% Student-t confidence interval
    (:func:`debiascl.stats.paired_difference`).

    Args:
        test_of: (method, seed) -> the test results of the point the method is reported at.
        reference: the reference method.

    Returns:
        (rows, notes): one row per method and metric (method, reference, metric, seeds, mean,
        low, high, confidence, detectable, text: the difference in percentage points with its
        interval, or "no detectable difference"); one-line notes for what was skipped (a missing
        reference, a method with fewer than 2 seeds in common with it).
    """
    metrics_of: dict[str, dict[int, Mapping[str, Any]]] = {}
    for (method, seed), results in test_of.items():
        metrics_of.setdefault(method, {})[seed] = results.headline.metrics
    if reference not in metrics_of:
        return [], [f"No paired differences: the reference method '{reference}' is not compared."]
    metrics = ("accuracy", headline_metric(m for s in metrics_of.values() for m in s.values()))
    base = metrics_of[reference]
    rows, notes = [], []
    for method, by_seed in metrics_of.items():
        common = sorted(set(by_seed) & set(base))
        if method == reference:
            continue
        if len(common) < 2:
            notes.append(
                f"No paired difference for {method}: {len(common)} seed(s) in common with "
                f"{reference}, 2 needed."
            )
            continue
        for metric in metrics:
            difference = paired_difference(
                {seed: by_seed[seed][metric] for seed in common},
                {seed: base[seed][metric] for seed in common},
            )
            rows.append(
                {
                    "method": method,
                    "reference": reference,
                    "metric": metric,
                    "seeds": difference.seeds,
                    "mean": difference.mean,
                    "low": difference.low,
                    "high": difference.high,
                    "confidence": difference.confidence,
                    "detectable": difference.detectable,
                    "text": difference.text(scale=100.0),
                }
            )
    return rows, notes
