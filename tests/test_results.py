"""Typed results: results files of the previous version read into records and are written back
unchanged; the one headline-metric rule; labels rendered from records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from debiascl.compare import probes_table, results_rows
from debiascl.errors import DebiasclError
from debiascl.records import results_problem
from debiascl.report.labels import evaluation_label, short_name
from debiascl.report.plots import tradeoff_metrics
from debiascl.results import Evaluation, RunResults, headline_metric
from debiascl.selection import paired_differences, selection_metric

FIXTURES = Path(__file__).parent / "fixtures" / "results_6ae1610"
FILES = ("erm_results.json", "simclr_results_val.json")


def _load(name: str) -> RunResults:
    return RunResults.from_json(json.loads((FIXTURES / name).read_text()))


@pytest.mark.parametrize("name", FILES)
def test_a_file_of_the_previous_version_round_trips_byte_for_byte(name: str) -> None:
    text = (FIXTURES / name).read_text()
    results = RunResults.from_json(json.loads(text))
    assert json.dumps(results.to_json(), indent=2) + "\n" == text  # as atomic.write_json writes
    assert results_problem(results.to_json()) is None  # the previous version's reader accepts it


def test_records_type_what_the_file_holds() -> None:
    erm = _load("erm_results.json")
    assert (erm.method, erm.seed, erm.split, erm.main) == ("erm", 0, "test", "classifier")
    assert erm.headline.kind == "classifier" and erm.headline.protocol is None
    assert [e.key for e in erm.in_table_order()] == [
        "classifier",
        "probe",
        "probe_discovered",
        "probe_true",
        "knn",
    ]
    discovered = erm.get("probe_discovered")
    assert discovered is not None
    assert (discovered.kind, discovered.groups, discovered.protocol) == (
        "probe",
        "discovered",
        "fast",
    )
    assert (discovered.split, discovered.encoder) == ("test", "d")
    assert discovered.details["uses_bias_labels"] is False
    assert discovered.metrics["worst_group"] == pytest.approx(0.5833333333333334)
    assert erm.discovery_quality["bias_labels"] is True
    simclr = _load("simclr_results_val.json")
    assert simclr.split == "val" and simclr.headline.key == "probe"
    assert "discovered_worst_group" in simclr.headline.metrics
    assert [e.groups for e in simclr.group_probes] == ["discovered", "class"]


def test_files_of_older_versions_read_with_their_defaults() -> None:
    """Results written before val evaluations, training groups and checkpoint digests."""
    data = json.loads((FIXTURES / "erm_results.json").read_text())
    for key in ("split", "training_groups", "checkpoint_sha256", "results_file", "discovery"):
        del data[key]
    results = RunResults.from_json(data)
    assert results.split == "test" and results.training_groups == "none"
    assert results.results_file is None and results.discovery_quality == {}
    assert results.to_json() == data


def test_the_writer_keeps_its_order_for_records_made_in_memory() -> None:
    metrics = {"accuracy": 0.5}
    results = RunResults(
        {"method": "simclr", "seed": 0, "probe_protocol": "fast"},
        (
            Evaluation(
                "probe", metrics, None, "fast", description="p", details={"weight_decay": 0.1}
            ),
            Evaluation("knn", metrics),
            Evaluation("probe", metrics, groups="discovered", protocol="fast"),
        ),
        "probe",
        {"train": {}},
        "results.json",
    )
    data = results.to_json()
    assert list(data) == [
        "method",
        "seed",
        "probe_protocol",
        "probe",
        "knn",
        "main",
        "probe_discovered",
        "discovery",
        "results_file",
    ]
    assert list(data["probe"]) == ["protocol", "weight_decay", "metrics"]
    assert RunResults.from_json(data) == results


def test_malformed_results_are_one_error() -> None:
    with pytest.raises(DebiasclError, match="expected a mapping"):
        RunResults.from_json([1, 2])
    with pytest.raises(DebiasclError, match="'main' names 'classifier'"):
        RunResults.from_json({"main": "classifier", "probe": {"metrics": {}}})
    with pytest.raises(DebiasclError, match="results evaluation 'svm'"):
        Evaluation.from_json("svm", {"metrics": {}}, {})


def test_headline_metric_is_worst_group_with_bias_labels_else_the_fallback() -> None:
    grouped, plain = {"accuracy": 0.9, "worst_group": 0.4}, {"accuracy": 0.8, "worst_class": 0.7}
    assert headline_metric([grouped, grouped]) == "worst_group"
    assert headline_metric([grouped, plain]) == "worst_class"  # tables: every row has it
    assert headline_metric([grouped, {"worst_group": None}]) == "worst_class"
    assert headline_metric([grouped, plain], "accuracy", any_holds=True) == "worst_group"
    assert headline_metric([plain], "accuracy", any_holds=True) == "accuracy"


def test_every_consumer_judges_by_the_same_rule() -> None:
    """--select auto, the paired differences, the trade-off plot and probes.md."""
    erm, simclr = _load("erm_results.json"), _load("simclr_results_val.json")
    assert selection_metric("auto", [simclr]) == "worst_group"
    rows = results_rows(erm)
    assert tradeoff_metrics([row.cells for row in rows])[1] == "worst_group"
    table = probes_table(rows)
    assert "| worst_group: own classifier |" in table and "worst_class" not in table
    test_of = {("erm", seed): erm for seed in (0, 1)} | {("simclr", s): erm for s in (0, 1)}
    paired, _ = paired_differences(test_of, "simclr")
    assert [row["metric"] for row in paired] == ["accuracy", "worst_group"]
    without_groups = {
        key: RunResults.from_json(_without_group_metrics(results.to_json()))
        for key, results in test_of.items()
    }
    paired, _ = paired_differences(without_groups, "simclr")
    assert [row["metric"] for row in paired] == ["accuracy", "worst_class"]
    no_bias = [RunResults.from_json(_without_group_metrics(simclr.to_json()))]
    assert selection_metric("auto", no_bias) == "accuracy"


def _without_group_metrics(data: dict) -> dict:
    """A results file's content as on data without bias labels (no group metrics)."""
    for entry in data.values():
        if isinstance(entry, dict) and "metrics" in entry:
            entry["metrics"] = {k: v for k, v in entry["metrics"].items() if "group" not in k}
    return data


def test_labels_are_rendered_from_the_records() -> None:
    erm = _load("erm_results.json")
    labels = [
        (evaluation_label(row.evaluation), short_name(row.evaluation)) for row in results_rows(erm)
    ]
    assert labels == [
        ("own classifier (supervised)", "own classifier"),
        ("linear probe (fast), discovered groups (no bias labels)", "discovered"),
        ("linear probe (fast), true groups (oracle: bias labels)", "true"),
    ]
    assert [row.cells["evaluation"] for row in results_rows(erm)] == [label for label, _ in labels]
    plain = erm.get("probe")
    assert plain is not None and evaluation_label(plain) == "linear probe (fast)"
    assert short_name(plain) == "plain"


def test_the_reader_checks_every_evaluation_the_writer_makes() -> None:
    """results_problem knows the evaluations by their keys, the class and val probes too."""
    data = json.loads((FIXTURES / "simclr_results_val.json").read_text())
    data["main"] = "probe_class"
    assert results_problem(data) is None
    data["probe_class"]["metrics"]["accuracy"] = "high"
    assert "probe_class.metrics.accuracy is 'high'" in str(results_problem(data))
    data["probe_class"] = [0.5]
    assert "'probe_class' is not an evaluation mapping" in str(results_problem(data))
    with pytest.raises(DebiasclError, match="'probe_class' is not an evaluation mapping"):
        RunResults.from_json(data)
