"""The masked core every loss shares: scaled cosine similarities of anchors against the batch.

:func:`masked_pairs` normalises the two views' projections and builds, once, the similarities of
the local anchors against every (global) column with each anchor's own column and its positive
masked; :func:`debiased_nce` is SPEC 2's clamped, debiased negative term in log space, and
:func:`anchor_mean` the (optionally sample-weighted) mean over the anchors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from debiascl.distributed import gather_with_grad, get_rank, is_distributed


@dataclass(frozen=True)
class Pairs:
    """Scaled cosine similarities of the local anchors against the views of the (global) batch.

    Attributes:
        masked: (2b, 2B) scale * s(a, j) for local anchor a (row) and global view j (column) at
            the N = 2B - 2 negatives j of a; the fill value at a's own column and its positive.
        positive: (2b,) scale * s(a, p(a)).
        excluded: (2b, 2) the columns of each anchor itself and of its positive.
    """

    masked: Tensor
    positive: Tensor
    excluded: Tensor

    @property
    def num_negatives(self) -> int:
        """N = 2B - 2, the number of negatives of every anchor (B the global batch)."""
        return self.masked.shape[1] - 2


def _normalize(z: Tensor) -> Tensor:
    """(B, D) -> (B, D) rows scaled to unit L2 norm, also when the norm overflows the dtype.

    A row whose squared norm could overflow (an entry above sqrt(max / D), e.g. 3e19 in
    float32) is first divided by its largest absolute entry (a constant for autograd: the result
    does not depend on it), so it keeps its direction instead of becoming a zero vector. Other
    rows are divided by 1, exactly as ``F.normalize`` alone. A row with a NaN gives NaN.
    """
    limit = math.sqrt(torch.finfo(z.dtype).max / max(z.shape[1], 1))
    largest = z.detach().abs().amax(dim=1, keepdim=True)
    scale = torch.where(largest > limit, largest, torch.ones_like(largest))
    return F.normalize(z / scale, dim=1)


def masked_pairs(
    z1: Tensor,
    z2: Tensor,
    gather_distributed: bool,
    scale: float = 1.0,
    fill: float = -math.inf,
) -> Pairs:
    """Normalise both views and build the masked, scaled similarities of SPEC sections 1 and 6.

    The similarity matrix is built once and masked in place (-inf suits a log-sum-exp over the
    negatives, 0 a plain sum), so no masked copy is made.

    Args:
        z1, z2: (b, D) this process's projections of the two views.
        gather_distributed: gather the columns from every rank when a process group is running.
        scale: factor applied to the similarities (1 / t for the contrastive logits).
        fill: value written at each anchor's own column and at its positive.

    Returns:
        The pairs of the 2b local anchors with the 2B global views, computed in float32
        (float64 inputs stay float64) with autocast disabled.
    """
    dtype = torch.promote_types(z1.dtype, torch.float32)
    with torch.autocast(device_type=z1.device.type, enabled=False):
        n1 = _normalize(z1.to(dtype))
        n2 = _normalize(z2.to(dtype))
        b = n1.shape[0]
        offset = 0
        if gather_distributed and is_distributed():
            g1, g2 = gather_with_grad(n1), gather_with_grad(n2)
            offset = get_rank() * b
        else:
            g1, g2 = n1, n2
        batch = g1.shape[0]
        if batch < 2:
            raise ValueError(f"the (global) batch size B must be >= 2, got B = {batch}")
        logits = (torch.cat([n1, n2]) * scale) @ torch.cat([g1, g2]).T
        positive = (n1 * n2).sum(dim=1) * scale  # the same value for both views of a sample
    rows = torch.arange(b, device=logits.device) + offset
    excluded = torch.stack([torch.cat([rows, rows + batch]), torch.cat([rows + batch, rows])], 1)
    # Masking in place is safe: the matmul's backward does not need its output.
    masked = logits.scatter_(1, excluded, fill)
    return Pairs(masked=masked, positive=torch.cat([positive, positive]), excluded=excluded)


def anchor_mean(per_anchor: Tensor, sample_weights: Tensor | None) -> Tensor:
    """Mean over the 2b anchors, each weighted by its sample's weight when weights are given.

    Args:
        per_anchor: (2b,) losses, view 1's anchors then view 2's.
        sample_weights: None, or (b,) non-negative weights of the local samples (both views of
            sample i get weights[i]); the result is mean_a w_a L_a, not renormalised, so weights
            of mean 1 over the training set (e.g. n / (G n_g)) give an unbiased estimate of the
            weighted objective and the ranks of a DDP run average to the global one.
    """
    if sample_weights is None:
        return per_anchor.mean()
    if sample_weights.shape != (per_anchor.shape[0] // 2,):
        raise ValueError(
            f"sample_weights: expected shape ({per_anchor.shape[0] // 2},), got "
            f"{tuple(sample_weights.shape)}"
        )
    return (sample_weights.to(per_anchor.dtype).repeat(2) * per_anchor).mean()


def debiased_nce(
    log_negatives: Tensor,
    log_pos: Tensor,
    tau_plus: float,
    num_negatives: int,
    temperature: float,
    sample_weights: Tensor | None = None,
) -> Tensor:
    """Mean of -log(pos / (pos + Ng)) with SPEC 2's debiased, clamped negative term.

    ``Ng = max((S - tau_plus * N * pos) / (1 - tau_plus), N * exp(-1/t))`` where
    ``S = exp(log_negatives)`` is the method's sum over negatives. S and pos are scaled by the
    row maximum ``m = max(log S, log pos)`` before the subtraction, and the clamp is applied to
    ``log Ng`` (where its bound ``log N - 1/t`` is an ordinary number), so no exponential of a
    large logit is ever formed and a non-positive difference simply yields the clamp.

    Args:
        log_negatives: (2b,) log S per anchor.
        log_pos: (2b,) log pos = s(a, p(a)) / t per anchor.
        tau_plus: class prior in [0, 1).
        num_negatives: N.
        temperature: t.
        sample_weights: optional (b,) per-sample weights (:func:`anchor_mean`).

    Returns:
        Scalar, the (weighted) mean loss over the anchors.
    """
    shift = torch.maximum(log_negatives, log_pos).detach()
    pos_term = tau_plus * num_negatives * torch.exp(log_pos - shift)
    scaled = (torch.exp(log_negatives - shift) - pos_term) / (1.0 - tau_plus)
    valid = scaled > 0
    log_scaled = torch.log(torch.where(valid, scaled, torch.ones_like(scaled)))
    # A NaN (from a NaN input) must reach the loss, not fall to the clamp like a non-positive.
    fill = torch.where(scaled.isnan(), scaled, torch.full_like(scaled, -math.inf))
    log_ng = torch.where(valid, shift + log_scaled, fill)
    log_ng = torch.clamp(log_ng, min=math.log(num_negatives) - 1.0 / temperature)
    return anchor_mean(F.softplus(log_ng - log_pos), sample_weights)
