"""Tests of `debiascl compare` / `debiascl demo`: skip, resume, tables, stderr, plot, demo."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from fakes import DATASET, FakePipeline

import debiascl.compare.execute
import debiascl.discovery.run
import debiascl.evaluate.loaded_run
import debiascl.features
from debiascl.cli import main
from debiascl.compare import CompareOptions, RunSettings, compare, plan_runs, run_dir_for
from debiascl.config import load_config
from debiascl.errors import DebiasclError
from debiascl.rundir import checkpoint_path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    return FakePipeline().install(monkeypatch)


def run_compare(out: Path, methods: tuple[str, ...] = ("simclr", "wcl"), **options: Any) -> list:
    options.setdefault("epochs", 2)
    settings = RunSettings(device="cpu", **options)
    return compare(DATASET, list(methods), [0, 1], out, settings, CompareOptions(report=False))


def test_finished_runs_are_skipped(fake: FakePipeline, tmp_path: Path) -> None:
    run_compare(tmp_path)
    assert sorted(call for call, _ in fake.train_calls) == [
        "simclr/0",
        "simclr/1",
        "wcl/0",
        "wcl/1",
    ]
    results = run_dir_for(tmp_path, "wcl", 1) / "results.json"
    assert (run_dir_for(tmp_path, "wcl", 1) / "done").read_text().strip() == "results.json"
    stamp = results.stat().st_mtime_ns
    fake.train_calls.clear()
    fake.evaluate_calls.clear()
    rows = run_compare(tmp_path)
    assert fake.train_calls == [] and fake.evaluate_calls == []
    assert results.stat().st_mtime_ns == stamp
    assert [(row["method"], row["seed"]) for row in rows] == [
        ("simclr", 0),
        ("simclr", 1),
        ("wcl", 0),
        ("wcl", 1),
    ]


def test_unfinished_runs_are_resumed_or_evaluated(fake: FakePipeline, tmp_path: Path) -> None:
    run_compare(tmp_path)
    interrupted = run_dir_for(tmp_path, "wcl", 0)
    (interrupted / "train_done").unlink()
    (interrupted / "done").unlink()
    not_evaluated = run_dir_for(tmp_path, "wcl", 1)
    (not_evaluated / "done").unlink()
    (not_evaluated / "results.json").unlink()
    early_stop = run_dir_for(tmp_path, "simclr", 1)  # killed before its first checkpoint
    (early_stop / "done").unlink()
    (early_stop / "train_done").unlink()
    checkpoint_path(early_stop).unlink()
    fake.train_calls.clear()
    fake.evaluate_calls.clear()
    run_compare(tmp_path)
    assert fake.train_calls == [("simclr/1", False), ("wcl/0", True)]
    assert sorted(fake.evaluate_calls) == sorted(
        str(run_dir) for run_dir in (early_stop, interrupted, not_evaluated)
    )
    assert (not_evaluated / "done").is_file() and (not_evaluated / "results.json").is_file()


def test_a_garbled_or_empty_done_marker_means_evaluate_again(
    fake: FakePipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_compare(tmp_path, methods=("wcl",))
    garbled, empty = run_dir_for(tmp_path, "wcl", 0), run_dir_for(tmp_path, "wcl", 1)
    (garbled / "done").write_bytes(b"\x00\xffres")
    (empty / "done").write_text("")
    fake.evaluate_calls.clear()
    capsys.readouterr()
    run_compare(tmp_path, methods=("wcl",))
    assert fake.train_calls[2:] == [] and sorted(fake.evaluate_calls) == [str(garbled), str(empty)]
    assert capsys.readouterr().err.count("marker is empty or garbled: evaluating it again") == 2
    for run_dir in (garbled, empty):
        assert (run_dir / "done").read_text() == "results.json\n"
        assert not (run_dir / ".done.tmp").exists()  # written atomically, then renamed


def test_results_of_another_protocol_or_encoder_are_evaluated_again(
    fake: FakePipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A later `debiascl eval RUN --probe authors` must not leak into a fast-probe comparison."""
    rows = run_compare(tmp_path, methods=("wcl",), probe="fast")
    assert {row["evaluation"] for row in rows} == {"linear probe (fast)"}
    overwritten = run_dir_for(tmp_path, "wcl", 0) / "results.json"
    results = json.loads(overwritten.read_text())
    overwritten.write_text(json.dumps(results | {"probe_protocol": "authors"}))
    other_encoder = run_dir_for(tmp_path, "wcl", 1) / "results.json"
    other_encoder.write_text(json.dumps(results | {"encoder": "b", "seed": 1}))
    fake.evaluate_calls.clear()
    capsys.readouterr()
    rows = run_compare(tmp_path, methods=("wcl",), probe="fast")
    assert sorted(fake.evaluate_calls) == [str(p.parent) for p in (overwritten, other_encoder)]
    progress = capsys.readouterr().err
    assert "made with the 'authors' probe protocol, planned 'fast': evaluating it again" in progress
    assert "holds E_b results, planned E_d: evaluating it again" in progress
    assert json.loads(overwritten.read_text())["probe_protocol"] == "fast"
    assert {row["evaluation"] for row in rows} == {"linear probe (fast)"}
    fake.evaluate_calls.clear()
    run_compare(tmp_path, methods=("wcl",), probe="fast")
    assert fake.evaluate_calls == []


def test_rerun_with_other_settings_is_refused(fake: FakePipeline, tmp_path: Path) -> None:
    run_compare(tmp_path, methods=("wcl",))
    with pytest.raises(DebiasclError, match=r"train\.epochs"):
        run_compare(tmp_path, methods=("wcl",), epochs=3)
    with pytest.raises(DebiasclError, match=r"method\.tau_plus"):
        run_compare(tmp_path, methods=("wcl",), sets=["method.tau_plus=0.2"])


def test_tables_hold_every_run_and_the_standard_error(
    fake: FakePipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.values = {("dcl", 0): 0.5, ("dcl", 1): 0.6, ("dcl", 2): 0.8, ("erm", 0): 0.9}
    fake.values |= {("erm", 1): 0.9, ("erm", 2): 0.9}
    settings = RunSettings(epochs=2, device="cpu")
    compare(DATASET, ["dcl", "erm"], [0, 1, 2], tmp_path, settings, CompareOptions(report=False))
    with (tmp_path / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["method"], row["seed"]) for row in rows] == [
        (method, str(seed)) for method in ("dcl", "erm") for seed in (0, 1, 2)
    ]
    assert {row["evaluation"] for row in rows if row["method"] == "erm"} == {
        "own classifier (supervised)"
    }
    assert [float(row["worst_group"]) for row in rows[:3]] == [0.25, 0.3, 0.4]
    # Hand computation for dcl's accuracy 0.5, 0.6, 0.8: mean 0.6333..., sample std
    # sqrt(((-0.1333)^2 + (-0.0333)^2 + 0.1667^2) / 2) = 0.152753, stderr = 0.152753 / sqrt(3).
    expected_stderr = math.sqrt((0.13333**2 + 0.03333**2 + 0.16667**2) / 2) / math.sqrt(3)
    summary = {row["method"]: row for row in json.loads((tmp_path / "summary.json").read_text())}
    assert summary["dcl"]["accuracy.mean"] == pytest.approx(0.63333, abs=1e-5)
    assert summary["dcl"]["accuracy.stderr"] == pytest.approx(expected_stderr, abs=1e-5)
    assert summary["erm"]["accuracy.stderr"] == 0.0
    markdown = (tmp_path / "summary.md").read_text()
    assert "63.33 ± 8.82" in markdown and "90.00 ± 0.00" in markdown
    assert "| dcl | linear probe (fast) | 3 |" in markdown
    assert [float(row["class[y=1]"]) for row in rows[:3]] == [0.5, 0.6, 0.8]
    assert summary["dcl"]["group[y=0,a=0].mean"] == pytest.approx(0.63333, abs=1e-5)
    assert "| group[y=0,a=0] | 63.33 ± 8.82 | 90.00 ± 0.00 |" in markdown
    results_md = (tmp_path / "results.md").read_text()
    for method in ("dcl", "erm"):
        for seed in (0, 1, 2):
            assert f"| {method} | {seed} |" in results_md
    plot = (tmp_path / "tradeoff.png").read_bytes()
    assert plot.startswith(PNG_MAGIC) and len(plot) > 5000
    progress = capsys.readouterr().err
    assert "[6/6] erm seed 2: finished in" in progress


def test_bad_requests_fail_before_training(fake: FakePipeline, tmp_path: Path) -> None:
    with pytest.raises(DebiasclError, match="unknown method"):
        plan_runs(DATASET, ["wcl", "moco"], [0], tmp_path)
    with pytest.raises(DebiasclError, match="unknown dataset"):
        plan_runs("mnist-colour", ["wcl"], [0], tmp_path)
    with pytest.raises(DebiasclError, match="once"):
        plan_runs(DATASET, ["wcl"], [0, 0], tmp_path)
    with pytest.raises(DebiasclError, match=r"method\.name"):
        plan_runs(DATASET, ["wcl"], [0], tmp_path, RunSettings(sets=["method.name=dcl"]))
    assert main(["compare", "--dataset", DATASET, "--seeds", "0,x", "--out", str(tmp_path)]) == 2
    assert fake.train_calls == []


def test_plan_uses_the_dataset_preset(tmp_path: Path) -> None:
    settings = RunSettings(epochs=2, sets=["tau_plus=0.2"])
    (run,) = plan_runs(DATASET, ["hcl"], [3], tmp_path, settings)
    assert run.run_dir == tmp_path / "runs" / "hcl" / "seed3"
    assert run.config.data.augmentation == "crop_flip"  # from configs/biased-digits-binary.yaml
    assert (run.config.train.epochs, run.config.train.seed) == (2, 3)
    assert run.config.method.tau_plus == 0.2


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    summary = (out / "summary.md").read_text()
    assert "no bias label used" in printed and "oracle: uses the bias labels" in printed
    assert (
        "| method | trained on | worst_group: plain | worst_group: discovered | worst_group: true "
        "| worst_group: own classifier |" in printed
    )
    assert re.search(
        r"\| gdro \| discovered groups \(no bias label\) \|  \| \d+\.\d\d \| \d+\.\d\d \| "
        r"\d+\.\d\d \|",
        printed,
    )
    gdro = load_config(out / "runs/gdro/seed0/config.yaml").train
    assert gdro.groups_from == str((out / "runs/triplet/seed0").resolve())
    for method in ("simclr", "dcl", "hcl", "triplet", "wcl"):
        number = r"\d+\.\d\d"
        assert re.search(
            rf"\| {method} \| no groups \| {number} \| {number} \| {number} \|", printed
        )
        for evaluation in (
            "linear probe (fast)",
            "linear probe (fast), discovered groups (no bias labels)",
            "linear probe (fast), true groups (oracle: bias labels)",
        ):
            assert f"| {method} | {evaluation} | 1 |" in summary
        assert (out / "runs" / method / "seed0" / "done").is_file()
        assert (out / "runs" / method / "seed0" / "discovered.csv").is_file()
    assert str(out / "summary.md") in printed
    assert (out / "tradeoff.png").read_bytes().startswith(PNG_MAGIC)
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    assert capsys.readouterr().err.count("finished earlier: skipped") == 6


def test_discovered_groups_use_the_triplet_run_of_the_same_seed(
    fake: FakePipeline, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    rows = run_compare(out, ("simclr", "wcl", "erm"), probe_groups=("discovered", "true"))
    # the triplet bias runs are trained first, once per seed, and not tabulated
    assert [call for call, _ in fake.train_calls[:2]] == ["triplet/0", "triplet/1"]
    assert len(fake.train_calls) == 8
    assert {row["method"] for row in rows} == {"simclr", "wcl", "erm"}
    assert sorted(fake.discover_calls) == sorted(
        [
            (run_dir_for(out, m, s), run_dir_for(out, "triplet", s))
            for m in ("simclr", "erm")
            for s in (0, 1)
        ]
        + [(run_dir_for(out, "triplet", s), None) for s in (0, 1)]
        + [(run_dir_for(out, "wcl", s), None) for s in (0, 1)]
    )  # wcl and the triplet runs use their own E_b; erm's probes get the triplet run's too
    labels = {(row["method"], row["evaluation"]) for row in rows}
    assert ("simclr", "linear probe (fast), discovered groups (no bias labels)") in labels
    assert ("wcl", "linear probe (fast), true groups (oracle: bias labels)") in labels
    assert ("erm", "linear probe (fast), discovered groups (no bias labels)") in labels
    discovered = [row for row in rows if "discovered" in row["evaluation"]]
    assert all(row["discovery_auroc"] == 0.9 for row in discovered)
    table = (out / "probes.md").read_text()
    assert (
        "| method | trained on | worst_group: plain | worst_group: discovered | worst_group: true |"
        in table
    )
    assert "| simclr | no groups | 25.00 ± 0.00 | 30.00 ± 0.00 | 30.00 ± 0.00 |" in table
    # a rerun reuses everything; one without the probes planned before evaluates again
    fake.evaluate_calls.clear()
    run_compare(out, ("simclr", "wcl", "erm"), probe_groups=("discovered", "true"))
    assert fake.evaluate_calls == []


def test_results_without_a_planned_probe_are_evaluated_again(
    fake: FakePipeline, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    run_compare(out, ("wcl",))
    fake.evaluate_calls.clear()
    run_compare(out, ("wcl",), probe_groups=("true",))
    assert len(fake.evaluate_calls) == 2


@pytest.mark.slow
def test_each_run_is_loaded_once_and_each_split_extracted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovery, probes and plots share a run's features; runs that discover with the same
    bias run share its discovery (its plots are copied, not drawn again)."""
    loads: list[str] = []
    extracted: list[tuple[str, str, str]] = []
    real_load, real_extract = debiascl.evaluate.load_run, debiascl.features.extract_features

    def counting_load(run_dir: Path, *args: Any, **kwargs: Any) -> Any:
        loads.append(Path(run_dir).parent.name)
        return real_load(run_dir, *args, **kwargs)

    def counting_extract(method: Any, dataset: Any, *args: Any) -> Any:
        extracted.append((method.name, dataset.split, args[1]))
        return real_extract(method, dataset, *args)

    monkeypatch.setattr(debiascl.compare.execute, "load_run", counting_load)
    monkeypatch.setattr(debiascl.discovery.run, "load_run", counting_load)
    monkeypatch.setattr(debiascl.evaluate.loaded_run, "extract_features", counting_extract)
    out = tmp_path / "cmp"
    settings = RunSettings(
        sets=("data.options.image_size=8", "train.knn_every=0"),
        epochs=1,
        batch_size=128,
        device="cpu",
        probe_groups=("discovered", "true"),
    )
    compare("biased-digits-binary", ["triplet", "simclr", "wcl"], [0], out, settings)
    assert sorted(loads) == ["simclr", "triplet", "wcl"]
    splits = ("train", "val", "test")
    assert sorted(extracted) == sorted(
        [("triplet", split, "b") for split in splits]
        + [("simclr", split, "d") for split in splits]
        + [("wcl", split, "d") for split in splits]
        + [("wcl", "train", "b"), ("wcl", "val", "b")]
    )
    triplet, simclr = (run_dir_for(out, method, 0) for method in ("triplet", "simclr"))
    for name in ("discovery_scores.png", "discovered.csv"):
        assert (simclr / name).read_bytes() == (triplet / name).read_bytes()
    found = json.loads((simclr / "discovery.json").read_text())
    assert (found["run_dir"], found["bias_run"]) == (str(simclr), str(triplet))
