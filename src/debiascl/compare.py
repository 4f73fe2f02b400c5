"""Compare methods over seeds: train, evaluate and tabulate every (method, seed) run.

A comparison folder ``OUT`` holds:

- ``runs/<method>/seed<k>/``: one run directory per (method, seed) (see :mod:`debiascl.train`),
  with its ``results.json`` (:func:`debiascl.evaluate.evaluate_run`), its plots
  (:func:`debiascl.report.write_report`) and a ``done`` marker naming its results file, written
  last and atomically;
- ``results.{csv,md,json}``: one row per run with every metric of its *main* evaluation, including
  per-class (``class[y=0]``) and per-group (``group[y=0,a=1]``) accuracies (column
  ``evaluation``: the linear probe on the frozen representation, with its protocol, e.g.
  "linear probe (fast)", for contrastive methods; the method's own classifier for supervised
  ones);
- ``summary.{md,csv,json}``: per method, the mean ± standard error over seeds of every metric
  (summary.md: the scalar metrics, then a second table with the per-class and per-group ones);
- ``tradeoff.png``: average vs worst-group accuracy per method (error bars: standard error).

Rerunning the same comparison skips finished runs (``done`` marker), evaluates runs that were
trained but not evaluated, resumes interrupted runs from their last checkpoint and restarts runs
that stopped before their first checkpoint. A run is evaluated again when its ``done`` marker is
empty or garbled, or when its results were made with another probe protocol or encoder than
planned (e.g. by a later ``debiascl eval RUN --probe authors``). A rerun must ask for the same
settings.

Each run directory is locked while the comparison trains and evaluates it
(:mod:`debiascl.rundir_lock`). A run that another process holds (a ``debiascl train`` into it, or
another ``compare`` over the same folder) is SKIPPED, not waited for: the other runs go on, the
tables are written without it, and the command then fails naming the skipped runs, so that a
rerun once the other process has finished completes the comparison.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from debiascl.atomic import write_text_atomic
from debiascl.config import Config, build_config, list_presets, load_config
from debiascl.data import list_datasets
from debiascl.distributed import resolve_device
from debiascl.errors import DebiasclError
from debiascl.evaluate import evaluate_run
from debiascl.methods import METHODS
from debiascl.metrics import mean_and_stderr
from debiascl.report import flatten_results, write_report
from debiascl.report import write_tables as write_report_tables
from debiascl.rundir_lock import LOCK_NAME, RunDirBusy, hold_run_dir
from debiascl.train import check_resumable, resumable, train

RUNS_DIR = "runs"
DONE_MARKER = "done"
TRAIN_DONE_MARKER = "train_done"
RESULTS_STEM = "results"
SUMMARY_STEM = "summary"
PLOT_NAME = "tradeoff.png"
SUPERVISED_LABEL = "own classifier (supervised)"
"""The evaluation label of supervised methods (scored by their own classifier)."""

Progress = Callable[[str], None]


def _stderr_line(message: str) -> None:
    print(f"compare: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class PlannedRun:
    """One (method, seed) run of a comparison and its resolved configuration."""

    method: str
    seed: int
    config: Config
    run_dir: Path


def run_dir_for(out_dir: str | Path, method: str, seed: int) -> Path:
    """Where the run of ``method`` with ``seed`` lives: ``OUT/runs/<method>/seed<seed>``."""
    return Path(out_dir) / RUNS_DIR / method / f"seed{seed}"


def _check_choices(dataset: str, methods: Sequence[str], seeds: Sequence[int]) -> None:
    if dataset not in list_datasets():
        raise DebiasclError(f"unknown dataset '{dataset}'; available: {', '.join(list_datasets())}")
    if not methods:
        raise DebiasclError(f"--methods: give at least one of {', '.join(METHODS)}")
    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise DebiasclError(
            f"--methods: unknown method(s) {', '.join(unknown)}; available: {', '.join(METHODS)}"
        )
    if not seeds:
        raise DebiasclError("--seeds: give at least one seed, e.g. 0,1,2")
    if any(seed < 0 for seed in seeds):
        raise DebiasclError(f"--seeds: seeds must be >= 0, got {list(seeds)}")
    for name, values in (("--methods", methods), ("--seeds", seeds)):
        if len(set(values)) != len(values):
            raise DebiasclError(f"{name}: each entry may appear once, got {list(values)}")


@dataclass(frozen=True)
class RunSettings:
    """The settings every run of a comparison shares, layered as in ``debiascl train``.

    The dataset's preset (or ``preset``), the YAML ``config_file``, the explicit fields
    (``epochs``, ``batch_size``, ``device``, ``data_dir`` = data.root, ``probe`` = eval.probe;
    None keeps the lower layer's value), then ``sets`` (``key=value`` strings).
    """

    preset: str | None = None
    config_file: str | Path | None = None
    sets: Sequence[str] = ()
    epochs: int | None = None
    batch_size: int | None = None
    device: str | None = None
    data_dir: str | None = None
    probe: str | None = None


def plan_runs(
    dataset: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    settings: RunSettings = RunSettings(),
) -> list[PlannedRun]:
    """Resolve and validate the configuration of every run before any of them starts.

    The method, seed and dataset of each run are fixed by the comparison and may not be changed
    by ``settings.sets``.

    Returns:
        One :class:`PlannedRun` per method x seed, methods in the given order, seeds within.
    """
    _check_choices(dataset, methods, seeds)
    preset = settings.preset
    if preset is None and dataset in list_presets():
        preset = dataset
    planned = []
    for method in methods:
        for seed in seeds:
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
                sets=list(settings.sets),
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
                    f"--set may not change {', '.join(changed)} in a comparison: use --dataset, "
                    "--methods and --seeds"
                )
            planned.append(PlannedRun(method, seed, config, run_dir_for(out_dir, method, seed)))
    return planned


def run_state(run_dir: Path) -> str:
    """What is left to do for a run: "done", "trained", "checkpoint" (resume) or "new".

    "checkpoint" is whatever :func:`debiascl.train.resumable` can continue (a checkpoint, or
    JTT's stage 1).
    """
    if (run_dir / DONE_MARKER).is_file():
        return "done"
    if (run_dir / TRAIN_DONE_MARKER).is_file():
        return "trained"
    if resumable(run_dir):
        return "checkpoint"
    return "new"


def check_same_settings(run: PlannedRun) -> None:
    """Refuse to reuse a run directory whose stored settings differ from the requested ones.

    Only settings that do not change the result (device, progress bars, logging and checkpoint
    frequency, data location) may differ.
    """
    stored_path = run.run_dir / "config.yaml"
    if not stored_path.is_file():
        raise DebiasclError(f"run directory '{run.run_dir}' has no config.yaml; delete it to rerun")
    stored = load_config(stored_path).to_dict()
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
            "the same settings, or choose another --out"
        ) from None


def finished_results(run: PlannedRun) -> tuple[dict[str, Any] | None, str]:
    """The results named by a run's ``done`` marker if they can be reused, else why not.

    They are reused when the marker names an existing, readable JSON file in the run directory
    made with the planned probe protocol (``eval.probe``) and the method's product encoder.

    Returns:
        (results, "") or (None, the reason the run must be evaluated again).
    """
    name = (run.run_dir / DONE_MARKER).read_text(errors="replace").strip()
    if not name or Path(name).name != name or not name.endswith(".json"):
        return None, f"its '{DONE_MARKER}' marker is empty or garbled"
    try:
        results = json.loads((run.run_dir / name).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, f"'{name}', named by its '{DONE_MARKER}' marker, is missing or unreadable"
    if not isinstance(results, dict):
        return None, f"'{name}' holds a JSON {type(results).__name__}, not a results mapping"
    planned_encoder = METHODS[run.method].product_encoder
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
    return results, ""


def execute_run(run: PlannedRun, report: bool, progress: Progress) -> dict[str, Any]:
    """Bring one run to the finished state and return its results dict.

    Args:
        run: the planned run.
        report: also write the run's plots (:func:`debiascl.report.write_report`).
        progress: receives one line per action.
    """
    state = run_state(run.run_dir)
    if state != "new":
        check_same_settings(run)
    if state == "done":
        results, reason = finished_results(run)
        if results is not None:
            progress("finished earlier: skipped")
            return results
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
    device = str(resolve_device(run.config.train.device))
    progress("evaluating")
    results = evaluate_run(run.run_dir, device=device, probe=run.config.eval.probe)
    if report:
        progress("writing plots")
        write_report(run.run_dir, device=device)
    write_text_atomic(run.run_dir / DONE_MARKER, f"{Path(results['results_file']).name}\n")
    return results


def _empty(folder: Path) -> None:
    """Delete everything in ``folder`` but its lock file (held by this process)."""
    for entry in folder.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def evaluation_label(results: dict[str, Any]) -> str:
    """The main evaluation's label: "linear probe (<protocol>)" or :data:`SUPERVISED_LABEL`."""
    if results["main"] == "classifier":
        return SUPERVISED_LABEL
    return f"linear probe ({results['probe_protocol']})"


def results_row(results: dict[str, Any]) -> dict[str, Any]:
    """One table row: method, seed, the main evaluation's label and its metrics.

    The metrics are :func:`debiascl.report.flatten_results`' ``main.*`` values without the
    prefix: the scalars and the per-class / per-group accuracies (``class[y=0]``,
    ``group[y=0,a=1]``; a group absent from the run's test split has no column in its row).
    """
    row: dict[str, Any] = {
        "method": results["method"],
        "seed": results["seed"],
        "evaluation": evaluation_label(results),
    }
    for key, value in flatten_results(results).items():
        if key.startswith("main."):
            row[key.removeprefix("main.")] = value
    return row


def write_tables(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """``results.{md,csv,json}`` (every row) and ``summary.{md,csv,json}`` (mean ± stderr)."""
    return write_report_tables(
        rows, out_dir, group_by=("method", "evaluation"), rows_stem=RESULTS_STEM
    )


def tradeoff_metrics(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """The (x, y) metrics of the trade-off plot that every row has.

    x: the average accuracy weighted by training group proportions when available, else plain
    accuracy; y: worst-group accuracy when the data has a bias attribute, else worst-class.
    """

    def everywhere(key: str) -> bool:
        return all(row.get(key) is not None for row in rows)

    x = "avg_acc_train_weighted" if everywhere("avg_acc_train_weighted") else "accuracy"
    y = "worst_group" if everywhere("worst_group") else "worst_class"
    return x, y


AXIS_LABELS = {
    "avg_acc_train_weighted": "average accuracy, weighted by train group proportions (%)",
    "accuracy": "average accuracy (%)",
    "worst_group": "worst-group accuracy (%)",
    "worst_class": "worst-class accuracy (%)",
}


def plot_tradeoff(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Average vs worst-group accuracy, one point per method (mean ± stderr over seeds).

    Supervised methods (evaluated by their own classifier) are drawn as squares, the others as
    circles.

    Args:
        rows: :func:`results_row` dicts (several seeds per method).
        path: the PNG to write.
        title: the figure title.

    Returns:
        ``path``.
    """
    x_key, y_key = tradeoff_metrics(rows)
    figure = Figure(figsize=(6.5, 5.0))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    methods = list(dict.fromkeys(row["method"] for row in rows))
    for index, method in enumerate(methods):
        members = [row for row in rows if row["method"] == method]
        x_mean, x_err = mean_and_stderr([100 * row[x_key] for row in members])
        y_mean, y_err = mean_and_stderr([100 * row[y_key] for row in members])
        supervised = members[0]["evaluation"] == SUPERVISED_LABEL
        label = f"{method} (supervised)" if supervised else method
        axis.errorbar(
            x_mean,
            y_mean,
            xerr=x_err,
            yerr=y_err,
            fmt="s" if supervised else "o",
            color=f"C{index % 10}",
            capsize=3,
            label=f"{label} (n={len(members)})",
        )
        axis.annotate(label, (x_mean, y_mean), textcoords="offset points", xytext=(5, 5))
    axis.set_xlabel(AXIS_LABELS[x_key])
    axis.set_ylabel(AXIS_LABELS[y_key])
    axis.set_title(title or "mean ± standard error over seeds")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def compare(
    dataset: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    settings: RunSettings = RunSettings(),
    *,
    report: bool = True,
    progress: Progress = _stderr_line,
) -> list[dict[str, Any]]:
    """Train and evaluate every method x seed on ``dataset`` and write the comparison tables.

    Args:
        dataset: a registered data set name.
        methods: method names (e.g. simclr, dcl, hcl, triplet, wcl, erm, jtt).
        seeds: one run per seed and method.
        out_dir: the comparison folder (see the module docstring for its layout).
        settings: what every run shares (:class:`RunSettings`).
        report: write each run's plots (t-SNE, training curves, WCL's weight analyses).
        progress: receives the progress lines (default: stderr).

    Returns:
        One row per run (:func:`results_row`), in the order methods x seeds.
    """
    runs = plan_runs(dataset, methods, seeds, out_dir, settings)
    out_dir = Path(out_dir)
    _make_out_dir(out_dir)
    started = time.perf_counter()
    rows, busy = [], []
    for number, run in enumerate(runs, start=1):
        prefix = f"[{number}/{len(runs)}] {run.method} seed {run.seed}"
        run_started = time.perf_counter()
        try:
            with hold_run_dir(run.run_dir):
                results = execute_run(
                    run, report, lambda message, p=prefix: progress(f"{p}: {message}")
                )
        except RunDirBusy as error:
            progress(f"{prefix}: skipped, in use by another process ({error.holder})")
            busy.append(f"{run.run_dir} ({error.holder})")
            continue
        rows.append(results_row(results))
        now = time.perf_counter()
        progress(
            f"{prefix}: finished in {_duration(now - run_started)} "
            f"(elapsed {_duration(now - started)})"
        )
    if rows:
        write_tables(rows, out_dir)
        plot_tradeoff(rows, out_dir / PLOT_NAME, title=f"{dataset}: mean ± stderr over seeds")
    if busy:
        tables = f"the tables hold the other {len(rows)}" if rows else "no tables were written"
        raise DebiasclError(
            f"{len(busy)} of {len(runs)} runs were skipped because another process holds them: "
            f"{'; '.join(busy)}; {tables}. Rerun the same command when that process has finished"
        )
    return rows


def _make_out_dir(out_dir: Path) -> None:
    """Create the comparison folder, or a user error naming it when that is impossible."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DebiasclError(
            f"--out '{out_dir}' is a file, not a comparison folder; choose another --out"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DebiasclError(
            f"--out '{out_dir}' cannot be created ({error.strerror}); choose another --out"
        ) from None
