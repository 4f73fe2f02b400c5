"""Report plots and tables on synthetic arrays, and the w analysis of one tiny trained run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fakes import tiny_config
from PIL import Image

import debiascl.report.weight_report as weight_report
from debiascl.evaluate import load_run
from debiascl.records import read_metrics
from debiascl.report.labels import MAX_SHOWN_FEATURES, Names
from debiascl.report.plots import (
    plot_easy_hard_negatives,
    plot_training_curves,
    plot_tsne,
    plot_weight_cells,
)
from debiascl.report.tables import flatten_results, write_tables
from debiascl.report.weights import (
    RELATIONS,
    cell_weights,
    easy_hard_negatives,
    easy_hard_rows,
    group_cells,
    pool_weights,
    relation_cells,
    weight_summary,
)
from debiascl.results import RunResults
from debiascl.train import train


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


def _captured_figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """Capture the figures the plotting functions save (and skip writing them)."""
    import debiascl.report.plots

    saved: list = []
    monkeypatch.setattr(debiascl.report.plots, "_save", lambda figure, path: saved.append(figure))
    return saved


def test_tsne_legends_name_classes_and_attributes(monkeypatch: pytest.MonkeyPatch):
    saved = _captured_figures(monkeypatch)
    y, a = torch.arange(60) % 3, torch.arange(60) % 2
    a[0] = -1
    features = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
    plot_tsne(
        features,
        y,
        a,
        "unused.png",
        names=Names(["cat", "dog", "fox"], ["land", "water"]),
    )
    by_class, by_bias = saved[0].axes[:2]
    assert [t.get_text() for t in by_class.get_legend().get_texts()] == ["0 cat", "1 dog", "2 fox"]
    assert [t.get_text() for t in by_bias.get_legend().get_texts()] == [
        "unknown",
        "0 land",
        "1 water",
    ]
    assert len(saved[0].axes) == 2  # no colour bar


def test_tsne_falls_back_to_a_colour_bar_of_ids_beyond_20_classes(
    monkeypatch: pytest.MonkeyPatch,
):
    saved = _captured_figures(monkeypatch)
    y = torch.arange(100) % 25
    features = torch.randn(100, 8, generator=torch.Generator().manual_seed(0))
    plot_tsne(features, y, torch.zeros(100, dtype=torch.long), "unused.png")
    by_class, by_bias, colour_bar = saved[0].axes
    assert by_class.get_legend() is None and colour_bar.get_ylabel() == "class id"
    assert [t.get_text() for t in by_bias.get_legend().get_texts()] == ["0"]


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


def test_pool_weights_follow_the_weight_form():
    generator = torch.Generator().manual_seed(2)
    zd, zb = torch.randn(10, 6, generator=generator), torch.randn(10, 4, generator=generator)
    paper = pool_weights(zd, zb, 0.5)
    off_diagonal = ~torch.eye(10, dtype=torch.bool)
    mirror = pool_weights(zd, zb, 0.5, weight_form="mirror")
    torch.testing.assert_close(mirror[off_diagonal], 3 - paper[off_diagonal])  # 1 + (1 - q)
    none = pool_weights(zd, zb, 0.5, weight_form="none")
    assert torch.equal(none, off_diagonal.float())


def test_the_weight_report_uses_the_runs_weight_form(tmp_path: Path, monkeypatch) -> None:
    run_dir = train(tiny_config("wcl", 1, 128, "method.weight_form=none"), tmp_path / "run")
    forms = []

    def spy(zd, zb, temperature, weight_form="paper"):
        forms.append(weight_form)
        return pool_weights(zd, zb, temperature, weight_form)

    monkeypatch.setattr(weight_report, "pool_weights", spy)
    weight_report.write_weight_report(load_run(run_dir, "cpu", splits=("train", "test")), 16, 2, 2)
    assert forms == ["none"]
    rows = json.loads((run_dir / "easy_hard_negatives.json").read_text())
    assert rows and all(row["w"] == 1.0 for row in rows)


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


def test_easy_hard_rows_name_ids_and_show_table_features():
    y, a = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1]), torch.tensor([1, 1, 0, 0, 1, 1, 0, -1])
    features = torch.arange(8 * 10, dtype=torch.float32).reshape(8, 10) / 10
    names = [f"f{i}" for i in range(10)]
    rows = easy_hard_rows(
        _ranked_weights(),
        torch.tensor([2]),
        y,
        a,
        torch.arange(8),
        k=1,
        names=Names(["income<=50K", "income>50K"], ["male", "female"], names),
        features=features,
    )
    easy, hard = rows
    assert (easy["anchor_class"], easy["anchor_bias"]) == ("income<=50K", "male")
    assert (easy["negative"], easy["negative_class"], easy["negative_bias"]) == (
        0,
        "income<=50K",
        "female",
    )
    assert (hard["negative"], hard["negative_class"], hard["negative_bias"]) == (
        7,
        "income>50K",
        "unknown",
    )
    shown = ", ".join(f"f{i}={(20 + i) / 10:.2f}" for i in range(MAX_SHOWN_FEATURES))
    assert easy["anchor_features"] == shown + ", ... (+2 more)"
    assert hard["negative_features"].startswith("f0=7.00, f1=7.10")
    few = easy_hard_rows(
        _ranked_weights(), torch.tensor([2]), y, a, torch.arange(8), 1, features=features[:, :3]
    )
    assert few[0]["anchor_features"] == "x0=2.00, x1=2.10, x2=2.20"
    assert "anchor_class" not in few[0]


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
        names=Names(["landbird", "waterbird"], ["land", "water"]),
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


def _cell(summary: list[dict], anchors: str, negatives: str) -> dict:
    (row,) = [r for r in summary if r["anchors"] == anchors and r["negatives"] == negatives]
    return {key: row[key] for key in ("pairs", "mean_w", "median_w")}


def test_relation_summary_by_hand():
    weights, y, a, aligned = _histogram_case()
    summary = weight_summary([relation_cells(weights, y, a, aligned, torch.ones(4, dtype=bool))])
    assert len(summary) == 2 * len(RELATIONS)
    assert {row["view"] for row in summary} == {"anchor kind x negative relation"}
    aligned_rows = "bias-aligned anchors"
    # Aligned anchors 0, 2, 3. Anchor 0 (y0,a0): 1 same class other bias (1.1), 2 other/other.
    assert _cell(summary, aligned_rows, "same class, other bias") == {
        "pairs": 1,
        "mean_w": pytest.approx(1.1),
        "median_w": pytest.approx(1.1),
    }
    # Anchors 2 (y1,a1) and 3 (y1,a1): same class same bias 1.9 and 1.45.
    assert _cell(summary, aligned_rows, "same class, same bias")["mean_w"] == pytest.approx(1.675)
    # Other class, other bias: 0->2, 0->3, 2->0, 3->0 (median of 1.2, 1.25, 1.3, 1.7).
    assert _cell(summary, aligned_rows, "other class, other bias") == {
        "pairs": 4,
        "mean_w": pytest.approx((1.2 + 1.3 + 1.7 + 1.25) / 4),
        "median_w": pytest.approx(1.275),
    }
    # Conflicting anchor 1 (y0,a1): 0 same class other bias, 2 and 3 other class same bias;
    # no same-bias negative of its class: an empty cell, not a zero.
    conflicting = "bias-conflicting anchors"
    assert _cell(summary, conflicting, "other class, same bias")["mean_w"] == pytest.approx(1.55)
    assert _cell(summary, conflicting, "same class, same bias") == {
        "pairs": 0,
        "mean_w": None,
        "median_w": None,
    }


def test_cell_weights_equal_a_naive_loop():
    generator = torch.Generator().manual_seed(5)
    n = 30
    y, a = torch.randint(0, 2, (n,), generator=generator), torch.randint(0, 3, (n,))
    a[:3] = -1
    weights = pool_weights(torch.randn(n, 8, generator=generator), torch.randn(n, 8), 0.5)
    cells = group_cells(weights, y, a, 2, 3, ["no", "yes"], ["p", "q", "r"])
    assert cells.rows[4] == "g4: y=1 yes, a=1 q" and cells.rows == cells.columns
    groups = [int(c) * 3 + int(b) if b >= 0 else -1 for c, b in zip(y, a, strict=True)]
    for row in range(6):
        for column in range(6):
            naive = [
                float(weights[i, j])
                for i in range(n)
                for j in range(n)
                if i != j and groups[i] == row and groups[j] == column
            ]
            assert cells.values[row][column].tolist() == pytest.approx(naive)
    assert sum(v.size for per in cells.values for v in per) == sum(
        1 for i in range(n) for j in range(n) if i != j and groups[i] >= 0 and groups[j] >= 0
    )
    # A pair-dependent column code (n, n) works the same way.
    relations = cell_weights(weights, torch.zeros(n, dtype=torch.long), torch.eye(n).long(), 1, 2)
    assert relations[0][1].size == 0 and relations[0][0].size == n * (n - 1)


def test_group_summary_has_count_mean_and_median_per_cell():
    weights, y, a, _ = _histogram_case()
    summary = weight_summary([group_cells(weights, y, a, 2, 2)])
    assert len(summary) == 16
    # Anchor group g1 (sample 1) against group g3 (samples 2, 3): 1.5 and 1.6.
    assert _cell(summary, "g1: y=0, a=1", "g3: y=1, a=1") == {
        "pairs": 2,
        "mean_w": pytest.approx(1.55),
        "median_w": pytest.approx(1.55),
    }
    # Group g2 (y=1, a=0) has no sample.
    assert _cell(summary, "g2: y=1, a=0", "g0: y=0, a=0")["pairs"] == 0
    assert _cell(summary, "g0: y=0, a=0", "g0: y=0, a=0")["mean_w"] is None  # anchor != negative


def test_weight_cell_histograms_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    weights, y, a, _ = _histogram_case()
    cells = group_cells(weights, y, a, 2, 2)
    _assert_png(plot_weight_cells(cells, tmp_path / "w.png"), (1200, 980))
    saved = _captured_figures(monkeypatch)
    plot_weight_cells(cells, "unused.png")
    texts = [[t.get_text() for t in axis.texts] for axis in saved[0].axes]
    titles = [axis.get_title() for axis in saved[0].axes]
    assert texts[0] == ["none"] and titles[0].endswith("\nnone")  # g0 -> g0: only itself
    assert titles[7] == "n=2, mean 1.550, median 1.550"  # g1 -> g3
    empty = group_cells(weights[:0, :0], y[:0], a[:0], 2, 2)
    with pytest.raises(ValueError, match="no \\(anchor, negative\\) pair"):
        plot_weight_cells(empty, tmp_path / "x.png")


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
    metrics = {
        "accuracy": accuracy,
        "worst_group": worst,
        "per_class": {"y=0": 1.0, "y=1": accuracy},
        "per_group": {"y=0,a=0": 1.0} | ({"y=1,a=1": worst} if seed == 1 else {}),
        "absent_groups": [] if seed == 1 else ["y=1,a=1"],
    }
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


def _typed(*args: object) -> RunResults:
    return RunResults.from_json(_results(*args))


def test_flatten_results_uses_the_main_evaluation():
    row = flatten_results(_typed("erm", 0, 0.8, 0.4))
    assert row["main.accuracy"] == 0.99 and row["probe.accuracy"] == 0.8
    assert row["knn.worst_group"] == 0.0 and row["supervised"] is True
    assert not any("per_group" in key for key in row)
    probe = flatten_results(_typed("wcl", 0, 0.8, 0.4))
    assert probe["main.worst_group"] == 0.4
    assert probe["main.group[y=0,a=0]"] == 1.0 and probe["main.class[y=1]"] == 0.8
    assert "main.group[y=1,a=1]" not in probe  # absent from the test split: no column, never 0


def test_write_tables_mean_and_stderr(tmp_path: Path):
    rows = [
        flatten_results(_typed("wcl", 0, 0.80, 0.40)),
        flatten_results(_typed("wcl", 1, 0.90, 0.60)),
        flatten_results(_typed("simclr", 0, 0.70, 0.20)),
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
        runs = list(csv.DictReader(handle))
    assert [run["main.group[y=1,a=1]"] for run in runs] == ["", "0.6", ""]  # absent: empty
    assert wcl["main.group[y=1,a=1].mean"] == 0.6  # over the one wcl run that has the group
    assert "main.group[y=1,a=1].mean" not in simclr
    scalar_table, per_part_table = markdown.split("Per-class and per-group accuracy")
    assert "group[" not in scalar_table and "class[" not in scalar_table
    assert "| metric | wcl | simclr |" in per_part_table
    assert "| main.class[y=1] | 85.00 ± 5.00 | 70.00 |" in per_part_table
    assert "| main.group[y=1,a=1] | 60.00 |  |" in per_part_table  # simclr lacks it: empty
    with pytest.raises(ValueError):
        write_tables([], tmp_path)
