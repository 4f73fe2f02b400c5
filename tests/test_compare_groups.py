"""Tests of compare's discovery runs (``--signal``), training on discovered groups and the
label-free selection of supervised classifiers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from fakes import DATASET, FakePipeline

import debiascl.evaluate.loaded_run
import debiascl.features
from debiascl.compare import CompareOptions, RunSettings, compare
from debiascl.config import load_config
from debiascl.errors import DebiasclError
from debiascl.grid import parse_grid


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    return FakePipeline().install(monkeypatch)


def test_one_discovery_run_per_seed_gives_the_probes_and_the_training_groups(
    fake: FakePipeline, tmp_path: Path
) -> None:
    settings = RunSettings(
        epochs=50,
        device="cpu",
        probe_groups=("discovered",),
        sets=("train.groups=discovered", "train.groups_epochs=3"),
        signal="gce",
    )
    compare(
        DATASET, ["gdro", "simclr", "wcl"], [0, 1], tmp_path, settings, CompareOptions(report=False)
    )
    helpers = [tmp_path / "runs/discovery-gce" / f"seed{seed}" for seed in (0, 1)]
    # the discovery runs train first, as gce runs of train.groups_epochs epochs on no groups
    assert [call for call, _ in fake.train_calls[:2]] == ["gce/0", "gce/1"]
    for seed, helper in enumerate(helpers):
        config = load_config(helper / "config.yaml")
        assert (config.method.name, config.train.epochs) == ("gce", 3)
        assert (config.train.groups, config.train.groups_from) == ("none", None)
        assert (helper, None) in fake.discover_calls  # discovers with its own classifier
        for method in ("gdro", "simclr", "wcl"):  # wcl too: the signal is gce, not its E_b
            run_dir = tmp_path / "runs" / method / f"seed{seed}"
            trained = load_config(run_dir / "config.yaml")
            assert trained.train.epochs == 50
            assert trained.train.groups_from == str(helper.resolve())
            assert (run_dir, helper) in fake.discover_calls
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {row["method"] for row in rows} == {"gdro", "simclr", "wcl"}  # helpers not tabulated
    assert (tmp_path / "probes.md").is_file()


def test_a_run_cannot_train_on_the_groups_it_discovers(fake: FakePipeline, tmp_path: Path) -> None:
    settings = RunSettings(epochs=2, device="cpu", sets=("train.groups=discovered",))
    with pytest.raises(DebiasclError, match="the triplet runs discover the groups"):
        compare(
            DATASET, ["triplet", "simclr"], [0], tmp_path, settings, CompareOptions(report=False)
        )
    assert fake.train_calls == []  # refused while planning


def test_training_groups_without_the_discovered_probe_still_plan_the_discovery_run(
    fake: FakePipeline, tmp_path: Path
) -> None:
    settings = RunSettings(epochs=2, device="cpu", sets=("train.groups=discovered",))
    compare(DATASET, ["gdro"], [0], tmp_path, settings, CompareOptions(report=False))
    assert [call for call, _ in fake.train_calls] == ["triplet/0", "gdro/0"]  # knn: triplet
    config = load_config(tmp_path / "runs/gdro/seed0/config.yaml")
    assert config.train.groups_from == str((tmp_path / "runs/triplet/seed0").resolve())


def _selection_of(out: Path) -> tuple[str, dict[str, float], dict[str, float]]:
    """The reported erm point, and per point its val discovered_worst_group and worst_group."""
    summary = json.loads((out / "summary.json").read_text())
    chosen = next(row["point"] for row in summary if row["method"] == "erm")
    rows = json.loads((out / "results.json").read_text())
    val = [row for row in rows if row["split"] == "val" and row["method"] == "erm"]
    own = [row for row in val if row["evaluation"] == "own classifier (supervised)"]
    return (
        chosen,
        {row["point"]: row["discovered_worst_group"] for row in own},
        {row["point"]: row["worst_group"] for row in own},
    )


@pytest.mark.slow
def test_label_free_selection_never_reads_a_bias_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Train once, select; then evaluate and select again with every bias label poisoned: the
    discovered-group scores and the choice are the same, the true worst group is not."""
    settings = RunSettings(
        epochs=2,
        batch_size=256,
        device="cpu",
        probe_groups=("discovered",),
        signal="gce",
        sets=("data.options.image_size=8", "train.knn_every=0", "train.groups_epochs=1"),
    )
    grid = [parse_grid("erm:optim.lr=0.003,0.3")]
    run = {"grid": grid, "select": "discovered_worst_group", "report": False}
    compare(DATASET, ["erm"], [0], tmp_path, settings, CompareOptions(**run))
    before = _selection_of(tmp_path)

    real_extract = debiascl.features.extract_features

    def poisoned(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, ...]:
        h, y, a, index = real_extract(*args, **kwargs)
        noise = torch.randint(0, 2, a.shape, generator=torch.Generator().manual_seed(0))
        return h, y, noise.to(a), index  # bias labels replaced by coin flips

    monkeypatch.setattr(debiascl.evaluate.loaded_run, "extract_features", poisoned)
    for results in tmp_path.glob("runs/erm/*/seed0/results*.json"):
        results.unlink()  # evaluated again, with the poisoned labels
    for marker in tmp_path.glob("runs/erm/*/seed0/done"):
        marker.unlink()
    shutil.rmtree(tmp_path / "runs/discovery-gce/seed0/probes", ignore_errors=True)
    compare(DATASET, ["erm"], [0], tmp_path, settings, CompareOptions(**run))
    after = _selection_of(tmp_path)
    assert after[0] == before[0]
    assert after[1] == pytest.approx(before[1], abs=0)
    assert after[2] != before[2]  # the poison reached the bias-label metrics
