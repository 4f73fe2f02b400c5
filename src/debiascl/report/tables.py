"""Tables of runs: one flat row per results.json, Markdown/CSV/JSON files, and the mean ±
standard error over seeds of every metric (:func:`write_tables`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debiascl.metrics import mean_and_stderr
from debiascl.results import Evaluation, RunResults


@dataclass(frozen=True)
class EvaluationRow:
    """One row of a comparison's tables: the evaluation it shows, and its cells (the row of
    results.csv: labels, then the evaluation's metrics)."""

    evaluation: Evaluation
    cells: dict[str, Any]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of ``rows`` (columns in first-seen order)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += [
        "| " + " | ".join("" if row.get(c) is None else str(row[c]) for c in columns) + " |"
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def write_rows(rows: list[dict[str, Any]], stem: Path, markdown: str | None = None) -> list[Path]:
    """``rows`` as <stem>.md (``markdown`` when given), <stem>.csv and <stem>.json."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    md_path, csv_path, json_path = (stem.with_suffix(s) for s in (".md", ".csv", ".json"))
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    md_path.write_text(markdown_table(rows) if markdown is None else markdown)
    json_path.write_text(json.dumps(rows, indent=2))
    return [md_path, csv_path, json_path]


PER_PART_COLUMNS = {"per_class": "class", "per_group": "group"}
"""Per-class / per-group accuracy dicts of a results.json -> their column prefix."""


def flatten_results(results: RunResults) -> dict[str, Any]:
    """One flat table row of a ``results.json``: labels plus ``<evaluation>.<metric>`` values.

    The metrics are every scalar accuracy and each per-class and per-group accuracy, named
    ``class[y=0]`` and ``group[y=0,a=1]``; a class or group absent from the test split has no
    column (never 0). ``main.<metric>`` repeats the headline evaluation (the linear probe for
    contrastive methods, the own classifier for supervised ones); group-robust probes appear as
    ``probe_discovered.<metric>`` and ``probe_true.<metric>``.
    """
    row: dict[str, Any] = {
        key: results.label(key) for key in ("method", "dataset", "seed", "encoder", "supervised")
    }
    shown = [("main", results.headline)]
    shown += [(evaluation.key, evaluation) for evaluation in results.in_table_order()]
    for name, evaluation in shown:
        for metric, value in evaluation.metrics.items():
            if isinstance(value, float):
                row[f"{name}.{metric}"] = value
            elif metric in PER_PART_COLUMNS:
                prefix = PER_PART_COLUMNS[metric]
                row |= {f"{name}.{prefix}[{key}]": v for key, v in value.items()}
    return row


def write_tables(
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    group_by: Sequence[str] = ("method",),
    rows_stem: str = "runs",
    summary_rows: list[dict[str, Any]] | None = None,
    notes: str = "",
) -> list[Path]:
    """Per-run rows and their mean ± standard error over seeds, as Markdown, CSV and JSON.

    Args:
        rows: one flat dict per run (e.g. :func:`flatten_results`), holding the ``group_by``
            keys and numeric metrics; a metric missing from some runs is averaged over the
            runs that have it.
        out_dir: folder for ``<rows_stem>.{md,csv,json}`` (the rows as given) and
            ``summary.{md,csv,json}`` (per group: n runs, and per metric its mean and stderr;
            the Markdown shows ``mean ± stderr`` in percent for metrics in [0, 1], the mean
            alone for a group of one run, empty where no run of the group has the metric).
            Per-class / per-group metrics (names with "[", e.g. ``group[y=0,a=1]``) go to a
            second Markdown table, one row per metric and one column per group of runs, so the
            first stays readable however many groups the data has.
        group_by: keys identifying a group of runs (seeds are averaged within a group).
        rows_stem: file name stem of the per-run tables.
        summary_rows: the rows averaged into the summary (default: ``rows``), e.g. only the
            test rows of the grid points a comparison selected.
        notes: Markdown appended to ``summary.md`` (further sections).

    Returns:
        The six paths written.
    """
    if not rows:
        raise ValueError("write_tables needs at least one row")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = write_rows(rows, out_dir / rows_stem)
    rows = rows if summary_rows is None else summary_rows
    metrics = _metric_columns(rows, group_by)
    summary, readable = _summarise(rows, group_by, metrics)
    markdown = _summary_markdown(readable, group_by, [m for m in metrics if "[" in m])
    if notes:
        markdown += "\n" + notes
    return paths + write_rows(summary, out_dir / "summary", markdown)


def _metric_columns(rows: list[dict[str, Any]], group_by: Sequence[str]) -> list[str]:
    """The columns of ``rows`` that are averaged: numeric (or empty) in every row, not all
    booleans, neither a ``group_by`` key nor the seed."""
    return [
        key
        for key in dict.fromkeys(key for row in rows for key in row)
        if key not in group_by
        and key != "seed"
        and all(isinstance(r.get(key), int | float | type(None)) for r in rows)
        and not all(isinstance(r.get(key), bool | type(None)) for r in rows)
    ]


def _summarise(
    rows: list[dict[str, Any]], group_by: Sequence[str], metrics: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per group of ``rows`` (same ``group_by`` values): (its summary row: n runs and each
    metric's mean and stderr, its readable row: ``mean ± stderr`` text, in percent for
    metrics in [0, 1])."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(key) for key in group_by), []).append(row)
    summary, readable = [], []
    for labels, members in groups.items():
        entry: dict[str, Any] = dict(zip(group_by, labels, strict=True))
        entry["runs"] = len(members)
        shown = dict(entry)
        for metric in metrics:
            values = [r[metric] for r in members if r.get(metric) is not None]
            if values:
                mean, stderr = mean_and_stderr(values)
                entry[f"{metric}.mean"], entry[f"{metric}.stderr"] = mean, stderr
                scale = 100.0 if all(0.0 <= v <= 1.0 for v in values) else 1.0
                spread = f" ± {scale * stderr:.2f}" if len(values) > 1 else ""
                shown[metric] = f"{scale * mean:.2f}{spread}"
        summary.append(entry)
        readable.append(shown)
    return summary, readable


def _summary_markdown(
    readable: list[dict[str, Any]], group_by: Sequence[str], per_part: list[str]
) -> str:
    """summary.md: the scalar metrics of each group, then (``per_part``: the per-class /
    per-group metrics) one row per such metric and one column per group."""
    markdown = "Mean ± standard error over runs (percent for accuracies).\n\n"
    markdown += markdown_table(
        [{key: value for key, value in shown.items() if key not in per_part} for shown in readable]
    )
    if per_part:
        named = {" / ".join(str(shown[key]) for key in group_by): shown for shown in readable}
        transposed = [
            {"metric": metric} | {name: shown.get(metric) for name, shown in named.items()}
            for metric in per_part
        ]
        markdown += "\nPer-class and per-group accuracy (%), mean ± standard error over runs.\n\n"
        markdown += markdown_table(transposed)
    return markdown
