"""Plots and tables of a run (SPEC section 7): t-SNE, WCL's weight sanity checks, curves, tables.

Each plotting function takes arrays/tensors and an output path, so it can be used (and tested)
without a trained run; :func:`write_report` makes every plot of a run into its directory:

- ``tsne.png``: t-SNE of test representations, coloured by class and, beside it, by bias value;
- ``easy_hard_negatives.png`` (images) and ``easy_hard_negatives.md`` / ``.csv``: for a few
  anchors, the negatives with the lowest w (easiest) and highest w (hardest) (wcl only);
- ``weight_histograms.png`` and ``weight_summary.json``: w by anchor kind (bias-aligned or
  bias-conflicting) x negative relation (same/different class, same/different bias) (wcl only);
- ``training_curves.png``: losses and kNN accuracy from ``metrics.jsonl``.

:func:`write_tables` turns one flat row per run into Markdown, CSV and JSON tables with the mean
and standard error over seeds of every metric.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from debiascl.evaluate import LoadedRun, load_run
from debiascl.features import extract_features
from debiascl.losses import relative_difficulty
from debiascl.metrics import group_counts, majority_aligned, mean_and_stderr

logger = logging.getLogger(__name__)

RELATIONS = (
    "same class, same bias",
    "same class, other bias",
    "other class, same bias",
    "other class, other bias",
)


def _numpy(values: torch.Tensor | np.ndarray | Sequence[Any]) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _figure(rows: int, columns: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A figure on the Agg canvas (no pyplot, no global backend change) and its (rows, columns)
    grid of axes."""
    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, squeeze=False)


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def plot_tsne(
    features: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    a: torch.Tensor | np.ndarray,
    path: str | Path,
    max_samples: int = 2000,
    seed: int = 0,
    title: str = "",
) -> Path:
    """t-SNE of representations, coloured by class (left) and by bias attribute (right).

    Args:
        features: (n, F) representations.
        y: (n,) classes.
        a: (n,) bias attributes, -1 where unknown (drawn grey).
        path: PNG to write.
        max_samples: a random subset of at most this many samples is embedded.
        seed: seeds the subset and t-SNE.
        title: figure title.

    Returns:
        ``path``.
    """
    from sklearn.manifold import TSNE

    features, y, a = _numpy(features).astype(np.float32), _numpy(y), _numpy(a)
    if features.shape[0] < 5:
        raise ValueError(f"t-SNE needs at least 5 samples, got {features.shape[0]}")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.permutation(features.shape[0])[:max_samples])
    perplexity = min(30.0, (len(keep) - 1) / 3)
    embedding = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        features[keep]
    )
    figure, axes = _figure(1, 2, (12, 5.5))
    for axis, colours, name in (
        (axes[0, 0], y[keep], "class"),
        (axes[0, 1], a[keep], "bias attribute"),
    ):
        known = colours >= 0
        axis.scatter(*embedding[~known].T, s=4, c="lightgrey", label="unknown")
        cmap = "tab10" if colours.max(initial=0) < 10 else "viridis"
        points = axis.scatter(*embedding[known].T, s=4, c=colours[known], cmap=cmap)
        if known.any():
            figure.colorbar(points, ax=axis, label=name)
        axis.set_title(f"coloured by {name}")
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title or f"t-SNE of {len(keep)} test representations")
    figure.tight_layout()
    return _save(figure, path)


@torch.no_grad()
def pool_weights(zd: torch.Tensor, zb: torch.Tensor, temperature: float) -> torch.Tensor:
    """WCL's w(a, j) between every pair of a pool of samples (SPEC 3.2).

    Uses :func:`debiascl.losses.relative_difficulty` with the pool as both "views": every other
    sample then appears twice among an anchor's negatives, which scales both encoders'
    normalisers by sqrt(2) and cancels in w, so the top-left block is w with the other pool
    samples as negatives.

    Args:
        zd: (n, D) E_d projections of the pool.
        zb: (n, D') E_b projections of the same samples.
        temperature: the loss temperature t.

    Returns:
        (n, n) w in (1, 2) off the diagonal, 0 on it.
    """
    n = zd.shape[0]
    return relative_difficulty(zd, zd, zb, zb, temperature=temperature)[:n, :n]


def easy_hard_negatives(
    weights: torch.Tensor, anchors: torch.Tensor, k: int = 5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool positions of each anchor's k easiest (lowest w) and k hardest (highest w) negatives.

    Args:
        weights: (n, n) pool weights (:func:`pool_weights`).
        anchors: (m,) pool positions of the anchors; an anchor is never its own negative.
        k: negatives of each kind.

    Returns:
        easy (m, k) and hard (m, k) int64 positions, easy ordered from the lowest w, hard from
        the highest.
    """
    rows = weights[anchors].clone().float()
    self_mask = torch.zeros_like(rows, dtype=torch.bool)
    self_mask[torch.arange(len(anchors)), anchors] = True
    easy = rows.masked_fill(self_mask, float("inf")).topk(k, dim=1, largest=False).indices
    hard = rows.masked_fill(self_mask, float("-inf")).topk(k, dim=1).indices
    return easy, hard


def easy_hard_rows(
    weights: torch.Tensor,
    anchors: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    index: torch.Tensor,
    k: int = 5,
) -> list[dict[str, Any]]:
    """The easy/hard negatives as table rows (one row per anchor x negative).

    Args:
        weights: (n, n) pool weights; anchors: (m,) pool positions.
        y, a: (n,) classes and bias attributes of the pool.
        index: (n,) dataset index of each pool sample.
        k: negatives of each kind.

    Returns:
        Rows with anchor, anchor_y, anchor_a, kind ("easy"/"hard"), rank, negative,
        negative_y, negative_a, w.
    """
    easy, hard = easy_hard_negatives(weights, anchors, k)
    rows = []
    for row, anchor in enumerate(anchors.tolist()):
        for kind, chosen in (("easy", easy[row]), ("hard", hard[row])):
            for rank, negative in enumerate(chosen.tolist(), start=1):
                rows.append(
                    {
                        "anchor": int(index[anchor]),
                        "anchor_y": int(y[anchor]),
                        "anchor_a": int(a[anchor]),
                        "kind": kind,
                        "rank": rank,
                        "negative": int(index[negative]),
                        "negative_y": int(y[negative]),
                        "negative_a": int(a[negative]),
                        "w": round(float(weights[anchor, negative]), 5),
                    }
                )
    return rows


def _show(axis: Axes, image: torch.Tensor, caption: str) -> None:
    """Draw one (C, H, W) image in [0, 1] with a caption."""
    picture = image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
    axis.imshow(picture[..., 0] if picture.shape[2] == 1 else picture, cmap="gray")
    axis.set_title(caption, fontsize=7)
    axis.axis("off")


def plot_easy_hard_negatives(
    images: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    weights: torch.Tensor,
    anchors: torch.Tensor,
    path: str | Path,
    k: int = 5,
    class_names: Sequence[str] | None = None,
    attribute_names: Sequence[str] | None = None,
) -> Path:
    """Image grid: per anchor row, the anchor, its k easiest and its k hardest negatives by w.

    Args:
        images: (n, C, H, W) un-normalised pool images in [0, 1].
        y, a: (n,) classes and bias attributes of the pool.
        weights: (n, n) pool weights (:func:`pool_weights`).
        anchors: (m,) pool positions of the anchors.
        path: PNG to write.
        k: negatives of each kind.
        class_names, attribute_names: shown beside the ids in the captions when given.

    Returns:
        ``path``.
    """
    easy, hard = easy_hard_negatives(weights, anchors, k)

    def named(prefix: str, value: int, names: Sequence[str] | None) -> str:
        name = names[value] if names and value >= 0 else str(value)
        return f"{prefix}={value}" + (f" {name}" if name != str(value) else "")

    def label(i: int) -> str:
        return f"{named('y', int(y[i]), class_names)}\n{named('a', int(a[i]), attribute_names)}"

    figure, axes = _figure(len(anchors), 2 * k + 1, (1.3 * (2 * k + 1), 2.0 * len(anchors)))
    for row, anchor in enumerate(anchors.tolist()):
        _show(axes[row, 0], images[anchor], f"ANCHOR\n{label(anchor)}")
        chosen = easy[row].tolist() + hard[row].tolist()
        for column, negative in enumerate(chosen, start=1):
            kind = "easy" if column <= k else "hard"
            caption = f"{kind} w={float(weights[anchor, negative]):.3f}\n{label(negative)}"
            _show(axes[row, column], images[negative], caption)
    figure.suptitle(f"{k} easiest (lowest w) and {k} hardest (highest w) negatives", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def pair_relations(y: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """(n, n) index into :data:`RELATIONS` of each (anchor, negative) pair of a pool."""
    same_class = y[:, None] == y[None, :]
    same_bias = a[:, None] == a[None, :]
    return 2 * (~same_class).long() + (~same_bias).long()


def weight_summary(
    weights: torch.Tensor, y: torch.Tensor, a: torch.Tensor, aligned: torch.Tensor
) -> dict[str, dict[str, dict[str, float]]]:
    """Mean w and pair count by anchor kind x negative relation (the authors' weight analysis).

    Args:
        weights: (n, n) pool weights, every pool sample an anchor against the others.
        y, a: (n,) classes and bias attributes; aligned: (n,) bool, bias-aligned anchors.

    Returns:
        {"aligned anchors" | "conflicting anchors": {relation: {"mean_w", "pairs"}}}, only
        for non-empty cells.
    """
    relations = pair_relations(y, a)
    off_diagonal = ~torch.eye(len(y), dtype=torch.bool)
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for anchor_kind, anchor_mask in (
        ("aligned anchors", aligned),
        ("conflicting anchors", ~aligned),
    ):
        cells = {}
        for code, relation in enumerate(RELATIONS):
            pairs = anchor_mask[:, None] & (relations == code) & off_diagonal
            if pairs.any():
                values = weights[pairs].float()
                cells[relation] = {"mean_w": float(values.mean()), "pairs": int(pairs.sum())}
        if cells:
            summary[anchor_kind] = cells
    return summary


def plot_weight_histograms(
    weights: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    aligned: torch.Tensor,
    path: str | Path,
) -> Path:
    """Histograms of w: one panel per anchor kind, one curve per negative relation.

    Args:
        weights: (n, n) pool weights (:func:`pool_weights`), diagonal ignored.
        y, a: (n,) classes and bias attributes of the pool.
        aligned: (n,) bool, True for bias-aligned samples.
        path: PNG to write.

    Returns:
        ``path``.
    """
    relations = pair_relations(y, a)
    off_diagonal = ~torch.eye(len(y), dtype=torch.bool)
    kinds = [(name, mask) for name, mask in (("aligned", aligned), ("conflicting", ~aligned))]
    kinds = [(name, mask) for name, mask in kinds if mask.any()]
    if not kinds:
        raise ValueError("plot_weight_histograms needs at least one anchor")
    figure, axes = _figure(1, len(kinds), (6 * len(kinds), 4))
    values_off_diagonal = weights[off_diagonal].float()
    low, high = float(values_off_diagonal.min()), float(values_off_diagonal.max())
    bins = np.linspace(low, max(high, low + 1e-6), 41)
    for axis, (name, mask) in zip(axes[0], kinds, strict=True):
        for code, relation in enumerate(RELATIONS):
            pairs = mask[:, None] & (relations == code) & off_diagonal
            if pairs.any():
                values = weights[pairs].float().cpu().numpy()
                label = f"{relation} (mean {values.mean():.3f}, {values.size} pairs)"
                axis.hist(values, bins=bins, density=True, histtype="step", label=label)
        axis.set_title(f"bias-{name} anchors ({int(mask.sum())})")
        axis.set_xlabel("w(anchor, negative)")
        axis.set_ylabel("density")
        axis.legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, path)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (blank lines skipped)."""
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _curve_panels(records: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, list]]]:
    """(title, x key, {series name: [(x, value)]}) for each kind of record present."""
    panels = []
    for kind, title, x_key, wanted in (
        ("step", "losses per logged step", "step", ("loss", "acc")),
        ("epoch", "epoch means", "epoch", ("loss", "acc")),
        ("knn", "kNN monitor accuracy (val)", "epoch", None),
    ):
        series: dict[str, list] = {}
        for record in records:
            if record.get("kind") != kind or x_key not in record:
                continue
            for name, value in record.items():
                numeric = isinstance(value, int | float) and not isinstance(value, bool)
                relevant = wanted is None or any(part in name for part in wanted)
                if numeric and relevant and name not in ("epoch", "step"):
                    series.setdefault(name, []).append((record[x_key], value))
        if series:
            panels.append((title, x_key, series))
    return panels


def plot_training_curves(records: list[dict[str, Any]], path: str | Path) -> Path:
    """Losses per step and per epoch and the kNN monitor's accuracy from ``metrics.jsonl``.

    One row per kind of record (step, epoch, knn), one panel per series (losses of the two
    encoders can differ by orders of magnitude, so each gets its own axis).

    Args:
        records: parsed metrics.jsonl lines, each with "kind" ("step", "epoch" or "knn").
        path: PNG to write.

    Returns:
        ``path``.
    """
    panels = _curve_panels(records)
    if not panels:
        raise ValueError("no step, epoch or knn records with numeric values to plot")
    columns = max(len(series) for _, _, series in panels)
    figure, axes = _figure(len(panels), columns, (4 * columns, 3 * len(panels)))
    for row, (title, x_key, series) in enumerate(panels):
        for column in range(columns):
            axis = axes[row, column]
            if column >= len(series):
                axis.axis("off")
                continue
            name, points = list(series.items())[column]
            xs, values = zip(*points, strict=True)
            axis.plot(xs, values, marker="o" if len(xs) < 30 else None)
            axis.set_title(f"{title}: {name}", fontsize=9)
            axis.set_xlabel(x_key)
    figure.tight_layout()
    return _save(figure, path)


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of ``rows`` (columns in first-seen order)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _write_rows(rows: list[dict[str, Any]], stem: Path, markdown: str | None = None) -> list[Path]:
    """``rows`` as <stem>.md (``markdown`` when given), <stem>.csv and <stem>.json."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    md_path, csv_path, json_path = (stem.with_suffix(s) for s in (".md", ".csv", ".json"))
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    md_path.write_text(_markdown_table(rows) if markdown is None else markdown)
    json_path.write_text(json.dumps(rows, indent=2))
    return [md_path, csv_path, json_path]


def flatten_results(results: dict[str, Any]) -> dict[str, Any]:
    """One flat table row of a ``results.json``: labels plus ``<evaluation>.<metric>`` scalars.

    ``main.<metric>`` repeats the headline evaluation (the linear probe for contrastive
    methods, the own classifier for supervised ones). Per-class/per-group values stay in
    results.json.
    """
    row: dict[str, Any] = {
        key: results[key] for key in ("method", "dataset", "seed", "encoder", "supervised")
    }
    for evaluation in ("main", "classifier", "probe", "knn"):
        source = results["main"] if evaluation == "main" else evaluation
        if source not in results:
            continue
        for metric, value in results[source]["metrics"].items():
            if isinstance(value, float):
                row[f"{evaluation}.{metric}"] = value
    return row


def write_tables(
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    group_by: Sequence[str] = ("method",),
    rows_stem: str = "runs",
) -> list[Path]:
    """Per-run rows and their mean ± standard error over seeds, as Markdown, CSV and JSON.

    Args:
        rows: one flat dict per run (e.g. :func:`flatten_results`), holding the ``group_by``
            keys and numeric metrics; a metric missing from some runs is averaged over the
            runs that have it.
        out_dir: folder for ``<rows_stem>.{md,csv,json}`` (the rows as given) and
            ``summary.{md,csv,json}`` (per group: n runs, and per metric its mean and stderr;
            the Markdown shows ``mean ± stderr`` in percent for metrics in [0, 1], the mean
            alone for a group of one run).
        group_by: keys identifying a group of runs (seeds are averaged within a group).
        rows_stem: file name stem of the per-run tables.

    Returns:
        The six paths written.
    """
    if not rows:
        raise ValueError("write_tables needs at least one row")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = _write_rows(rows, out_dir / rows_stem)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(key) for key in group_by), []).append(row)
    metrics = [
        key
        for key in dict.fromkeys(key for row in rows for key in row)
        if key not in group_by
        and key != "seed"
        and all(isinstance(r.get(key), int | float | type(None)) for r in rows)
        and not all(isinstance(r.get(key), bool | type(None)) for r in rows)
    ]
    summary, readable = [], []
    for labels, members in groups.items():
        entry: dict[str, Any] = dict(zip(group_by, labels, strict=True))
        entry["runs"] = len(members)
        shown = dict(entry)
        for metric in metrics:
            values = [r[metric] for r in members if r.get(metric) is not None]
            if values:
                mean, stderr = mean_and_stderr(values)
                entry[f"{metric}.mean"], entry[f"{metric}.stderr"] = mean, stderr
                scale = 100.0 if all(0.0 <= v <= 1.0 for v in values) else 1.0
                spread = f" ± {scale * stderr:.2f}" if len(values) > 1 else ""
                shown[metric] = f"{scale * mean:.2f}{spread}"
        summary.append(entry)
        readable.append(shown)
    note = "Mean ± standard error over runs (percent for accuracies).\n\n"
    return paths + _write_rows(summary, out_dir / "summary", note + _markdown_table(readable))


def write_report(
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    encoder: str | None = None,
    pool_size: int = 256,
    num_anchors: int = 3,
    k: int = 5,
) -> list[Path]:
    """Every plot of a finished run, written into its directory (see the module docstring).

    Args:
        run_dir: a finished run directory.
        device: where to run the encoders.
        encoder: whose representations the t-SNE shows (None: the product encoder).
        pool_size: test samples whose pairwise w the weight analyses use (wcl only).
        num_anchors: anchors of the easy/hard sanity check (bias-conflicting ones first).
        k: easiest and hardest negatives shown per anchor.

    Returns:
        The paths written.
    """
    run = load_run(run_dir, device, splits=("train", "test"))
    config, method, test_set = run.config, run.method, run.splits["test"]
    key = run.encoder_key(encoder)
    features, y, a, _ = extract_features(method, test_set, run.prepare, key, device)
    suffix = "" if key == method.product_encoder else f"_{key}"
    title = f"{method.name} on {config.data.name}: t-SNE of E_{key} test representations"
    written = [
        plot_tsne(
            features,
            y,
            a,
            run.run_dir / f"tsne{suffix}.png",
            max_samples=config.eval.tsne_samples,
            seed=config.train.seed,
            title=title,
        )
    ]
    metrics_path = run.run_dir / "metrics.jsonl"
    records = read_metrics(metrics_path) if metrics_path.is_file() else []
    if _curve_panels(records):
        written.append(plot_training_curves(records, run.run_dir / "training_curves.png"))
    if {"d", "b"} <= set(method.encoders()):
        written += _weight_report(run, pool_size, num_anchors, k)
    else:
        logger.info("method '%s' has one encoder: no w analysis (wcl only)", method.name)
    return written


@torch.no_grad()
def _pool_projections(
    method: torch.nn.Module, inputs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """E_d and E_b projections (n, D) of prepared inputs, in eval mode, on CPU."""
    was_training = method.training
    method.eval()
    encoders = method.encoders()
    zd, zb = (encoders[key](inputs).float().cpu() for key in ("d", "b"))
    method.train(was_training)
    return zd, zb


def _weight_report(run: LoadedRun, pool_size: int, num_anchors: int, k: int) -> list[Path]:
    """The w sanity check and histograms on a random pool of test samples."""
    train_set, test_set = run.splits["train"], run.splits["test"]
    generator = torch.Generator().manual_seed(run.config.train.seed)
    positions = torch.randperm(len(test_set), generator=generator)[:pool_size].sort().values
    images = torch.stack([test_set.load(i) for i in positions.tolist()])
    y, a = test_set.targets[positions], test_set.attributes[positions]
    zd, zb = _pool_projections(run.method, run.prepare(images.to(run.device)))
    weights = pool_weights(zd, zb, run.config.method.temperature)
    if test_set.num_attributes > 0:
        counts = group_counts(
            train_set.targets, train_set.attributes, test_set.num_classes, test_set.num_attributes
        )
        aligned, known = (torch.from_numpy(m) for m in majority_aligned(y, a, counts))
    else:
        aligned, known = torch.ones_like(y, dtype=torch.bool), torch.zeros_like(y, dtype=torch.bool)
    conflicting_first = torch.argsort((aligned | ~known).long(), stable=True)
    anchors = conflicting_first[: min(num_anchors, len(y))]
    rows = easy_hard_rows(weights, anchors, y, a, positions, min(k, len(y) - 1))
    written = _write_rows(rows, run.run_dir / "easy_hard_negatives")
    if test_set.kind == "image":
        written.append(
            plot_easy_hard_negatives(
                images,
                y,
                a,
                weights,
                anchors,
                run.run_dir / "easy_hard_negatives.png",
                min(k, len(y) - 1),
                test_set.class_names,
                test_set.attribute_names,
            )
        )
    if not known.any():
        logger.info("no known bias alignment in the pool: no w histograms")
        return written
    keep = known.nonzero().squeeze(1)
    sub = weights[keep][:, keep], y[keep], a[keep], aligned[keep]
    summary_path = run.run_dir / "weight_summary.json"
    summary_path.write_text(json.dumps(weight_summary(*sub), indent=2))
    written += [summary_path, plot_weight_histograms(*sub, run.run_dir / "weight_histograms.png")]
    return written
