"""Tests of `debiascl compare --grid/--select/--seeds/--reference` on the fake pipeline."""

from __future__ import annotations

import ast
import csv
import inspect
import json
import math
from pathlib import Path
from typing import Any

import pytest
from fakes import DATASET, FakePipeline

import debiascl.compare.execute as execute_module
from debiascl import selection
from debiascl.cli import main
from debiascl.cli.compare import parse_seeds
from debiascl.compare import CompareOptions, RunSettings, compare, plan_runs, run_dir_for
from debiascl.errors import DebiasclError
from debiascl.grid import parse_grid
from debiascl.results import RunResults
from debiascl.rundir import RunDirBusy
from debiascl.selection import selection_metric

LOW, HIGH = "method.temperature=0.2", "method.temperature=0.5"
TEMPERATURE = parse_grid("method.temperature=0.2,0.5")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    return FakePipeline().install(monkeypatch)


def run_grid(
    out: Path,
    methods: tuple[str, ...] = ("simclr", "wcl"),
    seeds: tuple[int, ...] = (0, 1, 2),
    grid: tuple[str, ...] = ("method.temperature=0.2,0.5",),
    probe_groups: tuple[str, ...] = (),
    **options: Any,
) -> list[dict[str, Any]]:
    settings = RunSettings(epochs=2, device="cpu", probe_groups=probe_groups)
    axes = [parse_grid(text) for text in grid]
    return compare(
        DATASET, list(methods), list(seeds), out, settings, CompareOptions(grid=axes, **options)
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_each_method_is_reported_at_the_point_best_on_val(
    fake: FakePipeline, tmp_path: Path
) -> None:
    # wcl: the low temperature is best on val (0.9 vs 0.7) but worse on test (0.6 vs 0.95)
    for seed in (0, 1, 2):
        fake.values[("wcl", LOW, seed, "val")] = 0.9
        fake.values[("wcl", LOW, seed, "test")] = 0.6
        fake.values[("wcl", HIGH, seed, "val")] = 0.7
        fake.values[("wcl", HIGH, seed, "test")] = 0.95
        fake.values[("simclr", HIGH, seed, "val")] = 0.8
    run_grid(tmp_path, report=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(row["method"], row["point"]) for row in summary] == [("simclr", HIGH), ("wcl", LOW)]
    wcl = summary[1]
    assert wcl["accuracy.mean"] == pytest.approx(0.6) and wcl["runs"] == 3
    markdown = (tmp_path / "summary.md").read_text()
    assert f"| wcl | {LOW} | linear probe (fast) | 3 | 60.00 ± 0.00 |" in markdown
    # the selection table names the point, its mean val score and the rule
    assert "main evaluation's val worst_group (--select auto)" in markdown
    assert f"| wcl | {LOW} | 2 | 45.00 |" in markdown  # fake worst_group = accuracy / 2
    assert f"| simclr | {HIGH} | 2 | 40.00 |" in markdown
    # accuracy instead: the same choice here, the rule is named
    run_grid(tmp_path, select="accuracy", report=False)
    markdown = (tmp_path / "summary.md").read_text()
    assert "val accuracy (--select accuracy)" in markdown and f"| wcl | {LOW} | 2 | 90.00 |" in (
        markdown
    )


def test_results_csv_holds_every_point_seed_and_split(fake: FakePipeline, tmp_path: Path) -> None:
    rows = run_grid(tmp_path, report=False)
    table = read_csv(tmp_path / "results.csv")
    assert list(table[0])[:5] == ["method", "point", "seed", "split", "evaluation"]
    expected = {
        (method, point, str(seed), split)
        for method in ("simclr", "wcl")
        for point in (LOW, HIGH)
        for seed in (0, 1, 2)
        for split in ("test", "val")
    }
    assert len(table) == len(rows) == 24
    assert {(r["method"], r["point"], r["seed"], r["split"]) for r in table} == expected
    assert (run_dir_for(tmp_path, "wcl", 2, ((("method.temperature", 0.5),))) / "done").is_file()
    assert (tmp_path / "runs" / "wcl" / HIGH / "seed2" / "results_val.json").is_file()


def test_an_axis_with_a_method_prefix_varies_only_that_method(
    fake: FakePipeline, tmp_path: Path
) -> None:
    run_grid(tmp_path, seeds=(0, 1), grid=("wcl:method.tau_plus=0.05,0.2",), report=False)
    trained = sorted(
        str(path.parent.relative_to(tmp_path / "runs")) for path in tmp_path.glob("runs/**/done")
    )
    assert trained == [
        "simclr/seed0",
        "simclr/seed1",
        "wcl/method.tau_plus=0.05/seed0",
        "wcl/method.tau_plus=0.05/seed1",
        "wcl/method.tau_plus=0.2/seed0",
        "wcl/method.tau_plus=0.2/seed1",
    ]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary[0]["point"] == "default"
    # without a prefix a method.* axis applies to the methods having the setting only
    runs = plan_runs(
        DATASET, ["simclr", "hcl"], [0], tmp_path, grid=[parse_grid("method.beta=0.5,1")]
    )
    assert [str(run.run_dir.relative_to(tmp_path / "runs")) for run in runs] == [
        "simclr/seed0",
        "hcl/method.beta=0.5/seed0",
        "hcl/method.beta=1/seed0",
    ]
    with pytest.raises(DebiasclError, match="grid: method\\(s\\) dcl are not among"):
        plan_runs(DATASET, ["simclr"], [0], tmp_path, grid=[parse_grid("dcl:method.tau_plus=0.1")])


def test_rerun_resumes_and_old_folders_keep_working(fake: FakePipeline, tmp_path: Path) -> None:
    # an old comparison (no grid) ...
    compare(
        DATASET, ["simclr"], [0, 1], tmp_path, RunSettings(epochs=2), CompareOptions(report=False)
    )
    assert len(fake.train_calls) == 2
    fake.train_calls.clear()
    fake.evaluate_calls.clear()
    # ... extended by a grid over wcl: simclr's runs are reused, only evaluated on val
    run_grid(tmp_path, seeds=(0, 1), grid=("wcl:method.temperature=0.2,0.5",), report=False)
    assert sorted(call for call, _ in fake.train_calls) == ["wcl/0", "wcl/0", "wcl/1", "wcl/1"]
    simclr = [call for call in fake.evaluate_calls if "/simclr/" in call]
    assert sorted(simclr) == [f"{run_dir_for(tmp_path, 'simclr', s)} val" for s in (0, 1)]
    # a rerun trains and evaluates nothing
    fake.train_calls.clear()
    fake.evaluate_calls.clear()
    run_grid(tmp_path, seeds=(0, 1), grid=("wcl:method.temperature=0.2,0.5",), report=False)
    assert fake.train_calls == [] and fake.evaluate_calls == []
    # a lost val evaluation is redone alone
    lost = tmp_path / "runs" / "wcl" / LOW / "seed1"
    (lost / "results_val.json").unlink()
    run_grid(tmp_path, seeds=(0, 1), grid=("wcl:method.temperature=0.2,0.5",), report=False)
    assert fake.train_calls == [] and fake.evaluate_calls == [f"{lost} val"]


def test_paired_difference_against_a_hand_computation(fake: FakePipeline, tmp_path: Path) -> None:
    seeds = (0, 1, 2, 3, 4)
    reference = (0.50, 0.52, 0.48, 0.55, 0.50)
    dcl = (0.56, 0.55, 0.55, 0.58, 0.61)  # differences 0.06, 0.03, 0.07, 0.03, 0.11
    wcl = (0.52, 0.50, 0.50, 0.54, 0.52)  # differences 0.02, -0.02, 0.02, -0.01, 0.02
    for seed in seeds:
        fake.values |= {("simclr", seed): reference[seed], ("dcl", seed): dcl[seed]}
        fake.values[("wcl", seed)] = wcl[seed]
    methods = ["simclr", "dcl", "wcl"]
    compare(
        DATASET, methods, list(seeds), tmp_path, RunSettings(epochs=2), CompareOptions(report=False)
    )
    # dcl: mean 0.06, sample sd sqrt((0 + 0.0009 + 0.0001 + 0.0009 + 0.0025) / 4) = 0.033166,
    # stderr 0.014832, t_{0.975,4} = 2.776: half-width 0.041174 -> [0.018826, 0.101174]
    half = 2.776 * math.sqrt(0.0044 / 4) / math.sqrt(5)
    paired = json.loads((tmp_path / "paired.json").read_text())
    accuracy = {row["method"]: row for row in paired if row["metric"] == "accuracy"}
    assert accuracy["dcl"]["mean"] == pytest.approx(0.06)
    assert accuracy["dcl"]["low"] == pytest.approx(0.06 - half, abs=1e-4)
    assert accuracy["dcl"]["high"] == pytest.approx(0.06 + half, abs=1e-4)
    assert accuracy["dcl"]["detectable"] is True and accuracy["dcl"]["seeds"] == 5
    # wcl: mean 0.006, sd 0.019494, half-width 2.776 * 0.019494 / sqrt(5) = 0.024201
    assert accuracy["wcl"]["low"] == pytest.approx(0.006 - 0.024201, abs=1e-4)
    assert accuracy["wcl"]["detectable"] is False
    worst = {row["method"]: row for row in paired if row["metric"] == "worst_group"}
    assert worst["dcl"]["mean"] == pytest.approx(0.03)  # the fake's worst group is half
    markdown = (tmp_path / "summary.md").read_text()
    assert "Paired difference to simclr on test" in markdown
    assert "| method | seeds | accuracy - simclr | worst_group - simclr |" in markdown
    assert "| dcl | 5 | +6.00 [1.88, 10.12] | +3.00 [0.94, 5.06] |" in markdown
    assert "| wcl | 5 | +0.60 [-1.82, 3.02] no detectable difference |" in markdown
    assert "simclr | 5 | +" not in markdown
    csv_rows = read_csv(tmp_path / "paired.csv")
    assert {row["method"] for row in csv_rows} == {"dcl", "wcl"}


def test_paired_differences_are_skipped_with_a_note(fake: FakePipeline, tmp_path: Path) -> None:
    settings = RunSettings(epochs=2)
    compare(DATASET, ["dcl", "wcl"], [0, 1], tmp_path, settings, CompareOptions(report=False))
    markdown = (tmp_path / "summary.md").read_text()
    assert "No paired differences: the reference method 'simclr' is not compared." in markdown
    assert not (tmp_path / "paired.csv").exists()
    compare(
        DATASET,
        ["dcl", "wcl"],
        [0],
        tmp_path / "one",
        settings,
        CompareOptions(reference="dcl", report=False),
    )
    markdown = (tmp_path / "one" / "summary.md").read_text()
    assert "No paired difference for wcl: 1 seed(s) in common with dcl, 2 needed." in markdown


def test_select_by_the_discovered_groups(fake: FakePipeline, tmp_path: Path) -> None:
    with pytest.raises(DebiasclError, match="add --probe-groups discovered"):
        run_grid(tmp_path, select="discovered_worst_group", report=False)
    for seed in (0, 1):
        fake.values[("wcl", LOW, seed, "val")] = 0.4
        fake.values[("wcl", HIGH, seed, "val")] = 0.8
        fake.values[("erm", LOW, seed, "val")] = 0.6  # scored by its own classifier
        fake.values[("erm", HIGH, seed, "val")] = 0.2
    run_grid(
        tmp_path,
        methods=("wcl", "erm"),
        seeds=(0, 1),
        select="discovered_worst_group",
        probe_groups=("discovered",),
        report=False,
    )
    markdown = (tmp_path / "summary.md").read_text()
    assert "val discovered_worst_group (--select discovered_worst_group)" in markdown
    assert f"| wcl | {HIGH} | 2 | 20.00 |" in markdown  # the fake: accuracy / 4
    assert f"| erm | {LOW} | 2 | 15.00 |" in markdown
    # the supervised runs discover with the triplet run of their seed, like simclr's
    assert (tmp_path / "runs/erm" / LOW / "seed0", tmp_path / "runs/triplet/seed0") in (
        fake.discover_calls
    )
    assert (tmp_path / "probes.md").is_file()


def test_select_seeds_choose_the_point_then_train_it_on_the_other_seeds(
    fake: FakePipeline, tmp_path: Path
) -> None:
    grid = ("wcl:method.temperature=0.2,0.5",)
    for seed in (0, 1):
        fake.values[("wcl", LOW, seed, "val")] = 0.9
        fake.values[("wcl", HIGH, seed, "val")] = 0.7
    for seed in (2, 3):  # the chosen point's later seeds must not change the choice
        fake.values[("wcl", LOW, seed, "val")] = 0.0
        fake.values[("wcl", LOW, seed, "test")] = 0.8
    run_grid(tmp_path, seeds=(0, 1, 2, 3), grid=grid, select_seeds=(0, 1), report=False)
    trained = sorted(
        str(path.parent.relative_to(tmp_path / "runs")) for path in tmp_path.glob("runs/**/done")
    )
    assert trained == [
        *(f"simclr/seed{seed}" for seed in range(4)),
        *(f"wcl/{LOW}/seed{seed}" for seed in range(4)),
        *(f"wcl/{HIGH}/seed{seed}" for seed in (0, 1)),
    ]
    assert len(fake.train_calls) == 10
    summary = json.loads((tmp_path / "summary.json").read_text())
    wcl = next(row for row in summary if row["method"] == "wcl")
    assert (wcl["point"], wcl["runs"]) == (LOW, 4)
    assert wcl["accuracy.mean"] == pytest.approx((0.5 + 0.5 + 0.8 + 0.8) / 4)
    markdown = (tmp_path / "summary.md").read_text()
    assert "highest mean over seeds 0, 1 of the main evaluation's val worst_group" in markdown
    assert f"| wcl | {LOW} | 2 | 45.00 |" in markdown
    paired = json.loads((tmp_path / "paired.json").read_text())
    assert {row["seeds"] for row in paired} == {4}
    assert len(read_csv(tmp_path / "results.csv")) == 2 * (4 + 2 + 4)  # test and val rows
    # a rerun trains and evaluates nothing
    fake.train_calls.clear()
    fake.evaluate_calls.clear()
    run_grid(tmp_path, seeds=(0, 1, 2, 3), grid=grid, select_seeds=(0, 1), report=False)
    assert fake.train_calls == [] and fake.evaluate_calls == []


def test_select_seeds_choose_only_once_every_point_has_them(
    fake: FakePipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = run_dir_for(tmp_path, "wcl", 1, (("method.temperature", 0.5),))
    real_hold = execute_module.hold_run_dir

    def hold(run_dir: Path) -> Any:
        if run_dir == held:
            raise RunDirBusy(run_dir, "pid 1 on host elsewhere")
        return real_hold(run_dir)

    monkeypatch.setattr(execute_module, "hold_run_dir", hold)
    grid = ("wcl:method.temperature=0.2,0.5",)
    with pytest.raises(
        DebiasclError,
        match=r"1 of 10 runs were skipped .*the chosen grid points were not trained on the other",
    ):
        run_grid(tmp_path, seeds=(0, 1, 2, 3), grid=grid, select_seeds=(0, 1), report=False)
    assert sorted(call for call, _ in fake.train_calls) == [
        *(f"simclr/{seed}" for seed in range(4)),
        "wcl/0",
        "wcl/0",
        "wcl/1",
    ]


def test_select_seeds_errors(fake: FakePipeline, tmp_path: Path) -> None:
    settings = RunSettings(epochs=2)
    with pytest.raises(DebiasclError, match=r"select_seeds: .* give a grid too"):
        compare(DATASET, ["simclr"], [0, 1], tmp_path, settings, CompareOptions(select_seeds=[0]))
    with pytest.raises(DebiasclError, match=r"select_seeds: \[4\] are not among the seeds"):
        run_grid(tmp_path, seeds=(0, 1), select_seeds=(0, 4))
    with pytest.raises(DebiasclError, match="select_seeds: give distinct seeds"):
        run_grid(tmp_path, seeds=(0, 1), select_seeds=(0, 0))
    assert fake.train_calls == []


def test_seeds_ranges() -> None:
    assert parse_seeds("0-9") == list(range(10))
    assert parse_seeds("0,2,5-7") == [0, 2, 5, 6, 7]
    assert parse_seeds(" 3 ") == [3]
    with pytest.raises(DebiasclError, match="range '5-3' ends before it starts; write it as 3-5"):
        parse_seeds("5-3")
    for text in ("a-b", "1-", "0,x", "1-2-3"):
        with pytest.raises(DebiasclError, match="integers or ranges such as 0,2,5-7"):
            parse_seeds(text)


def test_cli_grid(fake: FakePipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "grid"
    args = ["compare", "--dataset", DATASET, "--methods", "simclr,wcl", "--seeds", "0-1"]
    args += ["--grid", "method.temperature=0.2,0.5", "--out", str(out), "--no-plots"]
    assert main([*args, "--epochs", "1", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "Grid points reported on test" in printed and "Paired difference to simclr" in printed
    assert str(out / "paired.csv") in printed and "<point>/seed<k>" in printed
    assert len(fake.train_calls) == 8
    assert main([*args, "--grid", "x", "--epochs", "1"]) == 2
    assert "grid: expected [METHOD,...:]KEY=V1,V2" in capsys.readouterr().err
    assert main([*args[:6], "5-3", *args[7:], "--epochs", "1"]) == 2
    assert "ends before it starts" in capsys.readouterr().err
    assert main([*args, "--select-seeds", "x", "--epochs", "1"]) == 2
    assert "--select-seeds: expected comma-separated integers" in capsys.readouterr().err
    fake.train_calls.clear()
    args[6] = "0-2"  # one more seed: only the chosen points train on it
    assert main([*args, "--select-seeds", "0-1", "--epochs", "1", "--device", "cpu"]) == 0
    assert "over seeds 0, 1 of the main evaluation" in capsys.readouterr().out
    assert sorted(call for call, _ in fake.train_calls) == ["simclr/2", "wcl/2"]


def test_auto_selects_by_accuracy_where_val_has_no_bias_labels() -> None:
    grouped = RunResults.from_json(
        {"main": "probe", "probe": {"metrics": {"accuracy": 0.7, "worst_group": 0.2}}}
    )
    plain = RunResults.from_json(
        {"main": "classifier", "classifier": {"metrics": {"accuracy": 0.7}}}
    )
    assert selection_metric("auto", [grouped, plain]) == "worst_group"
    assert selection_metric("auto", [plain]) == "accuracy"
    assert selection_metric("worst_class", [grouped]) == "worst_class"


def test_selection_chooses_without_the_report_layer() -> None:
    """selection.py holds the choosing and the numbers; their Markdown is the report's."""
    tree = ast.parse(inspect.getsource(selection))
    nodes = list(ast.walk(tree))
    imported = [node.module or "" for node in nodes if isinstance(node, ast.ImportFrom)]
    imported += [a.name for node in nodes if isinstance(node, ast.Import) for a in node.names]
    assert "debiascl.grid" in imported
    assert not [name for name in imported if name.startswith("debiascl.report")]
