"""`compare --jobs N`: runs in worker processes, with the CPUs shared out between them, the
same numbers as one job at the same thread count, and plots for some seeds only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from fakes import DATASET, TINY_DIGITS_CLI, FakePipeline

import debiascl.cli.compare as cli_compare
import debiascl.compare.execute
import debiascl.compare.workers as workers
from debiascl.cli import main
from debiascl.compare import (
    CompareOptions,
    Executor,
    PlannedRun,
    RunSettings,
    compare,
    run_dir_for,
)
from debiascl.config import load_config
from debiascl.errors import DebiasclError
from debiascl.rundir import hold_run_dir

TINY = [*TINY_DIGITS_CLI, "--no-plots"]


def _compare(out: Path, jobs: int, *extra: str) -> subprocess.CompletedProcess:
    """``debiascl compare`` of simclr and gdro on discovered groups, 2 seeds, 1 epoch, in a
    process whose math libraries (and workers) use one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = ["compare", "--methods", "simclr,gdro", "--seeds", "0,1", "--out", str(out)]
    args += [*TINY, "--set", "gdro:train.groups=discovered", "--probe-groups", "discovered"]
    command = [sys.executable, "-m", "debiascl", *args, "--jobs", str(jobs), *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_jobs_give_the_tables_of_one_job_at_the_same_thread_count(tmp_path: Path) -> None:
    one = _compare(tmp_path / "one", 1)
    two = _compare(tmp_path / "two", 2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    for table in ("probes.md", "summary.md", "paired.csv"):
        assert (tmp_path / "one" / table).read_text() == (tmp_path / "two" / table).read_text()
    # the workers draw no progress bars (they would overwrite each other on a terminal)
    assert load_config(run_dir_for(tmp_path / "one", "gdro", 1) / "config.yaml").train.progress
    assert not load_config(run_dir_for(tmp_path / "two", "gdro", 1) / "config.yaml").train.progress
    # 2 triplet bias runs + 4 runs; gdro waited for its seed's triplet run to finish
    lines = two.stderr.splitlines()
    finished = [line for line in lines if ": finished in " in line]
    assert len(finished) == 6
    for method, seed in [("triplet", 0), ("triplet", 1), ("gdro", 0), ("simclr", 1)]:
        mine = [i for i, line in enumerate(lines) if f"] {method} seed {seed}: " in line]
        assert f"{method} seed {seed}: training" in lines[mine[0]]  # every line came back,
        assert ": finished in " in lines[mine[-1]]  # in order
    done_triplet = lines.index(next(line for line in finished if "triplet seed 0" in line))
    started_gdro = next(i for i, line in enumerate(lines) if "gdro seed 0: training" in line)
    assert started_gdro > done_triplet


@pytest.mark.slow
def test_a_held_run_is_skipped_and_an_error_in_a_worker_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    base = ["compare", "--methods", "simclr", "--seeds", "0,1", "--out", str(out), *TINY]
    held = run_dir_for(out, "simclr", 1)
    with hold_run_dir(held):  # this process holds it: the worker finds it in use
        assert main([*base, "--jobs", "2"]) == 2
    err = capsys.readouterr().err
    assert "[2/2] simclr seed 1: skipped, in use by another process (pid" in err
    assert f"1 of 2 runs were skipped because another process holds them: {held}" in err
    assert (run_dir_for(out, "simclr", 0) / "done").is_file()

    # simclr seed 0 was trained for 1 epoch: asking for 2 is refused inside its worker
    again = [*base[:2], "dcl,simclr", "--seeds", "0", *base[5:], "--epochs", "2", "--jobs", "2"]
    assert main(again) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("debiascl: error: ")
    assert "simclr/seed0' was made with other settings: train.epochs (1 stored, 2 now)" in err


def test_worker_environment_sets_the_thread_variables_the_user_did_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with workers.worker_environment(2):
        assert os.environ["OMP_NUM_THREADS"] == "3"  # the user's own value is kept
        assert os.environ["MKL_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == "2"
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert "MKL_NUM_THREADS" not in os.environ and "OPENBLAS_NUM_THREADS" not in os.environ


def test_threads_per_worker_share_the_cpus_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "available_cpus", lambda: 8)
    assert [workers.threads_per_worker(jobs) for jobs in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_plot_seeds_draw_the_plots_of_those_seeds_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakePipeline().install(monkeypatch)
    plotted: list[Path] = []

    def record_report(loaded: Any) -> None:
        plotted.append(loaded.run_dir)

    monkeypatch.setattr(debiascl.compare.execute, "write_report", record_report)
    settings = RunSettings(device="cpu", epochs=2)
    options = CompareOptions(report=True, plot_seeds=(1,))
    compare(DATASET, ["simclr", "wcl"], [0, 1, 2], tmp_path, settings, options)
    assert plotted == [run_dir_for(tmp_path, "simclr", 1), run_dir_for(tmp_path, "wcl", 1)]
    with pytest.raises(DebiasclError, match="jobs: expected an integer >= 1, got 0"):
        compare(DATASET, ["simclr"], [0], tmp_path, settings, CompareOptions(jobs=0))


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--jobs", "0", "argument --jobs: expected an integer >= 1, got '0'"),
        ("--jobs", "two", "argument --jobs: expected an integer >= 1, got 'two'"),
        ("--plot-seeds", "a", "--plot-seeds: expected comma-separated integers"),
    ],
)
def test_bad_jobs_or_plot_seeds_are_one_line_errors(
    flag: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compare", "--dataset", "biased-digits", "--out", str(tmp_path), flag, value]
    try:
        status = main(args)
    except SystemExit as stop:  # argparse's usage errors
        status = stop.code
    assert status == 2
    assert message in capsys.readouterr().err


def test_runs_that_wait_for_each_other_are_refused_not_waited_for_forever() -> None:
    first = PlannedRun("simclr", 0, None, Path("a"), bias_run=Path("b"))  # type: ignore[arg-type]
    second = PlannedRun("simclr", 1, None, Path("b"), bias_run=Path("a"))  # type: ignore[arg-type]
    executor = Executor(report=False, plot_seeds=None, progress=print, total=2, jobs=2)
    with pytest.raises(RuntimeError, match="runs that wait for each other"):
        executor.run_all([first, second])


def test_the_demo_takes_a_job_per_cpu_up_to_four_and_one_on_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers, "available_cpus", lambda: 16)
    assert cli_compare._demo_jobs("cpu") == cli_compare.DEMO_MAX_JOBS == 4
    monkeypatch.setattr(workers, "available_cpus", lambda: 2)
    assert cli_compare._demo_jobs("cpu") == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cli_compare._demo_jobs(None) == cli_compare._demo_jobs("cuda") == 1
