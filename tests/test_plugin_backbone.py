"""A backbone and an augmentation from outside the package are one function each (README's
recipe): loaded as a plugin, they are choices of model.backbone and data.augmentation, and a
run trains, resumes exactly and evaluates with them through the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fakes import final_model, install_plugin, restore_registries

from debiascl.cli import main
from debiascl.registry import AUGMENTATIONS, BACKBONES

TINY = ["--dataset", "biased-digits-binary", "--method", "simclr", "--batch-size", "128"]
SETS = ["--set", "data.options.image_size=8", "--set", "train.knn_every=0"]
TOYS = ["--set", "model.backbone=pool_cnn", "--set", "data.augmentation=flip_noise"]


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """README's toy backbone and augmentation; the registries and sys.modules are restored
    afterwards."""
    restore_registries(monkeypatch, BACKBONES, AUGMENTATIONS)
    yield from install_plugin("toy_backbone.py", tmp_path / "plugin", BACKBONES, monkeypatch)


def _train(plugin: Path, run: Path, epochs: int, *extra: str) -> int:
    command = ["--plugin", str(plugin), "train", *TINY, "--out", str(run)]
    return main([*command, "--epochs", str(epochs), "--device", "cpu", *SETS, *TOYS, *extra])


@pytest.mark.slow
def test_a_plugin_backbone_and_augmentation_train_resume_and_evaluate(
    plugin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _train(plugin, straight, 2) == 0
    assert _train(plugin, resumed, 1) == 0
    assert _train(plugin, resumed, 2, "--resume") == 0

    config = (straight / "config.yaml").read_text()
    assert "backbone: pool_cnn" in config and "augmentation: flip_noise" in config
    straight_weights, resumed_weights = final_model(straight), final_model(resumed)
    assert straight_weights["encoder_d.backbone.0.weight"].shape == (32, 3, 3, 3)
    # the toy views draw from torch's generator, which the checkpoint carries: exact resume
    assert straight_weights.keys() == resumed_weights.keys()
    assert all(torch.equal(straight_weights[k], resumed_weights[k]) for k in straight_weights)

    capsys.readouterr()
    command = ["--plugin", str(plugin), "eval", str(straight), "--device", "cpu", "--no-plots"]
    assert main(command) == 0
    results = json.loads((straight / "results.json").read_text())
    assert 0.0 <= results["probe"]["metrics"]["accuracy"] <= 1.0


def test_without_the_plugin_its_names_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["train", *TINY, "--out", str(tmp_path / "run"), "--epochs", "1", *SETS]
    for setting in ("model.backbone=pool_cnn", "data.augmentation=flip_noise"):
        assert main([*command, "--set", setting]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and setting.split("=")[1] in error
