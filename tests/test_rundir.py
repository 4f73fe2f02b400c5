"""The run directory's states: fresh, running (locked by another process), resumable, finished."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from debiascl.rundir import (
    LOCK_NAME,
    RunState,
    checkpoint_path,
    hold_run_dir,
    mark_finished,
    run_state,
    stage1_path,
)


def test_states_follow_what_the_directory_holds(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert run_state(run_dir) is RunState.FRESH
    with hold_run_dir(run_dir):  # this process's own lock is not "running elsewhere"
        assert run_state(run_dir) is RunState.FRESH
    stage1_path(run_dir).mkdir()
    assert run_state(run_dir) is RunState.RESUMABLE  # JTT's stage 1 can be continued
    stage1_path(run_dir).rmdir()
    checkpoint_path(run_dir).parent.mkdir()
    checkpoint_path(run_dir).write_bytes(b"checkpoint")
    assert run_state(run_dir) is RunState.RESUMABLE
    mark_finished(run_dir, 12)
    assert run_state(run_dir) is RunState.FINISHED


def test_a_directory_locked_by_another_process_is_running(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code = "import sys, time\nfrom debiascl.rundir import hold_run_dir\n"
    code += "with hold_run_dir(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        assert run_state(run_dir) is RunState.RUNNING
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 30
    while run_state(run_dir) is RunState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)  # the kill releases the lock
    assert (run_dir / LOCK_NAME).is_file() and run_state(run_dir) is RunState.FRESH
