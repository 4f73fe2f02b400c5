"""Tables of the training-on-groups study (README "Training on groups", issue 23), from its
comparison folders.

Each benchmark of the study is a set of ordinary ``debiascl compare`` folders that share a prefix
(the commands are in README): ``PREFIX-base`` (erm, jtt, simclr, wcl), ``PREFIX-sampling``
(erm, simclr, wcl on discovered groups, group-balanced sampling), ``PREFIX-weighting`` (simclr,
wcl, group-weighted loss), ``PREFIX-cnc`` (the cross-group contrast, its sampling chosen on val's
discovered groups), ``PREFIX-gdro`` (GroupDRO on discovered groups), ``PREFIX-gdro-true``
(GroupDRO on the true groups: the oracle), and ``PREFIX-gdro-knn`` / ``PREFIX-gdro-erm``
(GroupDRO on the groups of the other discovery signals; ``PREFIX-gce`` stands in for
``PREFIX-gdro`` on a benchmark studied with one folder). A missing folder is left out.

    python benchmarks/groups_study.py --recipes STUDY/d95 --evaluate-val
    python benchmarks/groups_study.py --signals d95=STUDY/d95 patch=STUDY/patch

``--recipes PREFIX``: one row per training recipe: which groups its training read, the
worst-group and average test accuracy of its headline evaluation (a supervised method's own
classifier, else the plain linear probe), the worst group of its class-balanced, discovered and
val-trained probes, and its paired difference over seeds (95% Student-t interval) to JTT
(supervised recipes) or to SimCLR's plain probe (contrastive recipes). Then the label-free
choice among the supervised recipes that use no bias label: the one with the best mean val
worst-group accuracy over val's *discovered* groups (``discovered_worst_group``), compared with
JTT and with the true-group GroupDRO oracle. ``--evaluate-val`` first evaluates those runs on val
(``debiascl eval RUN --split val --probe-groups discovered``) where they have no val results.
``--signals NAME=PREFIX ...``: per benchmark and discovery signal, the discovery's precision,
recall and AUROC on train (graded with the bias labels it did not use) and the worst group of
GroupDRO trained on that signal's groups.
``--probe-gap FOLDER METHOD``: the discovered-groups probe minus the true-groups probe (worst
group, paired over seeds) and the discovery's quality.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from debiascl.metrics import mean_and_stderr
from debiascl.report.tables import markdown_table
from debiascl.stats import paired_difference

PLAIN = "linear probe (fast)"
OWN = "own classifier (supervised)"
PROBES = {
    "class": f"{PLAIN}, class-balanced (no bias labels)",
    "discovered": f"{PLAIN}, discovered groups (no bias labels)",
    "val": f"{PLAIN}, trained on val (no bias labels)",
}
RECIPES = (
    # label, folder suffix, method, trained on
    ("ERM", "base", "erm", "no groups"),
    ("JTT", "base", "jtt", "its own error set"),
    ("ERM + balanced sampling", "sampling", "erm", "discovered"),
    ("GroupDRO", "gdro", "gdro", "discovered"),
    ("GroupDRO, true groups (oracle)", "gdro-true", "gdro", "true (bias labels)"),
    ("SimCLR", "base", "simclr", "no groups"),
    ("WCL", "base", "wcl", "no groups"),
    ("SimCLR + balanced sampling", "sampling", "simclr", "discovered"),
    ("WCL + balanced sampling", "sampling", "wcl", "discovered"),
    ("SimCLR + group-weighted loss", "weighting", "simclr", "discovered"),
    ("WCL + group-weighted loss", "weighting", "wcl", "discovered"),
    ("CnC cross-group contrast", "cnc", "cnc", "discovered"),
)
LABEL_FREE = ("ERM + balanced sampling", "GroupDRO")
"""The supervised recipes that train on discovered groups: the label-free choice is among them."""
SIGNAL_FOLDERS = {"knn": ("gdro-knn",), "erm": ("gdro-erm",), "gce": ("gdro", "gce")}
"""signal -> the folder suffixes (first found) whose gdro runs trained on its groups."""


def read_rows(folder: Path) -> list[dict[str, str]]:
    """The test rows of a comparison folder's results.csv (none when the folder is missing); in
    a grid, those of each method's reported point only (its summary.json)."""
    path = folder / "results.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "point" in rows[0]:
        summary = json.loads((folder / "summary.json").read_text())
        reported = {(row["method"], row["point"]) for row in summary}
        rows = [r for r in rows if r["split"] == "test" and (r["method"], r["point"]) in reported]
    return rows


def by_seed(
    rows: list[dict[str, str]], method: str, evaluation: str, metric: str
) -> dict[int, float]:
    """seed -> ``metric`` (in %) of one method's evaluation on test."""
    return {
        int(row["seed"]): 100 * float(row[metric])
        for row in rows
        if row["method"] == method and row["evaluation"] == evaluation and row.get(metric)
    }


def mean_text(values: dict[int, float]) -> str:
    if not values:
        return ""
    mean, stderr = mean_and_stderr(list(values.values()))
    return f"{mean:.2f} ± {stderr:.2f}"


def headline(method: str) -> str:
    """The evaluation a recipe is judged by: its own classifier, else the plain probe."""
    return OWN if method in ("erm", "jtt", "gdro", "gce") else PLAIN


def recipe_scores(prefix: str) -> dict[str, dict[str, dict[int, float]]]:
    """recipe label -> column -> seed -> value (%) on test, for the recipes whose folder exists."""
    scores = {}
    for label, suffix, method, _ in RECIPES:
        rows = read_rows(Path(f"{prefix}-{suffix}"))
        main = headline(method)
        if not by_seed(rows, method, main, "worst_group"):
            continue
        columns = {
            "worst_group": by_seed(rows, method, main, "worst_group"),
            "accuracy": by_seed(rows, method, main, "accuracy"),
        }
        for kind, evaluation in PROBES.items():
            columns[f"{kind} probe"] = by_seed(rows, method, evaluation, "worst_group")
        scores[label] = columns
    return scores


def recipes_table(prefix: str) -> str:
    """Markdown: one row per recipe (see the module docstring)."""
    scores = recipe_scores(prefix)
    table = []
    for label, _, method, trained_on in RECIPES:
        if label not in scores:
            continue
        columns = scores[label]
        reference = "JTT" if headline(method) == OWN else "SimCLR"
        line = {"recipe": label, "trained on": trained_on, "seeds": len(columns["worst_group"])}
        line["worst group"] = mean_text(columns["worst_group"])
        line["accuracy"] = mean_text(columns["accuracy"])
        for kind in PROBES:
            line[f"worst group: {kind} probe"] = mean_text(columns[f"{kind} probe"])
        line["worst group - reference"] = (
            ""
            if label == reference or reference not in scores
            else f"{reference}: "
            + paired_difference(columns["worst_group"], scores[reference]["worst_group"]).text()
        )
        table.append(line)
    return markdown_table(table)


def val_discovered(prefix: str, suffix: str, method: str) -> dict[int, float]:
    """seed -> the own classifier's val worst accuracy over val's discovered groups (%)."""
    values = {}
    for path in Path(f"{prefix}-{suffix}/runs/{method}").glob("seed*/results_val.json"):
        results = json.loads(path.read_text())
        values[results["seed"]] = 100 * results["classifier"]["metrics"]["discovered_worst_group"]
    return values


def evaluate_val(prefix: str) -> None:
    """``debiascl eval RUN --split val --probe-groups discovered`` for the label-free recipes'
    runs without val results (the run's own discovery gives val's discovered groups)."""
    for label, suffix, method, _ in RECIPES:
        if label not in LABEL_FREE:
            continue
        for run in sorted(Path(f"{prefix}-{suffix}/runs/{method}").glob("seed*")):
            if (run / "results_val.json").is_file():
                continue
            command = [sys.executable, "-m", "debiascl", "eval", str(run), "--split", "val"]
            command += ["--probe-groups", "discovered", "--no-plots", "--device", "cpu"]
            subprocess.run(command, check=True, env=os.environ)


def label_free_choice(prefix: str) -> str:
    """Markdown: the label-free recipe chosen on val's discovered groups, against JTT and the
    oracle (paired over seeds)."""
    scores = recipe_scores(prefix)
    suffix_of = {label: (suffix, method) for label, suffix, method, _ in RECIPES}
    val = {label: val_discovered(prefix, *suffix_of[label]) for label in LABEL_FREE}
    scored = {label: values for label, values in val.items() if values and label in scores}
    if not scored:
        return "No label-free recipe has val results (run with --evaluate-val).\n"
    means = {label: mean_and_stderr(list(values.values()))[0] for label, values in scored.items()}
    chosen = max(means, key=means.__getitem__)
    lines = [
        "Label-free choice (best mean val worst group over val's discovered groups): "
        + ", ".join(f"{label} {mean:.2f}" for label, mean in means.items())
        + f" -> **{chosen}**"
    ]
    worst = scores[chosen]["worst_group"]
    for reference in ("JTT", "GroupDRO, true groups (oracle)"):
        if reference in scores:
            difference = paired_difference(worst, scores[reference]["worst_group"])
            lines.append(f"- test worst group, {chosen} - {reference}: {difference.text()}")
    return "\n".join(lines) + "\n"


def signals_table(benchmarks: dict[str, str]) -> str:
    """Markdown: per benchmark and signal, the discovery's quality and GroupDRO on its groups."""
    table = []
    for name, prefix in benchmarks.items():
        for signal, suffixes in SIGNAL_FOLDERS.items():
            rows = next(
                (rows for suffix in suffixes if (rows := read_rows(Path(f"{prefix}-{suffix}")))),
                [],
            )
            if not rows:
                continue
            line = {"benchmark": name, "signal": signal}
            for key in ("precision", "recall", "auroc"):
                line[key] = mean_text(
                    by_seed(rows, "gdro", PROBES["discovered"], f"discovery_{key}")
                )
            line["gdro worst group"] = mean_text(by_seed(rows, "gdro", OWN, "worst_group"))
            line["gdro accuracy"] = mean_text(by_seed(rows, "gdro", OWN, "accuracy"))
            table.append(line)
    return markdown_table(table)


def probe_gap(folder: str, method: str) -> str:
    """The discovered-groups probe against the true-groups probe of one method (worst group on
    test, paired over seeds) and the discovery's quality: how far the label-free probe is from
    its oracle."""
    rows = read_rows(Path(folder))
    true = f"{PLAIN}, true groups (oracle: bias labels)"
    found = by_seed(rows, method, PROBES["discovered"], "worst_group")
    quality = ", ".join(
        f"{key} {mean_text(by_seed(rows, method, PROBES['discovered'], f'discovery_{key}'))}"
        for key in ("precision", "recall", "auroc")
    )
    difference = paired_difference(found, by_seed(rows, method, true, "worst_group")).text()
    return f"{folder} {method}: discovered - true probe worst group {difference}; {quality}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", metavar="PREFIX", help="one benchmark's folder prefix")
    parser.add_argument("--evaluate-val", action="store_true", help="evaluate val first")
    parser.add_argument("--signals", nargs="+", metavar="NAME=PREFIX", default=[])
    parser.add_argument("--probe-gap", nargs=2, metavar=("FOLDER", "METHOD"))
    args = parser.parse_args()
    if args.probe_gap:
        print(probe_gap(*args.probe_gap))
    if args.recipes:
        if args.evaluate_val:
            evaluate_val(args.recipes)
        print(recipes_table(args.recipes))
        print(label_free_choice(args.recipes))
    if args.signals:
        print(signals_table(dict(item.split("=", 1) for item in args.signals)))


if __name__ == "__main__":
    main()
