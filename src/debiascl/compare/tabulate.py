"""Tabulating a comparison: the rows of every finished run, the tables, paired differences,
trade-off plot and probes table of a comparison folder (layout: :mod:`debiascl.compare`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debiascl.atomic import remove_path, write_text_atomic
from debiascl.compare.plan import PlannedRun
from debiascl.grid import point_name
from debiascl.metrics import mean_and_stderr
from debiascl.report.labels import evaluation_label, short_name
from debiascl.report.plots import plot_tradeoff
from debiascl.report.tables import EvaluationRow, flatten_results, markdown_table, write_rows
from debiascl.report.tables import write_tables as write_report_tables
from debiascl.report.text import paired_table, selection_table
from debiascl.results import RunResults, headline_metric
from debiascl.selection import Selection, paired_differences, select_points

RESULTS_STEM = "results"
SUMMARY_STEM = "summary"
PLOT_NAME = "tradeoff.png"
PROBES_TABLE = "probes.md"
PAIRED_STEM = "paired"

ResultsOf = dict[Path, dict[str, RunResults]]
"""Run directory -> split -> the finished run's results."""


def results_rows(results: RunResults) -> list[EvaluationRow]:
    """Table rows of one run: its main evaluation, then each group-robust probe.

    Each row's cells have method, seed, the evaluation's label
    (:func:`debiascl.report.labels.evaluation_label`) and its metrics:
    :func:`debiascl.report.flatten_results`' ``<evaluation>.*`` values without the prefix, the
    scalars and the per-class / per-group accuracies (``class[y=0]``, ``group[y=0,a=1]``; a
    group absent from the run's test split has no column in its row), and
    ``training_groups``: the ``train.groups`` the run trained on (none, discovered, true). The
    discovered-groups row adds the discovery's quality on the train split where the data has
    bias labels (``discovery_precision``, ``discovery_recall``, ``discovery_auroc``).
    """
    flat = flatten_results(results)
    shown = [("main", results.headline)]
    shown += [(probe.key, probe) for probe in results.group_probes]
    quality = results.discovery_quality
    rows = []
    for name, evaluation in shown:
        cells: dict[str, Any] = {
            "method": results.method,
            "seed": results.seed,
            "evaluation": evaluation_label(evaluation),
            "training_groups": results.training_groups,
        }
        prefix = f"{name}."
        cells |= {key.removeprefix(prefix): v for key, v in flat.items() if key.startswith(prefix)}
        if evaluation.reads_discovery and quality.get("bias_labels"):
            cells |= {f"discovery_{key}": quality[key] for key in ("precision", "recall", "auroc")}
        rows.append(EvaluationRow(evaluation, cells))
    return rows


def grid_rows(run: PlannedRun, results: RunResults) -> list[EvaluationRow]:
    """:func:`results_rows` of one evaluation of a grid's run, with its ``point`` (name) after
    the method and its ``split`` after the seed."""
    labels = {"method": run.method, "point": point_name(run.point), "seed": run.seed}
    labels["split"] = results.split
    return [EvaluationRow(row.evaluation, labels | row.cells) for row in results_rows(results)]


def write_tables(
    rows: list[dict[str, Any]],
    out_dir: Path,
    summary_rows: list[dict[str, Any]] | None = None,
    notes: str = "",
) -> list[Path]:
    """``results.{md,csv,json}`` (every row) and ``summary.{md,csv,json}`` (mean ± stderr of
    ``summary_rows``, default ``rows``, per method, grid point where rows have one, and
    evaluation); ``notes``: further Markdown sections of summary.md."""
    point = ("point",) if any("point" in row for row in rows) else ()
    return write_report_tables(
        rows,
        out_dir,
        group_by=("method", *point, "evaluation"),
        rows_stem=RESULTS_STEM,
        summary_rows=summary_rows,
        notes=notes,
    )


TRAINED_ON = {
    "none": "no groups",
    "discovered": "discovered groups (no bias label)",
    "true": "true groups (oracle: bias labels)",
}
"""probes.md's ``trained on`` column: which groups (``train.groups``) the training read."""


def probes_table(rows: Sequence[EvaluationRow]) -> str:
    """Markdown: per method, worst-group and average accuracy of each probe, and the discovery.

    One row per method; the groups its training read (:data:`TRAINED_ON`), then columns
    ``<metric>: <evaluation>`` (plain, discovered, true, class, val, or own classifier:
    :func:`debiascl.report.labels.short_name`) in percent, mean ± standard error over seeds,
    then the discovery's precision, recall and AUROC (train split) where measured.
    """
    short: dict[str, str] = {}
    for row in rows:
        short.setdefault(row.cells["evaluation"], short_name(row.evaluation))
    cells = [row.cells for row in rows]
    metrics = (headline_metric(cells), "accuracy")
    table = []
    for method in dict.fromkeys(row["method"] for row in cells):
        groups = next(r.get("training_groups", "none") for r in cells if r["method"] == method)
        line: dict[str, Any] = {"method": method, "trained on": TRAINED_ON[groups]}
        for metric in metrics:
            for evaluation, name in short.items():
                values = [
                    100 * r[metric]
                    for r in cells
                    if (r["method"], r["evaluation"]) == (method, evaluation) and metric in r
                ]
                line[f"{metric}: {name}"] = _mean_text(values)
        for key in ("discovery_precision", "discovery_recall", "discovery_auroc"):
            values = [
                100 * r[key] for r in cells if r["method"] == method and r.get(key) is not None
            ]
            if values:
                line[key] = _mean_text(values)
        table.append(line)
    return PROBES_INTRO + markdown_table(table)


PROBES_INTRO = (
    "Mean ± standard error over seeds (%). Linear probes on the frozen representation: "
    "plain; discovered = balanced over the groups a bias encoder found (no bias label used); "
    "true = balanced over the true groups (oracle: uses the bias labels); class = balanced "
    "over the classes alone (no bias label used); val = fitted on the val split, unbalanced "
    "(the held-out-data ablation). Supervised methods: their own classifier, and the "
    "probes on its features.\n\n"
)
"""The opening paragraph of probes.md (:func:`probes_table`)."""


def _mean_text(values: list[float]) -> str:
    if not values:
        return ""
    mean, stderr = mean_and_stderr(values)
    return f"{mean:.2f} ± {stderr:.2f}" if len(values) > 1 else f"{mean:.2f}"


def selections_of(
    runs: Sequence[PlannedRun],
    results_of: ResultsOf,
    select: str,
    select_seeds: Sequence[int] | None,
) -> dict[str, Selection]:
    """Each method's reported point: the best mean ``select`` score over the val results of
    its finished runs (only those of ``select_seeds`` when given)."""
    scored = [
        run
        for run in runs
        if run.run_dir in results_of and (select_seeds is None or run.seed in select_seeds)
    ]
    return select_points(
        [(run.method, point_name(run.point), results_of[run.run_dir].get("val")) for run in scored],
        select,
    )


@dataclass(frozen=True)
class TableSettings:
    """What a comparison's tables are made of besides its runs' results.

    Attributes:
        dataset: the data set (the plot's title).
        grid: whether the runs have grid points (each method is then reported at the point
            ``select`` picks on val).
        select: a :data:`debiascl.choices.SELECT_RULES` entry.
        select_seeds: the seeds whose val results choose the points (None: every seed).
        reference: the method the paired differences are to.
        probes: whether to write the probes table (group-robust probes were planned).
    """

    dataset: str
    grid: bool
    select: str
    select_seeds: Sequence[int] | None
    reference: str
    probes: bool


def write_comparison(
    runs: list[PlannedRun], results_of: ResultsOf, out_dir: Path, tables: TableSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write the tables, paired differences, plot and probes table of the finished ``runs``
    (the grid points chosen on the val results of ``tables.select_seeds``, default every seed).

    Returns:
        (the rows of results.csv, the rows summarised: the test rows of the reported points).
    """
    done = [run for run in runs if run.run_dir in results_of]
    if not done:
        return [], []
    sections = []
    reported = done
    if tables.grid:
        selections = selections_of(done, results_of, tables.select, tables.select_seeds)
        reported = [run for run in done if point_name(run.point) == selections[run.method].point]
        sections.append(selection_table(selections, tables.select, tables.select_seeds))
        rows = [
            row
            for run in done
            for split in run.splits
            for row in grid_rows(run, results_of[run.run_dir][split])
        ]
        summary_rows = [
            row for run in reported for row in grid_rows(run, results_of[run.run_dir]["test"])
        ]
    else:
        rows = [row for run in done for row in results_rows(results_of[run.run_dir]["test"])]
        summary_rows = rows
    paired, notes = paired_differences(
        {(run.method, run.seed): results_of[run.run_dir]["test"] for run in reported},
        tables.reference,
    )
    sections.append(paired_table(paired, notes))
    cells, summary_cells = [row.cells for row in rows], [row.cells for row in summary_rows]
    write_tables(cells, out_dir, summary_cells, notes="\n".join(sections))
    _write_paired(paired, notes, out_dir)
    title = f"{tables.dataset}: mean ± stderr over seeds"
    plot_tradeoff(summary_rows, out_dir / PLOT_NAME, title=title)
    if tables.probes:
        write_text_atomic(out_dir / PROBES_TABLE, probes_table(summary_rows))
    return cells, summary_cells


def _write_paired(paired: list[dict[str, Any]], notes: list[str], out_dir: Path) -> None:
    """Write the paired differences (``paired.{md,csv,json}``), or remove those of an earlier
    comparison in this folder when there are none."""
    if paired:
        write_rows(paired, out_dir / PAIRED_STEM, paired_table(paired, notes))
    else:
        for suffix in (".md", ".csv", ".json"):
            remove_path(out_dir / f"{PAIRED_STEM}{suffix}")
