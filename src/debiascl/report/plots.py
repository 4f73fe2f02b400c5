"""Every figure debiascl draws: t-SNE, easy/hard negatives, w histograms, training curves, the
bias discovery's scores and flagged samples, and compare's average vs worst-group trade-off.

Each function takes arrays or table rows and an output path, draws on the Agg canvas (no pyplot,
no global backend change) and returns the path.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from debiascl.metrics import mean_and_stderr
from debiascl.registry import PROBE_GROUP_KINDS
from debiascl.report.labels import Names, named
from debiascl.report.tables import EvaluationRow
from debiascl.report.weights import WeightCells, easy_hard_negatives
from debiascl.results import headline_metric

MAX_LEGEND_ENTRIES = 20
"""t-SNE panels with more distinct values use a colour bar instead of a legend."""


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


def _colour_panel(
    figure: Figure,
    axis: Axes,
    embedding: np.ndarray,
    values: np.ndarray,
    names: Sequence[str] | None,
    title: str,
) -> None:
    """Scatter a (n, 2) embedding coloured by (n,) integer ``values`` (-1: unknown, grey).

    At most :data:`MAX_LEGEND_ENTRIES` distinct values get a categorical legend ("id name"),
    more get a colour bar labelled with the ids.
    """
    known = values >= 0
    if (~known).any():
        axis.scatter(*embedding[~known].T, s=4, c="lightgrey", label="unknown")
    present = np.unique(values[known])
    if len(present) <= MAX_LEGEND_ENTRIES:
        palette = colormaps["tab10" if present.max(initial=0) < 10 else "tab20"]
        by_id = present.max(initial=0) < palette.N  # the same id keeps its colour across plots
        for position, value in enumerate(present):
            axis.scatter(
                *embedding[values == value].T,
                s=4,
                color=palette(int(value) if by_id else position),
                label=named(int(value), names),
            )
        axis.legend(fontsize=7, markerscale=3, loc="best", title=title, title_fontsize=7)
    else:
        points = axis.scatter(*embedding[known].T, s=4, c=values[known], cmap="viridis")
        figure.colorbar(points, ax=axis, label=f"{title} id")
    axis.set_title(f"coloured by {title}")
    axis.set_xticks([])
    axis.set_yticks([])


def plot_tsne(
    features: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    a: torch.Tensor | np.ndarray,
    path: str | Path,
    max_samples: int = 2000,
    seed: int = 0,
    title: str = "",
    names: Names | None = None,
) -> Path:
    """t-SNE of representations, coloured by class (left) and by bias attribute (right).

    Each panel has a legend of the classes / attribute values ("id name") when they are at most
    :data:`MAX_LEGEND_ENTRIES`, else a colour bar of the ids.

    Args:
        features: (n, F) representations.
        y: (n,) classes.
        a: (n,) bias attributes, -1 where unknown (drawn grey).
        path: PNG to write.
        max_samples: a random subset of at most this many samples is embedded.
        seed: seeds the subset and t-SNE.
        title: figure title.
        names: of the class and attribute ids, for the legends (None: the ids alone).

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
    names = names or Names()
    _colour_panel(figure, axes[0, 0], embedding, y[keep], names.classes, "class")
    _colour_panel(figure, axes[0, 1], embedding, a[keep], names.attributes, "bias attribute")
    figure.suptitle(title or f"t-SNE of {len(keep)} test representations")
    figure.tight_layout()
    return _save(figure, path)


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
    names: Names | None = None,
) -> Path:
    """Image grid: per anchor row, the anchor, its k easiest and its k hardest negatives by w.

    Args:
        images: (n, C, H, W) un-normalised pool images in [0, 1].
        y, a: (n,) classes and bias attributes of the pool.
        weights: (n, n) pool weights (:func:`pool_weights`).
        anchors: (m,) pool positions of the anchors.
        path: PNG to write.
        k: negatives of each kind.
        names: of the class and attribute ids, shown beside them in the captions.

    Returns:
        ``path``.
    """
    easy, hard = easy_hard_negatives(weights, anchors, k)
    names = names or Names()

    def label(i: int) -> str:
        return f"y={named(int(y[i]), names.classes)}\na={named(int(a[i]), names.attributes)}"

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


def plot_weight_cells(cells: WeightCells, path: str | Path) -> Path:
    """One histogram of w per cell (rows: anchors, columns: negatives), on shared bins.

    Each panel is titled with its pair count, mean and median; an empty cell says "none".

    Args:
        cells: the view to draw (:func:`relation_cells`, :func:`group_cells`).
        path: PNG to write.

    Returns:
        ``path``.
    """
    filled = [values for per_column in cells.values for values in per_column if values.size]
    if not filled:
        raise ValueError(f"no (anchor, negative) pair in any cell of '{cells.view}'")
    every = np.concatenate(filled)
    low, high = float(every.min()), float(every.max())
    bins = np.linspace(low, max(high, low + 1e-6), 31)
    num_rows, num_columns = len(cells.rows), len(cells.columns)
    figure, axes = _figure(num_rows, num_columns, (3.0 * num_columns, 2.3 * num_rows + 0.6))
    for r, (row, per_column) in enumerate(zip(cells.rows, cells.values, strict=True)):
        for c, (column, values) in enumerate(zip(cells.columns, per_column, strict=True)):
            axis = axes[r, c]
            if values.size:
                axis.hist(values, bins=bins, color=f"C{c % 10}")
                stats = f"n={values.size}, mean {values.mean():.3f}, median {np.median(values):.3f}"
            else:
                axis.text(0.5, 0.5, "none", ha="center", va="center", transform=axis.transAxes)
                axis.set_xlim(bins[0], bins[-1])
                stats = "none"
            axis.set_title(f"negatives: {column}\n{stats}" if r == 0 else stats, fontsize=7)
            axis.tick_params(labelsize=6)
            if c == 0:
                axis.set_ylabel(textwrap.fill(f"anchors: {row}", 26), fontsize=7)
            if r == num_rows - 1:
                axis.set_xlabel("w(anchor, negative)", fontsize=7)
    figure.suptitle(f"w by {cells.view} (pair counts per panel)", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def curve_panels(records: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, list]]]:
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
    panels = curve_panels(records)
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


def plot_score_histogram(
    scores: torch.Tensor, groups: Sequence[str], threshold: float, path: str | Path, title: str
) -> Path:
    """The bias-conflict scores of a split, one histogram per group, with the flag threshold.

    Args:
        scores: (n,) scores in [0, 1].
        groups: (n,) the name of each sample's group (true (y, a) where known, else its class).
        threshold: drawn as a dashed line; samples to its right are flagged.
        path: PNG to write.
        title: the figure title.

    Returns:
        ``path``.
    """
    values = _numpy(scores)
    names = list(dict.fromkeys(sorted(groups)))
    labels = np.asarray(groups)
    bins = np.linspace(0.0, 1.0, 22)
    figure, axes = _figure(1, len(names), (2.8 * len(names), 2.8))
    for column, name in enumerate(names):
        axis = axes[0, column]
        members = values[labels == name]
        flagged = int((members > threshold).sum())
        axis.hist(members, bins=bins, color=f"C{column % 10}")
        axis.axvline(threshold, color="black", linestyle="--", linewidth=1)
        axis.set_title(f"{name}\nn={members.size}, flagged {flagged}", fontsize=8)
        axis.set_xlabel("conflict score", fontsize=7)
        axis.tick_params(labelsize=6)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def plot_sample_grid(
    images: torch.Tensor, captions: Sequence[str], path: str | Path, title: str, columns: int = 8
) -> Path:
    """(m, C, H, W) images in [0, 1] on a grid of ``columns``, each with its caption."""
    rows = max(1, -(-len(captions) // columns))
    figure, axes = _figure(rows, columns, (1.3 * columns, 1.7 * rows + 0.4))
    for position, axis in enumerate(axes.flat):
        if position < len(captions):
            _show(axis, images[position], captions[position])
        else:
            axis.axis("off")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def tradeoff_metrics(rows: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """The (x, y) metrics of the trade-off plot that every row has.

    x: the average accuracy weighted by training group proportions when available, else plain
    accuracy; y: the headline metric (:func:`debiascl.results.headline_metric`: worst-group
    accuracy when the data has a bias attribute, else worst-class).
    """
    weighted = all(row.get("avg_acc_train_weighted") is not None for row in rows)
    return "avg_acc_train_weighted" if weighted else "accuracy", headline_metric(rows)


AXIS_LABELS = {
    "avg_acc_train_weighted": "average accuracy, weighted by train group proportions (%)",
    "accuracy": "average accuracy (%)",
    "worst_group": "worst-group accuracy (%)",
    "worst_class": "worst-class accuracy (%)",
}


def plot_tradeoff(rows: Sequence[EvaluationRow], path: str | Path, title: str = "") -> Path:
    """Average vs worst-group accuracy, one point per method (mean ± stderr over seeds).

    One point per method and evaluation. Supervised methods (evaluated by their own classifier)
    are drawn as squares, plain probes as circles, group-robust probes with
    its kind's ``marker`` (:data:`debiascl.registry.PROBE_GROUP_KINDS`) in the method's colour.

    Args:
        rows: :func:`debiascl.compare.results_rows` rows (several seeds per method).
        path: the PNG to write.
        title: the figure title.

    Returns:
        ``path``.
    """
    x_key, y_key = tradeoff_metrics([row.cells for row in rows])
    figure = Figure(figsize=(6.5, 5.0))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    methods = list(dict.fromkeys(row.cells["method"] for row in rows))
    series: dict[tuple[str, str], list[EvaluationRow]] = {}
    for row in rows:
        series.setdefault((row.cells["method"], row.cells["evaluation"]), []).append(row)
    for (method, _), members in series.items():
        x_mean, x_err = mean_and_stderr([100 * row.cells[x_key] for row in members])
        y_mean, y_err = mean_and_stderr([100 * row.cells[y_key] for row in members])
        label, marker = _series_style(method, members[0])
        axis.errorbar(
            x_mean,
            y_mean,
            xerr=x_err,
            yerr=y_err,
            fmt=marker,
            color=f"C{methods.index(method) % 10}",
            capsize=3,
            label=f"{label} (n={len(members)})",
        )
        axis.annotate(label, (x_mean, y_mean), textcoords="offset points", xytext=(5, 5))
    axis.set_xlabel(AXIS_LABELS[x_key])
    axis.set_ylabel(AXIS_LABELS[y_key])
    axis.set_title(title or "mean ± standard error over seeds")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path


def _series_style(method: str, row: EvaluationRow) -> tuple[str, str]:
    """The label and marker of a trade-off point: the method, its evaluation's kind."""
    groups = row.evaluation.groups
    if row.evaluation.kind == "classifier":
        return f"{method} (supervised)", "s"
    marker = (
        None if groups not in PROBE_GROUP_KINDS else PROBE_GROUP_KINDS.info(groups).get("marker")
    )
    if marker:
        return f"{method} [{groups} groups]", marker
    return method, "o"
