"""`debiascl train`: the help lists names; every user error is one line and exit status 2."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from debiascl.checkpoint import save_checkpoint
from debiascl.cli import main
from debiascl.config import list_presets
from debiascl.data import list_datasets
from debiascl.errors import DebiasclError, user_message
from debiascl.methods import METHODS
from debiascl.training import run as train_module  # what `debiascl train` imports when it runs


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


@pytest.mark.parametrize(
    ("argv", "prog", "message"),
    [
        (["train", "--epochs", "abc"], "debiascl train", "argument --epochs: invalid int value"),
        (["train", "--dataset", "d", "--method", "m"], "debiascl train", "required: --out"),
        (["bogus"], "debiascl", "invalid choice: 'bogus'"),
        (["eval"], "debiascl eval", "required: RUN_DIR"),
        (["--nope"], "debiascl", "unrecognized arguments: --nope"),
    ],
)
def test_usage_errors_are_one_line_naming_the_help(
    argv: list[str], prog: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"{prog}: error: ") and message in err
    assert err.rstrip().endswith(f"(see {prog} --help)")


def test_info_records_reach_stderr_only_while_the_cli_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("debiascl")

    def logging_train(config: object, run_dir: Path, resume: bool = False) -> Path:
        logger.info("composition of the error set")
        logger.warning("a warning")
        return run_dir

    monkeypatch.setattr(train_module, "train", logging_train)
    before = (list(logger.handlers), logger.level, logger.propagate)
    assert main(_train_args(tmp_path / "r")) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == ["debiascl: composition of the error set", "debiascl: a warning"]
    assert (list(logger.handlers), logger.level, logger.propagate) == before
    logger.info("library use stays silent")
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_jtt_reports_its_error_set_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _train_args(tmp_path / "jtt", dataset="biased-digits-binary", method="jtt")
    args += ["--epochs", "1", "--batch-size", "512", "--device", "cpu"]
    for setting in ("data.options.image_size=8", "train.knn_every=0", "method.jtt_epochs=1"):
        args += ["--set", setting]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "debiascl: JTT error set: " in err and "misclassified after 1 epochs" in err
    assert "debiascl: JTT error set caught " in err


WORKER_MESSAGE = (
    "Caught DebiasclError in DataLoader worker process 0.\n"
    "Original Traceback (most recent call last):\n"
    '  File "/site-packages/torch/utils/data/_utils/worker.py", line 349, in _worker_loop\n'
    "    data = fetcher.fetch(index)\n"
    "debiascl.errors.DebiasclError: image 'x/1.png' cannot be read: truncated file\n"
)


class _UnreadableImages(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        raise DebiasclError(f"image 'images/{index}.png' cannot be read: truncated file")


def test_user_message_unwraps_dataloader_worker_errors() -> None:
    assert user_message(DebiasclError(WORKER_MESSAGE)) == (
        "image 'x/1.png' cannot be read: truncated file"
    )
    assert user_message(DebiasclError("plain message")) == "plain message"
    loader = torch.utils.data.DataLoader(_UnreadableImages(), num_workers=1)
    with pytest.raises(DebiasclError) as error:
        next(iter(loader))
    assert "Original Traceback" in str(error.value)  # what torch re-raises
    assert user_message(error.value) == "image 'images/0.png' cannot be read: truncated file"


def test_the_cli_prints_a_worker_error_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing_train(config: object, run_dir: Path, resume: bool = False) -> Path:
        raise DebiasclError(WORKER_MESSAGE)

    monkeypatch.setattr(train_module, "train", failing_train)
    assert main(_train_args(tmp_path / "r")) == 2
    assert capsys.readouterr().err == (
        "debiascl: error: image 'x/1.png' cannot be read: truncated file\n"
    )


def test_damaged_checkpoint_on_resume_is_a_one_line_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    args = _train_args(run_dir, "--epochs", "1", "--batch-size", "512", "--device", "cpu")
    args += ["--set", "data.options.image_size=8", "--set", "train.knn_every=0"]
    assert main(args) == 0
    path = run_dir / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["optimizers"] = {}
    del state["checksum"]  # as a checkpoint from before checksums: loaded unverified
    torch.save(state, path)
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"debiascl: error: checkpoint '{path}'")
    assert "is damaged or was written with another configuration (KeyError: 'd')" in err
