"""`debiascl train`: the help lists names; every user error is one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from debiascl.checkpoint import save_checkpoint
from debiascl.cli import main
from debiascl.config import list_presets
from debiascl.data import list_datasets
from debiascl.methods import METHODS


def test_help_lists_datasets_methods_and_presets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for name in [*list_datasets(), *METHODS, *list_presets()]:
        assert name in help_text, name
    for flag in ("--dataset", "--method", "--out", "--resume", "--set", "--preset", "--precision"):
        assert flag in help_text


def _train_args(out: Path, *extra: str, dataset: str = "biased-digits", method: str = "wcl"):
    return ["train", "--dataset", dataset, "--method", method, "--out", str(out), *extra]


def _bad_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("train: [epochs: 3\n")
    return path


def _busy_dir(tmp_path: Path) -> Path:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    return tmp_path / "busy"


def _corrupt_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "corrupt"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04 cut short")
    return run_dir


USER_ERRORS = {
    "unknown dataset": (
        lambda t: _train_args(t / "r", dataset="mnist-ish"),
        "unknown dataset 'mnist-ish'",
    ),
    "unknown method": (lambda t: _train_args(t / "r", method="byol"), "unknown method 'byol'"),
    "out-of-range setting": (
        lambda t: _train_args(t / "r", "--set", "tau_plus=1.5"),
        "'method.tau_plus' = 1.5 is out of range",
    ),
    "unknown setting": (
        lambda t: _train_args(t / "r", "--set", "train.epoch=3"),
        "unknown setting 'train.epoch'",
    ),
    "bad precision": (
        lambda t: _train_args(t / "r", "--precision", "fp8"),
        "'train.precision' = 'fp8'",
    ),
    "malformed config file": (
        lambda t: _train_args(t / "r", "--config", str(_bad_yaml(t))),
        "is not valid YAML",
    ),
    "missing config file": (
        lambda t: _train_args(t / "r", "--config", str(t / "nope.yaml")),
        "nope.yaml' does not exist",
    ),
    "missing data": (
        lambda t: _train_args(t / "r", "--data-dir", str(t / "no-data"), dataset="waterbirds"),
        "does not exist",
    ),
    "non-empty run dir": (
        lambda t: _train_args(_busy_dir(t)),
        "already exists and is not empty; pass --resume",
    ),
    "resume without checkpoint": (
        lambda t: _train_args(t / "fresh", "--resume"),
        "no checkpoint at",
    ),
    "resume from a corrupt checkpoint": (
        lambda t: _train_args(_corrupt_run(t), "--resume"),
        "is truncated",
    ),
    "batch size below 2": (
        lambda t: _train_args(t / "r", "--batch-size", "1"),
        "'train.batch_size' = 1 is out of range",
    ),
}


@pytest.mark.parametrize("case", list(USER_ERRORS))
def test_user_errors_print_one_line_and_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_args, expected = USER_ERRORS[case]
    status = main(make_args(tmp_path))
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("debiascl: error: ") and expected in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_foreign_checkpoint_on_resume_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "foreign"
    save_checkpoint(run_dir / "checkpoints" / "last.pt", {"state_dict": {}})
    assert main(_train_args(run_dir, "--resume")) == 2
    assert "not a debiascl checkpoint" in capsys.readouterr().err


def test_the_installed_command_exits_2_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "debiascl", *_train_args(tmp_path / "r", "--set", "tau_plus=1.5")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "tau_plus" in result.stderr and "Traceback" not in result.stderr
