"""group_metrics and mean_and_stderr against hand-computed cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from debiascl.metrics import group_counts, group_metrics, majority_aligned, mean_and_stderr

# A binary target with a binary bias; group (y=1, a=0) has no test sample, the last sample has an
# unknown attribute. Columns: y, a, prediction.
CASE = np.array(
    [
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 1],
        [0, 1, 0],
        [1, 1, 1],
        [1, 1, 0],
        [1, 1, 1],
        [1, 1, 1],
        [1, -1, 0],
    ]
)
TRAIN_COUNTS = np.array([[90, 10], [5, 95]])


def _case_metrics(**kwargs):
    y, a, pred = CASE.T
    return group_metrics(y, pred, a, num_classes=2, num_attributes=2, **kwargs)


def test_hand_computed_accuracy_classes_and_groups():
    result = _case_metrics()
    assert result["num_samples"] == 9
    assert result["accuracy"] == pytest.approx(6 / 9)
    assert result["per_class"] == pytest.approx({"y=0": 3 / 4, "y=1": 3 / 5})
    assert result["worst_class"] == pytest.approx(3 / 5)
    assert result["absent_classes"] == []
    assert result["per_group"] == pytest.approx(
        {"y=0,a=0": 2 / 3, "y=0,a=1": 1.0, "y=1,a=1": 3 / 4}
    )
    assert result["group_sizes"] == {"y=0,a=0": 3, "y=0,a=1": 1, "y=1,a=1": 4}
    assert "avg_acc_train_weighted" not in result
    assert "aligned_accuracy" not in result


def test_empty_group_is_absent_and_ignored_by_worst_and_mean():
    result = _case_metrics()
    assert result["absent_groups"] == ["y=1,a=0"]
    assert "y=1,a=0" not in result["per_group"]
    assert result["worst_group"] == pytest.approx(2 / 3)
    assert result["worst_group_name"] == "y=0,a=0"
    assert result["mean_group"] == pytest.approx((2 / 3 + 1 + 3 / 4) / 3)
    for value in result["per_group"].values():
        assert math.isfinite(value)


def test_train_weighted_average_by_hand():
    result = _case_metrics(train_group_counts=TRAIN_COUNTS)
    expected = (90 * 2 / 3 + 10 * 1.0 + 95 * 3 / 4) / (90 + 10 + 95)
    assert result["avg_acc_train_weighted"] == pytest.approx(expected)
    flat = _case_metrics(train_group_counts=TRAIN_COUNTS.reshape(-1))
    assert flat["avg_acc_train_weighted"] == pytest.approx(expected)


def test_aligned_and_conflicting_from_training_majority():
    result = _case_metrics(train_group_counts=TRAIN_COUNTS)
    # Majority bias: a=0 for class 0, a=1 for class 1; only sample 3 (y=0, a=1) conflicts,
    # sample 8 (a=-1) has no alignment.
    assert result["aligned_size"] == 7
    assert result["aligned_accuracy"] == pytest.approx(5 / 7)
    assert result["conflicting_size"] == 1
    assert result["conflicting_accuracy"] == pytest.approx(1.0)
    assert result["absent_alignment"] == []


def test_explicit_aligned_mask_and_absent_subset():
    y, a, pred = CASE.T
    aligned = np.ones(len(y), dtype=bool)
    result = group_metrics(y, pred, a, 2, 2, aligned=aligned)
    assert result["aligned_accuracy"] == pytest.approx(6 / 9)
    assert "conflicting_accuracy" not in result
    assert result["absent_alignment"] == ["conflicting"]


def test_torch_inputs_give_the_same_result_and_json_serialises():
    y, a, pred = CASE.T
    from_numpy = group_metrics(y, pred, a, 2, 2, train_group_counts=TRAIN_COUNTS)
    from_torch = group_metrics(
        torch.from_numpy(y),
        torch.from_numpy(pred),
        torch.from_numpy(a),
        2,
        2,
        train_group_counts=torch.from_numpy(TRAIN_COUNTS),
    )
    assert from_torch == from_numpy
    json.dumps(from_torch)


def test_absent_class_and_no_bias_attribute():
    y = np.array([0, 0, 2, 2, 2])
    pred = np.array([0, 1, 2, 2, 0])
    result = group_metrics(y, pred, np.full(5, -1), num_classes=3, num_attributes=0)
    assert result["per_class"] == pytest.approx({"y=0": 0.5, "y=2": 2 / 3})
    assert result["absent_classes"] == ["y=1"]
    assert result["worst_class"] == pytest.approx(0.5)
    assert "per_group" not in result and "worst_group" not in result


def test_majority_ties_and_classes_without_training_samples():
    counts = np.array([[5, 5, 1], [0, 0, 0]])
    aligned, known = majority_aligned([0, 0, 0, 1, 0], [0, 1, 2, 0, -1], counts)
    assert aligned.tolist() == [True, True, False, False, False]
    assert known.tolist() == [True, True, True, False, False]


def test_group_counts_skips_unknown_attributes():
    counts = group_counts(torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 1, 1, 1, -1]), 2, 2)
    assert counts.tolist() == [[1, 1], [0, 2]]


@pytest.mark.parametrize(
    ("y", "pred", "a", "message"),
    [
        ([0, 1], [0], [0, 0], "same length"),
        ([0, 5], [0, 1], [0, 0], "y_true"),
        ([0, 1], [0, 1], [0, 2], "a must"),
        ([], [], [], "at least one"),
    ],
)
def test_bad_inputs_raise(y, pred, a, message):
    with pytest.raises(ValueError, match=message):
        group_metrics(np.array(y), np.array(pred), np.array(a), 2, 2)


def test_mean_and_stderr():
    mean, stderr = mean_and_stderr([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert stderr == pytest.approx(1.0 / math.sqrt(3))
    assert mean_and_stderr([0.7]) == (0.7, 0.0)
    with pytest.raises(ValueError):
        mean_and_stderr([])
