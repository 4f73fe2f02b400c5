"""A run written before the methods owned their options (tests/fixtures/legacy_wcl_run: every
method's settings in its config.yaml and checkpoint) still evaluates and resumes, to the numbers
the version that wrote it measured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from debiascl.cli import main

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "legacy_wcl_run"
EXPECTED = json.loads((FIXTURE / "expected_metrics.json").read_text())
TRAIN = [
    "train", "--dataset", "csv", "--method", "wcl", "--batch-size", "32", "--device", "cpu",
    "--set", "data.options.path=data.csv", "--set", "data.options.target=label",
    "--set", "data.options.bias=group", "--set", "data.options.split_column=fold",
    "--set", "data.augmentation=scarf", "--set", "model.backbone=mlp",
    "--set", "model.mlp_hidden_dims=[8]", "--set", "model.head_hidden_dim=8",
    "--set", "model.proj_dim=4", "--set", "train.knn_every=0",
]  # fmt: skip
"""The command line that trained the fixture (its README), without --epochs and --out."""


@pytest.fixture
def legacy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture's folder, made the working directory (the run reads data.csv)."""
    folder = Path(shutil.copytree(FIXTURE, tmp_path / "legacy"))
    monkeypatch.chdir(folder)
    return folder / "run"


def measured(run: Path) -> dict[str, dict]:
    """The probe's and the kNN classifier's metrics of the run's results.json."""
    results = json.loads((run / "results.json").read_text())
    return {"probe": results[results["main"]]["metrics"], "knn": results["knn"]["metrics"]}


def test_the_fixture_is_a_run_of_the_previous_format(legacy: Path) -> None:
    method = yaml.safe_load((legacy / "config.yaml").read_text())["method"]
    assert method["name"] == "wcl" and {"beta", "jtt_epochs", "gdro_eta"} <= set(method)


def test_a_run_of_the_previous_version_evaluates_to_its_numbers(legacy: Path) -> None:
    assert main(["eval", str(legacy), "--device", "cpu", "--no-plots"]) == 0
    assert measured(legacy) == EXPECTED["evaluated"]


@pytest.mark.slow
def test_a_run_of_the_previous_version_resumes_to_its_numbers(legacy: Path) -> None:
    assert main([*TRAIN, "--epochs", "2", "--resume", "--out", str(legacy)]) == 0
    assert main(["eval", str(legacy), "--device", "cpu", "--no-plots"]) == 0
    assert measured(legacy) == EXPECTED["resumed_to_2_epochs"]
