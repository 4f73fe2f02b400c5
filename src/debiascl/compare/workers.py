"""Running a comparison's runs in worker processes (``compare --jobs N``).

Each worker is a fresh interpreter (``spawn``) that brings whole runs to the finished state
(:func:`~debiascl.compare.execute.run_locked`: trained, discovering, evaluated, plotted) and
sends its progress lines back through a queue. The workers split the CPUs between them: unless
the user set them, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` are set
to ``usable CPUs // N`` (at least 1) in the workers' environment, as ``torchrun`` does for its
processes, so N runs do not oversubscribe the cores. A run is bit-exact for a given thread
count, so a run trained by a worker may differ in its last bits from the same run trained with
``--jobs 1`` (which keeps the process's own thread count); a rerun with the same ``--jobs`` on
the same machine repeats it exactly. The workers load the plugins this process loaded.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from multiprocessing.queues import SimpleQueue

from debiascl.compare.execute import RunOutcome, SharedDiscoveries, run_locked
from debiascl.compare.plan import PlannedRun
from debiascl.data.loading import available_cpus
from debiascl.errors import DebiasclError
from debiascl.plugins import load_plugins, loaded_plugins

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""The environment variables that size the math libraries' thread pools in a worker."""


def threads_per_worker(jobs: int) -> int:
    """The threads each of ``jobs`` workers gets: the usable CPUs shared out, at least 1."""
    return max(1, available_cpus() // jobs)


@contextmanager
def worker_environment(threads: int) -> Iterator[None]:
    """Set :data:`THREAD_VARIABLES` the user did not set to ``threads`` for the block (the
    workers started in it inherit them), then restore the environment."""
    added = [name for name in THREAD_VARIABLES if name not in os.environ]
    for name in added:
        os.environ[name] = str(threads)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


_progress: SimpleQueue | None = None
_discoveries = SharedDiscoveries()


def _start_worker(progress: SimpleQueue, plugins: list[str]) -> None:
    """A worker's initialiser: keep the progress queue and load the parent's plugins."""
    global _progress
    _progress = progress
    load_plugins(plugins)


def _send(line: str) -> None:
    assert _progress is not None, "a worker's progress queue is set by _start_worker"
    _progress.put(line)


def _run_in_worker(run: PlannedRun, report: bool, prefix: str) -> RunOutcome:
    """One run in a worker: its progress lines go to the parent prefixed with ``prefix``, and it
    draws no progress bar (``train.progress`` off: the bars of runs side by side would overwrite
    each other on one terminal; a setting that changes no result); runs this worker executes
    share its discoveries. A user error reaches the parent as a plain :class:`DebiasclError` with
    the same message (any subclass's arguments may not pickle)."""
    quiet = replace(run.config, train=replace(run.config.train, progress=False))
    run = replace(run, config=quiet)
    try:
        return run_locked(run, report, lambda message: _send(f"{prefix}: {message}"), _discoveries)
    except DebiasclError as error:
        raise DebiasclError(str(error)) from None


class WorkerPool:
    """``jobs`` worker processes and the queue their progress lines come back through (a
    :class:`~multiprocessing.SimpleQueue`, written without a background thread: once a run's
    result is back, every line it sent can be read).

    Use it as a context manager: the workers start in :func:`worker_environment` and, on
    leaving, the runs not started are cancelled and the running ones finish.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._context = multiprocessing.get_context("spawn")
        self._progress: SimpleQueue = self._context.SimpleQueue()
        self._environment = worker_environment(threads_per_worker(jobs))
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        self._environment.__enter__()
        self._pool = ProcessPoolExecutor(
            self.jobs,
            mp_context=self._context,
            initializer=_start_worker,
            initargs=(self._progress, loaded_plugins()),
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            self._environment.__exit__(None, None, None)

    def submit(self, run: PlannedRun, report: bool, prefix: str) -> Future[RunOutcome]:
        """Start ``run`` on a free worker (or when one frees up)."""
        assert self._pool is not None, "submit inside the pool's with block"
        return self._pool.submit(_run_in_worker, run, report, prefix)

    def progress_lines(self) -> list[str]:
        """The progress lines the workers sent since the last call."""
        lines = []
        while not self._progress.empty():
            lines.append(self._progress.get())
        return lines
