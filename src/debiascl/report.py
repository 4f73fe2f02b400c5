"""Plots and tables of a run (SPEC section 7): t-SNE, WCL's weight sanity checks, curves, tables.

Each plotting function takes arrays/tensors and an output path, so it can be used (and tested)
without a trained run; :func:`write_report` makes every plot of a run into its directory:

- ``tsne.png``: t-SNE of test representations, coloured by class and, beside it, by bias value
  (legends with the class and attribute names);
- ``easy_hard_negatives.png`` (images) and ``easy_hard_negatives.md`` / ``.csv`` / ``.json``: for
  a few anchors, the negatives with the lowest w (easiest) and highest w (hardest), with class and
  attribute names and, for tables, the (standardised) feature values (wcl only);
- ``weight_histograms.png``: w by anchor kind (bias-aligned or bias-conflicting) x negative
  relation (same/different class, same/different bias) (wcl only);
- ``weight_groups.png``: w by anchor group x negative group, g = y * n_bias + a, one histogram
  per cell (the authors' weight analysis; wcl on data with a bias attribute and at most
  :data:`MAX_GRID_GROUPS` groups);
- ``weight_summary.md`` / ``.csv`` / ``.json``: pairs, mean and median w of every cell of both
  views;
- ``training_curves.png``: losses and kNN accuracy from ``metrics.jsonl``.

:func:`write_tables` turns one flat row per run into Markdown, CSV and JSON tables with the mean
and standard error over seeds of every metric.
"""

from __future__ import annotations

import csv
import json
import logging
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from debiascl.data.base import BiasedDataset
from debiascl.evaluate import LoadedRun, evaluation_keys, load_run
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
ANCHOR_KINDS = ("bias-aligned", "bias-conflicting")
MAX_GRID_GROUPS = 6
"""The anchor group x negative group grid is drawn for at most this many groups."""
MAX_LEGEND_ENTRIES = 20
"""t-SNE panels with more distinct values use a colour bar instead of a legend."""
MAX_SHOWN_FEATURES = 8
"""Feature values shown per table row in the easy/hard negatives table."""


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


def _named(value: int, names: Sequence[str] | None) -> str:
    """``"<id> <name>"`` when ``names`` has a (different) name for ``value``, else ``"<id>"``."""
    name = names[value] if names and 0 <= value < len(names) else str(value)
    return str(value) if name == str(value) else f"{value} {name}"


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
                label=_named(int(value), names),
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
    class_names: Sequence[str] | None = None,
    attribute_names: Sequence[str] | None = None,
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
        class_names, attribute_names: names of the class and attribute ids, for the legends.

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
    _colour_panel(figure, axes[0, 0], embedding, y[keep], class_names, "class")
    _colour_panel(figure, axes[0, 1], embedding, a[keep], attribute_names, "bias attribute")
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


def _feature_text(values: torch.Tensor, names: Sequence[str] | None) -> str:
    """The first :data:`MAX_SHOWN_FEATURES` of an (F,) feature row as "name=value, ..."."""
    shown = [
        f"{names[i] if names else f'x{i}'}={float(value):.2f}"
        for i, value in enumerate(values[:MAX_SHOWN_FEATURES].tolist())
    ]
    hidden = values.shape[0] - len(shown)
    return ", ".join(shown) + (f", ... (+{hidden} more)" if hidden > 0 else "")


def easy_hard_rows(
    weights: torch.Tensor,
    anchors: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    index: torch.Tensor,
    k: int = 5,
    class_names: Sequence[str] | None = None,
    attribute_names: Sequence[str] | None = None,
    features: torch.Tensor | None = None,
    feature_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The easy/hard negatives as table rows (one row per anchor x negative).

    Args:
        weights: (n, n) pool weights; anchors: (m,) pool positions.
        y, a: (n,) classes and bias attributes of the pool.
        index: (n,) dataset index of each pool sample.
        k: negatives of each kind.
        class_names, attribute_names: names of the ids, shown beside them when given.
        features: (n, F) table rows of the pool, shown (the first :data:`MAX_SHOWN_FEATURES`
            values) when given; feature_names: their F names (default x0, x1, ...).

    Returns:
        Rows with, for the anchor and then the negative, its dataset index, ``_y``, ``_class``
        (with class names), ``_a``, ``_bias`` (with attribute names) and ``_features`` (with
        features); and kind ("easy"/"hard"), rank and w.
    """

    def columns(prefix: str, position: int) -> dict[str, Any]:
        label, bias = int(y[position]), int(a[position])
        described: dict[str, Any] = {prefix: int(index[position]), f"{prefix}_y": label}
        if class_names:
            described[f"{prefix}_class"] = class_names[label]
        described[f"{prefix}_a"] = bias
        if attribute_names:
            described[f"{prefix}_bias"] = attribute_names[bias] if bias >= 0 else "unknown"
        if features is not None:
            described[f"{prefix}_features"] = _feature_text(features[position], feature_names)
        return described

    easy, hard = easy_hard_negatives(weights, anchors, k)
    rows = []
    for row, anchor in enumerate(anchors.tolist()):
        for kind, chosen in (("easy", easy[row]), ("hard", hard[row])):
            for rank, negative in enumerate(chosen.tolist(), start=1):
                rows.append(
                    columns("anchor", anchor)
                    | {"kind": kind, "rank": rank}
                    | columns("negative", negative)
                    | {"w": round(float(weights[anchor, negative]), 5)}
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

    def label(i: int) -> str:
        return f"y={_named(int(y[i]), class_names)}\na={_named(int(a[i]), attribute_names)}"

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
    """(n, n) index into :data:`RELATIONS` of each (anchor, negative) pair of a pool, -1 where
    either bias attribute is unknown."""
    same_class = y[:, None] == y[None, :]
    same_bias = a[:, None] == a[None, :]
    relations = 2 * (~same_class).long() + (~same_bias).long()
    unknown = (a[:, None] < 0) | (a[None, :] < 0)
    return relations.masked_fill(unknown, -1)


def cell_weights(
    weights: torch.Tensor,
    anchor_codes: torch.Tensor,
    negative_codes: torch.Tensor,
    num_rows: int,
    num_columns: int,
) -> list[list[np.ndarray]]:
    """w of every (anchor, negative) pair of distinct pool samples, split into grid cells.

    Args:
        weights: (n, n) pool weights (:func:`pool_weights`).
        anchor_codes: (n,) row of each sample as an anchor, in [0, num_rows); -1: not an anchor.
        negative_codes: (n,) column of each sample as a negative, or (n, n) column of each
            (anchor, negative) pair (e.g. :func:`pair_relations`), in [0, num_columns); -1: left
            out.
        num_rows, num_columns: the grid's size.

    Returns:
        ``num_rows`` lists of ``num_columns`` float32 arrays: cell (r, c) holds w[i, j] for
        every i != j with anchor_codes[i] == r and column c, in row-major (i, j) order (empty
        when no pair falls in the cell).
    """
    n = weights.shape[0]
    columns = negative_codes[None, :].expand(n, n) if negative_codes.dim() == 1 else negative_codes
    distinct = ~torch.eye(n, dtype=torch.bool, device=weights.device)
    values = weights.detach().float()
    return [
        [
            values[(anchor_codes[:, None] == row) & (columns == column) & distinct].cpu().numpy()
            for column in range(num_columns)
        ]
        for row in range(num_rows)
    ]


@dataclass(frozen=True)
class WeightCells:
    """One view of w: its values per (anchor row, negative column) cell.

    Attributes:
        view: what rows x columns are, e.g. "anchor group x negative group".
        rows, columns: the row (anchor) and column (negative) labels.
        values: ``len(rows)`` lists of ``len(columns)`` arrays (:func:`cell_weights`).
    """

    view: str
    rows: list[str]
    columns: list[str]
    values: list[list[np.ndarray]]


def relation_cells(
    weights: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    aligned: torch.Tensor,
    known: torch.Tensor,
) -> WeightCells:
    """w by anchor kind (:data:`ANCHOR_KINDS`) x negative relation (:data:`RELATIONS`).

    Args:
        weights: (n, n) pool weights; y, a: (n,) classes and bias attributes (-1 unknown).
        aligned: (n,) bool, bias-aligned samples; known: (n,) bool, alignment known (only
            these are anchors).
    """
    anchor_codes = torch.where(known, (~aligned).long(), torch.full_like(y, -1))
    values = cell_weights(
        weights, anchor_codes, pair_relations(y, a), len(ANCHOR_KINDS), len(RELATIONS)
    )
    return WeightCells(
        "anchor kind x negative relation",
        [f"{kind} anchors" for kind in ANCHOR_KINDS],
        list(RELATIONS),
        values,
    )


def group_cells(
    weights: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    num_classes: int,
    num_attributes: int,
    class_names: Sequence[str] | None = None,
    attribute_names: Sequence[str] | None = None,
) -> WeightCells:
    """w by anchor group x negative group, g = y * num_attributes + a (samples with a = -1 are
    left out), the authors' weight analysis.

    Args:
        weights: (n, n) pool weights; y, a: (n,) classes and bias attributes.
        num_classes, num_attributes: the grid has num_classes * num_attributes rows and columns.
        class_names, attribute_names: shown beside the ids in the labels.
    """
    groups = torch.where(a >= 0, y * num_attributes + a, torch.full_like(y, -1))
    labels = [
        f"g{c * num_attributes + b}: y={_named(c, class_names)}, a={_named(b, attribute_names)}"
        for c in range(num_classes)
        for b in range(num_attributes)
    ]
    values = cell_weights(weights, groups, groups, len(labels), len(labels))
    return WeightCells("anchor group x negative group", labels, labels, values)


def weight_summary(views: Sequence[WeightCells]) -> list[dict[str, Any]]:
    """One table row per cell of each view: pairs, mean and median w (None for an empty cell)."""
    rows = []
    for cells in views:
        for row, per_column in zip(cells.rows, cells.values, strict=True):
            for column, values in zip(cells.columns, per_column, strict=True):
                empty = values.size == 0
                rows.append(
                    {
                        "view": cells.view,
                        "anchors": row,
                        "negatives": column,
                        "pairs": int(values.size),
                        "mean_w": None if empty else round(float(values.mean()), 5),
                        "median_w": None if empty else round(float(np.median(values)), 5),
                    }
                )
    return rows


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


MAX_FLAGGED_SHOWN = 24
"""Flagged samples shown in the discovery grid and table (highest scores first)."""


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


def most_flagged(scores: torch.Tensor, flags: torch.Tensor, limit: int) -> torch.Tensor:
    """(m,) positions of at most ``limit`` flagged samples, highest score first (stable)."""
    positions = flags.nonzero().squeeze(1)
    order = torch.argsort(-scores[positions], stable=True)
    return positions[order][:limit]


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


def write_discovery_report(
    dataset: BiasedDataset,
    index: torch.Tensor,
    scores: torch.Tensor,
    flags: torch.Tensor,
    threshold: float,
    out_dir: str | Path,
    title: str,
) -> list[Path]:
    """What a bias discovery found in a split: score histograms and the flagged samples.

    Writes ``discovery_scores.png`` (scores by true group (y, a) where the bias is known, else by
    class) and the :data:`MAX_FLAGGED_SHOWN` highest-scored flagged samples as
    ``discovered_flagged.{md,csv,json}`` (with feature values for tables) and, for images,
    ``discovered_flagged.png``.

    Args:
        dataset: the split the discovery scored; index: (n,) its dataset indices.
        scores: (n,) conflict scores; flags: (n,) bool.
        threshold: the flag threshold.
        out_dir: where to write.
        title: names the run and bias encoder in the figures.

    Returns:
        The paths written.
    """
    out_dir = Path(out_dir)
    y, a = dataset.targets[index], dataset.attributes[index]
    names = [
        f"y={_named(label, dataset.class_names)}"
        + (f", a={_named(bias, dataset.attribute_names)}" if bias >= 0 else "")
        for label, bias in zip(y.tolist(), a.tolist(), strict=True)
    ]
    written = [
        plot_score_histogram(
            scores, names, threshold, out_dir / "discovery_scores.png", f"{title}: conflict scores"
        )
    ]
    shown = most_flagged(scores, flags, MAX_FLAGGED_SHOWN)
    if shown.numel() == 0:
        logger.info("no sample flagged: no grid or table of flagged samples")
        return written
    table = dataset.kind == "table"
    inputs = torch.stack([dataset.load(int(index[i])) for i in shown.tolist()])
    feature_names = getattr(dataset, "feature_names", None)
    rows = [
        {"index": int(index[i]), "group": names[i], "score": round(float(scores[i]), 4)}
        | ({"features": _feature_text(inputs[row], feature_names)} if table else {})
        for row, i in enumerate(shown.tolist())
    ]
    written += _write_rows(rows, out_dir / "discovered_flagged")
    if not table:
        captions = [f"{names[i]}\ns={float(scores[i]):.2f}" for i in shown.tolist()]
        written.append(
            plot_sample_grid(
                inputs,
                captions,
                out_dir / "discovered_flagged.png",
                f"{title}: the {len(captions)} highest-scored flagged samples (true labels shown)",
            )
        )
    return written


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
    lines += [
        "| " + " | ".join("" if row.get(c) is None else str(row[c]) for c in columns) + " |"
        for row in rows
    ]
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


PER_PART_COLUMNS = {"per_class": "class", "per_group": "group"}
"""Per-class / per-group accuracy dicts of a results.json -> their column prefix."""


def flatten_results(results: dict[str, Any]) -> dict[str, Any]:
    """One flat table row of a ``results.json``: labels plus ``<evaluation>.<metric>`` values.

    The metrics are every scalar accuracy and each per-class and per-group accuracy, named
    ``class[y=0]`` and ``group[y=0,a=1]``; a class or group absent from the test split has no
    column (never 0). ``main.<metric>`` repeats the headline evaluation (the linear probe for
    contrastive methods, the own classifier for supervised ones); group-robust probes appear as
    ``probe_discovered.<metric>`` and ``probe_true.<metric>``.
    """
    row: dict[str, Any] = {
        key: results[key] for key in ("method", "dataset", "seed", "encoder", "supervised")
    }
    for evaluation in evaluation_keys(results):
        source = results["main"] if evaluation == "main" else evaluation
        for metric, value in results[source]["metrics"].items():
            if isinstance(value, float):
                row[f"{evaluation}.{metric}"] = value
            elif metric in PER_PART_COLUMNS:
                prefix = PER_PART_COLUMNS[metric]
                row |= {f"{evaluation}.{prefix}[{key}]": v for key, v in value.items()}
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
            alone for a group of one run, empty where no run of the group has the metric).
            Per-class / per-group metrics (names with "[", e.g. ``group[y=0,a=1]``) go to a
            second Markdown table, one row per metric and one column per group of runs, so the
            first stays readable however many groups the data has.
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
    per_part = [metric for metric in metrics if "[" in metric]
    markdown = "Mean ± standard error over runs (percent for accuracies).\n\n"
    markdown += _markdown_table(
        [{key: value for key, value in shown.items() if key not in per_part} for shown in readable]
    )
    if per_part:
        named = {" / ".join(str(shown[key]) for key in group_by): shown for shown in readable}
        transposed = [
            {"metric": metric} | {name: shown.get(metric) for name, shown in named.items()}
            for metric in per_part
        ]
        markdown += "\nPer-class and per-group accuracy (%), mean ± standard error over runs.\n\n"
        markdown += _markdown_table(transposed)
    return paths + _write_rows(summary, out_dir / "summary", markdown)


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
            class_names=test_set.class_names,
            attribute_names=test_set.attribute_names,
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
    inputs = torch.stack([test_set.load(i) for i in positions.tolist()])  # images or table rows
    y, a = test_set.targets[positions], test_set.attributes[positions]
    zd, zb = _pool_projections(run.method, run.prepare(inputs.to(run.device)))
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
    table = test_set.kind == "table"
    rows = easy_hard_rows(
        weights,
        anchors,
        y,
        a,
        positions,
        min(k, len(y) - 1),
        test_set.class_names,
        test_set.attribute_names,
        features=inputs if table else None,
        feature_names=getattr(test_set, "feature_names", None),
    )
    written = _write_rows(rows, run.run_dir / "easy_hard_negatives")
    if not table:
        written.append(
            plot_easy_hard_negatives(
                inputs,
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
    views = []
    if known.any():
        views.append(relation_cells(weights, y, a, aligned, known))
        written.append(plot_weight_cells(views[-1], run.run_dir / "weight_histograms.png"))
    else:
        logger.info("no known bias alignment in the pool: no w histograms by relation")
    num_groups = test_set.num_classes * test_set.num_attributes
    if 0 < num_groups <= MAX_GRID_GROUPS and (a >= 0).any():
        views.append(
            group_cells(
                weights,
                y,
                a,
                test_set.num_classes,
                test_set.num_attributes,
                test_set.class_names,
                test_set.attribute_names,
            )
        )
        written.append(plot_weight_cells(views[-1], run.run_dir / "weight_groups.png"))
    if views:
        written += _write_rows(weight_summary(views), run.run_dir / "weight_summary")
    return written
