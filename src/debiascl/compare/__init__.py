"""Compare methods over seeds: train, evaluate and tabulate every (method, seed) run.

A comparison folder ``OUT`` holds:

- ``runs/<method>/seed<k>/``: one run directory per (method, seed) (see :mod:`debiascl.train`),
  with its ``results.json`` (:func:`debiascl.evaluate.evaluate_splits`), its plots
  (:func:`debiascl.report.write_report`) and a ``done`` marker naming its results file, written
  last and atomically;
- ``results.{csv,md,json}``: one row per run with every metric of its *main* evaluation, including
  per-class (``class[y=0]``) and per-group (``group[y=0,a=1]``) accuracies (column
  ``evaluation``: the linear probe on the frozen representation, with its protocol, e.g.
  "linear probe (fast)", for contrastive methods; the method's own classifier for supervised
  ones);
- ``summary.{md,csv,json}``: per method, the mean ± standard error over seeds of every metric
  (summary.md: the scalar metrics, then a second table with the per-class and per-group ones);
- ``tradeoff.png``: average vs worst-group accuracy per method and evaluation (error bars:
  standard error);
- with ``--probe-groups``: each contrastive run also gets the group-robust probes
  (``results.csv`` rows labelled "..., discovered groups (no bias labels)" and "..., true groups
  (oracle: bias labels)"), the discovery files in its run directory (``discovered.csv``,
  ``discovery.json``), and ``probes.md`` puts the plain and balanced probes of each method side
  by side with the discovery's precision, recall and AUROC. Single-encoder methods discover with
  the E_b of the triplet run of the same seed (``runs/triplet/seed<k>``, trained once, also when
  triplet is not among the methods); WCL and triplet runs use their own E_b;
- ``paired.{md,csv,json}``: each method's mean paired difference over seeds to the reference
  method (``--reference``, default simclr) on test, with its 95% Student-t interval
  (:func:`debiascl.selection.paired_differences`); summary.md ends with the same table, or with
  a one-line note when the reference is missing or shares fewer than 2 seeds with a method.

With a grid (``--grid``, :mod:`debiascl.grid`) every method x point x seed is a run, at
``runs/<method>/<point>/seed<k>`` (a method no axis applies to keeps ``runs/<method>/seed<k>``,
so the runs of an older comparison are reused), evaluated on test (``results.json``) and on val
(``results_val.json``). ``results.*`` then hold every point, seed and split (columns ``point``
and ``split``); ``summary.*``, ``tradeoff.png``, ``probes.md`` and the paired differences only the
test runs of the point each method is reported at: the best mean over seeds of the ``--select``
val metric (:func:`debiascl.selection.select_points`), named with its score in summary.md.
With ``select_seeds`` (``--select-seeds``, a subset of the seeds) a method's grid points are
trained on those seeds only; once every point has them, the chosen point is trained on the other
seeds too: P points and S seeds cost P x |select seeds| + S - |select seeds| runs, not P x S.

Rerunning the same comparison skips finished runs (``done`` marker, and in a grid the val
results), evaluates runs that were trained but not evaluated (or not on val), resumes
interrupted runs from their last checkpoint and restarts runs that stopped before their first
checkpoint. A run is evaluated again when its ``done`` marker is empty or garbled, or when its
results were made with another probe protocol or encoder than planned (e.g. by a later
``debiascl eval RUN --probe authors``), or without a planned group-robust probe. A rerun must ask
for the same settings.

Each run directory is locked while the comparison trains and evaluates it
(:func:`debiascl.rundir.hold_run_dir`). A run that another process holds (a ``debiascl train``
into it, or another ``compare`` over the same folder) is SKIPPED, not waited for: the other runs
go on, the tables are written without it, and the command then fails naming the skipped runs, so
that a rerun once the other process has finished completes the comparison.

The package's layers, whose public names it re-exports: :mod:`~debiascl.compare.plan` (every
run's configuration and place, before any starts), :mod:`~debiascl.compare.execute` (each run
trained, discovering, evaluated, reused where possible) and :mod:`~debiascl.compare.tabulate`
(rows, tables, paired differences, plot); here :func:`compare`, which runs them in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debiascl.choices import DEFAULT_REFERENCE, MAX_RUNS, SELECT_RULES
from debiascl.compare.execute import (
    Progress,
    SharedDiscoveries,
    check_same_settings,
    execute_run,
    finished_results,
    results_mismatch,
    stderr_line,
)
from debiascl.compare.executor import Executor
from debiascl.compare.plan import (
    HELPER_SETS,
    RUNS_DIR,
    PlannedRun,
    RunSettings,
    bias_runs,
    check_plan_size,
    data_point,
    discovery_run_dir,
    first_round_seeds,
    has_setting,
    own_discovery,
    plan_runs,
    run_dir_for,
)
from debiascl.compare.tabulate import (
    PAIRED_STEM,
    PLOT_NAME,
    PROBES_TABLE,
    RESULTS_STEM,
    SUMMARY_STEM,
    TRAINED_ON,
    TableSettings,
    evaluation_label,
    grid_rows,
    probes_table,
    results_rows,
    selections_of,
    write_comparison,
    write_tables,
)
from debiascl.errors import DebiasclError
from debiascl.grid import GridAxis, point_name

__all__ = [
    "HELPER_SETS",
    "PAIRED_STEM",
    "PLOT_NAME",
    "PROBES_TABLE",
    "RESULTS_STEM",
    "RUNS_DIR",
    "SUMMARY_STEM",
    "TRAINED_ON",
    "CompareOptions",
    "PlannedRun",
    "Progress",
    "RunSettings",
    "SharedDiscoveries",
    "bias_runs",
    "check_plan_size",
    "check_same_settings",
    "compare",
    "data_point",
    "discovery_run_dir",
    "evaluation_label",
    "execute_run",
    "finished_results",
    "grid_rows",
    "has_setting",
    "own_discovery",
    "plan_runs",
    "probes_table",
    "results_mismatch",
    "results_rows",
    "run_dir_for",
    "write_tables",
]


@dataclass(frozen=True)
class CompareOptions:
    """How a comparison chooses, judges and reports its runs (what they share to train and
    evaluate is :class:`RunSettings`).

    Attributes:
        grid: hyper-parameter axes (:func:`debiascl.grid.parse_grid`); every point x seed is
            evaluated on val and test, and each method is reported at the point ``select``
            picks on val.
        select: a :data:`SELECT_RULES` entry.
        select_seeds: some of the seeds: a method's grid points are trained on these only, and
            the point chosen on their val results then on the other seeds too (None: every
            point on every seed).
        reference: the method the others are compared with, paired by seed (skipped, with a
            note in summary.md, when it is not among the methods).
        report: write each run's plots (t-SNE, training curves, WCL's weight analyses).
        plot_seeds: with ``report``, only the runs of these seeds get plots (None: every run).
        max_runs: the most runs (methods x grid points x seeds) the comparison may plan
            (:data:`MAX_RUNS`); checked before anything is planned.
        jobs: runs executed at a time; above 1, in worker processes that share the CPUs out
            (:mod:`debiascl.compare.workers`; started with ``spawn``, so a script calling
            :func:`compare` needs the ``if __name__ == "__main__":`` guard).
    """

    grid: Sequence[GridAxis] = ()
    select: str = "auto"
    select_seeds: Sequence[int] | None = None
    reference: str = DEFAULT_REFERENCE
    report: bool = True
    plot_seeds: Sequence[int] | None = None
    max_runs: int = MAX_RUNS
    jobs: int = 1


def compare(
    dataset: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    settings: RunSettings = RunSettings(),  # noqa: B008 (a frozen dataclass)
    options: CompareOptions = CompareOptions(),
    progress: Progress = stderr_line,
) -> list[dict[str, Any]]:
    """Train and evaluate every method x seed on ``dataset`` and write the comparison tables.

    With the discovered-groups probe (``settings.probe_groups``), the bias-discovery (triplet)
    run of each seed runs first: its E_b discovers the bias for that seed's single-encoder runs (WCL
    and triplet runs use their own E_b); it is planned even when not among ``methods``, and then
    not tabulated.

    Args:
        dataset: a registered data set name.
        methods: method names (e.g. simclr, dcl, hcl, triplet, wcl, erm, jtt).
        seeds: one run per seed and method.
        out_dir: the comparison folder (see the module docstring for its layout).
        settings: what every run shares (:class:`RunSettings`).
        options: the grid, the selection, the reference method, the plots and the plan's size
            limit (:class:`CompareOptions`).
        progress: receives the progress lines (default: stderr).

    Returns:
        The rows of ``results.csv`` (:func:`results_rows`' cells), in the order methods x
        seeds; in a grid (:func:`grid_rows`) methods x points x seeds, test then val.
    """
    grid, select, select_seeds = options.grid, options.select, options.select_seeds
    _check_select(select, settings)
    if options.jobs < 1:
        raise DebiasclError(f"jobs: expected an integer >= 1, got {options.jobs}")
    check_plan_size(methods, len(seeds), grid, options.max_runs)  # first: nothing iterates seeds
    runs = plan_runs(dataset, methods, seeds, out_dir, settings, grid)
    selecting = first_round_seeds(runs, seeds, select_seeds, grid)
    helpers = bias_runs(dataset, runs, out_dir, settings)
    probes = bool(settings.probe_groups)
    tables = TableSettings(dataset, bool(grid), select, select_seeds, options.reference, probes)
    out_dir = Path(out_dir)
    _make_out_dir(out_dir)
    executor = _execute(runs, helpers, selecting, tables, options, progress)
    rows, summary_rows = write_comparison(runs, executor.results_of, out_dir, tables)
    if executor.busy:
        raise _skipped(executor, len(helpers), bool(summary_rows), select_seeds is not None)
    return rows


def _check_select(select: str, settings: RunSettings) -> None:
    """Refuse an unknown ``select`` rule, or one that needs groups nothing discovers."""
    if select not in SELECT_RULES:
        raise DebiasclError(f"select '{select}': expected one of {', '.join(SELECT_RULES)}")
    if select == "discovered_worst_group" and "discovered" not in settings.probe_groups:
        raise DebiasclError(
            "select discovered_worst_group: the discovered groups come from the bias discovery "
            "of the discovered-groups probe; add --probe-groups discovered"
        )


def _execute(
    runs: list[PlannedRun],
    helpers: list[PlannedRun],
    selecting: dict[str, tuple[int, ...]],
    tables: TableSettings,
    options: CompareOptions,
    progress: Progress,
) -> Executor:
    """Run the discovery runs and each method's first round (:func:`first_round_seeds`), then,
    with ``tables.select_seeds``, each method's chosen point on its other seeds; ``options``
    gives the plots and the number of jobs.

    Returns:
        The executor, holding the results and the runs another process held.
    """
    first_round = [run for run in runs if run not in helpers and run.seed in selecting[run.method]]
    later = [run for run in runs if run.seed not in selecting[run.method]]
    later_count = len({(run.method, run.seed) for run in later})  # one point each is run
    total = len(helpers) + len(first_round) + later_count
    executor = Executor(options.report, options.plot_seeds, progress, total, options.jobs)
    executor.run_all(helpers + first_round)
    if not executor.busy and tables.select_seeds is not None:
        selections = selections_of(runs, executor.results_of, tables.select, tables.select_seeds)
        executor.run_all(
            [run for run in later if point_name(run.point) == selections[run.method].point]
        )
    return executor


def _skipped(executor: Executor, helpers: int, tables: bool, selecting: bool) -> DebiasclError:
    """The error naming the runs another process held, what the tables hold (``tables``: some
    were written; ``helpers``: discovery runs, not tabulated) and, while ``selecting`` seeds,
    that the chosen points still lack the other seeds."""
    done = len(executor.results_of) - helpers
    written = f"the tables hold the other {done}" if tables else "no tables were written"
    later = "; the chosen grid points were not trained on the other seeds yet" if selecting else ""
    return DebiasclError(
        f"{len(executor.busy)} of {executor.total} runs were skipped because another "
        "process holds them: "
        f"{'; '.join(executor.busy)}; {written}{later}. Rerun the same command when that "
        "process has finished"
    )


def _make_out_dir(out_dir: Path) -> None:
    """Create the comparison folder, or a user error naming it when that is impossible."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DebiasclError(
            f"out_dir '{out_dir}' is a file, not a comparison folder; choose another out_dir"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DebiasclError(
            f"out_dir '{out_dir}' cannot be created ({error.strerror}); choose another out_dir"
        ) from None
