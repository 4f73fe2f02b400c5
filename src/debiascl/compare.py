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
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from debiascl.atomic import remove_path, write_text_atomic
from debiascl.checkpoint import check_resumable
from debiascl.choices import (
    DEFAULT_K,
    DEFAULT_REFERENCE,
    DEFAULT_SIGNAL,
    DEFAULT_THRESHOLD,
    MAX_RUNS,
    PROBE_GROUPS,
    SELECT_RULES,
    check_comparison,
)
from debiascl.config import Config, build_config, list_presets, load_config
from debiascl.discover import (
    FoundBias,
    check_bias_run,
    find_bias,
    record_discovery,
)
from debiascl.distributed import resolve_device
from debiascl.errors import DebiasclError
from debiascl.evaluate import LoadedRun, evaluate_splits, load_run
from debiascl.grid import (
    GridAxis,
    GridPoint,
    check_axes,
    grid_size,
    method_grid,
    method_sets,
    point_name,
    point_sets,
)
from debiascl.methods import METHODS, bias_discovery_method
from debiascl.metrics import mean_and_stderr
from debiascl.records import file_digest, read_json, results_problem
from debiascl.report import write_report
from debiascl.report.plots import plot_tradeoff
from debiascl.report.tables import (
    GROUP_LABELS,
    SUPERVISED_LABEL,
    flatten_results,
    markdown_table,
    short_label,
    write_rows,
)
from debiascl.report.tables import write_tables as write_report_tables
from debiascl.rundir import (
    LOCK_NAME,
    RunDirBusy,
    RunState,
    checkpoint_path,
    config_path,
    done_marker_path,
    hold_run_dir,
    results_filename,
)
from debiascl.rundir import (
    run_state as run_dir_state,
)
from debiascl.selection import (
    Selection,
    paired_differences,
    paired_table,
    select_points,
    selection_table,
)
from debiascl.train import train

RUNS_DIR = "runs"
RESULTS_STEM = "results"
SUMMARY_STEM = "summary"
PLOT_NAME = "tradeoff.png"
PROBES_TABLE = "probes.md"
PAIRED_STEM = "paired"

Progress = Callable[[str], None]


def _stderr_line(message: str) -> None:
    print(f"compare: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class PlannedRun:
    """One (method, seed) run of a comparison, its resolved configuration and evaluation."""

    method: str
    seed: int
    config: Config
    run_dir: Path
    probe_groups: tuple[str, ...] = ()
    bias_run: Path | None = None
    """The run whose discovery balances this one's discovered-groups probe and scores its
    ``discovered_worst_group`` (None: its own E_b, or no discovered probe)."""
    groups_run: Path | None = None
    """The run whose discovery gives this one's training groups (``train.groups=discovered``
    without ``train.groups_from``; it is then ``train.groups_from``)."""
    point: GridPoint = ()
    """The grid point's settings (empty without an axis that applies to the method)."""
    splits: tuple[str, ...] = ("test",)
    """The splits it is evaluated on: test, and val in a grid (to select the point)."""


def run_dir_for(out_dir: str | Path, method: str, seed: int, point: GridPoint = ()) -> Path:
    """Where a run lives: ``OUT/runs/<method>/seed<seed>``, or in a grid
    ``OUT/runs/<method>/<point name>/seed<seed>`` (:func:`debiascl.grid.point_name`)."""
    method_dir = Path(out_dir) / RUNS_DIR / method
    return (method_dir / point_name(point) if point else method_dir) / f"seed{seed}"


def has_setting(method: str) -> Callable[[str], bool]:
    """Whether a method has a dotted setting: ``method.*`` keys are its ``Options`` fields;
    every method has the other sections' settings."""
    names = {field.name for field in fields(METHODS[method].Options)}
    return lambda key: not key.startswith("method.") or key.removeprefix("method.") in names


@dataclass(frozen=True)
class RunSettings:
    """The settings every run of a comparison shares, layered as in ``debiascl train``.

    The dataset's preset (or ``preset``), the YAML ``config_file``, the explicit fields
    (``epochs``, ``batch_size``, ``device``, ``data_dir`` = data.root, ``probe`` = eval.probe;
    None keeps the lower layer's value), then ``sets`` (``[METHOD,...:]key=value`` strings; with
    the prefix, for those methods only: :func:`debiascl.grid.method_sets`).
    ``probe_groups`` adds group-robust probes to every run's evaluation
    (:data:`debiascl.choices.PROBE_GROUPS`). ``signal`` (:data:`debiascl.choices.SIGNALS`)
    discovers the groups of the discovered probes and of ``train.groups=discovered``:
    :func:`discovery_run_dir` of the seed.
    """

    preset: str | None = None
    config_file: str | Path | None = None
    sets: Sequence[str] = ()
    epochs: int | None = None
    batch_size: int | None = None
    device: str | None = None
    data_dir: str | None = None
    probe: str | None = None
    probe_groups: tuple[str, ...] = ()
    signal: str = DEFAULT_SIGNAL


HELPER_SETS = (
    "train.groups=none",
    "train.groups_from=null",
    "train.group_sampling=none",
    "train.group_weighting=none",
)
"""A discovery run trains on no groups, whatever the comparison's sets say."""


def discovery_run_dir(out_dir: str | Path, signal: str, seed: int, point: GridPoint) -> Path:
    """The run that discovers the bias of a seed with ``signal``: the triplet run
    (``runs/triplet/seed<k>``, whose E_b the knn signal reads), or for erm and gce a short run of
    that method (``runs/discovery-<signal>/seed<k>``); within a grid, at the point's data
    options."""
    if signal == "knn":
        return run_dir_for(out_dir, bias_discovery_method(), seed, data_point(point))
    return run_dir_for(out_dir, f"discovery-{signal}", seed, data_point(point))


def own_discovery(method: str, signal: str) -> bool:
    """Whether runs of ``method`` discover with their own E_b (knn, a method with an E_b)."""
    return signal == "knn" and METHODS[method].bias_encoder is not None


def plan_runs(
    dataset: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    settings: RunSettings = RunSettings(),
    grid: Sequence[GridAxis] = (),
) -> list[PlannedRun]:
    """Resolve and validate the configuration of every run before any of them starts.

    The method, seed and dataset of each run are fixed by the comparison and may not be changed
    by ``settings.sets`` or the grid. With a ``grid`` every run is also evaluated on val.

    Returns:
        One :class:`PlannedRun` per method x grid point x seed, methods in the given order,
        points in grid order within, seeds within.
    """
    check_comparison(dataset, methods, seeds)
    grid = check_axes(grid, methods, has_setting)
    splits = ("test", "val") if grid else ("test",)
    preset = settings.preset
    if preset is None and dataset in list_presets():
        preset = dataset
    planned = []
    for method in methods:
        for point, seed in (
            (point, seed)
            for point in method_grid(method, grid, has_setting(method))
            for seed in seeds
        ):
            config = build_config(
                preset=preset,
                config_file=settings.config_file,
                overrides={
                    "data.name": dataset,
                    "data.root": settings.data_dir,
                    "method.name": method,
                    "train.seed": seed,
                    "train.epochs": settings.epochs,
                    "train.batch_size": settings.batch_size,
                    "train.device": settings.device,
                    "eval.probe": settings.probe,
                },
                sets=[*method_sets(settings.sets, method), *point_sets(point)],
            )
            fixed = {"data.name": dataset, "method.name": method, "train.seed": seed}
            actual = {
                "data.name": config.data.name,
                "method.name": config.method.name,
                "train.seed": config.train.seed,
            }
            changed = [key for key in fixed if fixed[key] != actual[key]]
            if changed:
                raise DebiasclError(
                    f"sets and grid: may not change {', '.join(changed)} in a comparison: they "
                    "are its dataset, methods and seeds"
                )
            run_dir = run_dir_for(out_dir, method, seed, point)
            discovery = discovery_run_dir(out_dir, settings.signal, seed, point)
            groups_run = None
            if config.train.groups == "discovered" and config.train.groups_from is None:
                if discovery == run_dir:
                    raise DebiasclError(
                        f"train.groups=discovered: the {method} runs discover the groups with "
                        f"--signal {settings.signal}, so they cannot train on them; leave "
                        f"{method} out or discover with another --signal"
                    )
                groups_run = discovery
                config.train.groups_from = str(discovery.resolve())
            bias_run = None
            if "discovered" in settings.probe_groups and not own_discovery(method, settings.signal):
                bias_run = discovery
            planned.append(
                PlannedRun(
                    method,
                    seed,
                    config,
                    run_dir,
                    tuple(settings.probe_groups),
                    bias_run,
                    groups_run,
                    point,
                    splits,
                )
            )
    return planned


def data_point(point: GridPoint) -> GridPoint:
    """The data options of a grid point: a bias run discovers only on the same data."""
    return tuple((key, value) for key, value in point if key.startswith("data.options."))


def check_plan_size(
    methods: Sequence[str], num_seeds: int, grid: Sequence[GridAxis], max_runs: int
) -> None:
    """Refuse a comparison of more than ``max_runs`` runs before any of them is planned.

    Raises:
        DebiasclError: naming the number of runs and the flag that allows them.
    """
    known = [method for method in methods if method in METHODS]  # plan_runs names the others
    checked = check_axes(grid, known, has_setting)
    total = num_seeds * sum(grid_size(method, checked, has_setting(method)) for method in known)
    if total > max_runs:
        raise DebiasclError(
            f"max_runs: the comparison plans {total} runs (methods x grid points x seeds), more "
            f"than the limit of {max_runs}; check the seeds and grid, or allow them with "
            f"max_runs {total}"
        )


def run_state(run_dir: Path) -> str:
    """What is left to do for a run: "done", "trained", "checkpoint" (resume) or "new".

    "checkpoint" is whatever :func:`debiascl.rundir.resumable` can continue (a checkpoint, or
    JTT's stage 1). The comparison holds the run's lock, so it is never running elsewhere.
    """
    if done_marker_path(run_dir).is_file():
        return "done"
    state = run_dir_state(run_dir)
    return {RunState.FINISHED: "trained", RunState.RESUMABLE: "checkpoint"}.get(state, "new")


def check_same_settings(run: PlannedRun) -> None:
    """Refuse to reuse a run directory whose stored settings differ from the requested ones.

    Only settings that do not change the result (device, progress bars, logging and checkpoint
    frequency, data location) may differ.
    """
    stored_path = config_path(run.run_dir)
    if not stored_path.is_file():
        raise DebiasclError(
            f"run directory '{run.run_dir}' has no {stored_path.name}; delete it to rerun"
        )
    stored = load_config(stored_path, run=True).to_dict()
    try:
        check_resumable(stored, run.config, stored_path)
        if stored["train"]["epochs"] != run.config.train.epochs:
            raise DebiasclError(
                f"train.epochs ({stored['train']['epochs']!r} stored, "
                f"{run.config.train.epochs!r} now)"
            )
    except DebiasclError as error:
        raise DebiasclError(
            f"'{run.run_dir}' was made with other settings: {error}. Rerun the comparison with "
            "the same settings, or choose another out_dir"
        ) from None


def planned_probe_groups(run: PlannedRun) -> tuple[str, ...]:
    """The group-robust probes planned for a run (supervised runs get them on their
    classifier's features too, and their classifier a ``discovered_worst_group`` on val)."""
    return run.probe_groups


def results_mismatch(run: PlannedRun, results: dict[str, Any]) -> str | None:
    """Why ``results`` were not computed from ``run`` (another method, seed or data set, or
    another checkpoint, e.g. a file copied from another run), or None.

    Results written before they recorded their checkpoint's sha256 are matched by their run
    directory instead.
    """
    planned = (run.config.data.name, run.method, run.seed)
    recorded = (results["dataset"], results["method"], results["seed"])
    if recorded != planned:
        return f"holds the results of {recorded[1]} seed {recorded[2]} on {recorded[0]}"
    digest = results.get("checkpoint_sha256")
    if digest is None:
        if Path(str(results.get("run_dir"))).resolve() != run.run_dir.resolve():
            return f"was computed for run '{results.get('run_dir')}'"
    elif digest != file_digest(checkpoint_path(run.run_dir)):
        return "was computed from another checkpoint than the run's"
    return None


def finished_results(run: PlannedRun, split: str = "test") -> tuple[dict[str, Any] | None, str]:
    """A finished run's results on ``split`` if they can be reused, else why not.

    The test results are those named by the run's ``done`` marker; the val results are in the
    val results file (:func:`debiascl.rundir.results_filename`), trusted only beside a sound
    marker. They are reused when the file exists, is readable JSON of a results file's shape
    (:func:`debiascl.records.results_problem`) in the run directory, was computed from this run
    (:func:`results_mismatch`), holds ``split``'s results (results without a ``split`` are
    test results, as written before val evaluations existed) and was made with the planned
    probe protocol (``eval.probe``), the method's product encoder and the planned group-robust
    probes.

    Returns:
        (results, "") or (None, the reason the run must be evaluated again on ``split``).
    """
    marker = done_marker_path(run.run_dir)
    name = marker.read_text(errors="replace").strip()
    if not name or Path(name).name != name or not name.endswith(".json"):
        return None, f"its '{marker.name}' marker is empty or garbled"
    planned_encoder = METHODS[run.method].product_encoder
    if split != "test":
        name = results_filename(planned_encoder, planned_encoder, split)
    try:
        results = read_json(run.run_dir / name, "results file", "evaluating it again")
    except DebiasclError:
        return None, f"'{name}', named by its '{marker.name}' marker, is missing or unreadable"
    problem = results_problem(results)
    if problem is not None:
        return None, f"'{name}' is malformed ({problem})"
    mismatch = results_mismatch(run, results)
    if mismatch is not None:
        return None, f"'{name}' {mismatch}"
    if results.get("split", "test") != split:
        return None, f"'{name}' holds {results.get('split')} results, planned {split}"
    planned_probe = run.config.eval.probe
    if results.get("encoder") != planned_encoder:
        return None, (
            f"'{name}' holds E_{results.get('encoder')} results, planned E_{planned_encoder}"
        )
    if results.get("probe_protocol") != planned_probe:
        return None, (
            f"'{name}' was made with the '{results.get('probe_protocol')}' probe protocol, "
            f"planned '{planned_probe}'"
        )
    missing = [kind for kind in planned_probe_groups(run) if f"probe_{kind}" not in results]
    if missing:
        return None, f"'{name}' has no probe balanced over the {', '.join(missing)} groups"
    return results, ""


class SharedDiscoveries:
    """The bias discoveries of one comparison, by bias run directory.

    Runs that share a bias run (simclr, dcl, hcl and triplet of one seed all discover with the
    triplet run's E_b) get the discovery made for the first of them: the same scores and flags
    (deterministic), recorded into each run directory, and its plots copied instead of drawn
    again.
    """

    def __init__(self) -> None:
        self._found: dict[Path, tuple[FoundBias, list[Path]]] = {}

    def discover(self, run: PlannedRun, loaded: LoadedRun, plots: bool) -> None:
        """Record the discovery of ``run`` (with ``run.bias_run``, or its own E_b) into its
        directory; ``loaded`` is the run itself, loaded with every split."""
        bias_dir = check_bias_run(run.run_dir, run.bias_run)
        made = self._found.get(bias_dir.resolve())
        if made is None:
            bias = (
                loaded
                if bias_dir == run.run_dir
                else load_run(bias_dir, loaded.device, splits=("train", "val"))
            )
            found = find_bias(bias, None, DEFAULT_K, DEFAULT_THRESHOLD)
            self._found[bias_dir.resolve()] = found, record_discovery(run.run_dir, found, plots)[1]
            return
        found, drawn = made
        record_discovery(run.run_dir, found, plots=False)
        if plots:
            for path in drawn:
                shutil.copyfile(path, run.run_dir / path.name)


def execute_run(
    run: PlannedRun, report: bool, progress: Progress, discoveries: SharedDiscoveries
) -> dict[str, dict[str, Any]]:
    """Bring one run to the finished state and return its results dict on each planned split.

    A finished run is evaluated again only on the splits whose results cannot be reused
    (:func:`finished_results`). The run is loaded once; its discovery, evaluation and plots
    share its features (:meth:`debiascl.evaluate.LoadedRun.features`).

    Args:
        run: the planned run.
        report: also write the run's plots (:func:`debiascl.report.write_report`).
        progress: receives one line per action.
        discoveries: the comparison's discoveries so far (shared by runs with one bias run).

    Returns:
        split -> results dict, for each of ``run.splits``.
    """
    state = run_state(run.run_dir)
    if state != "new":
        check_same_settings(run)
    results_of: dict[str, dict[str, Any]] = {}
    pending = run.splits
    if state == "done":
        reasons = []
        for split in run.splits:
            results, reason = finished_results(run, split)
            if results is None:
                reasons.append(reason)
            else:
                results_of[split] = results
        pending = tuple(split for split in run.splits if split not in results_of)
        if not pending:
            progress("finished earlier: skipped")
            return results_of
        for reason in dict.fromkeys(reasons):
            progress(f"{reason}: evaluating it again")
    elif state == "new":
        if any(entry.name != LOCK_NAME for entry in run.run_dir.iterdir()):
            progress("no checkpoint in the existing folder: starting over")
            _empty(run.run_dir)
        progress("training")
        train(run.config, run.run_dir)
    elif state == "checkpoint":
        progress("resuming training from its last checkpoint")
        train(run.config, run.run_dir, resume=True)
    loaded = load_run(run.run_dir, str(resolve_device(run.config.train.device)))
    probe_groups = planned_probe_groups(run)
    if "discovered" in probe_groups:
        source = "the run itself" if run.bias_run is None else f"the run {run.bias_run}"
        progress(f"discovering the bias with {source}")
        discoveries.discover(run, loaded, plots=report)
    progress("evaluating" if pending == ("test",) else f"evaluating on {', '.join(pending)}")
    results_of |= evaluate_splits(
        loaded, pending, probe=run.config.eval.probe, probe_groups=probe_groups
    )
    if report and "test" in pending:
        progress("writing plots")
        write_report(loaded)
    test_file = Path(results_of["test"]["results_file"]).name
    write_text_atomic(done_marker_path(run.run_dir), f"{test_file}\n")
    return {split: results_of[split] for split in run.splits}


def _empty(folder: Path) -> None:
    """Delete everything in ``folder`` but its lock file (held by this process)."""
    for entry in folder.iterdir():
        if entry.name != LOCK_NAME:
            remove_path(entry)


def evaluation_label(results: dict[str, Any], evaluation: str = "main") -> str:
    """The label of an evaluation in the tables.

    "linear probe (<protocol>)" for the plain probe, :data:`SUPERVISED_LABEL` for a supervised
    method's classifier, and for a group-robust probe ``probe_<kind>`` the probe label followed
    by :data:`GROUP_LABELS` [kind] (which says whether bias labels were used).
    """
    source = results["main"] if evaluation == "main" else evaluation
    if source == "classifier":
        return SUPERVISED_LABEL
    label = f"linear probe ({results['probe_protocol']})"
    kind = source.removeprefix("probe_") if source.startswith("probe_") else None
    return label if kind is None else f"{label}, {GROUP_LABELS[kind]}"


def results_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows of one run: its main evaluation, then each group-robust probe.

    Each row has method, seed, the evaluation's label (:func:`evaluation_label`) and its
    metrics: :func:`debiascl.report.flatten_results`' ``<evaluation>.*`` values without the
    prefix, the scalars and the per-class / per-group accuracies (``class[y=0]``,
    ``group[y=0,a=1]``; a group absent from the run's test split has no column in its row), and
    ``training_groups``: the ``train.groups`` the run trained on (none, discovered, true). The
    discovered-groups row adds the discovery's quality on the train split where the data has
    bias labels (``discovery_precision``, ``discovery_recall``, ``discovery_auroc``).
    """
    flat = flatten_results(results)
    evaluations = ["main"] + [
        f"probe_{kind}" for kind in PROBE_GROUPS if f"probe_{kind}" in results
    ]
    rows = []
    for evaluation in evaluations:
        row: dict[str, Any] = {
            "method": results["method"],
            "seed": results["seed"],
            "evaluation": evaluation_label(results, evaluation),
            "training_groups": results.get("training_groups", "none"),
        }
        prefix = f"{evaluation}."
        row |= {key.removeprefix(prefix): v for key, v in flat.items() if key.startswith(prefix)}
        quality = results.get("discovery", {}).get("train", {})
        if evaluation == "probe_discovered" and quality.get("bias_labels"):
            row |= {f"discovery_{key}": quality[key] for key in ("precision", "recall", "auroc")}
        rows.append(row)
    return rows


def grid_rows(run: PlannedRun, results: dict[str, Any]) -> list[dict[str, Any]]:
    """:func:`results_rows` of one evaluation of a grid's run, with its ``point`` (name) after
    the method and its ``split`` after the seed."""
    labels = {"method": run.method, "point": point_name(run.point), "seed": run.seed}
    labels["split"] = results.get("split", "test")
    return [labels | row for row in results_rows(results)]


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


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def bias_runs(
    dataset: str,
    runs: list[PlannedRun],
    out_dir: str | Path,
    settings: RunSettings,
) -> list[PlannedRun]:
    """The discovery runs (:func:`discovery_run_dir`) that the ``runs`` read their discovered
    groups from, each set to discover with its own E_b or classifier.

    A triplet run already in ``runs`` at ``runs/triplet/seed<k>`` (no grid axis) is reused for
    the knn signal; the others are planned (trained, evaluated and discovering, but not
    tabulated) with the comparison's settings, on no groups, and for erm and gce for
    ``train.groups_epochs`` epochs. Empty when no run needs one.
    """
    needed = list(
        dict.fromkeys(
            path for run in runs for path in (run.groups_run, run.bias_run) if path is not None
        )
    )
    if not needed:
        return []
    method = bias_discovery_method() if settings.signal == "knn" else settings.signal
    planned = {run.run_dir: run for run in runs if run.method == method}
    for run in runs:
        for path in (run.groups_run, run.bias_run):
            if path is None or path in planned:
                continue
            # the data options of the run's grid point, as one-value axes: same folder name
            axes = [GridAxis(key, (value,)) for key, value in data_point(run.point)]
            epochs = (
                ()
                if settings.signal == "knn"
                else (f"train.epochs={run.config.train.groups_epochs}",)
            )
            helper_settings = replace(
                settings,
                probe_groups=("discovered",),
                sets=(*settings.sets, *HELPER_SETS, *epochs),
            )
            (helper,) = plan_runs(dataset, [method], [run.seed], out_dir, helper_settings, axes)
            planned[path] = replace(helper, run_dir=path, bias_run=None)
    return [planned[path] for path in needed]


TRAINED_ON = {
    "none": "no groups",
    "discovered": "discovered groups (no bias label)",
    "true": "true groups (oracle: bias labels)",
}
"""probes.md's ``trained on`` column: which groups (``train.groups``) the training read."""


def probes_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per method, worst-group and average accuracy of each probe, and the discovery.

    One row per method; the groups its training read (:data:`TRAINED_ON`), then columns
    ``<metric>: <evaluation>`` (plain, discovered, true, class, val, or own classifier) in
    percent, mean ± standard error over seeds, then the discovery's precision, recall and AUROC
    (train split) where measured.
    """
    evaluations = list(dict.fromkeys(row["evaluation"] for row in rows))
    short = {evaluation: short_label(evaluation) for evaluation in evaluations}
    metrics = (
        ("worst_group", "accuracy")
        if all("worst_group" in r for r in rows)
        else (
            "worst_class",
            "accuracy",
        )
    )
    table = []
    for method in dict.fromkeys(row["method"] for row in rows):
        groups = next(r.get("training_groups", "none") for r in rows if r["method"] == method)
        line: dict[str, Any] = {"method": method, "trained on": TRAINED_ON[groups]}
        for metric in metrics:
            for evaluation in evaluations:
                values = [
                    100 * r[metric]
                    for r in rows
                    if (r["method"], r["evaluation"]) == (method, evaluation) and metric in r
                ]
                line[f"{metric}: {short[evaluation]}"] = _mean_text(values)
        for key in ("discovery_precision", "discovery_recall", "discovery_auroc"):
            values = [
                100 * r[key] for r in rows if r["method"] == method and r.get(key) is not None
            ]
            if values:
                line[key] = _mean_text(values)
        table.append(line)
    return (
        "Mean ± standard error over seeds (%). Linear probes on the frozen representation: "
        "plain; discovered = balanced over the groups a bias encoder found (no bias label used); "
        "true = balanced over the true groups (oracle: uses the bias labels); class = balanced "
        "over the classes alone (no bias label used); val = fitted on the val split, unbalanced "
        "(the held-out-data ablation). Supervised methods: their own classifier, and the "
        "probes on its features.\n\n" + markdown_table(table)
    )


def _mean_text(values: list[float]) -> str:
    if not values:
        return ""
    mean, stderr = mean_and_stderr(values)
    return f"{mean:.2f} ± {stderr:.2f}" if len(values) > 1 else f"{mean:.2f}"


def compare(
    dataset: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    settings: RunSettings = RunSettings(),
    *,
    grid: Sequence[GridAxis] = (),
    select: str = "auto",
    select_seeds: Sequence[int] | None = None,
    reference: str = DEFAULT_REFERENCE,
    report: bool = True,
    progress: Progress = _stderr_line,
    max_runs: int = MAX_RUNS,
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
        grid: hyper-parameter axes (:func:`debiascl.grid.parse_grid`); every point x seed is
            evaluated on val and test, and each method is reported at the point ``select``
            picks on val.
        select: a :data:`SELECT_RULES` entry.
        select_seeds: some of ``seeds``: a method's grid points are trained on these only, and
            the point chosen on their val results then on the other seeds too (None: every
            point on every seed).
        reference: the method the others are compared with, paired by seed (skipped, with a
            note in summary.md, when it is not among ``methods``).
        report: write each run's plots (t-SNE, training curves, WCL's weight analyses).
        progress: receives the progress lines (default: stderr).
        max_runs: the most runs (methods x grid points x seeds) the comparison may plan
            (:data:`MAX_RUNS`); checked before anything is planned.

    Returns:
        The rows of ``results.csv`` (:func:`results_rows`), in the order methods x seeds; in a
        grid (:func:`grid_rows`) methods x points x seeds, test then val.
    """
    if select not in SELECT_RULES:
        raise DebiasclError(f"select '{select}': expected one of {', '.join(SELECT_RULES)}")
    if select == "discovered_worst_group" and "discovered" not in settings.probe_groups:
        raise DebiasclError(
            "select discovered_worst_group: the discovered groups come from the bias discovery "
            "of the discovered-groups probe; add --probe-groups discovered"
        )
    check_plan_size(methods, len(seeds), grid, max_runs)  # first: nothing iterates the seeds
    runs = plan_runs(dataset, methods, seeds, out_dir, settings, grid)
    selecting = _first_round_seeds(runs, seeds, select_seeds, grid)
    helpers = bias_runs(dataset, runs, out_dir, settings)
    first_round = [run for run in runs if run not in helpers and run.seed in selecting[run.method]]
    total = (
        len(helpers)
        + len(first_round)
        + sum(len(seeds) - len(chosen_seeds) for chosen_seeds in selecting.values())
    )
    out_dir = Path(out_dir)
    _make_out_dir(out_dir)
    executor = _Executor(report, progress, total)
    executor.run_all(helpers + first_round)
    if not executor.busy and select_seeds is not None:
        selections = _selections(runs, executor.results_of, select, select_seeds)
        executor.run_all(
            [
                run
                for run in runs
                if run.seed not in selecting[run.method]
                and point_name(run.point) == selections[run.method].point
            ]
        )
    rows, summary_rows = _write_comparison(
        dataset,
        runs,
        executor.results_of,
        out_dir,
        grid,
        select,
        reference,
        bool(settings.probe_groups),
        select_seeds,
    )
    if executor.busy:
        done = len(executor.results_of) - len(helpers)
        tables = f"the tables hold the other {done}" if summary_rows else "no tables were written"
        later = (
            "; the chosen grid points were not trained on the other seeds yet"
            if select_seeds is not None
            else ""
        )
        raise DebiasclError(
            f"{len(executor.busy)} of {executor.total} runs were skipped because another "
            "process holds them: "
            f"{'; '.join(executor.busy)}; {tables}{later}. Rerun the same command when that "
            "process has finished"
        )
    return rows


def _first_round_seeds(
    runs: Sequence[PlannedRun],
    seeds: Sequence[int],
    select_seeds: Sequence[int] | None,
    grid: Sequence[GridAxis],
) -> dict[str, tuple[int, ...]]:
    """Method -> the seeds each of its points is trained on before the selection: every seed,
    or ``select_seeds`` for a method with several grid points.

    Raises:
        DebiasclError: select_seeds without a grid, empty, repeated or not among the seeds.
    """
    points: dict[str, set[str]] = {}
    for run in runs:
        points.setdefault(run.method, set()).add(point_name(run.point))
    if select_seeds is None:
        return {method: tuple(seeds) for method in points}
    if not grid:
        raise DebiasclError(
            "select_seeds: they choose each method's grid point before the other seeds are "
            "trained; give a grid too"
        )
    if not select_seeds or len(set(select_seeds)) != len(select_seeds):
        raise DebiasclError(
            f"select_seeds: give distinct seeds, e.g. 0-2, got {list(select_seeds)}"
        )
    strangers = [seed for seed in select_seeds if seed not in seeds]
    if strangers:
        raise DebiasclError(
            f"select_seeds: {strangers} are not among the seeds {list(seeds)}; the selection "
            "seeds are some of the seeds"
        )
    return {
        method: tuple(seeds) if len(names) == 1 else tuple(select_seeds)
        for method, names in points.items()
    }


class _Executor:
    """Runs planned runs one after another, numbering them ``[k/total]``, and keeps their
    results (``results_of``: run directory -> split -> results) and the runs another process
    held (``busy``)."""

    def __init__(self, report: bool, progress: Progress, total: int) -> None:
        self.report = report
        self.progress = progress
        self.total = total
        self.started = time.perf_counter()
        self.results_of: dict[Path, dict[str, dict[str, Any]]] = {}
        self.busy: list[str] = []
        self.discoveries = SharedDiscoveries()
        self.held: set[Path] = set()
        """Run directories another process held (runs discovering with them are skipped)."""

    def run_all(self, runs: Sequence[PlannedRun]) -> None:
        """Bring each run to the finished state (:func:`execute_run`), skipping held ones."""
        for run in runs:
            number = len(self.results_of) + len(self.busy) + 1
            point = f" {point_name(run.point)}" if run.point else ""
            prefix = f"[{number}/{self.total}] {run.method}{point} seed {run.seed}"
            run_started = time.perf_counter()
            held = next((p for p in (run.bias_run, run.groups_run) if p in self.held), None)
            if held is not None:  # its bias discovery needs a run held elsewhere
                self.progress(f"{prefix}: skipped, its bias run {held} is held")
                self.busy.append(f"{run.run_dir} (waits for its bias run {held})")
                continue
            try:
                with hold_run_dir(run.run_dir):
                    self.results_of[run.run_dir] = execute_run(
                        run,
                        self.report,
                        lambda message, p=prefix: self.progress(f"{p}: {message}"),
                        self.discoveries,
                    )
            except RunDirBusy as error:
                self.progress(f"{prefix}: skipped, in use by another process ({error.holder})")
                self.busy.append(f"{run.run_dir} ({error.holder})")
                self.held.add(run.run_dir)
                continue
            now = time.perf_counter()
            self.progress(
                f"{prefix}: finished in {_duration(now - run_started)} "
                f"(elapsed {_duration(now - self.started)})"
            )


def _selections(
    runs: Sequence[PlannedRun],
    results_of: dict[Path, dict[str, dict[str, Any]]],
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


def _write_comparison(
    dataset: str,
    runs: list[PlannedRun],
    results_of: dict[Path, dict[str, dict[str, Any]]],
    out_dir: Path,
    grid: Sequence[GridAxis],
    select: str,
    reference: str,
    probes: bool,
    select_seeds: Sequence[int] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write the tables, paired differences, plot and probes table of the finished ``runs``
    (the grid points chosen on the val results of ``select_seeds``, default every seed).

    Returns:
        (the rows of results.csv, the rows summarised: the test rows of the reported points).
    """
    done = [run for run in runs if run.run_dir in results_of]
    if not done:
        return [], []
    sections = []
    reported = done
    if grid:
        selections = _selections(done, results_of, select, select_seeds)
        reported = [run for run in done if point_name(run.point) == selections[run.method].point]
        sections.append(selection_table(selections, select, select_seeds))
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
        {(run.method, run.seed): results_of[run.run_dir]["test"] for run in reported}, reference
    )
    sections.append(paired_table(paired, notes))
    write_tables(rows, out_dir, summary_rows, notes="\n".join(sections))
    if paired:
        write_rows(paired, out_dir / PAIRED_STEM, paired_table(paired, notes))
    else:  # no stale differences of an earlier comparison in this folder
        for suffix in (".md", ".csv", ".json"):
            remove_path(out_dir / f"{PAIRED_STEM}{suffix}")
    plot_tradeoff(summary_rows, out_dir / PLOT_NAME, title=f"{dataset}: mean ± stderr over seeds")
    if probes:
        write_text_atomic(out_dir / PROBES_TABLE, probes_table(summary_rows))
    return rows, summary_rows


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
