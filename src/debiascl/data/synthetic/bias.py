"""Seeded bias assignment: which background each image of a split gets (aligned / balanced)."""

from __future__ import annotations

import math

import numpy as np


def assign_train_bias(
    targets: np.ndarray, num_attributes: int, rho: float, rng: np.random.Generator
) -> np.ndarray:
    """(n,) background of each training image: ``floor(rho n_c + 0.5)`` aligned (a = y) per class.

    The conflicting images of class c get the other backgrounds c+1, c+2, ... (mod A) in turn,
    starting at a seeded offset.
    """
    attributes = np.empty(len(targets), dtype=np.int64)
    for c in np.unique(targets):
        rows = rng.permutation(np.flatnonzero(targets == c))
        n_aligned = math.floor(rho * len(rows) + 0.5)
        dealt = (rng.integers(num_attributes - 1) + np.arange(len(rows) - n_aligned)) % (
            num_attributes - 1
        )
        attributes[rows[:n_aligned]] = c
        attributes[rows[n_aligned:]] = (c + 1 + dealt) % num_attributes
    return attributes


def assign_balanced_bias(
    targets: np.ndarray, num_attributes: int, copies: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Group-balanced backgrounds for val / test.

    Returns:
        rows (m,) indices into the images (each repeated num_attributes times when ``copies``)
        and their backgrounds (m,).
    """
    if copies:
        rows = np.repeat(np.arange(len(targets)), num_attributes)
        return rows, np.tile(np.arange(num_attributes), len(targets))
    attributes = np.empty(len(targets), dtype=np.int64)
    for c in np.unique(targets):
        rows = rng.permutation(np.flatnonzero(targets == c))
        attributes[rows] = (rng.integers(num_attributes) + np.arange(len(rows))) % num_attributes
    return np.arange(len(targets)), attributes
