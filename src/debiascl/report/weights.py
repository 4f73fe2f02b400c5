"""WCL's weight analysis on a pool of samples (SPEC 3.2 and 7): pairwise w, each anchor's
easiest and hardest negatives, and w split into cells by relation or by group.

Pure tensor functions; :mod:`debiascl.report.plots` draws them and :func:`debiascl.report.
write_report` runs them on a trained run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from debiascl.losses import relative_difficulty
from debiascl.metrics import group_ids
from debiascl.report.labels import feature_text, named

RELATIONS = (
    "same class, same bias",
    "same class, other bias",
    "other class, same bias",
    "other class, other bias",
)

ANCHOR_KINDS = ("bias-aligned", "bias-conflicting")


@torch.no_grad()
def pool_weights(
    zd: torch.Tensor, zb: torch.Tensor, temperature: float, weight_form: str = "paper"
) -> torch.Tensor:
    """WCL's w(a, j) between every pair of a pool of samples (SPEC 3.2).

    Uses :func:`debiascl.losses.relative_difficulty` with the pool as both "views": every other
    sample then appears twice among an anchor's negatives, which scales both encoders'
    normalisers by sqrt(2) and cancels in w, so the top-left block is w with the other pool
    samples as negatives.

    Args:
        zd: (n, D) E_d projections of the pool.
        zb: (n, D') E_b projections of the same samples.
        temperature: the loss temperature t.
        weight_form: the run's ``method.weight_form`` ("paper", "mirror" or "none").

    Returns:
        (n, n) w off the diagonal (in (1, 2); 1 for "none"), 0 on it.
    """
    n = zd.shape[0]
    weights = relative_difficulty(zd, zd, zb, zb, temperature=temperature, weight_form=weight_form)
    return weights[:n, :n]


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
            described[f"{prefix}_features"] = feature_text(features[position], feature_names)
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
    """w by anchor group x negative group, g = y * num_attributes + a
    (:func:`debiascl.metrics.group_ids`; samples with a = -1 are left out), the authors' weight
    analysis.

    Args:
        weights: (n, n) pool weights; y, a: (n,) classes and bias attributes.
        num_classes, num_attributes: the grid has num_classes * num_attributes rows and columns.
        class_names, attribute_names: shown beside the ids in the labels.
    """
    groups = group_ids(y, a, num_attributes)
    labels = [
        f"g{g}: y={named(c, class_names)}, a={named(b, attribute_names)}"
        for g in range(num_classes * num_attributes)
        for c, b in [divmod(g, num_attributes)]
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
