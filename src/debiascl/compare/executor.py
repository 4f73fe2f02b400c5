"""Scheduling a comparison's runs: one after another in this process, or ``jobs`` at a time in
worker processes (:class:`~debiascl.compare.workers.WorkerPool`).

Runs start in plan order. A run waits for the runs it reads (its bias run's discovery, its
training groups' run) to finish; with one job the plan order already puts them first, so runs
execute exactly in that order. A run whose bias or groups run another process held is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path

from debiascl.compare.execute import Progress, RunOutcome, SharedDiscoveries, run_locked
from debiascl.compare.plan import PlannedRun
from debiascl.compare.workers import WorkerPool
from debiascl.grid import point_name
from debiascl.results import RunResults

POLL_SECONDS = 0.2
"""How often the workers' progress lines are passed on while runs are in flight."""


@dataclass(frozen=True)
class _Started:
    """A run in flight: its ``[k/total] method seed`` prefix and when it started."""

    run: PlannedRun
    prefix: str
    started: float


class Executor:
    """Runs planned runs, numbering them ``[k/total]``, and keeps their results
    (``results_of``: run directory -> split -> the results as a record, read once) and the runs
    another process held (``busy``).

    Args:
        report: write each run's plots.
        plot_seeds: with ``report``, only the runs of these seeds get plots (None: every run).
        progress: receives one line per action of each run.
        total: the number of runs the comparison will execute (for the numbering).
        jobs: runs executed at a time; above 1, in worker processes.
    """

    def __init__(
        self,
        report: bool,
        plot_seeds: Collection[int] | None,
        progress: Progress,
        total: int,
        jobs: int = 1,
    ) -> None:
        self.report = report
        self.plot_seeds = plot_seeds
        self.progress = progress
        self.total = total
        self.jobs = jobs
        self.started = time.perf_counter()
        self.results_of: dict[Path, dict[str, RunResults]] = {}
        self.busy: list[str] = []
        self.discoveries = SharedDiscoveries()
        self.held: set[Path] = set()
        """Run directories another process held (runs discovering with them are skipped)."""
        self._numbered = 0

    def run_all(self, runs: Sequence[PlannedRun]) -> None:
        """Bring each run to the finished state (:func:`~debiascl.compare.execute.execute_run`),
        skipping held ones; an error stops the starting of runs (running ones finish) and is
        raised."""
        if self.jobs == 1 or len(runs) < 2:
            for run in runs:
                self._start(run, self._inline)
            return
        with WorkerPool(min(self.jobs, len(runs))) as pool:
            self._run_parallel(list(runs), pool)

    def _run_parallel(self, waiting: list[PlannedRun], pool: WorkerPool) -> None:
        """Start each waiting run once the runs it reads have finished, ``pool.jobs`` at a
        time, passing the workers' progress lines on."""
        flying: dict[Future[RunOutcome], _Started] = {}

        def submit(run: PlannedRun, prefix: str) -> Future[RunOutcome]:
            future = pool.submit(run, self._plots(run), prefix)
            flying[future] = _Started(run, prefix, time.perf_counter())
            return future

        while waiting or flying:
            unfinished = {run.run_dir for run in waiting} | {s.run.run_dir for s in flying.values()}
            while waiting and len(flying) < pool.jobs:
                ready = next((run for run in waiting if not _reads(run, unfinished)), None)
                if ready is None and not flying:
                    raise RuntimeError(f"runs that wait for each other: {waiting}")
                if ready is None:
                    break
                waiting.remove(ready)
                self._start(ready, submit)
            done, _ = wait(flying, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for line in pool.progress_lines():
                self.progress(line)
            for future in done:
                self._finish(flying.pop(future), future.result())

    def _inline(self, run: PlannedRun, prefix: str) -> None:
        started = time.perf_counter()
        outcome = run_locked(
            run,
            self._plots(run),
            lambda message: self.progress(f"{prefix}: {message}"),
            self.discoveries,
        )
        self._finish(_Started(run, prefix, started), outcome)

    def _plots(self, run: PlannedRun) -> bool:
        """Whether ``run`` gets its plots."""
        return self.report and (self.plot_seeds is None or run.seed in self.plot_seeds)

    def _start(self, run: PlannedRun, launch: Callable[[PlannedRun, str], object]) -> None:
        """Number ``run`` and ``launch(run, prefix)`` it, or skip it when a run it reads was
        held by another process."""
        self._numbered += 1
        point = f" {point_name(run.point)}" if run.point else ""
        prefix = f"[{self._numbered}/{self.total}] {run.method}{point} seed {run.seed}"
        held = next((p for p in (run.bias_run, run.groups_run) if p in self.held), None)
        if held is not None:  # its bias discovery needs a run held elsewhere
            self.progress(f"{prefix}: skipped, its bias run {held} is held")
            self.busy.append(f"{run.run_dir} (waits for its bias run {held})")
            return
        launch(run, prefix)

    def _finish(self, started: _Started, outcome: RunOutcome) -> None:
        """Keep a run's results, or note that another process held it."""
        run, prefix = started.run, started.prefix
        if outcome.results is None:
            self.progress(f"{prefix}: skipped, in use by another process ({outcome.holder})")
            self.busy.append(f"{run.run_dir} ({outcome.holder})")
            self.held.add(run.run_dir)
            return
        self.results_of[run.run_dir] = {
            split: RunResults.from_json(data) for split, data in outcome.results.items()
        }
        now = time.perf_counter()
        self.progress(
            f"{prefix}: finished in {_duration(now - started.started)} "
            f"(elapsed {_duration(now - self.started)})"
        )


def _reads(run: PlannedRun, unfinished: set[Path]) -> bool:
    """Whether ``run`` reads one of the ``unfinished`` runs (its bias or groups run, itself
    aside)."""
    read = (run.bias_run, run.groups_run)
    return any(path in unfinished for path in read if path and path != run.run_dir)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s"
