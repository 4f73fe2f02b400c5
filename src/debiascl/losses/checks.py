"""Argument checks of the loss functions and their nn.Module wrappers (ValueError on bad input)."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor


def _as_real(value: object) -> float | None:
    """``value`` as a float when it is a real number, else None.

    Real numbers are ints and floats, numpy scalars (anything registered as
    :class:`numbers.Real`) and 0-d tensors that do not require grad; bools are not numbers here.
    """
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, Tensor):
        usable = value.dim() == 0 and not value.requires_grad and not value.is_complex()
        return float(value) if usable and value.dtype != torch.bool else None
    return float(value) if isinstance(value, numbers.Real) else None


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float; ValueError unless it is a finite real number > 0."""
    value = _as_real(temperature)
    if value is None or not math.isfinite(value):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if value <= 0:
        raise ValueError(f"temperature must be > 0 (allowed range (0, inf)), got {temperature}")
    return value


def check_tau_plus(tau_plus: float) -> float:
    """``tau_plus`` as a float; ValueError unless it is a real number in [0, 1)."""
    value = _as_real(tau_plus)
    if value is None or not 0 <= value < 1:
        raise ValueError(f"tau_plus must lie in [0, 1), got {tau_plus!r}")
    return value


def check_beta(beta: float) -> float:
    """``beta`` as a float; ValueError unless it is a finite real number >= 0."""
    value = _as_real(beta)
    if value is None or not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"beta must be a finite number >= 0 (allowed range [0, inf)), got {beta!r}"
        )
    return value


def check_views(z1: Tensor, z2: Tensor, names: tuple[str, str] = ("z1", "z2")) -> None:
    """Raise ValueError unless ``z1`` and ``z2`` are real 2-D tensors of one shape (B, D >= 1).

    B >= 2 is checked on the (possibly gathered) global batch by :func:`masked_pairs`.
    """
    for name, z in zip(names, (z1, z2), strict=True):
        if not isinstance(z, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape (B, D), got {type(z)}")
        if z.dim() != 2:
            raise ValueError(f"{name} must be 2-D of shape (B, D), got shape {tuple(z.shape)}")
        if z.is_complex():
            raise ValueError(f"{name} must be a real tensor, got dtype {z.dtype}")
    if z1.shape != z2.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape (B, D), "
            f"got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if z1.shape[1] < 1:
        raise ValueError(f"{names[0]} must have D >= 1 columns, got shape {tuple(z1.shape)}")


WEIGHT_FORMS = ("paper", "mirror", "none")
"""WCL's weight forms: the published w, its mirror image, and w = 1 (DCL); see wcl_loss."""


def check_weight_form(weight_form: str) -> str:
    """``weight_form`` itself; ValueError unless it is one of :data:`WEIGHT_FORMS`."""
    if weight_form not in WEIGHT_FORMS:
        raise ValueError(
            f"weight_form must be one of {', '.join(WEIGHT_FORMS)}, got {weight_form!r}"
        )
    return weight_form
