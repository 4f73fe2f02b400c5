"""Linear probe protocols, run-directory checks, the results table and evaluate_run end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from debiascl.atomic import write_json, write_text_atomic
from debiascl.config import build_config, load_config
from debiascl.data import build_dataset
from debiascl.errors import DebiasclError
from debiascl.evaluate import (
    ProbeSpec,
    evaluate_run,
    fit_linear_probe,
    linear_probe,
    load_run,
    probe_digest,
)
from debiascl.evaluate.probes import FAST_WEIGHT_DECAYS
from debiascl.report.text import format_results
from debiascl.results import RunResults
from debiascl.rundir import check_finished
from debiascl.train import train


def _separable(n: int, seed: int, num_classes: int = 3, dim: int = 10):
    """Classes separated along random directions, offset far from the origin (not centred)."""
    generator = torch.Generator().manual_seed(seed)
    centres = 4.0 * torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(99))
    y = torch.randint(0, num_classes, (n,), generator=generator)
    x = centres[y] + torch.randn(n, dim, generator=generator) + 5.0
    return x, y


@pytest.mark.parametrize(
    ("protocol", "options"),
    [("fast", {}), ("authors", {"epochs": 20, "lr": 1e-2, "batch_size": 100})],
)
def test_probe_learns_a_linearly_separable_problem(protocol, options):
    x_train, y_train = _separable(600, seed=0)
    x_test, y_test = _separable(300, seed=1)
    predictions = linear_probe(x_train, y_train, x_test, 3, ProbeSpec(protocol, **options))
    assert predictions.dtype == torch.int64 and predictions.shape == (300,)
    assert (predictions == y_test).float().mean() > 0.95


def test_fast_probe_selects_weight_decay_on_val_and_is_deterministic():
    x_train, y_train = _separable(300, seed=2)
    x_val, y_val = _separable(200, seed=3)
    first = fit_linear_probe(x_train, y_train, 3, ProbeSpec("fast"), x_val, y_val)
    second = fit_linear_probe(x_train, y_train, 3, ProbeSpec("fast"), x_val, y_val)
    assert first.weight_decay in FAST_WEIGHT_DECAYS
    assert torch.equal(first.linear.weight, second.linear.weight)
    assert torch.allclose(first.mean, x_train.mean(dim=0))


def test_fast_probe_fits_a_problem_the_model_class_can_solve_exactly():
    # Labels from a known linear rule: the fitted probe must reproduce them on the train split.
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(400, 5, generator=generator)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) > 0).long()
    predictions = linear_probe(x, y, x, 2, ProbeSpec("fast"))
    assert (predictions == y).float().mean() > 0.97


def test_probe_spec_reads_the_eval_config_and_its_seed_fixes_the_authors_probe():
    config = build_config(
        overrides={"data.name": "biased-digits", "method.name": "simclr", "train.seed": 7},
        sets=["eval.probe=authors", "eval.probe_epochs=3", "eval.probe_lr=0.01"],
    )
    spec = ProbeSpec.from_config(config)
    assert spec == ProbeSpec("authors", 3, 0.01, config.eval.probe_batch_size, 7, "cpu")
    on_gpu = replace(spec, protocol="fast", device="cuda:1")
    assert ProbeSpec.from_config(config, "fast", "cuda:1") == on_gpu
    x, y = _separable(200, seed=6)
    first, again = (fit_linear_probe(x, y, 3, spec) for _ in range(2))
    other = fit_linear_probe(x, y, 3, replace(spec, seed=8))
    assert torch.equal(first.linear.weight, again.linear.weight)
    assert not torch.equal(first.linear.weight, other.linear.weight)


def test_unknown_probe_protocol_is_a_user_error():
    x, y = _separable(20, seed=5)
    with pytest.raises(DebiasclError, match=r"'eval.probe' = 'svm': expected one of fast, authors"):
        linear_probe(x, y, x, 3, ProbeSpec("svm"))


def test_check_run_dir_names_what_is_missing(tmp_path: Path):
    with pytest.raises(DebiasclError, match="does not exist"):
        check_finished(tmp_path / "nope")
    (tmp_path / "config.yaml").write_text("{}\n")
    with pytest.raises(DebiasclError, match="no checkpoint"):
        check_finished(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    with pytest.raises(DebiasclError, match="has not finished"):
        check_finished(tmp_path)
    (tmp_path / "train_done").write_text("12\n")
    assert check_finished(tmp_path) == tmp_path


def test_format_results_lists_each_evaluation_with_its_protocol():
    metrics = {
        "accuracy": 0.9,
        "worst_class": 0.8,
        "worst_group": 0.25,
        "worst_group_name": "y=1,a=0",
        "mean_group": 0.6,
        "absent_groups": ["y=0,a=1"],
    }
    results = {
        "method": "erm",
        "dataset": "toy",
        "seed": 3,
        "encoder": "d",
        "main": "classifier",
        "classifier": {"protocol": "own classifier", "metrics": metrics},
        "probe": {"protocol": "linear probe (fast)", "metrics": {**metrics, "accuracy": 0.5}},
        "knn": {"protocol": "weighted kNN", "metrics": metrics},
    }
    text = format_results(RunResults.from_json(results))
    assert "main result: classifier" in text
    assert "linear probe (fast)" in text
    accuracy_row = next(line for line in text.splitlines() if line.startswith("accuracy"))
    assert accuracy_row.split()[1:] == ["90.00", "50.00", "90.00"]
    assert "worst group (classifier): y=1,a=0" in text
    assert "absent groups (no test sample): y=0,a=1" in text
    assert "conflicting_accuracy" not in text


def test_write_text_atomic_replaces_the_file_whole(tmp_path: Path):
    path = tmp_path / "done"
    path.write_text("old contents\n")
    write_text_atomic(path, "results.json\n")
    assert path.read_text() == "results.json\n"
    assert [p.name for p in tmp_path.iterdir()] == ["done"]  # no temporary file left behind
    write_json(tmp_path / "r.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1, 2]}


def test_cli_eval_of_an_unfinished_run_is_a_one_line_error(tmp_path: Path, capsys):
    from debiascl.cli import main

    assert main(["eval", str(tmp_path / "missing"), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "does not exist" in error
    (tmp_path / "config.yaml").write_text("{}\n")
    assert main(["eval", str(tmp_path), "--device", "cpu"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.fixture(scope="module", params=["wcl", "erm"])
def trained_run(request, tmp_path_factory) -> tuple[str, Path]:
    """A 1-epoch run of biased-digits (359 val/test images) with the small CNN."""
    method = request.param
    config = build_config(
        overrides={
            "data.name": "biased-digits",
            "method.name": method,
            "train.epochs": 1,
            "train.batch_size": 128,
            "train.device": "cpu",
            "train.knn_every": 1,
            "train.log_every": 2,
            "train.progress": False,
            "eval.knn_k": 20,
            "eval.tsne_samples": 150,
            "eval.probe_epochs": 20,
        },
        sets=["data.options.balanced_copies=false"],
    )
    return method, train(config, tmp_path_factory.mktemp(method) / "run")


@pytest.mark.slow
def test_evaluate_run_end_to_end(trained_run: tuple[str, Path]):
    method, run_dir = trained_run
    results = evaluate_run(run_dir, probe="fast")
    saved = json.loads((Path(run_dir) / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["method"] == method and saved["dataset"] == "biased-digits"
    assert saved["num_samples"] == {"train": 1079, "val": 359, "test": 359}
    expected = {"probe", "knn", "classifier"} if method == "erm" else {"probe", "knn"}
    assert expected <= saved.keys() and ("classifier" in saved) == (method == "erm")
    assert saved["main"] == ("classifier" if method == "erm" else "probe")
    assert sum(map(sum, saved["train_group_counts"])) == 1079
    options = load_config(Path(run_dir) / "config.yaml").data.options
    train_set, test_set = (
        build_dataset("biased-digits", None, split, **options) for split in ("train", "test")
    )
    assert saved["train_group_counts"] == train_set.group_counts.tolist()
    for key in expected:
        metrics = saved[key]["metrics"]
        assert metrics["num_samples"] == 359
        assert 0.0 <= metrics["worst_group"] <= metrics["mean_group"] <= 1.0
        per_group = list(metrics["per_group"].values())
        assert metrics["worst_group"] == min(per_group)
        assert metrics["mean_group"] == pytest.approx(sum(per_group) / len(per_group))
        # Aligned / conflicting as the data set defines them (the one definition).
        assert metrics["aligned_size"] == int(test_set.bias_aligned.sum())
        assert metrics["conflicting_size"] == int(test_set.bias_conflicting.sum())
        assert len(metrics["per_group"]) + len(metrics["absent_groups"]) == 100
        assert {"avg_acc_train_weighted", "aligned_accuracy", "conflicting_accuracy"} <= set(
            metrics
        )
    assert "linear probe (fast)" in saved["probe"]["protocol"]
    assert saved["probe_protocol"] == "fast" and saved["encoder"] == "d"
    assert "main result" in format_results(RunResults.from_json(results))


@pytest.mark.slow
def test_the_val_probe_is_fitted_on_val_with_its_l2_strength_chosen_on_train(
    trained_run: tuple[str, Path],
):
    """``--probe-groups val``, the held-out ablation: a plain probe fitted on the val split."""
    _, run_dir = trained_run
    results = evaluate_run(run_dir, probe="fast", probe_groups=("val",))
    loaded = load_run(run_dir)
    train_h, train_y, *_ = loaded.features("train", "d")
    val_h, val_y, *_ = loaded.features("val", "d")
    config = loaded.config
    spec = ProbeSpec(
        "fast",
        config.eval.probe_epochs,
        config.eval.probe_lr,
        config.eval.probe_batch_size,
        config.train.seed,
    )
    assert spec == ProbeSpec.from_config(config, "fast")
    on_val = fit_linear_probe(
        val_h, val_y, loaded.splits["train"].num_classes, spec, train_h, train_y
    )
    assert results["probe_val"]["head_sha256"] == probe_digest(on_val.state())
    assert results["probe_val"]["head_sha256"] != results["probe"]["head_sha256"]
    assert results["probe_val"]["uses_bias_labels"] is False
    assert results["training_groups"] == "none" and not results["bias_labels_in_training"]


@pytest.mark.slow
def test_report_and_cli_on_a_trained_run(trained_run: tuple[str, Path], capsys):
    from debiascl.cli import main

    method, run_dir = trained_run
    assert main(["eval", str(run_dir), "--device", "cpu", "--probe", "authors"]) == 0
    out = capsys.readouterr().out
    assert "linear probe (authors)" in out and str(run_dir / "tsne.png") in out
    names = {path.name for path in Path(run_dir).iterdir()}
    assert {"results.json", "tsne.png", "training_curves.png"} <= names
    weight_files = {
        "easy_hard_negatives.png",
        "easy_hard_negatives.md",
        "easy_hard_negatives.csv",
        "weight_histograms.png",
        "weight_summary.json",
    }
    if method == "wcl":
        assert weight_files <= names
        summary = json.loads((run_dir / "weight_summary.json").read_text())
        assert {row["view"] for row in summary} == {"anchor kind x negative relation"}
        filled = [row for row in summary if row["pairs"] > 0]
        assert filled and all(1.0 < row["mean_w"] < 2.0 for row in filled)
        assert "weight_groups.png" not in names  # 10 digits x 10 colours: too many groups
        assert main(["eval", str(run_dir), "--device", "cpu", "--encoder", "b", "--no-plots"]) == 0
        saved_b = json.loads((run_dir / "results_b.json").read_text())
        assert saved_b["encoder"] == "b" and "E_b" in saved_b["probe"]["protocol"]
    else:
        assert not weight_files & names
        assert "no w analysis" in out


def test_a_run_without_a_val_split_trains_and_evaluates(tmp_path: Path, caplog):
    """val_fraction=0: the kNN monitor is off (with a warning), the probe uses its default L2."""
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (240,), generator=generator)
    a = torch.where(torch.rand(240, generator=generator) < 0.8, y, 1 - y)
    x = torch.randn(240, 4, generator=generator) + 2.0 * y[:, None]
    lines = ["f0,f1,f2,f3,label,group"]
    lines += [
        ",".join([*(f"{v:.4f}" for v in row.tolist()), str(t), str(b)])
        for row, t, b in zip(x, y.tolist(), a.tolist(), strict=True)
    ]
    (tmp_path / "table.csv").write_text("\n".join(lines) + "\n")
    config = build_config(
        preset="compas",
        overrides={
            "data.name": "csv",
            "data.root": str(tmp_path),
            "method.name": "simclr",
            "train.epochs": 1,
            "train.batch_size": 32,
            "train.device": "cpu",
            "train.knn_every": 1,
            "train.progress": False,
        },
        sets=[
            "data.options.file=table.csv",
            "data.options.target=label",
            "data.options.bias=group",
            "data.options.val_fraction=0",
        ],
    )
    with caplog.at_level("WARNING", logger="debiascl"):
        run_dir = train(config, tmp_path / "run")
    assert "kNN monitor is off" in caplog.text
    results = evaluate_run(run_dir, probe="fast")
    assert results["num_samples"]["val"] == 0 and results["num_samples"]["test"] > 0
    probe = results["probe"]["metrics"]
    assert 0.0 <= probe["worst_group"] <= 1.0
    assert probe["worst_group"] == min(probe["per_group"].values())
    assert probe["aligned_size"] + probe["conflicting_size"] == results["num_samples"]["test"]


def test_eval_split_val_writes_its_own_results_file(tmp_path: Path, capsys):
    """`debiascl eval RUN --split val` scores val into results_val.json; test stays separate."""
    from fakes import tiny_config

    from debiascl.cli import main

    run_dir = train(tiny_config("simclr"), tmp_path / "run")
    assert main(["eval", str(run_dir), "--device", "cpu", "--split", "val", "--no-plots"]) == 0
    assert "simclr on biased-digits val split" in capsys.readouterr().out
    assert not (run_dir / "results.json").exists()
    val = json.loads((run_dir / "results_val.json").read_text())
    assert val["split"] == "val" and val["results_file"] == str(run_dir / "results_val.json")
    test = evaluate_run(run_dir, probe="fast")
    assert test["split"] == "test" and json.loads((run_dir / "results.json").read_text()) == test
    assert val["probe"]["weight_decay"] == test["probe"]["weight_decay"]  # L2 chosen on val
    # val and test hold different images, so their scores differ
    assert val["probe"]["metrics"] != test["probe"]["metrics"]
    assert val["probe"]["metrics"]["num_samples"] == val["num_samples"]["val"]
    with pytest.raises(DebiasclError, match="split 'train': expected one of test, val"):
        evaluate_run(run_dir, split="train")


@pytest.mark.slow
def test_val_evaluation_scores_the_discovered_groups(tmp_path: Path):
    """On val, each evaluation's worst accuracy over the discovered val groups (no bias label)."""
    from fakes import tiny_config

    from debiascl.discovery import read_discovery
    from debiascl.discovery.run import discover_run

    run_dir = train(tiny_config("wcl"), tmp_path / "run")
    discover_run(run_dir, plots=False)
    val = evaluate_run(run_dir, split="val", probe_groups=("discovered",))
    groups = read_discovery(run_dir)[0]["val"].groups
    assert groups.numel() == val["num_samples"]["val"]
    for key in ("probe", "knn", "probe_discovered"):
        metrics = val[key]["metrics"]
        assert 0.0 <= metrics["discovered_worst_group"] <= metrics["accuracy"]
    test = evaluate_run(run_dir, probe_groups=("discovered",))
    assert "discovered_worst_group" not in test["probe"]["metrics"]  # test has no discovery
    written = json.loads((run_dir / "results_val.json").read_text())
    assert written == val
    _assert_previous_layout(written, "simclr_results_val.json")


def _assert_previous_layout(written: dict, fixture: str) -> None:
    """``written`` has the layout of the results file of the version before typed results
    (tests/fixtures/results_6ae1610): its keys in that order, each evaluation's too."""
    previous = json.loads(
        (Path(__file__).parent / "fixtures/results_6ae1610" / fixture).read_text()
    )
    assert set(written) <= set(previous)
    assert [key for key in previous if key in written] == list(written)
    for key, entry in written.items():
        if isinstance(entry, dict) and "metrics" in entry:
            assert list(entry) == list(previous[key]), key
