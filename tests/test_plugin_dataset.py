"""A data set from outside the package is one file (README's recipe): loaded as a plugin, it is
listed, trains, evaluates and compares through the CLI like a built-in one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import install_plugin

from debiascl.cli import main
from debiascl.registry import DATASETS

TINY = ["--epochs", "1", "--batch-size", "256", "--device", "cpu", "--set", "train.knn_every=0"]


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """README's toy data set (section "Adding a data set"); the data set registry and
    sys.modules are restored afterwards."""
    yield from install_plugin("toy_dataset.py", tmp_path / "plugin", DATASETS, monkeypatch)


@pytest.mark.slow
def test_a_plugin_dataset_is_listed_trains_evaluates_and_compares_through_the_cli(
    plugin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--plugin", str(plugin), "datasets"]) == 0
    assert "toy-stripes" in capsys.readouterr().out

    run = tmp_path / "run"
    train = ["--plugin", str(plugin), "train", "--dataset", "toy-stripes", "--method", "wcl"]
    assert main([*train, "--out", str(run), *TINY, "--set", "data.options.rho=0.95"]) == 0
    evaluate = ["--plugin", str(plugin), "eval", str(run), "--device", "cpu", "--no-plots"]
    assert main([*evaluate, "--probe-groups", "discovered,true"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["dataset"] == "toy-stripes" and results["num_samples"]["train"] == 600
    metrics = results["probe"]["metrics"]
    assert set(metrics["per_group"]) == {"y=0,a=0", "y=0,a=1", "y=1,a=0", "y=1,a=1"}
    assert metrics["conflicting_size"] + metrics["aligned_size"] == 200
    assert results["discovery"]["train"]["bias_labels"]  # graded with the toy's attributes

    out = tmp_path / "cmp"
    compare = ["--plugin", str(plugin), "compare", "--dataset", "toy-stripes"]
    assert (
        main(
            [
                *compare,
                "--methods",
                "simclr,gdro",
                "--seeds",
                "0",
                "--out",
                str(out),
                *TINY,
                "--set",
                "gdro:train.groups=discovered",
                "--probe-groups",
                "discovered",
                "--no-plots",
            ]
        )
        == 0
    )
    rows = json.loads((out / "results.json").read_text())
    assert {(row["method"], row["training_groups"]) for row in rows} == {
        ("simclr", "none"),
        ("gdro", "discovered"),
    }


def test_without_the_plugin_the_toy_is_an_unknown_data_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--dataset", "toy-stripes", "--method", "wcl", "--out", "unused"]) == 2
    assert "unknown dataset 'toy-stripes'" in capsys.readouterr().err
