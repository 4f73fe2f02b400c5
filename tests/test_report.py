"""Report plots and tables on synthetic arrays (no trained run needed)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from debiascl.report import (
    RELATIONS,
    easy_hard_negatives,
    easy_hard_rows,
    flatten_results,
    plot_easy_hard_negatives,
    plot_training_curves,
    plot_tsne,
    plot_weight_histograms,
    pool_weights,
    read_metrics,
    weight_summary,
    write_tables,
)


def _assert_png(path: Path, size: tuple[int, int]) -> None:
    assert path.is_file() and path.stat().st_size > 5_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size


def test_tsne_plot(tmp_path: Path):
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    a = torch.arange(60) % 2
    a[0] = -1
    features = torch.randn(60, 8, generator=generator) + 3 * F.one_hot(y, 8).float()
    path = plot_tsne(features, y, a, tmp_path / "tsne.png", max_samples=50)
    _assert_png(path, (1200, 550))


def _direct_weights(zd: torch.Tensor, zb: torch.Tensor, t: float) -> torch.Tensor:
    """SPEC 3.2's direct formula, anchors against the other pool samples, float64 loops."""
    n = zd.shape[0]
    q = {
        key: torch.exp(F.normalize(z.double(), dim=1) @ F.normalize(z.double(), dim=1).T / t)
        for key, z in (("d", zd), ("b", zb))
    }
    w = torch.zeros(n, n, dtype=torch.float64)
    for anchor in range(n):
        others = [j for j in range(n) if j != anchor]
        qn = {key: q[key][anchor, others] / q[key][anchor, others].norm() for key in q}
        w[anchor, others] = 1 + qn["d"] / (qn["b"] + qn["d"] + 1e-6)
    return w


def test_pool_weights_equal_the_direct_formula():
    generator = torch.Generator().manual_seed(1)
    zd, zb = torch.randn(12, 6, generator=generator), torch.randn(12, 4, generator=generator)
    weights = pool_weights(zd, zb, temperature=0.5)
    assert weights.shape == (12, 12)
    torch.testing.assert_close(weights.double(), _direct_weights(zd, zb, 0.5), atol=1e-5, rtol=0)


def _ranked_weights() -> torch.Tensor:
    """w(a, j) = 1 + (j + 1) / 100 off the diagonal (increasing in j), 0 on it."""
    weights = (1 + (torch.arange(8) + 1) / 100).repeat(8, 1)
    return weights.fill_diagonal_(0.0)


def test_easy_and_hard_negatives_skip_the_anchor():
    easy, hard = easy_hard_negatives(_ranked_weights(), torch.tensor([0, 7, 3]), k=2)
    assert easy.tolist() == [[1, 2], [0, 1], [0, 1]]
    assert hard.tolist() == [[7, 6], [6, 5], [7, 6]]


def test_easy_hard_rows_label_each_negative():
    y, a = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1]), torch.tensor([1, 1, 0, 0, 1, 1, 0, 0])
    index = torch.arange(8) + 100
    rows = easy_hard_rows(_ranked_weights(), torch.tensor([2]), y, a, index, k=1)
    assert rows == [
        {
            "anchor": 102,
            "anchor_y": 0,
            "anchor_a": 0,
            "kind": "easy",
            "rank": 1,
            "negative": 100,
            "negative_y": 0,
            "negative_a": 1,
            "w": 1.01,
        },
        {
            "anchor": 102,
            "anchor_y": 0,
            "anchor_a": 0,
            "kind": "hard",
            "rank": 1,
            "negative": 107,
            "negative_y": 1,
            "negative_a": 0,
            "w": 1.08,
        },
    ]


def test_easy_hard_grid_png(tmp_path: Path):
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    y, a = torch.arange(8) % 2, torch.arange(8) // 4
    path = plot_easy_hard_negatives(
        images,
        y,
        a,
        _ranked_weights(),
        torch.tensor([0, 5, 6]),
        tmp_path / "grid.png",
        k=3,
        class_names=["landbird", "waterbird"],
        attribute_names=["land", "water"],
    )
    _assert_png(path, (910, 600))


def _histogram_case():
    y = torch.tensor([0, 0, 1, 1])
    a = torch.tensor([0, 1, 1, 1])
    aligned = torch.tensor([True, False, True, True])
    weights = torch.tensor(
        [
            [0.0, 1.1, 1.2, 1.3],
            [1.4, 0.0, 1.5, 1.6],
            [1.7, 1.8, 0.0, 1.9],
            [1.25, 1.35, 1.45, 0.0],
        ]
    )
    return weights, y, a, aligned


def test_weight_summary_by_hand():
    summary = weight_summary(*_histogram_case())
    aligned, conflicting = summary["aligned anchors"], summary["conflicting anchors"]
    # Aligned anchors 0, 2, 3. Anchor 0 (y0,a0): 1 same class other bias (1.1), 2 other/other.
    assert aligned["same class, other bias"] == {"mean_w": pytest.approx(1.1), "pairs": 1}
    # Anchors 2 (y1,a1) and 3 (y1,a1): same class same bias 1.9 and 1.45.
    assert aligned["same class, same bias"] == {"mean_w": pytest.approx(1.675), "pairs": 2}
    # Other class, same bias: 2->1 (1.8), 3->1 (1.35); other class, other bias: 0->2, 0->3,
    # 2->0, 3->0.
    assert aligned["other class, same bias"]["mean_w"] == pytest.approx((1.8 + 1.35) / 2)
    other_other = (1.2 + 1.3 + 1.7 + 1.25) / 4
    assert aligned["other class, other bias"]["mean_w"] == pytest.approx(other_other)
    # Conflicting anchor 1 (y0,a1): 0 same class other bias, 2 and 3 other class same bias.
    assert conflicting == {
        "same class, other bias": {"mean_w": pytest.approx(1.4), "pairs": 1},
        "other class, same bias": {"mean_w": pytest.approx(1.55), "pairs": 2},
    }
    assert set(aligned) <= set(RELATIONS)


def test_weight_histograms_png(tmp_path: Path):
    generator = torch.Generator().manual_seed(3)
    y, a = torch.randint(0, 3, (40,), generator=generator), torch.randint(0, 2, (40,))
    aligned = torch.arange(40) % 5 != 0
    weights = pool_weights(
        torch.randn(40, 8, generator=generator), torch.randn(40, 8, generator=generator), 0.5
    )
    _assert_png(plot_weight_histograms(weights, y, a, aligned, tmp_path / "w.png"), (1200, 400))
    with pytest.raises(ValueError, match="at least one anchor"):
        plot_weight_histograms(weights[:0, :0], y[:0], a[:0], aligned[:0], tmp_path / "x.png")


def test_training_curves_from_metrics_jsonl(tmp_path: Path):
    records = [{"kind": "step", "epoch": 0, "step": s, "loss_d": 5 - s / 10} for s in range(40)]
    records += [{"kind": "epoch", "epoch": e, "step": 10 * e, "loss_d": 4.0 - e} for e in range(3)]
    records += [
        {"kind": "knn", "epoch": e, "step": 10 * e, "knn_acc": 0.3 + e / 10} for e in (1, 2)
    ]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    assert read_metrics(metrics) == records
    _assert_png(plot_training_curves(records, tmp_path / "curves.png"), (400, 900))
    with pytest.raises(ValueError, match="no step, epoch or knn"):
        plot_training_curves([{"kind": "step", "step": 1, "lr": 0.1}], tmp_path / "none.png")


def _results(method: str, seed: int, accuracy: float, worst: float) -> dict:
    metrics = {"accuracy": accuracy, "worst_group": worst, "per_group": {"y=0,a=0": 1.0}}
    results = {
        "method": method,
        "dataset": "toy",
        "seed": seed,
        "encoder": "d",
        "supervised": method == "erm",
        "main": "classifier" if method == "erm" else "probe",
        "probe": {"protocol": "p", "metrics": metrics},
        "knn": {"protocol": "k", "metrics": {"accuracy": 0.1, "worst_group": 0.0}},
    }
    if method == "erm":
        results["classifier"] = {"protocol": "c", "metrics": {"accuracy": 0.99, "worst_group": 0.5}}
    return results


def test_flatten_results_uses_the_main_evaluation():
    row = flatten_results(_results("erm", 0, 0.8, 0.4))
    assert row["main.accuracy"] == 0.99 and row["probe.accuracy"] == 0.8
    assert row["knn.worst_group"] == 0.0 and row["supervised"] is True
    assert not any("per_group" in key for key in row)
    assert flatten_results(_results("wcl", 0, 0.8, 0.4))["main.worst_group"] == 0.4


def test_write_tables_mean_and_stderr(tmp_path: Path):
    rows = [
        flatten_results(_results("wcl", 0, 0.80, 0.40)),
        flatten_results(_results("wcl", 1, 0.90, 0.60)),
        flatten_results(_results("simclr", 0, 0.70, 0.20)),
    ]
    paths = write_tables(rows, tmp_path)
    assert {p.name for p in paths} == {
        f"{stem}.{ext}" for stem in ("runs", "summary") for ext in ("md", "csv", "json")
    }
    summary = json.loads((tmp_path / "summary.json").read_text())
    wcl = next(entry for entry in summary if entry["method"] == "wcl")
    assert wcl["runs"] == 2
    assert wcl["main.accuracy.mean"] == pytest.approx(0.85)
    assert wcl["main.accuracy.stderr"] == pytest.approx(math.sqrt(0.005) / math.sqrt(2))
    assert "seed.mean" not in wcl and "supervised.mean" not in wcl
    simclr = next(entry for entry in summary if entry["method"] == "simclr")
    assert simclr["runs"] == 1 and simclr["main.worst_group.stderr"] == 0.0
    markdown = (tmp_path / "summary.md").read_text()
    assert "| wcl | 2 |" in markdown and "85.00 ± 5.00" in markdown
    simclr_line = next(line for line in markdown.splitlines() if line.startswith("| simclr |"))
    assert "70.00" in simclr_line and "±" not in simclr_line  # one run: no spread to show
    with (tmp_path / "runs.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 3
    with pytest.raises(ValueError):
        write_tables([], tmp_path)
