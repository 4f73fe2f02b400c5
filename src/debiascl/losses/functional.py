"""The five losses of debiascl as pure functions on projections (SPEC sections 1-4 and 6).

Every loss takes the projections ``z1, z2`` of shape (B, D) of two views (row i of each is the
same sample), L2-normalises them, and returns the mean over the 2B anchors of SPEC's per-anchor
loss. Anchors and columns are ordered as ``cat([view1, view2])``.

All losses share one masked core (:mod:`debiascl.losses.core`): the cosine similarities of the local
anchors against every (global) column, scaled by 1/t, are computed once, in float32 or wider,
with autocast disabled; each anchor's own column is masked out and its positive is picked at its
global column. The methods differ only in how they form ``log Ng``, the log of the negative
term, and the loss is ``softplus(log Ng - log pos)`` = ``-log(pos / (pos + Ng))``. Everything
stays in log space relative to each row's maximum, so temperatures down to 0.05 neither overflow
nor underflow.

With ``gather_distributed=True`` and an initialised process group, each rank's anchors are its
own 2b views, the columns are the 2B views of the global batch (gathered with gradients), and
the loss is the mean over the local anchors. DDP's gradient averaging then reproduces a single
process on the global batch (SPEC section 6).

InfoNCE, DCL, HCL and the triplet loss are defined here; WCL's weighted loss and its weights
live in :mod:`debiascl.losses.weighted` and the argument checks in :mod:`debiascl.losses.checks`,
both re-exported here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from debiascl.losses.checks import WEIGHT_FORMS as WEIGHT_FORMS
from debiascl.losses.checks import check_beta, check_tau_plus, check_temperature, check_views
from debiascl.losses.checks import check_weight_form as check_weight_form
from debiascl.losses.core import anchor_mean, debiased_nce, masked_pairs
from debiascl.losses.weighted import relative_difficulty as relative_difficulty
from debiascl.losses.weighted import wcl_loss as wcl_loss


def info_nce_loss(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.5,
    gather_distributed: bool = False,
    sample_weights: Tensor | None = None,
) -> Tensor:
    """SimCLR's InfoNCE / NT-Xent loss (SPEC section 2; Chen et al., ICML 2020).

    ``L_a = -log(pos_a / (pos_a + sum_j neg_{a,j}))``, averaged over the 2B anchors.

    Args:
        z1: (B, D) projections of the first view (normalised here).
        z2: (B, D) projections of the second view; row i is the same sample as z1's row i.
        temperature: t > 0.
        gather_distributed: use the negatives of every rank (SPEC section 6).
        sample_weights: optional (B,) weights of the samples: the loss becomes mean_a w_a L_a
            over the 2B anchors (both views of sample i weigh w_i; not renormalised). Used for
            group-balanced training (``train.group_weighting``).

    Returns:
        Scalar loss, float32 (float64 for float64 inputs).

    Example:
        >>> z1, z2 = torch.randn(8, 128), torch.randn(8, 128)
        >>> loss = info_nce_loss(z1, z2, temperature=0.5)
    """
    temperature = check_temperature(temperature)
    check_views(z1, z2)
    pairs = masked_pairs(z1, z2, gather_distributed, 1.0 / temperature)
    per_anchor = F.softplus(torch.logsumexp(pairs.masked, dim=1) - pairs.positive)
    return anchor_mean(per_anchor, sample_weights)


def dcl_loss(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.5,
    tau_plus: float = 0.1,
    gather_distributed: bool = False,
    sample_weights: Tensor | None = None,
) -> Tensor:
    """Debiased contrastive loss, DCL (SPEC section 2; Chuang et al., NeurIPS 2020).

    DCL here is the *Debiased* Contrastive Learning of Chuang et al., not the *Decoupled*
    Contrastive Learning (Yeh et al., ECCV 2022) that lightly calls DCL.

    ``Ng_a = max((sum_j neg_{a,j} - tau_plus * N * pos_a) / (1 - tau_plus), N * exp(-1/t))`` and
    ``L_a = -log(pos_a / (pos_a + Ng_a))``; with ``tau_plus = 0`` it equals :func:`info_nce_loss`.

    Args:
        z1: (B, D) projections of the first view.
        z2: (B, D) projections of the second view.
        temperature: t > 0.
        tau_plus: prior probability of a false negative, in [0, 1).
        gather_distributed: use the negatives of every rank (SPEC section 6).
        sample_weights: optional (B,) weights of the samples: the loss becomes mean_a w_a L_a
            over the 2B anchors (both views of sample i weigh w_i; not renormalised). Used for
            group-balanced training (``train.group_weighting``).

    Returns:
        Scalar loss.

    Example:
        >>> loss = dcl_loss(torch.randn(8, 128), torch.randn(8, 128), tau_plus=0.1)
    """
    temperature = check_temperature(temperature)
    tau_plus = check_tau_plus(tau_plus)
    check_views(z1, z2)
    pairs = masked_pairs(z1, z2, gather_distributed, 1.0 / temperature)
    return debiased_nce(
        torch.logsumexp(pairs.masked, dim=1),
        pairs.positive,
        tau_plus,
        pairs.num_negatives,
        temperature,
        sample_weights,
    )


def hcl_loss(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.5,
    tau_plus: float = 0.1,
    beta: float = 1.0,
    gather_distributed: bool = False,
    detach_weights: bool = False,
    sample_weights: Tensor | None = None,
) -> Tensor:
    """Hard-negative contrastive loss (SPEC section 2; Robinson et al., ICLR 2021).

    Importance weights ``imp_{a,j} = exp(beta * s(a,j) / t)`` reweight the negatives:
    ``R_a = sum_j imp_{a,j} * neg_{a,j} / mean_j imp_{a,j}``, then DCL's debiasing and clamp
    apply to ``R_a``. With ``beta = 0`` it equals :func:`dcl_loss`.

    Args:
        z1: (B, D) projections of the first view.
        z2: (B, D) projections of the second view.
        temperature: t > 0.
        tau_plus: prior probability of a false negative, in [0, 1).
        beta: concentration >= 0.
        gather_distributed: use the negatives of every rank (SPEC section 6).
        detach_weights: stop the gradient through the importance weights. The default (False)
            lets it flow, as the authors' code does.
        sample_weights: optional (B,) weights of the samples: the loss becomes mean_a w_a L_a
            over the 2B anchors (both views of sample i weigh w_i; not renormalised). Used for
            group-balanced training (``train.group_weighting``).

    Returns:
        Scalar loss.

    Example:
        >>> loss = hcl_loss(torch.randn(8, 128), torch.randn(8, 128), beta=1.0)
    """
    temperature = check_temperature(temperature)
    tau_plus = check_tau_plus(tau_plus)
    beta = check_beta(beta)
    check_views(z1, z2)
    pairs = masked_pairs(z1, z2, gather_distributed, 1.0 / temperature)
    masked, n = pairs.masked, pairs.num_negatives
    if beta == 0:  # every importance weight is 1, so R_a = sum_j neg (and 0 * -inf is NaN)
        log_reweighted = torch.logsumexp(masked, dim=1)
    else:  # log R_a = log sum_j imp * neg - log mean_j imp, with log imp = beta * s / t
        log_imp = beta * (masked.detach() if detach_weights else masked)
        log_reweighted = (
            torch.logsumexp(masked + log_imp, dim=1) - torch.logsumexp(log_imp, dim=1) + math.log(n)
        )
    return debiased_nce(log_reweighted, pairs.positive, tau_plus, n, temperature, sample_weights)


def triplet_loss(
    z1: Tensor,
    z2: Tensor,
    tau_plus: float = 0.1,
    debias: bool = True,
    gather_distributed: bool = False,
) -> Tensor:
    """Self-supervised (debiased) triplet loss that trains WCL's biased encoder E_b (SPEC 3.1).

    With squared Euclidean distances ``d`` between normalised projections (no margin, no hinge):
    ``L_a = d+_a - (sum_j d_{a,j} - tau_plus * N * d+_a) / (1 - tau_plus)``; with
    ``debias=False``, ``L_a = mean_j (d+_a - d_{a,j})``. From Jang & Wang, CVPR 2023.

    Args:
        z1: (B, D) E_b's projections of the first view.
        z2: (B, D) E_b's projections of the second view.
        tau_plus: prior probability of a false negative, in [0, 1) (unused when not debiased).
        debias: use the debiased form above.
        gather_distributed: use the negatives of every rank (SPEC section 6).

    Returns:
        Scalar loss (it is negative once negatives are farther than positives).

    Example:
        >>> loss = triplet_loss(torch.randn(8, 128), torch.randn(8, 128), tau_plus=0.1)
    """
    tau_plus = check_tau_plus(tau_plus)
    check_views(z1, z2)
    pairs = masked_pairs(z1, z2, gather_distributed, fill=0.0)
    n = pairs.num_negatives
    # ||z_a - z_j||^2 = 2 - 2 s(a, j) for unit vectors; summed over the N negatives.
    d_pos = 2.0 - 2.0 * pairs.positive
    d_neg = 2.0 * n - 2.0 * pairs.masked.sum(dim=1)
    if debias:
        per_anchor = d_pos - (d_neg - tau_plus * n * d_pos) / (1.0 - tau_plus)
    else:
        per_anchor = d_pos - d_neg / n
    return per_anchor.mean()
