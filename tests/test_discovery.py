"""Tests of bias discovery (SPEC 9): scores, leave-one-out kNN, balanced weights, the
group-robust probe, ``debiascl discover`` and ``debiascl eval --probe-groups``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

import debiascl.evaluate.probes
from debiascl.cli import main
from debiascl.config import load_config
from debiascl.data import build_dataset
from debiascl.discovery import (
    balanced_weights,
    conflict_scores,
    discovery_quality,
    nearest_neighbours,
    read_discovery,
)
from debiascl.evaluate import fit_linear_probe, probe_groups_of
from debiascl.metrics import dense_group_ids, group_counts, group_ids

TINY = ["--epochs", "2", "--batch-size", "128", "--device", "cpu"]
TINY_SETS = ["--set", "data.options.image_size=8", "--set", "train.knn_every=0"]


def naive_scores(
    bank: torch.Tensor, bank_y: torch.Tensor, k: int, queries=None, query_y=None
) -> torch.Tensor:
    """SPEC 9 written as a loop: cosine similarity to every other sample, sort, count."""
    leave_one_out = queries is None
    queries = bank if leave_one_out else queries
    query_y = bank_y if leave_one_out else query_y
    scores = []
    for i in range(queries.shape[0]):
        similarities = []
        for j in range(bank.shape[0]):
            if leave_one_out and i == j:
                continue
            similarity = F.cosine_similarity(queries[i], bank[j], dim=0).item()
            similarities.append((similarity, j))
        similarities.sort(key=lambda pair: -pair[0])
        neighbours = [j for _, j in similarities[:k]]
        scores.append(sum(int(bank_y[j] != query_y[i]) for j in neighbours) / k)
    return torch.tensor(scores)


def test_scores_equal_a_naive_loop_leave_one_out_and_for_queries() -> None:
    generator = torch.Generator().manual_seed(0)
    bank = torch.randn(60, 5, generator=generator)
    bank_y = torch.randint(0, 3, (60,), generator=generator)
    queries = torch.randn(17, 5, generator=generator)
    query_y = torch.randint(0, 3, (17,), generator=generator)
    for chunk_size in (7, 4096):  # blocks merged into a running top-k, or one block
        assert torch.equal(
            conflict_scores(bank, bank_y, 6, chunk_size=chunk_size), naive_scores(bank, bank_y, 6)
        )
        assert torch.equal(
            conflict_scores(bank, bank_y, 6, queries, query_y, chunk_size=chunk_size),
            naive_scores(bank, bank_y, 6, queries, query_y),
        )


def test_a_sample_is_never_its_own_neighbour() -> None:
    bank = torch.randn(30, 4, generator=torch.Generator().manual_seed(1))
    neighbours = nearest_neighbours(bank, 29, chunk_size=8)
    assert not (neighbours == torch.arange(30)[:, None]).any()
    assert all(
        sorted(row.tolist()) == [j for j in range(30) if j != i] for i, row in enumerate(neighbours)
    )


def planted_bias(n_per_group: dict[tuple[int, int], int], seed: int = 0):
    """Features dominated by a bias coordinate a (plus tiny noise), classes y, attributes a."""
    generator = torch.Generator().manual_seed(seed)
    y, a = [], []
    for (label, bias), count in n_per_group.items():
        y += [label] * count
        a += [bias] * count
    y, a = torch.tensor(y), torch.tensor(a)
    features = torch.stack([a.float() * 2 - 1, 1 - (a.float() * 2 - 1)], dim=1) * 10
    features = features + 0.01 * torch.randn(len(y), 2, generator=generator)
    return features, y, a


def test_planted_bias_flags_exactly_the_conflicting_samples() -> None:
    # class 0 mostly on a=0, class 1 mostly on a=1; the bias encoder sees only a.
    features, y, a = planted_bias({(0, 0): 40, (0, 1): 3, (1, 1): 40, (1, 0): 3})
    scores = conflict_scores(features, y, k=10)
    flags = scores > 0.5
    conflicting = y != a
    assert torch.equal(flags, conflicting)
    counts = group_counts(y, a, 2, 2)
    quality = discovery_quality(scores, flags, y, a, counts)
    assert quality["precision"] == quality["recall"] == quality["auroc"] == 1.0
    assert quality["conflicting"] == 6 and quality["flagged"] == 6
    assert quality["flagged_by_group"] == {"y=0,a=0": 0, "y=0,a=1": 3, "y=1,a=0": 3, "y=1,a=1": 0}


def test_quality_without_bias_labels_reports_no_label_figure() -> None:
    scores, flags = torch.tensor([0.1, 0.9]), torch.tensor([False, True])
    no_bias = torch.tensor([-1, -1])
    assert discovery_quality(scores, flags, torch.tensor([0, 1]), no_bias, None) == {
        "bias_labels": False
    }


def test_quality_is_undefined_not_zero_where_nothing_is_flagged() -> None:
    y, a = torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 0, 1, 1, 1, 0])
    quality = discovery_quality(
        torch.zeros(6), torch.zeros(6, dtype=torch.bool), y, a, group_counts(y, a, 2, 2)
    )
    assert quality["precision"] is None and quality["recall"] == 0.0 and quality["auroc"] == 0.5


def test_balanced_weights_give_every_group_the_same_total() -> None:
    groups = torch.tensor([5, 5, 5, 5, 5, 5, 9, 9, 2])
    weights = balanced_weights(groups)
    totals = [float(weights[groups == g].sum()) for g in (5, 9, 2)]
    assert totals == pytest.approx([3.0, 3.0, 3.0])  # n / G = 9 / 3
    assert float(weights.mean()) == pytest.approx(1.0)
    assert weights[0] == pytest.approx(9 / (3 * 6)) and weights[-1] == pytest.approx(3.0)


def test_group_ids_are_the_one_encoding_for_tensors_and_arrays() -> None:
    y, other = torch.tensor([1, 0, 1, 0, 1, 2]), torch.tensor([0, 1, 0, 0, 1, -1])
    ids = group_ids(y, other, 2)
    assert ids.tolist() == [2, 1, 2, 0, 3, -1]  # 2y + value; unknown value: no group
    assert group_ids(y.numpy(), other.numpy(), 2).tolist() == ids.tolist()
    pairs = list(zip(y[:5].tolist(), other[:5].tolist(), strict=True))
    assert [divmod(int(g), 2) for g in ids[:5]] == pairs
    assert dense_group_ids(torch.tensor([7, 3, 7, 12])).tolist() == [1, 0, 1, 2]


def test_weighted_probe_equals_the_probe_on_replicated_samples() -> None:
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(40, 3, generator=generator)
    y = (features[:, 0] + 0.5 * torch.randn(40, generator=generator) > 0).long()
    weights = torch.ones(40)
    weights[:10] = 3.0
    weighted = fit_linear_probe(features, y, 2, sample_weights=weights * 40 / weights.sum())
    replicated = torch.cat([features[:10], features[:10], features])
    plain = fit_linear_probe(replicated, torch.cat([y[:10], y[:10], y]), 2)
    # standardisation statistics differ; compare the decision on the original points
    probe_inputs = torch.randn(200, 3, generator=generator)
    agreement = (weighted.predict(probe_inputs) == plain.predict(probe_inputs)).float().mean()
    assert agreement > 0.97
    unweighted = fit_linear_probe(features, y, 2)
    assert not torch.allclose(weighted.linear.weight, unweighted.linear.weight)


def test_group_balanced_probe_raises_the_worst_group_on_a_spurious_feature() -> None:
    # feature 0 = weak core signal of y, feature 1 = strong spurious a; 95% aligned in train.
    rng = np.random.default_rng(0)

    def split(n_aligned: int, n_conflicting: int) -> tuple[torch.Tensor, ...]:
        y = np.r_[
            np.zeros(n_aligned), np.ones(n_aligned), np.zeros(n_conflicting), np.ones(n_conflicting)
        ]
        a = np.r_[
            np.zeros(n_aligned), np.ones(n_aligned), np.ones(n_conflicting), np.zeros(n_conflicting)
        ]
        core = (2 * y - 1) * 1.0 + rng.normal(0, 1.0, y.size)
        spurious = (2 * a - 1) * 3.0 + rng.normal(0, 0.3, y.size)
        features = torch.tensor(np.c_[core, spurious], dtype=torch.float32)
        return features, torch.tensor(y).long(), torch.tensor(a).long()

    train_h, train_y, train_a = split(475, 25)
    test_h, test_y, test_a = split(250, 250)

    def worst_group(probe) -> float:
        correct = probe.predict(test_h) == test_y
        return min(
            float(correct[(test_y == c) & (test_a == b)].float().mean())
            for c in (0, 1)
            for b in (0, 1)
        )

    plain = fit_linear_probe(train_h, train_y, 2)
    balanced = fit_linear_probe(
        train_h, train_y, 2, sample_weights=balanced_weights(group_ids(train_y, train_a, 2))
    )
    assert worst_group(plain) < 0.5 < worst_group(balanced)


def test_l2_strength_is_chosen_by_the_worst_val_group_when_groups_are_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(1)
    features = torch.tensor(rng.normal(size=(80, 6)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 2, 80))
    val = {
        "val_features": torch.tensor(rng.normal(size=(40, 6)), dtype=torch.float32),
        "val_y": torch.tensor(rng.integers(0, 2, 40)),
    }
    val_groups = torch.tensor(rng.integers(0, 3, 40))

    def worst_val_group(weight_decay: float) -> float:
        monkeypatch.setattr(debiascl.evaluate.probes, "FAST_WEIGHT_DECAYS", (weight_decay,))
        probe = fit_linear_probe(features, y, 2, **val)
        correct = probe.predict(val["val_features"]) == val["val_y"]
        return min(float(correct[val_groups == g].float().mean()) for g in range(3))

    candidates = (1e-5, 1e-3, 1e-1, 10.0)
    best = max(candidates, key=lambda wd: (worst_val_group(wd), wd))
    monkeypatch.setattr(debiascl.evaluate.probes, "FAST_WEIGHT_DECAYS", candidates)
    chosen = fit_linear_probe(features, y, 2, **val, val_groups=val_groups)
    assert chosen.weight_decay == best


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny finished triplet and simclr runs on biased-digits-binary (a few seconds each)."""
    root = tmp_path_factory.mktemp("discovery-runs")
    made = {}
    for method in ("triplet", "simclr"):
        out = root / method
        args = ["train", "--dataset", "biased-digits-binary", "--method", method, "--out", str(out)]
        assert main([*args, *TINY, *TINY_SETS]) == 0
        made[method] = out
    return made


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_discover_writes_scores_summary_and_plots(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["discover", str(runs["triplet"]), "--device", "cpu", "--k", "5"]) == 0
    printed = capsys.readouterr().out
    assert "graded with the true bias labels (not used to discover)" in printed
    rows = read_rows(runs["triplet"] / "discovered.csv")
    assert list(rows[0]) == ["split", "index", "y", "score", "flag", "a"]
    splits, summary = read_discovery(runs["triplet"])
    train = splits["train"]
    assert {row["split"] for row in rows} == {"train", "val"}
    assert torch.equal(train.flag, train.score > 0.5)
    assert torch.all((train.score * 5).round() == train.score * 5)  # multiples of 1/k
    assert summary["k"] == 5 and summary["encoder"] == "b" and summary["uses_bias_labels"] is False
    quality = summary["train"]
    # Scored against the data set's own bias-conflicting samples (the one definition).
    config = load_config(runs["triplet"] / "config.yaml")
    dataset = build_dataset(config.data.name, None, "train", **config.data.options)
    conflicting = dataset.bias_conflicting[train.index]
    assert quality["bias_labels"] and quality["conflicting"] == int(conflicting.sum()) > 0
    assert quality["auroc"] == pytest.approx(roc_auc_score(conflicting.numpy(), train.score))
    hits = int((train.flag & conflicting).sum())
    assert quality["recall"] == pytest.approx(hits / int(conflicting.sum()))
    flagged = sum(quality["flagged_by_group"].values())
    assert flagged == int(train.flag.sum()) == sum(summary["flagged_by_class"].values())
    assert (runs["triplet"] / "discovery_scores.png").read_bytes().startswith(b"\x89PNG")
    if flagged:
        assert (runs["triplet"] / "discovered_flagged.png").is_file()


@pytest.mark.slow
def test_a_run_without_e_b_discovers_with_another_runs_encoder(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    simclr, triplet = str(runs["simclr"]), str(runs["triplet"])
    assert main(["discover", simclr, "--device", "cpu"]) == 2
    assert "has no bias encoder E_b" in capsys.readouterr().err
    assert main(["discover", simclr, "--bias-run", triplet, "--device", "cpu", "--no-plots"]) == 0
    summary = json.loads((runs["simclr"] / "discovery.json").read_text())
    assert summary["bias_run"] == triplet and summary["bias_method"] == "triplet"
    assert (
        main(["eval", simclr, "--device", "cpu", "--no-plots", "--probe-groups", "discovered,true"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "probe_discovered" in printed and "no bias label used" in printed
    results = json.loads((runs["simclr"] / "results.json").read_text())
    probe = results["probe"]["metrics"]
    assert probe["worst_group"] == min(probe["per_group"].values())
    for kind, uses in (("discovered", False), ("true", True)):
        entry = results[f"probe_{kind}"]
        assert entry["uses_bias_labels"] is uses
        assert 0.0 <= entry["metrics"]["worst_group"] <= entry["metrics"]["accuracy"] <= 1.0
    assert results["discovery"]["bias_run"] == triplet


@pytest.mark.slow
def test_a_stale_discovery_is_refused(runs: dict[str, Path], capsys) -> None:
    run = runs["simclr"]
    assert (
        main(
            [
                "discover",
                str(run),
                "--bias-run",
                str(runs["triplet"]),
                "--no-plots",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    capsys.readouterr()
    lines = (run / "discovered.csv").read_text().splitlines()
    first = lines[1].split(",")
    first[2] = str(1 - int(first[2]))  # another class than the sample has
    (run / "discovered.csv").write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    assert (
        main(["eval", str(run), "--probe-groups", "discovered", "--device", "cpu", "--no-plots"])
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "does not match the run's train split" in error and "debiascl discover" in error


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["discover", "{missing}"], "does not exist"),
        (["discover", "{unfinished}"], "has not finished"),
        (["discover", "{triplet}", "--k", "100000"], "k = 100000 neighbours: expected 1 <= k <="),
        (["discover", "{triplet}", "--k", "0"], "k = 0 neighbours"),
        (["discover", "{triplet}", "--threshold", "1.5"], "threshold = 1.5"),
        (["discover", "{simclr}", "--bias-run", "{other_data}"], "must use the same data set"),
    ],
)
def test_bad_discovery_input_is_one_line_exit_2(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((runs["triplet"] / "config.yaml").read_text())
    (unfinished / "checkpoints").mkdir()
    (unfinished / "checkpoints" / "last.pt").write_bytes(
        (runs["triplet"] / "checkpoints" / "last.pt").read_bytes()
    )
    other_data = tmp_path / "other"
    other_data.mkdir()
    config = (
        (runs["triplet"] / "config.yaml")
        .read_text()
        .replace("name: biased-digits-binary", "name: biased-digits")
    )
    (other_data / "config.yaml").write_text(config)
    (other_data / "checkpoints").mkdir()
    (other_data / "checkpoints" / "last.pt").write_bytes(b"x")
    (other_data / "train_done").write_text("1\n")
    paths = {
        "missing": tmp_path / "nope",
        "unfinished": unfinished,
        "triplet": runs["triplet"],
        "simclr": runs["simclr"],
        "other_data": other_data,
    }
    argv = [part.format(**{k: str(v) for k, v in paths.items()}) for part in arguments]
    assert main([*argv, "--device", "cpu", "--no-plots"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and error.startswith("debiascl: error:")
    assert message in error


@pytest.mark.slow
def test_probe_groups_are_checked_by_the_parser(runs, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(runs["triplet"]), "--probe-groups", "discoverd"])
    assert exit_info.value.code == 2
    assert "unknown discoverd" in capsys.readouterr().err


@pytest.mark.slow
def test_data_without_bias_labels_discovers_and_reports_no_label_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "table.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x1", "x2", "x3", "label"])
        for _ in range(300):
            label = int(rng.integers(0, 2))
            writer.writerow([*(rng.normal(label, 1.0, 3).round(3)), label])
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "csv",
                "--preset",
                "german",
                "--method",
                "triplet",
                "--out",
                str(out),
                "--epochs",
                "2",
                "--batch-size",
                "64",
                "--device",
                "cpu",
                "--set",
                f"data.options.path={path}",
                "--set",
                "data.options.target=label",
                "--set",
                "train.knn_every=0",
            ]
        )
        == 0
    )
    assert (
        main(["eval", str(out), "--probe-groups", "discovered", "--device", "cpu", "--no-plots"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "probe_discovered" in printed and "precision" not in printed
    summary = json.loads((out / "discovery.json").read_text())
    assert summary["train"] == {
        "num_samples": summary["train"]["num_samples"],
        "bias_labels": False,
    }
    assert main(["eval", str(out), "--probe-groups", "true", "--device", "cpu", "--no-plots"]) == 2
    assert "has no bias attribute" in capsys.readouterr().err


@pytest.mark.slow
def test_the_class_balanced_probe_is_the_ablation_without_bias_labels(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run = runs["triplet"]
    args = ["eval", str(run), "--device", "cpu", "--no-plots", "--probe-groups", "class,true"]
    assert main(args) == 0
    results = json.loads((run / "results.json").read_text())
    balanced = results["probe_class"]
    assert balanced["uses_bias_labels"] is False and balanced["num_groups"] == 2
    assert "class-balanced" in balanced["protocol"]
    assert results["probe_true"]["num_groups"] == 4
    capsys.readouterr()
    y = torch.tensor([3, 1, 3, 7, 1])  # its groups are the classes: g = y * 1 + 0
    features = {
        split: (torch.zeros(5, 2), y, torch.full((5,), -1), torch.arange(5))
        for split in ("train", "val")
    }
    groups = probe_groups_of("class", None, features)
    assert all(torch.equal(groups[split], y) for split in features)
