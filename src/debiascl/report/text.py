"""The text a comparison and an evaluation print or write, rendered from their records: a run's
results as a text table (:func:`format_results`), the grid points chosen
(:func:`selection_table`) and the paired differences (:func:`paired_table`) in Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from debiascl.evaluate import SUMMARY_METRICS
from debiascl.report.tables import markdown_table
from debiascl.results import RunResults
from debiascl.selection import Selection


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:6.2f}"


def format_results(results: RunResults) -> str:
    """A readable text table of the summary metrics (percent) of each evaluation in ``results``."""
    columns = results.in_table_order()
    header = (
        f"{results.method} on {results.label('dataset')} {results.split} split "
        f"(seed {results.seed}, "
        f"encoder E_{results.label('encoder')}); main result: {results.main}"
    )
    lines = [header]
    lines += [f"  {e.key:<16} = {e.description}" for e in columns]
    lines.append(f"{'metric (%)':<24}" + "".join(f"{e.key:>18}" for e in columns))
    for metric in SUMMARY_METRICS:
        values = [e.metrics.get(metric) for e in columns]
        if all(value is None for value in values):
            continue
        lines.append(f"{metric:<24}" + "".join(f"{_percent(v):>18}" for v in values))
    main = results.headline.metrics
    if "worst_group_name" in main:
        lines.append(f"worst group ({results.main}): {main['worst_group_name']}")
    quality = results.discovery_quality
    if quality.get("bias_labels"):
        lines.append(
            "discovery (train, graded with the bias labels it did not use): "
            + ", ".join(
                f"{name} {_percent(quality[name]).strip()}"
                for name in ("precision", "recall", "auroc")
            )
        )
    if main.get("absent_groups"):
        split = results.split
        lines.append(f"absent groups (no {split} sample): {', '.join(main['absent_groups'])}")
    return "\n".join(lines)


def selection_table(
    selections: dict[str, Selection], rule: str, select_seeds: Sequence[int] | None = None
) -> str:
    """Markdown: the grid point each method is reported at and its mean val score (over
    ``select_seeds`` when the points were chosen on those seeds only)."""
    metric = next(iter(selections.values())).metric
    seeds = "seeds" if select_seeds is None else f"seeds {', '.join(map(str, select_seeds))}"
    rows = [
        {
            "method": method,
            "reported point": selection.point,
            "points in grid": selection.points,
            f"val {metric} (mean, %)": "-"
            if selection.score is None
            else f"{100 * selection.score:.2f}",
        }
        for method, selection in selections.items()
    ]
    return (
        f"Grid points reported on test: per method the point with the highest mean over "
        f"{seeds} of the main evaluation's val {metric} (--select {rule}).\n\n"
        + markdown_table(rows)
    )


def paired_table(rows: list[dict[str, Any]], notes: list[str]) -> str:
    """Markdown of :func:`debiascl.selection.paired_differences`: one row per method, one
    column per metric."""
    text = ""
    if rows:
        reference = rows[0]["reference"]
        text = (
            f"Paired difference to {reference} on test over the seeds both have (percentage "
            'points): mean [95% Student-t confidence interval]; "no detectable difference" '
            "where the interval covers 0.\n\n"
        )
        table: dict[str, dict[str, Any]] = {}
        for row in rows:
            line = table.setdefault(row["method"], {"method": row["method"], "seeds": row["seeds"]})
            line[f"{row['metric']} - {reference}"] = row["text"]
        text += markdown_table(list(table.values()))
    return text + ("\n" if text and notes else "") + "".join(f"{note}\n" for note in notes)
