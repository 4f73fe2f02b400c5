"""Per-sample random draws of the view pipelines, from torch's global RNG on a device."""

from __future__ import annotations

import torch
from torch import Tensor


def uniform(batch: int, low: float, high: float, device: torch.device) -> Tensor:
    """(batch,) float32 draws from U(low, high) on ``device``."""
    return torch.rand(batch, device=device) * (high - low) + low


def bernoulli(batch: int, p: float, device: torch.device) -> Tensor:
    """(batch,) bool, each True with probability p."""
    return torch.rand(batch, device=device) < p


def per_sample(factor: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1) for broadcasting over images."""
    return factor[:, None, None, None]
