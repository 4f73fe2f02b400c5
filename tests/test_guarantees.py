"""What debiascl guarantees (README "What debiascl guarantees"), each shown as a hostile user would.

Every case ends either in success with the damage repaired, or in ONE line ``debiascl: error:
...`` naming the file or setting, exit status 2, with nothing previously saved changed. The
concurrency cases use a second real process; damaged files are made by the tests.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fakes import DATASET, FakePipeline
from fakes import train_args as shared_train_args

import debiascl.atomic
import debiascl.compare
import debiascl.train
import debiascl.training.log
import debiascl.training.loop
from debiascl.checkpoint import load_checkpoint
from debiascl.cli import main
from debiascl.compare import CompareOptions, RunSettings, compare, finished_results, plan_runs
from debiascl.errors import DebiasclError
from debiascl.rundir import LOCK_NAME, checkpoint_path, hold_run_dir

TINY = (
    "data.options.image_size=8",
    "train.knn_every=0",
    "train.log_every=1",
    "train.max_consecutive_skips=1000",
)
"""4 steps of 256 per epoch, every step logged; skips never stop the run early."""


def train_args(out: Path, *extra: str, method: str = "simclr", epochs: int = 1) -> list[str]:
    """``debiascl train`` of the tiny run into ``out``."""
    return shared_train_args(out, *extra, method=method, epochs=epochs, settings=TINY)


def one_line_error(capsys: pytest.CaptureFixture[str], status: int, *fragments: str) -> str:
    """Assert exit status 2 and a single ``debiascl: error:`` line holding every fragment.

    compare's progress lines (``compare: ...``) may come before it.
    """
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if not line.startswith("compare: ")]
    assert status == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("debiascl: error: "), lines[0]
    assert "Traceback" not in captured.err + captured.out
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), the lock file aside."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != LOCK_NAME
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny simclr run (1 epoch), trained once for the module."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(train_args(run_dir)) == 0
    return run_dir


@pytest.fixture
def run_copy(finished: Path, tmp_path: Path) -> Path:
    """A copy of :func:`finished` that a test may damage."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


# ----------------------------------------------------------------------------- locking


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1"}


def _wait_for_holder(process: subprocess.Popen, run_dir: Path) -> None:
    """Wait until ``process`` has taken the lock of ``run_dir`` (its pid is in the lock file)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            if json.loads((run_dir / LOCK_NAME).read_text())["pid"] == process.pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the other process never took the lock"
        time.sleep(0.05)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """A second process holding the lock of ``tmp_path/out/runs/simclr/seed0`` until killed."""
    run_dir = tmp_path / "out" / "runs" / "simclr" / "seed0"
    code = (
        "import sys, time\n"
        "from debiascl.rundir import hold_run_dir\n"
        "with hold_run_dir(sys.argv[1]):\n"
        "    time.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], env=_env())
    try:
        _wait_for_holder(process, run_dir)
        yield process, run_dir
    finally:
        process.kill()
        process.wait()


def test_a_second_train_or_resume_into_a_running_run_fails_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "debiascl", *train_args(run_dir, method="wcl", epochs=500)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_holder(first, run_dir)
        deadline = time.monotonic() + 120
        while not (run_dir / "config.yaml").is_file():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        config_before = (run_dir / "config.yaml").read_bytes()
        for argv in (train_args(run_dir, method="simclr"), train_args(run_dir, "--resume")):
            one_line_error(
                capsys,
                main(argv),
                f"run directory '{run_dir}' is in use by another debiascl process",
                f"(pid {first.pid} on host ",
            )
        assert (run_dir / "config.yaml").read_bytes() == config_before
        assert "method:\n  name: wcl" in config_before.decode()
        assert first.poll() is None  # the first run was not disturbed
    finally:
        first.kill()
        first.wait()
    with hold_run_dir(run_dir):  # the kill released the lock
        pass


def test_compare_skips_a_run_another_process_holds(
    holder: tuple[subprocess.Popen, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    process, run_dir = holder
    (run_dir / "notes.txt").write_text("the other process's")
    before = snapshot(tmp_path / "out")
    args = _compare_args(tmp_path / "out", "--epochs", "1", "--device", "cpu", "--no-plots")
    status = main(args)
    one_line_error(
        capsys,
        status,
        "1 of 1 runs were skipped because another process holds them",
        f"{run_dir} (pid {process.pid} on host ",
        "no tables were written. Rerun the same command",
    )
    assert snapshot(tmp_path / "out") == before  # nothing trained into it, no tables
    assert process.poll() is None


def test_compare_trains_the_other_runs_and_tabulates_them(
    holder: tuple[subprocess.Popen, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    process, _ = holder
    fake = FakePipeline().install(monkeypatch)
    settings = RunSettings(epochs=1, device="cpu")
    with pytest.raises(DebiasclError, match=r"1 of 2 runs were skipped .* the tables hold the"):
        compare(
            DATASET,
            ["simclr", "wcl"],
            [0],
            tmp_path / "out",
            settings,
            CompareOptions(report=False),
        )
    assert fake.train_calls == [("wcl/0", False)]
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("wcl,0,")
    assert process.poll() is None


def test_a_killed_holder_releases_the_run_directory(
    holder: tuple[subprocess.Popen, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    process, run_dir = holder
    one_line_error(capsys, main(train_args(run_dir)), f"(pid {process.pid} on host ")
    process.send_signal(signal.SIGKILL)
    process.wait()
    with hold_run_dir(run_dir):
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid()


# ----------------------------------------------------------------------------- metrics.jsonl


def _records(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert b"\x00" not in data and data.endswith(b"\n")
    return [json.loads(line) for line in data.decode().splitlines()]


@pytest.mark.parametrize("damage", ["shorter than the checkpoint's offset", "torn extra line"])
def test_resume_repairs_metrics_jsonl_and_never_pads_it(
    damage: str, run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = run_copy / "metrics.jsonl"
    original = log.read_bytes()
    assert load_checkpoint(checkpoint_path(run_copy))["metrics_offset"] == len(original)
    if damage == "torn extra line":
        log.write_bytes(original + b'{"kind": "step", "ep')
        kept = original
    else:  # the last record (the epoch's) did not reach the disk completely
        log.write_bytes(original[:-10])
        kept = original[: original[:-10].rfind(b"\n") + 1]
    assert main(train_args(run_copy, "--resume", epochs=2)) == 0
    err = capsys.readouterr().err
    repaired = log.read_bytes()
    assert repaired.startswith(kept)  # complete records before the damage are kept
    records = _records(log)
    assert [r["step"] for r in records if r["kind"] == "step"][-4:] == [5, 6, 7, 8]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"][-1] == 2
    if damage == "torn extra line":
        assert "metrics.jsonl" not in err  # the offset cut the torn line silently, as designed
    else:
        warnings = [line for line in err.splitlines() if "metrics.jsonl" in line]
        assert len(warnings) == 1 and f"fewer than the {len(original)}" in warnings[0]


def test_the_log_is_fsynced_before_each_checkpoint_that_records_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, int]] = []
    log = tmp_path / "run" / "metrics.jsonl"
    real_fsync, real_save = os.fsync, debiascl.training.loop.save_checkpoint

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if log.exists() and os.path.samefile(f"/proc/self/fd/{fd}", log):
            events.append(("fsync", log.stat().st_size))

    def save(path: Path, state: dict) -> None:
        events.append(("checkpoint", state["metrics_offset"]))
        real_save(path, state)

    monkeypatch.setattr(debiascl.training.log.os, "fsync", fsync)
    monkeypatch.setattr(debiascl.training.loop, "save_checkpoint", save)
    assert main(train_args(tmp_path / "run", "--set", "train.checkpoint_every=2")) == 0
    checkpoints = [k for k, (name, _) in enumerate(events) if name == "checkpoint"]
    assert len(checkpoints) == 2  # after step 2, and at the end of the epoch
    for k in checkpoints:
        assert events[k - 1] == ("fsync", events[k][1]), events


# ----------------------------------------------------------------------------- checkpoints


def _middle_of_biggest_tensor(path: Path, data: bytearray) -> int:
    """The byte offset, in the checkpoint file ``path`` read as ``data``, of the middle of its
    largest tensor's stored bytes (found through the zip's local file header)."""
    with zipfile.ZipFile(path) as archive:
        biggest = max(
            (info for info in archive.infolist() if "/data/" in info.filename),
            key=lambda info: info.file_size,
        )
    name_length, extra_length = struct.unpack_from("<HH", data, biggest.header_offset + 26)
    return biggest.header_offset + 30 + name_length + extra_length + biggest.file_size // 2


def test_corrupted_tensor_bytes_are_a_damaged_checkpoint(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = checkpoint_path(run_copy)
    data = bytearray(path.read_bytes())
    start = _middle_of_biggest_tensor(path, data)
    data[start : start + 64] = b"\xff" * 64  # the damage: 64 bytes inside tensor data
    path.write_bytes(bytes(data))
    before = snapshot(run_copy)
    status = main(train_args(run_copy, "--resume", epochs=2))
    one_line_error(capsys, status, f"checkpoint '{path}' is damaged", "delete it to start again")
    assert snapshot(run_copy) == before  # not resumed, train_done kept, nothing rewritten


def test_damage_in_a_tensor_fails_the_checksum(run_copy: Path) -> None:
    path = checkpoint_path(run_copy)
    data = bytearray(path.read_bytes())
    start = _middle_of_biggest_tensor(path, data)
    data[start : start + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    with pytest.raises(Exception, match="checksum does not match its content"):
        load_checkpoint(path)


def test_a_corrupt_data_pkl_is_reported_damaged_not_unsafe(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = checkpoint_path(run_copy)
    with zipfile.ZipFile(path) as archive:
        pickle_entry = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", data, pickle_entry.header_offset + 26)
    start = pickle_entry.header_offset + 30 + name_length + extra_length + 5
    data[start : start + 4] = b"\xff\xff\xff\xff"  # an invalid pickle opcode
    path.write_bytes(bytes(data))
    status = main(train_args(run_copy, "--resume", epochs=2))
    line = one_line_error(capsys, status, f"checkpoint '{path}' is damaged")
    assert "not loaded for safety" not in line


def test_checkpoints_without_a_checksum_still_load(run_copy: Path) -> None:
    path = checkpoint_path(run_copy)
    state = torch.load(path, weights_only=True)
    del state["checksum"]
    torch.save(state, path)
    assert "checksum" not in load_checkpoint(path)


def test_a_run_whose_every_step_is_non_finite_ends_with_an_error(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = checkpoint_path(run_copy)
    state = torch.load(path, weights_only=True)
    first = next(key for key, value in state["model"].items() if value.is_floating_point())
    state["model"][first].fill_(float("nan"))
    del state["checksum"]  # a checkpoint from before checksums: nothing catches the NaN on load
    torch.save(state, path)
    status = main(train_args(run_copy, "--resume", epochs=2))
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("debiascl: error:")]
    assert status == 2 and len(errors) == 1, captured.err
    assert "ran 4 steps and the loss was not finite in any of them" in errors[0]
    assert not (run_copy / "train_done").exists()


class _FullDisk(io.RawIOBase):
    """A binary file whose device fills up after ``room`` bytes (writes raise ENOSPC)."""

    def __init__(self, file: io.BufferedWriter, room: int) -> None:
        super().__init__()
        self.file, self.room = file, room

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def fileno(self) -> int:
        return self.file.fileno()


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = checkpoint_path(run_copy)
    saved, log = path.read_bytes(), (run_copy / "metrics.jsonl").read_bytes()
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, file: real_save(obj, _FullDisk(file, 4096)))
    status = main(train_args(run_copy, "--resume", epochs=2))
    one_line_error(capsys, status, f"cannot write '{path}': no space left on device")
    assert path.read_bytes() == saved
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left
    assert (run_copy / "metrics.jsonl").read_bytes().startswith(log)


def test_disk_full_while_writing_results(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full_fdopen(fd: int, mode: str) -> _FullDisk:
        return _FullDisk(os.fdopen(fd, mode), 10)

    before = snapshot(run_copy)
    fake_os = types.SimpleNamespace(**{**vars(os), "fdopen": full_fdopen})
    monkeypatch.setattr(debiascl.atomic, "os", fake_os)
    status = main(["eval", str(run_copy), "--device", "cpu", "--no-plots"])
    one_line_error(capsys, status, f"cannot write '{run_copy}", ".json': no space left on device")
    assert snapshot(run_copy) == before


def test_a_run_that_died_before_its_first_checkpoint_restarts_on_a_plain_rerun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("train:\n  epochs: 7\n")
    (run_dir / "metrics.jsonl").write_text('{"kind": "step", "epoch": 1, "step": 1}\n')
    (run_dir / "checkpoints" / ".last.pt.k3j2x9.tmp").write_bytes(b"PK\x03\x04 half")
    assert main(train_args(run_dir, "--resume")) == 2  # nothing to resume ...
    capsys.readouterr()
    assert main(train_args(run_dir)) == 0  # ... but a plain re-run starts it again
    notes = [line for line in capsys.readouterr().err.splitlines() if "first checkpoint" in line]
    assert notes == [
        f"debiascl: run directory '{run_dir}' holds a run that stopped before its first "
        "checkpoint (config.yaml, no checkpoint, no train_done): starting it again"
    ]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.pt"]
    assert (run_dir / "train_done").is_file()
    assert "epochs: 1" in (run_dir / "config.yaml").read_text()


# ----------------------------------------------------------------------------- one-line errors


def _regular_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


def _compare_args(out: Path, *extra: str) -> list[str]:
    head = ("compare", "--dataset", DATASET, "--methods", "simclr", "--seeds", "0")
    return [*head, "--out", str(out), *extra]


def _metadata_root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    (root / "metadata.csv").write_bytes(b"filename,split,y,a\ncaf\xe9.png,0,0,0\n")
    return root


ONE_LINE_ERRORS = {
    "train --set epochs not YAML": (
        lambda t: train_args(t / "r", "--set", "train.epochs=["),
        ["setting 'train.epochs': expected an integer, got '['"],
    ),
    "train --set temperature not YAML": (
        lambda t: train_args(t / "r", "--set", "method.temperature=@"),
        ["setting 'method.temperature': expected a number, got '@'"],
    ),
    "compare --set not YAML": (
        lambda t: _compare_args(t / "c", "--set", "train.epochs=["),
        ["setting 'train.epochs': expected an integer"],
    ),
    "--out under a regular file": (
        lambda t: train_args(_regular_file(t) / "run"),
        ["a-file/run' cannot be created or written (Not a directory)"],
    ),
    "--out under /proc/version": (
        lambda t: train_args(Path("/proc/version/run")),
        ["run directory '/proc/version/run' cannot be created or written"],
    ),
    "--out a regular file": (
        lambda t: train_args(_regular_file(t)),
        ["a-file' is a file, not a directory"],
    ),
    "compare --out a regular file": (
        lambda t: _compare_args(_regular_file(t)),
        ["--out '", "a-file' is a file, not a comparison folder"],
    ),
    "non-UTF-8 metadata.csv": (
        lambda t: ["datasets", "describe", "metadata-csv", "--root", str(_metadata_root(t))],
        ["metadata.csv is not UTF-8 text"],
    ),
    "seed overflow": (
        lambda t: train_args(t / "r", "--seed", "99999999999999999999"),
        ["'train.seed' = 99999999999999999999 is out of range: expected in [0, 4294967295]"],
    ),
    "huge data-set image size": (
        lambda t: ["datasets", "describe", "biased-digits", "--set", "image_size=100000"],
        ["option image_size=100000; expected an integer in [4, 4096]"],
    ),
    "huge view image size": (
        lambda t: train_args(t / "r", "--set", "data.image_size=100000"),
        ["'data.image_size' = 100000 is out of range: expected in [8, 4096]"],
    ),
    "probe batch size 0": (
        lambda t: train_args(t / "r", "--set", "eval.probe_batch_size=0"),
        ["'eval.probe_batch_size' = 0 is out of range: expected >= 1"],
    ),
    "eval of a regular file": (
        lambda t: ["eval", str(_regular_file(t))],
        ["a-file' is a file, not a run directory"],
    ),
    "describe rho=abc": (
        lambda t: ["datasets", "describe", "biased-digits", "--set", "rho=abc"],
        ["option rho='abc'; expected a fraction in [0, 1]"],
    ),
}


@pytest.mark.parametrize("case", list(ONE_LINE_ERRORS))
def test_user_errors_are_one_line_and_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_args, fragments = ONE_LINE_ERRORS[case]
    args = make_args(tmp_path)
    before = snapshot(tmp_path)
    one_line_error(capsys, main(args), *fragments)
    assert snapshot(tmp_path) == before


def test_compare_over_a_run_whose_config_is_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "out" / "runs" / "simclr" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_bytes(b"train:\n  epochs: \xff\n")
    (run_dir / "train_done").write_text("4\n")
    before = snapshot(tmp_path)
    status = main(_compare_args(tmp_path / "out", "--epochs", "1", "--device", "cpu"))
    one_line_error(capsys, status, f"config file '{run_dir / 'config.yaml'}' is not UTF-8 text")
    assert snapshot(tmp_path) == before


def test_compare_evaluates_again_a_run_whose_results_are_not_a_mapping(tmp_path: Path) -> None:
    (run,) = plan_runs(DATASET, ["simclr"], [0], tmp_path, RunSettings(epochs=1))
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "done").write_text("results.json\n")
    (run.run_dir / "results.json").write_text("[1, 2]\n")
    assert finished_results(run) == (
        None,
        "'results.json' is malformed (it holds a JSON list, not a results mapping)",
    )
