"""Paired comparisons over seeds: is a method's metric different from a reference method's?

Runs of two methods with the same seed share the data order, the initial weights' seed and the
split, so their difference per seed removes the variance the seed causes in both. The mean paired
difference comes with a Student-t confidence interval over the seeds (SubpopBench and most
debiasing papers report mean ± standard error; the interval says whether the difference is
distinguishable from 0 at all).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``value - reference`` over paired seeds and its confidence interval.

    Attributes:
        mean: mean paired difference.
        low, high: the two-sided confidence interval (``mean ± t * stderr``); NaN for one seed.
        seeds: number of seeds paired.
        confidence: the interval's level, e.g. 0.95.
    """

    mean: float
    low: float
    high: float
    seeds: int
    confidence: float

    @property
    def detectable(self) -> bool:
        """Whether the interval excludes 0 (False where it covers 0 or cannot be computed)."""
        return not math.isnan(self.low) and (self.low > 0 or self.high < 0)

    def text(self, scale: float = 1.0, digits: int = 2) -> str:
        """``+1.23 [0.10, 2.36]`` (times ``scale``), then "no detectable difference" where the
        interval covers 0."""
        mean = f"{scale * self.mean:+.{digits}f}"
        if math.isnan(self.low):
            return f"{mean} (one seed: no interval)"
        interval = f"{mean} [{scale * self.low:.{digits}f}, {scale * self.high:.{digits}f}]"
        return interval if self.detectable else f"{interval} no detectable difference"


def paired_difference(
    values: Mapping[int, float], reference: Mapping[int, float], confidence: float = 0.95
) -> PairedDifference:
    """Mean paired difference ``values[s] - reference[s]`` over the seeds s both have.

    The interval is ``mean ± t_{(1 + confidence) / 2, n - 1} * sd / sqrt(n)`` with the sample
    standard deviation (ddof 1) of the n differences.

    Args:
        values: seed -> the method's metric.
        reference: seed -> the reference method's metric.
        confidence: the interval's level, in (0, 1).

    Returns:
        The :class:`PairedDifference`.

    Raises:
        ValueError: no seed in common, or confidence outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    seeds = sorted(set(values) & set(reference))
    if not seeds:
        raise ValueError("paired_difference needs at least one seed present in both")
    differences = np.array([values[seed] - reference[seed] for seed in seeds], dtype=np.float64)
    mean = float(differences.mean())
    if len(seeds) == 1:
        return PairedDifference(mean, math.nan, math.nan, 1, confidence)
    stderr = float(differences.std(ddof=1) / math.sqrt(len(seeds)))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=len(seeds) - 1)) * stderr
    return PairedDifference(mean, mean - half, mean + half, len(seeds), confidence)
