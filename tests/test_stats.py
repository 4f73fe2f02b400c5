"""Tests of the paired seed statistics (debiascl.stats)."""

from __future__ import annotations

import math

import pytest

from debiascl.stats import paired_difference

# Student t quantiles t_{0.975, df} from printed tables (not from scipy).
T_975 = {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262}


def test_interval_matches_a_hand_computation() -> None:
    method = {0: 0.80, 1: 0.75, 2: 0.90, 3: 0.70, 4: 0.85}
    reference = {0: 0.70, 1: 0.72, 2: 0.80, 3: 0.69, 4: 0.74}
    differences = [0.10, 0.03, 0.10, 0.01, 0.11]
    mean = sum(differences) / 5
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / 4)
    half = T_975[4] * sd / math.sqrt(5)
    result = paired_difference(method, reference)
    assert result.seeds == 5
    assert result.mean == pytest.approx(mean)
    assert result.low == pytest.approx(mean - half, abs=1e-4)
    assert result.high == pytest.approx(mean + half, abs=1e-4)
    assert result.detectable
    assert result.text(scale=100) == f"+{100 * mean:.2f} [{100 * (mean - half):.2f}, " + (
        f"{100 * (mean + half):.2f}]"
    )


def test_only_common_seeds_are_paired_and_a_covered_zero_is_no_difference() -> None:
    method = {0: 0.5, 1: 0.7, 2: 0.6, 7: 0.0}
    reference = {0: 0.6, 1: 0.6, 2: 0.6, 9: 1.0}
    result = paired_difference(method, reference)
    assert result.seeds == 3
    assert result.mean == pytest.approx(0.0, abs=1e-12)
    assert result.low == pytest.approx(-T_975[2] * 0.1 / math.sqrt(3), abs=1e-4)
    assert not result.detectable
    assert result.text().endswith("no detectable difference")


def test_wider_confidence_gives_a_wider_interval() -> None:
    method = {seed: 0.5 + 0.01 * seed for seed in range(10)}
    reference = {seed: 0.5 - 0.01 * (seed % 3) for seed in range(10)}
    narrow, wide = paired_difference(method, reference, 0.8), paired_difference(method, reference)
    assert wide.low < narrow.low < narrow.mean < narrow.high < wide.high


def test_one_seed_has_no_interval_and_bad_input_is_refused() -> None:
    single = paired_difference({3: 0.9}, {3: 0.8})
    assert single.mean == pytest.approx(0.1) and math.isnan(single.low)
    assert not single.detectable
    assert "one seed" in single.text()
    with pytest.raises(ValueError, match="at least one seed"):
        paired_difference({0: 0.1}, {1: 0.2})
    with pytest.raises(ValueError, match="confidence"):
        paired_difference({0: 0.1}, {0: 0.2}, confidence=1.0)
