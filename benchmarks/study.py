"""Tables and the bias-strength plot of docs/study.md, from the study's comparison folders.

The study's runs are ordinary ``debiascl compare`` folders (the commands are in docs/study.md).
This script reads their ``results.csv`` and prints the Markdown tables of the study, and draws
the bias-strength curve:

    python benchmarks/study.py --points STUDY/digits-binary wcl \\
        --curve 0.8=STUDY/rho-0.8 0.9=STUDY/rho-0.9 0.95=STUDY/digits-binary \\
                0.99=STUDY/rho-0.99 0.995=STUDY/rho-0.995 --plot docs/study-rho.png

``--table FOLDER --metrics worst_class,accuracy``: one row per method at its reported point, each
metric for its main evaluation (plain probe, or a supervised method's own classifier) and the
discovered-groups probe, and its paired difference to SimCLR.
``--points FOLDER METHOD...``: each grid point of each method (e.g. WCL's weight forms) on test,
with the val score that selects among them and the paired difference of each to SimCLR at its
reported point.
``--curve``: worst-group accuracy of each method against rho (mean ± standard error over the
seeds the folders share), for the plain linear probe and the probe balanced over the discovered
groups.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt

from debiascl.metrics import mean_and_stderr
from debiascl.report.tables import markdown_table
from debiascl.stats import paired_difference

PLAIN = "linear probe (fast)"
DISCOVERED = "linear probe (fast), discovered groups (no bias labels)"
SUPERVISED = "own classifier (supervised)"
EVALUATIONS = {"plain probe": PLAIN, "discovered-groups probe": DISCOVERED}
CURVE_METHODS = ("simclr", "dcl", "wcl", "triplet")
WCL_PAPER_POINTS = ("default", "method.weight_form=paper")


def read_rows(folder: Path) -> list[dict[str, str]]:
    """The rows of a comparison folder's results.csv."""
    with (folder / "results.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def by_seed(
    rows: Iterable[dict[str, str]],
    method: str,
    evaluation: str,
    metric: str,
    split: str = "test",
    points: tuple[str, ...] = ("default",),
) -> dict[int, float]:
    """seed -> ``metric`` (in %) of one method, evaluation, split and grid point."""
    return {
        int(row["seed"]): 100 * float(row[metric])
        for row in rows
        if row["method"] == method
        and row["evaluation"] == evaluation
        and row.get("split", "test") == split
        and row.get("point", "default") in points
        and row.get(metric)
    }


def mean_text(values: Iterable[float]) -> str:
    mean, stderr = mean_and_stderr(list(values))
    return f"{mean:.2f} ± {stderr:.2f}"


def seeds_text(seeds: list[int]) -> str:
    """``0-9`` for a run of consecutive seeds, else ``0, 2, 5``."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def chosen_points(folder: Path) -> dict[str, str]:
    """method -> the grid point the comparison reports it at (from its summary.json)."""
    rows = json.loads((folder / "summary.json").read_text())
    return {row["method"]: row.get("point", "default") for row in rows}


def test_columns(
    rows: list[dict[str, str]], method: str, point: str, main: str, metrics: Iterable[str]
) -> dict[str, str]:
    """``<metric>: main`` and ``<metric>: discovered`` on test, mean ± standard error over the
    seeds of one method's point (blank where that evaluation has no value)."""
    columns = {}
    for metric in metrics:
        for label, evaluation in (("main", main), ("discovered", DISCOVERED)):
            values = by_seed(rows, method, evaluation, metric, points=(point,))
            columns[f"{metric}: {label}"] = mean_text(values.values()) if values else ""
    return columns


def simclr_difference(
    rows: list[dict[str, str]],
    chosen: dict[str, str],
    method: str,
    point: str,
    main: str,
    metric: str,
) -> str:
    """The paired test ``metric`` difference of a method's point (its ``main`` evaluation) to
    SimCLR's plain probe at SimCLR's reported point, over the seeds both have."""
    ours = by_seed(rows, method, main, metric, points=(point,))
    simclr = by_seed(rows, "simclr", PLAIN, metric, points=(chosen["simclr"],))
    return paired_difference(ours, simclr).text()


def points_table(folder: Path, method: str, metric: str = "worst_group") -> str:
    """Markdown: each grid point of ``method`` on test (plain and discovered probes) over the
    seeds it has, its val score over the seeds every point has (what selects, also with
    ``--select-seeds``), and its paired ``metric`` difference to SimCLR at SimCLR's reported
    point (plain probe; blank for SimCLR itself)."""
    rows = read_rows(folder)
    chosen = chosen_points(folder)
    points = sorted({row["point"] for row in rows if row["method"] == method})
    main = main_evaluation(rows, method)
    val_of = {point: by_seed(rows, method, main, metric, "val", (point,)) for point in points}
    shared = sorted(set.intersection(*(set(val) for val in val_of.values())))
    table = []
    for point in points:
        mark = " (reported)" if point == chosen[method] else ""
        line = {f"{method} point": point + mark}
        line["seeds"] = len(val_of[point])
        selects = f"val {metric} over seeds {seeds_text(shared)} (selects)"
        line[selects] = mean_text(val_of[point][seed] for seed in shared)
        line |= test_columns(rows, method, point, main, (metric, "accuracy"))
        is_reference = method == "simclr" and point == chosen["simclr"]
        line[f"{metric} - simclr"] = (
            "" if is_reference else simclr_difference(rows, chosen, method, point, main, metric)
        )
        table.append(line)
    return markdown_table(table)


def main_evaluation(rows: list[dict[str, str]], method: str) -> str:
    """The label of a method's main evaluation: its own classifier, else the plain probe."""
    labels = {row["evaluation"] for row in rows if row["method"] == method}
    return SUPERVISED if SUPERVISED in labels else PLAIN


def methods_table(folder: Path, metrics: tuple[str, ...]) -> str:
    """Markdown: per method at its reported point, each metric on test (mean ± standard error
    over seeds) for its main evaluation and the discovered-groups probe, then its paired
    difference to SimCLR (main evaluations) with the 95% interval."""
    rows = read_rows(folder)
    chosen = chosen_points(folder)
    table = []
    for method, point in chosen.items():
        main = main_evaluation(rows, method)
        line = {"method": method if point == "default" else f"{method} ({point})"}
        line |= test_columns(rows, method, point, main, metrics)
        for metric in metrics if method != "simclr" else ():
            line[f"{metric} - simclr"] = simclr_difference(
                rows, chosen, method, point, main, metric
            )
        table.append(line)
    return markdown_table(table)


def curve(folders: dict[float, Path]) -> dict[str, dict[str, list[tuple[float, float, float]]]]:
    """evaluation label -> method -> [(rho, mean, stderr)] of test worst-group accuracy (%)
    over the seeds every folder has."""
    rows_of = {rho: read_rows(folder) for rho, folder in folders.items()}
    seeds = set.intersection(*({int(row["seed"]) for row in rows} for rows in rows_of.values()))
    points = {}
    for label, evaluation in EVALUATIONS.items():
        points[label] = {}
        for method in CURVE_METHODS:
            line = []
            for rho, rows in sorted(rows_of.items()):
                wanted = WCL_PAPER_POINTS if method == "wcl" else ("default",)
                values = by_seed(rows, method, evaluation, "worst_group", points=wanted)
                mean, stderr = mean_and_stderr([values[seed] for seed in sorted(seeds)])
                line.append((rho, mean, stderr))
            points[label][method] = line
    return points


def curve_table(points: dict[str, dict[str, list[tuple[float, float, float]]]]) -> str:
    """Markdown: one row per (rho, method), one column per evaluation."""
    table = []
    labels = list(points)
    first = points[labels[0]]
    for index, (rho, _, _) in enumerate(next(iter(first.values()))):
        for method in first:
            line = {"rho": rho, "method": method}
            for label in labels:
                _, mean, stderr = points[label][method][index]
                line[f"worst group: {label}"] = f"{mean:.2f} ± {stderr:.2f}"
            table.append(line)
    return markdown_table(table)


def plot_curve(points: dict[str, dict[str, list[tuple[float, float, float]]]], path: Path) -> None:
    """One panel per evaluation: worst-group accuracy vs rho, one line per method."""
    figure, axes = plt.subplots(1, len(points), figsize=(5 * len(points), 4), sharey=True)
    for axis, (label, methods) in zip(axes, points.items(), strict=True):
        for method, line in methods.items():
            rhos, means, errors = zip(*line, strict=True)
            axis.errorbar(rhos, means, yerr=errors, marker="o", capsize=3, label=method)
        axis.set_title(label)
        axis.set_xlabel("rho (fraction of bias-aligned training images)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test worst-group accuracy (%)")
    axes[0].legend()
    figure.suptitle("biased-digits-binary: mean ± standard error over seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--points", nargs="+", default=[], metavar="FOLDER METHOD", help="a grid's folder, methods"
    )
    parser.add_argument("--metric", default="worst_group", help="the metric of --points tables")
    parser.add_argument("--table", type=Path, help="a comparison folder: one row per method")
    parser.add_argument(
        "--metrics",
        default="worst_group,accuracy",
        help="comma-separated metrics of the --table columns (default: worst_group,accuracy)",
    )
    parser.add_argument("--curve", nargs="+", default=[], metavar="RHO=FOLDER")
    parser.add_argument("--plot", type=Path, help="where the bias-strength plot goes")
    args = parser.parse_args()
    if args.table:
        print(methods_table(args.table, tuple(args.metrics.split(","))), end="\n\n")
    if args.points:
        folder, *methods = args.points
        for method in methods:
            print(points_table(Path(folder), method, args.metric), end="\n\n")
    if args.curve:
        pairs = (text.split("=", 1) for text in args.curve)
        folders = {float(rho): Path(folder) for rho, folder in pairs}
        points = curve(folders)
        print(curve_table(points))
        if args.plot:
            plot_curve(points, args.plot)
            print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
