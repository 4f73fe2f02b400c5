"""A probe group kind from outside the package is one file (README's recipe): loaded as a
plugin, it is a choice of --probe-groups, and compare and eval fit, score and tabulate its
probe like a built-in one's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fakes import install_plugin, restore_registries

from debiascl.cli import main
from debiascl.evaluate import probe_groups_of
from debiascl.plugins import load_plugin
from debiascl.registry import PROBE_GROUP_KINDS

TINY = ["--epochs", "1", "--batch-size", "128", "--device", "cpu", "--no-plots"]
SETS = ["--set", "data.options.image_size=8", "--set", "train.knn_every=0"]
LABEL = "linear probe (fast), parity groups (no bias labels)"


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """README's toy probe group kind (section "Adding a probe group kind ..."); the registry
    and sys.modules are restored afterwards."""
    restore_registries(monkeypatch, PROBE_GROUP_KINDS)
    yield from install_plugin(
        "toy_probe_groups.py", tmp_path / "plugin", PROBE_GROUP_KINDS, monkeypatch
    )


def test_the_toy_kind_numbers_its_groups_with_the_one_encoding(plugin: Path) -> None:
    load_plugin(str(plugin))
    y, index = torch.tensor([0, 1, 1, 0, 1]), torch.tensor([4, 7, 2, 9, 0])
    features = {
        split: (torch.zeros(5, 3), y, torch.full((5,), -1), index) for split in ("train", "val")
    }
    groups = probe_groups_of("parity", None, features)
    assert groups["train"].tolist() == [0, 3, 2, 1, 2]  # 2 * class + index mod 2
    info = PROBE_GROUP_KINDS.info("parity")
    assert info["label"] == "parity groups (no bias labels)" and not info["bias_labels"]
    assert info["fitted_on"] == "train" and not info["discovery"]


@pytest.mark.slow
def test_a_plugin_probe_group_kind_compares_and_evaluates_through_the_cli(
    plugin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    compare = ["--plugin", str(plugin), "compare", "--dataset", "biased-digits-binary"]
    compare += ["--methods", "simclr", "--seeds", "0", "--probe-groups", "parity,class"]
    assert main([*compare, "--out", str(out), *TINY, *SETS]) == 0
    rows = json.loads((out / "results.json").read_text())
    by_label = {row["evaluation"]: row for row in rows}
    assert set(by_label) == {
        "linear probe (fast)",
        LABEL,
        "linear probe (fast), class-balanced (no bias labels)",
    }
    assert "parity" in (out / "probes.md").read_text()

    run = out / "runs" / "simclr" / "seed0"
    results = json.loads((run / "results.json").read_text())
    parity = results["probe_parity"]
    assert parity["num_groups"] == 4 and parity["uses_bias_labels"] is False
    assert parity["protocol"].endswith(
        "loss balanced over class x parity of the sample index (a toy; no bias label used)"
    )
    assert by_label[LABEL]["worst_group"] == parity["metrics"]["worst_group"]
    assert (run / "probes" / "d_parity.safetensors").is_file()
    # balancing over the parity groups is a different loss than over the classes
    assert parity["head_sha256"] != results["probe_class"]["head_sha256"]

    capsys.readouterr()
    evaluate = ["--plugin", str(plugin), "eval", str(run), "--device", "cpu", "--no-plots"]
    assert main([*evaluate, "--probe-groups", "parity"]) == 0
    printed = capsys.readouterr().out
    assert "probe_parity" in printed and "parity of the sample index" in printed
    again = json.loads((run / "results.json").read_text())["probe_parity"]
    assert again["metrics"] == parity["metrics"]


def test_without_the_plugin_the_kind_is_an_unknown_choice(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["eval", "unused", "--probe-groups", "parity"])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert (
        "unknown parity; expected none or a comma-separated choice of discovered, true, class"
        in error
    )
