"""Group-robustness metrics from (y_true, y_pred, a) (SPEC section 7).

One function, :func:`group_metrics`, computes every number that evaluation reports, so the probe,
the kNN classifier and a supervised method's own classifier are all scored the same way.

Conventions:
    - group id g = y * num_attributes + a (SPEC 8: g = 2y + a for a binary target and bias),
      keys written readably as ``"y=1,a=0"``;
    - a group or class with no test samples is *absent*: it is left out of ``per_group`` /
      ``per_class``, listed under ``absent_groups`` / ``absent_classes``, and ignored by the
      worst / mean over groups; it is never reported as 0 or NaN;
    - samples with an unknown bias attribute (a = -1) count for the accuracy and the per-class
      numbers but belong to no group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor | Sequence[int]


def _as_int_array(values: ArrayLike, name: str) -> np.ndarray:
    """A 1-D int64 numpy copy of a tensor, array or list."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array.astype(np.int64)


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
    y = _as_int_array(y, "y")
    a = _as_int_array(a, "a")
    known = a >= 0
    flat = np.bincount(y[known] * num_attributes + a[known], minlength=num_classes * num_attributes)
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


def _accuracy(correct: np.ndarray) -> float:
    return float(correct.mean())


def group_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    a: ArrayLike,
    num_classes: int,
    num_attributes: int,
    train_group_counts: np.ndarray | torch.Tensor | None = None,
    aligned: ArrayLike | None = None,
) -> dict[str, Any]:
    """Every test metric of SPEC section 7 from labels, predictions and bias attributes.

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
        and listed under ``absent_alignment``).
    """
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
    correct = y_true == y_pred
    result: dict[str, Any] = {"num_samples": int(y_true.size), "accuracy": _accuracy(correct)}
    result.update(_class_metrics(y_true, correct, num_classes))
    if num_attributes == 0 or not (a >= 0).any():
        return result
    result.update(_group_part(y_true, a, correct, num_classes, num_attributes, train_group_counts))
    if aligned is None and train_group_counts is not None:
        counts = np.asarray(train_group_counts).reshape(num_classes, num_attributes)
        aligned_mask, known = majority_aligned(y_true, a, counts)
    elif aligned is not None:
        aligned_mask = _as_int_array(aligned, "aligned").astype(bool)
        if aligned_mask.shape != y_true.shape:
            raise ValueError(f"aligned must have shape {y_true.shape}, got {aligned_mask.shape}")
        known = np.ones_like(aligned_mask)
    else:
        return result
    result.update(_alignment_part(correct, aligned_mask, known))
    return result


def _class_metrics(y_true: np.ndarray, correct: np.ndarray, num_classes: int) -> dict[str, Any]:
    per_class = {
        f"y={c}": _accuracy(correct[y_true == c]) for c in range(num_classes) if (y_true == c).any()
    }
    absent = [f"y={c}" for c in range(num_classes) if not (y_true == c).any()]
    return {
        "per_class": per_class,
        "absent_classes": absent,
        "worst_class": min(per_class.values()),
    }


def _group_part(
    y_true: np.ndarray,
    a: np.ndarray,
    correct: np.ndarray,
    num_classes: int,
    num_attributes: int,
    train_group_counts: np.ndarray | torch.Tensor | None,
) -> dict[str, Any]:
    per_group: dict[str, float] = {}
    sizes: dict[str, int] = {}
    absent: list[str] = []
    for y in range(num_classes):
        for value in range(num_attributes):
            members = (y_true == y) & (a == value)
            if members.any():
                per_group[group_name(y, value)] = _accuracy(correct[members])
                sizes[group_name(y, value)] = int(members.sum())
            else:
                absent.append(group_name(y, value))
    worst_name = min(per_group, key=per_group.__getitem__)
    part: dict[str, Any] = {
        "per_group": per_group,
        "group_sizes": sizes,
        "absent_groups": absent,
        "worst_group": per_group[worst_name],
        "worst_group_name": worst_name,
        "mean_group": float(np.mean(list(per_group.values()))),
    }
    if train_group_counts is not None:
        part["avg_acc_train_weighted"] = _train_weighted(
            per_group, train_group_counts, num_classes, num_attributes
        )
    return part


def _train_weighted(
    per_group: dict[str, float],
    train_group_counts: np.ndarray | torch.Tensor,
    num_classes: int,
    num_attributes: int,
) -> float:
    """sum_g p_train(g) acc(g) over the groups present in the test split."""
    if isinstance(train_group_counts, torch.Tensor):
        train_group_counts = train_group_counts.cpu().numpy()
    counts = np.asarray(train_group_counts, dtype=np.float64)
    if counts.size != num_classes * num_attributes:
        raise ValueError(
            f"train_group_counts must have {num_classes} x {num_attributes} entries, "
            f"got shape {counts.shape}"
        )
    counts = counts.reshape(num_classes, num_attributes)
    total = weighted = 0.0
    for y in range(num_classes):
        for value in range(num_attributes):
            accuracy = per_group.get(group_name(y, value))
            if accuracy is not None:
                total += counts[y, value]
                weighted += counts[y, value] * accuracy
    if total == 0:
        raise ValueError("train_group_counts gives no training sample to any test group")
    return float(weighted / total)


def _alignment_part(correct: np.ndarray, aligned: np.ndarray, known: np.ndarray) -> dict[str, Any]:
    part: dict[str, Any] = {"absent_alignment": []}
    for key, members in (("aligned", aligned & known), ("conflicting", ~aligned & known)):
        if members.any():
            part[f"{key}_accuracy"] = _accuracy(correct[members])
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
