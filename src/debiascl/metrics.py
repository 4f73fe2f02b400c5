"""Group-robustness metrics from (y_true, y_pred, a) (SPEC section 7).

One function, :func:`group_metrics`, computes every number that evaluation reports, so the probe,
the kNN classifier and a supervised method's own classifier are all scored the same way. It
composes the metrics of :data:`debiascl.registry.METRICS`: a new metric is one function
registered with :func:`register_metric` (README, "Adding a metric").

Conventions:
    - group id g = y * num_attributes + a (:func:`group_ids`, the one encoding; SPEC 8: g = 2y
      + a for a binary target and bias), keys written readably as ``"y=1,a=0"``;
    - a group or class with no test samples is *absent*: it is left out of ``per_group`` /
      ``per_class``, listed under ``absent_groups`` / ``absent_classes``, and ignored by the
      worst / mean over groups; it is never reported as 0 or NaN;
    - samples with an unknown bias attribute (a = -1) count for the accuracy and the per-class
      numbers but belong to no group.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import torch

from debiascl.registry import METRICS

ArrayLike = np.ndarray | torch.Tensor | Sequence[int]
Ids = TypeVar("Ids", np.ndarray, torch.Tensor)


def _as_int_array(values: ArrayLike, name: str) -> np.ndarray:
    """A 1-D int64 numpy copy of a tensor, array or list."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array.astype(np.int64)


def group_ids(y: Ids, values: Ids, num_values: int) -> Ids:
    """The one group-id encoding: g = y * num_values + value (SPEC 8: g = 2y + a for a binary
    target and bias), -1 where the value is unknown (< 0); ``divmod(g, num_values)`` gives
    (y, value) back.

    The true groups (value: the bias attribute, ``num_values`` A), the discovered ones (the
    discovery's flag, 2), the classes (0, 1) and every probe group kind number their groups so.

    Args:
        y: (n,) classes (tensor or array).
        values: (n,) the other part of each group, in [0, num_values) or < 0 where unknown.
        num_values: how many values the other part takes (>= 1).

    Returns:
        (n,) int64 group ids, a tensor (on ``y``'s device) for tensors, else a numpy array.
    """
    if isinstance(y, torch.Tensor):
        y, values = y.long(), torch.as_tensor(values, device=y.device).long()
        return torch.where(values < 0, -1, y * num_values + values)
    y, values = _as_int_array(y, "y"), _as_int_array(values, "values")
    return np.where(values < 0, -1, y * num_values + values)


def dense_group_ids(groups: torch.Tensor) -> torch.Tensor:
    """(n,) int64 ids 0..G-1 of the distinct :func:`group_ids` present, in increasing order:
    the index of each sample's group where a (G,) vector holds one value per group (training)."""
    return torch.unique(groups, return_inverse=True)[1]


def group_name(y: int, a: int) -> str:
    """The readable key of group (y, a), e.g. ``"y=1,a=0"``."""
    return f"y={y},a={a}"


def group_counts(y: ArrayLike, a: ArrayLike, num_classes: int, num_attributes: int) -> np.ndarray:
    """Number of samples in each group (y, a); samples with a = -1 are not counted.

    Args:
        y: (n,) classes in [0, num_classes).
        a: (n,) bias attributes in [0, num_attributes), or -1 where unknown.
        num_classes: C.
        num_attributes: A (>= 1).

    Returns:
        (C, A) int64 counts.
    """
    groups = group_ids(_as_int_array(y, "y"), _as_int_array(a, "a"), num_attributes)
    flat = np.bincount(groups[groups >= 0], minlength=num_classes * num_attributes)
    return flat.reshape(num_classes, num_attributes)


def majority_aligned(
    y: ArrayLike, a: ArrayLike, train_group_counts: np.ndarray | torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Bias-aligned samples: those whose bias value is their class's majority in training.

    A class's majority bias value is the one with the most training samples of that class;
    when several values tie for the maximum, each of them counts as aligned. Alignment is
    undefined (``known`` is False) for samples with a = -1 and for classes without any training
    sample that has a known bias value.

    Args:
        y: (n,) classes.
        a: (n,) bias attributes, -1 where unknown.
        train_group_counts: (C, A) training samples per group (:func:`group_counts` of the
            training split).

    Returns:
        aligned (n,) bool, known (n,) bool; a sample is bias-conflicting when known and not aligned.
    """
    counts = np.asarray(train_group_counts)
    y = _as_int_array(y, "y")
    a = _as_int_array(a, "a")
    class_has_train = counts.sum(axis=1) > 0
    majority = counts == counts.max(axis=1, keepdims=True)
    known = (a >= 0) & class_has_train[y]
    aligned = np.zeros_like(known)
    aligned[known] = majority[y[known], a[known]]
    return aligned, known


@dataclass(frozen=True)
class Scored:
    """One classifier's predictions on a split, as every metric reads them.

    Attributes:
        y_true: (n,) int64 true classes; correct: (n,) bool, prediction == y_true.
        a: (n,) int64 bias attributes, -1 where unknown.
        num_classes: C; num_attributes: A (0 without a bias attribute).
        train_counts: (C, A) float64 training samples per group, or None.
        aligned, known: (n,) bool bias-aligned samples and where alignment is defined, or None
            (no groups, or neither ``aligned`` nor train counts given).
    """

    y_true: np.ndarray
    correct: np.ndarray
    a: np.ndarray
    num_classes: int
    num_attributes: int
    train_counts: np.ndarray | None = None
    aligned: np.ndarray | None = None
    known: np.ndarray | None = None

    @property
    def has_groups(self) -> bool:
        """A bias attribute is known for some sample (the group metrics apply)."""
        return self.num_attributes > 0 and bool((self.a >= 0).any())


Metric = Callable[[Scored, dict[str, Any]], dict[str, Any]]
"""A metric: (the predictions, the entries of the metrics before it) -> its entries ({} where
it does not apply)."""


def register_metric(name: str) -> Callable[[Metric], Metric]:
    """Decorator: add a metric to :func:`group_metrics` (after those registered before it)."""
    return lambda metric: METRICS.add(name, metric)


def group_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    a: ArrayLike,
    num_classes: int,
    num_attributes: int,
    train_group_counts: np.ndarray | torch.Tensor | None = None,
    aligned: ArrayLike | None = None,
) -> dict[str, Any]:
    """Every test metric of SPEC section 7 from labels, predictions and bias attributes: the
    entries of each metric of :data:`debiascl.registry.METRICS`, in order.

    Args:
        y_true: (n,) true classes in [0, num_classes).
        y_pred: (n,) predicted classes.
        a: (n,) bias attributes in [0, num_attributes), -1 where unknown.
        num_classes: C.
        num_attributes: A, 0 when the data has no bias attribute (group metrics are then omitted).
        train_group_counts: (C, A) or (C * A,) number of *training* samples per group; enables
            ``avg_acc_train_weighted`` and, when ``aligned`` is None, the alignment split.
        aligned: (n,) bool, True for bias-aligned samples (every sample then counts as aligned
            or conflicting); None derives it with :func:`majority_aligned` (needs
            ``train_group_counts``).

    Returns:
        A JSON-serialisable dict with ``num_samples``, ``accuracy`` (top-1), ``per_class``,
        ``absent_classes``, ``worst_class``; with a bias attribute also ``per_group``,
        ``group_sizes`` (test samples per present group), ``absent_groups``, ``worst_group``,
        ``worst_group_name``, ``mean_group`` (unweighted mean over present groups); with train
        counts ``avg_acc_train_weighted`` = sum_g p_train(g) acc(g), the training proportions
        renormalised over groups present in the test split; with alignment
        ``aligned_accuracy`` / ``conflicting_accuracy`` (a subset with no samples is left out
        and listed under ``absent_alignment``); then a registered metric's entries.
    """
    scored = _scored(y_true, y_pred, a, num_classes, num_attributes, train_group_counts)
    if scored.has_groups:
        scored = _with_alignment(scored, aligned)
    result: dict[str, Any] = {}
    for metric in METRICS.values():
        result.update(metric(scored, result))
    return result


def _scored(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    a: ArrayLike,
    num_classes: int,
    num_attributes: int,
    train_group_counts: np.ndarray | torch.Tensor | None,
) -> Scored:
    """The checked inputs of :func:`group_metrics` (ValueError naming what is wrong)."""
    y_true = _as_int_array(y_true, "y_true")
    y_pred = _as_int_array(y_pred, "y_pred")
    a = _as_int_array(a, "a")
    if not (y_true.shape == y_pred.shape == a.shape):
        raise ValueError(
            f"y_true, y_pred and a must have the same length, got "
            f"{y_true.shape[0]}, {y_pred.shape[0]}, {a.shape[0]}"
        )
    if y_true.size == 0:
        raise ValueError("group_metrics needs at least one sample")
    if y_true.min() < 0 or y_true.max() >= num_classes:
        raise ValueError(
            f"y_true must lie in [0, {num_classes}), got {y_true.min()}..{y_true.max()}"
        )
    if a.min() < -1 or (num_attributes > 0 and a.max() >= num_attributes):
        raise ValueError(f"a must lie in [-1, {num_attributes}), got {a.min()}..{a.max()}")
    scored = Scored(y_true, y_true == y_pred, a, num_classes, num_attributes)
    if train_group_counts is None or not scored.has_groups:
        return scored
    if isinstance(train_group_counts, torch.Tensor):
        train_group_counts = train_group_counts.cpu().numpy()
    counts = np.asarray(train_group_counts, dtype=np.float64)
    if counts.size != num_classes * num_attributes:
        raise ValueError(
            f"train_group_counts must have {num_classes} x {num_attributes} entries, "
            f"got shape {counts.shape}"
        )
    return replace(scored, train_counts=counts.reshape(num_classes, num_attributes))


def _with_alignment(scored: Scored, aligned: ArrayLike | None) -> Scored:
    """``scored`` with its alignment: ``aligned`` given (every sample known), else the train
    counts' majority (:func:`majority_aligned`), else none."""
    if aligned is not None:
        mask = _as_int_array(aligned, "aligned").astype(bool)
        if mask.shape != scored.y_true.shape:
            raise ValueError(f"aligned must have shape {scored.y_true.shape}, got {mask.shape}")
        return replace(scored, aligned=mask, known=np.ones_like(mask))
    if scored.train_counts is None:
        return scored
    mask, known = majority_aligned(scored.y_true, scored.a, scored.train_counts)
    return replace(scored, aligned=mask, known=known)


def _accuracy(correct: np.ndarray) -> float:
    return float(correct.mean())


@register_metric("accuracy")
def accuracy(scored: Scored, _: dict[str, Any]) -> dict[str, Any]:
    """``num_samples`` and ``accuracy`` (top-1)."""
    return {"num_samples": int(scored.y_true.size), "accuracy": _accuracy(scored.correct)}


@register_metric("per_class")
def per_class(scored: Scored, _: dict[str, Any]) -> dict[str, Any]:
    """``per_class`` accuracy of each class present (``"y=0"``) and the ``absent_classes``."""
    present = [c for c in range(scored.num_classes) if (scored.y_true == c).any()]
    return {
        "per_class": {f"y={c}": _accuracy(scored.correct[scored.y_true == c]) for c in present},
        "absent_classes": [f"y={c}" for c in range(scored.num_classes) if c not in present],
    }


@register_metric("worst_class")
def worst_class(_: Scored, result: dict[str, Any]) -> dict[str, Any]:
    """``worst_class``: the lowest per-class accuracy."""
    return {"worst_class": min(result["per_class"].values())}


@register_metric("per_group")
def per_group(scored: Scored, _: dict[str, Any]) -> dict[str, Any]:
    """``per_group`` accuracy and ``group_sizes`` of each group present (``"y=1,a=0"``), and the
    ``absent_groups`` (with a bias attribute)."""
    if not scored.has_groups:
        return {}
    groups = group_ids(scored.y_true, scored.a, scored.num_attributes)
    accuracies: dict[str, float] = {}
    sizes: dict[str, int] = {}
    absent: list[str] = []
    for group in range(scored.num_classes * scored.num_attributes):
        members, name = groups == group, group_name(*divmod(group, scored.num_attributes))
        if members.any():
            accuracies[name] = _accuracy(scored.correct[members])
            sizes[name] = int(members.sum())
        else:
            absent.append(name)
    return {"per_group": accuracies, "group_sizes": sizes, "absent_groups": absent}


@register_metric("worst_group")
def worst_group(_: Scored, result: dict[str, Any]) -> dict[str, Any]:
    """``worst_group``: the lowest per-group accuracy, and ``worst_group_name`` its group."""
    if "per_group" not in result:
        return {}
    name = min(result["per_group"], key=result["per_group"].__getitem__)
    return {"worst_group": result["per_group"][name], "worst_group_name": name}


@register_metric("mean_group")
def mean_group(_: Scored, result: dict[str, Any]) -> dict[str, Any]:
    """``mean_group``: the unweighted mean accuracy over the groups present."""
    if "per_group" not in result:
        return {}
    return {"mean_group": float(np.mean(list(result["per_group"].values())))}


@register_metric("avg_acc_train_weighted")
def train_weighted(scored: Scored, result: dict[str, Any]) -> dict[str, Any]:
    """``avg_acc_train_weighted`` = sum_g p_train(g) acc(g) over the groups present in the
    scored split (with train counts)."""
    if "per_group" not in result or scored.train_counts is None:
        return {}
    total = weighted = 0.0
    for (y, value), count in np.ndenumerate(scored.train_counts):
        accuracy = result["per_group"].get(group_name(y, value))
        if accuracy is not None:
            total += count
            weighted += count * accuracy
    if total == 0:
        raise ValueError("train_group_counts gives no training sample to any test group")
    return {"avg_acc_train_weighted": float(weighted / total)}


@register_metric("alignment")
def alignment(scored: Scored, _: dict[str, Any]) -> dict[str, Any]:
    """``aligned_accuracy`` / ``conflicting_accuracy`` and their sizes (with alignment); a
    subset without samples is listed under ``absent_alignment``."""
    if scored.aligned is None or scored.known is None:
        return {}
    part: dict[str, Any] = {"absent_alignment": []}
    members_of = {"aligned": scored.aligned, "conflicting": ~scored.aligned}
    for key, members in members_of.items():
        members = members & scored.known
        if members.any():
            part[f"{key}_accuracy"] = _accuracy(scored.correct[members])
            part[f"{key}_size"] = int(members.sum())
        else:
            part["absent_alignment"].append(key)
    return part


def mean_and_stderr(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n)) over seeds.

    Args:
        values: (n,) one number per seed, n >= 1.

    Returns:
        (mean, stderr); stderr is 0.0 for a single value (no spread can be measured; tables
        print the number of seeds beside it).
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"mean_and_stderr needs a non-empty 1-D sequence, got shape {array.shape}")
    if array.size == 1:
        return float(array[0]), 0.0
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(array.size))
