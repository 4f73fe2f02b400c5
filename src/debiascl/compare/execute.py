"""Executing a comparison's planned runs: each brought to the finished state, reusing what an
earlier comparison left in its run directory.

A run is trained (or resumed from its checkpoint), loaded once, discovers its bias where planned
(:class:`SharedDiscoveries`), is evaluated on the planned splits whose results cannot be reused
(:func:`finished_results`), gets its plots, and then its ``done`` marker, all while holding the
run directory's lock (:func:`run_locked`; a run another process holds is left alone).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debiascl.atomic import remove_path, write_text_atomic
from debiascl.checkpoint import check_resumable
from debiascl.choices import DEFAULT_K, DEFAULT_THRESHOLD
from debiascl.compare.plan import PlannedRun
from debiascl.config import load_config
from debiascl.discovery.run import FoundBias, check_bias_run, find_bias, record_discovery
from debiascl.distributed import resolve_device
from debiascl.errors import DebiasclError
from debiascl.evaluate import LoadedRun, evaluate_splits, load_run
from debiascl.methods import METHODS
from debiascl.records import file_digest, read_json, results_problem
from debiascl.registry import needs_discovery
from debiascl.report import write_report
from debiascl.rundir import (
    LOCK_NAME,
    RunDirBusy,
    RunState,
    checkpoint_path,
    config_path,
    done_marker_path,
    hold_run_dir,
    results_filename,
    run_state,
)
from debiascl.training.run import train

Progress = Callable[[str], None]


def stderr_line(message: str) -> None:
    """The default :data:`Progress`: ``compare: <message>`` on stderr."""
    print(f"compare: {message}", file=sys.stderr, flush=True)


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
    missing = [kind for kind in run.probe_groups if f"probe_{kind}" not in results]
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
    done = done_marker_path(run.run_dir).is_file()  # trained and evaluated earlier
    state = run_state(run.run_dir)  # never RUNNING: the comparison holds the run's lock
    if done or state is not RunState.FRESH:
        check_same_settings(run)
    results_of: dict[str, dict[str, Any]] = {}
    pending = run.splits
    if done:
        results_of = _reusable_results(run, progress)
        pending = tuple(split for split in run.splits if split not in results_of)
        if not pending:
            progress("finished earlier: skipped")
            return results_of
    else:
        _train(run, state, progress)
    loaded = load_run(run.run_dir, str(resolve_device(run.config.train.device)))
    probe_groups = run.probe_groups
    if needs_discovery(probe_groups):
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


@dataclass(frozen=True)
class RunOutcome:
    """What became of one run: its results dict on each planned split, or ``holder`` ("pid N
    on host H") when another process held its directory and it was skipped."""

    results: dict[str, dict[str, Any]] | None = None
    holder: str | None = None


def run_locked(
    run: PlannedRun, report: bool, progress: Progress, discoveries: SharedDiscoveries
) -> RunOutcome:
    """:func:`execute_run` holding the run directory's lock, or the holder when another
    process holds it (nothing done)."""
    try:
        with hold_run_dir(run.run_dir):
            return RunOutcome(results=execute_run(run, report, progress, discoveries))
    except RunDirBusy as error:
        return RunOutcome(holder=error.holder)


def _reusable_results(run: PlannedRun, progress: Progress) -> dict[str, dict[str, Any]]:
    """Split -> the results of a finished run that can be reused (:func:`finished_results`);
    says once per reason why the others are evaluated again."""
    results_of, reasons = {}, []
    for split in run.splits:
        results, reason = finished_results(run, split)
        if results is None:
            reasons.append(reason)
        else:
            results_of[split] = results
    for reason in dict.fromkeys(reasons):
        progress(f"{reason}: evaluating it again")
    return results_of


def _train(run: PlannedRun, state: RunState, progress: Progress) -> None:
    """Train a FRESH run (emptying a folder without a checkpoint first) or resume a RESUMABLE
    one (a checkpoint, or JTT's stage 1); a FINISHED run needs nothing."""
    if state is RunState.RESUMABLE:
        progress("resuming training from its last checkpoint")
        train(run.config, run.run_dir, resume=True)
    elif state is not RunState.FINISHED:
        if any(entry.name != LOCK_NAME for entry in run.run_dir.iterdir()):
            progress("no checkpoint in the existing folder: starting over")
            _empty(run.run_dir)
        progress("training")
        train(run.config, run.run_dir)


def _empty(folder: Path) -> None:
    """Delete everything in ``folder`` but its lock file (held by this process)."""
    for entry in folder.iterdir():
        if entry.name != LOCK_NAME:
            remove_path(entry)
