"""The five losses of debiascl as pure functions on projections (SPEC sections 1-4 and 6).

Every loss takes the projections ``z1, z2`` of shape (B, D) of two views (row i of each is the
same sample), L2-normalises them, and returns the mean over the 2B anchors of SPEC's per-anchor
loss. Anchors and columns are ordered as ``cat([view1, view2])``.

All losses share one masked core (:class:`_Pairs`): the cosine similarities of the local
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
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from debiascl.distributed import gather_with_grad, get_rank, is_distributed

# ----------------------------------------------------------------------------------------------
# Argument checks (also used by the nn.Module wrappers)


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


def _check_views(z1: Tensor, z2: Tensor, names: tuple[str, str] = ("z1", "z2")) -> None:
    """Raise ValueError unless ``z1`` and ``z2`` are real 2-D tensors of one shape (B, D >= 1).

    B >= 2 is checked on the (possibly gathered) global batch by :func:`_pairs`.
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


# ----------------------------------------------------------------------------------------------
# The shared masked core


@dataclass(frozen=True)
class _Pairs:
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


def _pairs(
    z1: Tensor,
    z2: Tensor,
    gather_distributed: bool,
    scale: float = 1.0,
    fill: float = -math.inf,
) -> _Pairs:
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
    return _Pairs(masked=masked, positive=torch.cat([positive, positive]), excluded=excluded)


def _anchor_mean(per_anchor: Tensor, sample_weights: Tensor | None) -> Tensor:
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


def _debiased_nce(
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
        sample_weights: optional (b,) per-sample weights (:func:`_anchor_mean`).

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
    return _anchor_mean(F.softplus(log_ng - log_pos), sample_weights)


def _difficulty_logit(masked_d: Tensor, masked_b: Tensor, excluded: Tensor) -> Tensor:
    """SPEC 3.2's stable form: l_d(a, j) - l_b(a, j), so that w = 1 + sigmoid(result).

    ``l_e(a, j) = s_e(a, j)/t - 0.5 * logsumexp_k(2 s_e(a, k)/t)`` over a's negatives k.
    Computed without gradient.

    Args:
        masked_d, masked_b: (2b, 2B) s_d / t and s_b / t at the negatives, -inf elsewhere.
        excluded: (2b, 2) the columns of each anchor and of its positive.

    Returns:
        (2b, 2B) a new tensor, the logit of w - 1 at the negatives and 0 elsewhere.
    """
    with torch.no_grad():
        half_norm_d = 0.5 * torch.logsumexp(2.0 * masked_d, dim=1)
        half_norm_b = 0.5 * torch.logsumexp(2.0 * masked_b, dim=1)
        logit = masked_d - masked_b  # NaN (-inf - -inf) at the excluded columns, reset below
        logit.sub_((half_norm_d - half_norm_b)[:, None])
        return logit.scatter_(1, excluded, 0.0)


WEIGHT_FORMS = ("paper", "mirror", "none")
"""WCL's weight forms: the published w, its mirror image, and w = 1 (DCL); see wcl_loss."""


def check_weight_form(weight_form: str) -> str:
    """``weight_form`` itself; ValueError unless it is one of :data:`WEIGHT_FORMS`."""
    if weight_form not in WEIGHT_FORMS:
        raise ValueError(
            f"weight_form must be one of {', '.join(WEIGHT_FORMS)}, got {weight_form!r}"
        )
    return weight_form


def _weights_from_logit(logit: Tensor, weight_form: str) -> Tensor:
    """w of each negative from the logit l_d - l_b (in place on logit; no gradient).

    paper: ``1 + sigmoid(l_d - l_b)`` = 1 + qn_d / (qn_b + qn_d) (SPEC 3.2); mirror:
    ``1 + sigmoid(l_b - l_d)`` = 1 + qn_b / (qn_b + qn_d), up-weighting the negatives E_b finds
    similar; none: 1 (the loss is then DCL's).
    """
    if weight_form == "none":
        return logit.fill_(1.0)
    if weight_form == "mirror":
        logit.neg_()
    return logit.sigmoid_().add_(1.0)


def _difficulty_pairs(
    zd1: Tensor,
    zd2: Tensor,
    zb1: Tensor,
    zb2: Tensor,
    temperature: float,
    gather_distributed: bool,
) -> tuple[_Pairs, Tensor]:
    """Check the four projections; return E_d's core (with grad) and the detached w logit."""
    _check_views(zd1, zd2, ("zd1", "zd2"))
    _check_views(zb1, zb2, ("zb1", "zb2"))
    if zb1.shape[0] != zd1.shape[0]:
        raise ValueError(
            f"zb1 must have the same batch size B as zd1, got {zb1.shape[0]} and {zd1.shape[0]}"
        )
    pairs_d = _pairs(zd1, zd2, gather_distributed, 1.0 / temperature)
    with torch.no_grad():
        masked_b = _pairs(zb1.detach(), zb2.detach(), gather_distributed, 1.0 / temperature).masked
    logit = _difficulty_logit(pairs_d.masked.detach(), masked_b, pairs_d.excluded)
    return pairs_d, logit


# ----------------------------------------------------------------------------------------------
# Public losses


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
    _check_views(z1, z2)
    pairs = _pairs(z1, z2, gather_distributed, 1.0 / temperature)
    per_anchor = F.softplus(torch.logsumexp(pairs.masked, dim=1) - pairs.positive)
    return _anchor_mean(per_anchor, sample_weights)


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
    _check_views(z1, z2)
    pairs = _pairs(z1, z2, gather_distributed, 1.0 / temperature)
    return _debiased_nce(
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
    _check_views(z1, z2)
    pairs = _pairs(z1, z2, gather_distributed, 1.0 / temperature)
    masked, n = pairs.masked, pairs.num_negatives
    if beta == 0:  # every importance weight is 1, so R_a = sum_j neg (and 0 * -inf is NaN)
        log_reweighted = torch.logsumexp(masked, dim=1)
    else:  # log R_a = log sum_j imp * neg - log mean_j imp, with log imp = beta * s / t
        log_imp = beta * (masked.detach() if detach_weights else masked)
        log_reweighted = (
            torch.logsumexp(masked + log_imp, dim=1) - torch.logsumexp(log_imp, dim=1) + math.log(n)
        )
    return _debiased_nce(log_reweighted, pairs.positive, tau_plus, n, temperature, sample_weights)


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
    _check_views(z1, z2)
    pairs = _pairs(z1, z2, gather_distributed, fill=0.0)
    n = pairs.num_negatives
    # ||z_a - z_j||^2 = 2 - 2 s(a, j) for unit vectors; summed over the N negatives.
    d_pos = 2.0 - 2.0 * pairs.positive
    d_neg = 2.0 * n - 2.0 * pairs.masked.sum(dim=1)
    if debias:
        per_anchor = d_pos - (d_neg - tau_plus * n * d_pos) / (1.0 - tau_plus)
    else:
        per_anchor = d_pos - d_neg / n
    return per_anchor.mean()


def relative_difficulty(
    zd1: Tensor,
    zd2: Tensor,
    zb1: Tensor,
    zb2: Tensor,
    temperature: float = 0.5,
    gather_distributed: bool = False,
    weight_form: str = "paper",
) -> Tensor:
    """WCL's relative difficulty weights w(a, j) (SPEC 3.2; Jang & Wang, CVPR 2023).

    ``w(a, j) = 1 + sigmoid(l_d(a, j) - l_b(a, j))`` with
    ``l_e(a, j) = s_e(a, j)/t - 0.5 * logsumexp_k(2 s_e(a, k)/t)`` over a's negatives k: the
    stable form of ``1 + qn_d / (qn_b + qn_d)``, where qn_e is exp(s_e/t) L2-normalised over the
    anchor's negatives. Computed without gradient.

    Args:
        zd1, zd2: (B, D) the debiased encoder E_d's projections of the two views.
        zb1, zb2: (B, D') the biased encoder E_b's projections of the same views.
        temperature: t > 0, the loss temperature.
        gather_distributed: normalise over the global negatives (SPEC section 6).
        weight_form: "paper" (the published w, default), "mirror" (``1 + qn_b / (qn_b +
            qn_d)``) or "none" (w = 1); see :data:`WEIGHT_FORMS`.

    Returns:
        (2B, 2B) tensor, detached: w(a, j) in (1, 2) at every negative j of anchor a, 0 at a itself
        and at its positive; rows and columns ordered as ``cat([view1, view2])``. When gathered
        across ranks it is (2b, 2B_global): this rank's local anchors against the global views.

    Example:
        >>> zd1, zd2, zb1, zb2 = torch.randn(4, 8, 16).unbind(0)
        >>> w = relative_difficulty(zd1, zd2, zb1, zb2)  # (16, 16)
    """
    temperature = check_temperature(temperature)
    weight_form = check_weight_form(weight_form)
    pairs, logit = _difficulty_pairs(zd1, zd2, zb1, zb2, temperature, gather_distributed)
    with torch.no_grad():
        return _weights_from_logit(logit, weight_form).scatter_(1, pairs.excluded, 0.0)


def wcl_loss(
    zd1: Tensor,
    zd2: Tensor,
    zb1: Tensor,
    zb2: Tensor,
    temperature: float = 0.5,
    tau_plus: float = 0.1,
    gather_distributed: bool = False,
    weight_form: str = "paper",
    sample_weights: Tensor | None = None,
) -> Tensor:
    """WCL's weighted, debiased contrastive loss for the debiased encoder E_d (SPEC 3.3).

    ``Ng_a = max((sum_j w(a,j) * neg_{a,j} - tau_plus * N * pos_a) / (1 - tau_plus),
    N * exp(-1/t))`` and ``L_a = -log(pos_a / (pos_a + Ng_a))``, with neg and pos from E_d and
    the detached weights w of :func:`relative_difficulty`. No gradient reaches E_b. From
    Jang & Wang, "Difficulty-Based Sampling for Debiased Contrastive Representation Learning",
    CVPR 2023.

    Args:
        zd1, zd2: (B, D) E_d's projections of the two views.
        zb1, zb2: (B, D') E_b's projections of the same views.
        temperature: t > 0.
        tau_plus: prior probability of a false negative, in [0, 1).
        gather_distributed: use the negatives of every rank (SPEC section 6).
        weight_form: "paper" (the published w, default); "mirror" (w = 1 + qn_b / (qn_b +
            qn_d): up-weights the negatives E_b finds similar) or "none" (w = 1, i.e. DCL), the
            ablations of :data:`WEIGHT_FORMS`.
        sample_weights: optional (B,) weights of the samples: the loss becomes mean_a w_a L_a
            over the 2B anchors (both views of sample i weigh w_i; not renormalised). Used for
            group-balanced training (``train.group_weighting``).

    Returns:
        Scalar loss.

    Example:
        >>> zd1, zd2, zb1, zb2 = torch.randn(4, 8, 128).unbind(0)
        >>> loss = wcl_loss(zd1, zd2, zb1, zb2, temperature=0.5, tau_plus=0.1)
    """
    temperature = check_temperature(temperature)
    tau_plus = check_tau_plus(tau_plus)
    weight_form = check_weight_form(weight_form)
    pairs, logit = _difficulty_pairs(zd1, zd2, zb1, zb2, temperature, gather_distributed)
    with torch.no_grad():  # log w; the masked logits are -inf off the negatives
        log_w = _weights_from_logit(logit, weight_form).log_()
    return _debiased_nce(
        torch.logsumexp(pairs.masked + log_w, dim=1),
        pairs.positive,
        tau_plus,
        pairs.num_negatives,
        temperature,
        sample_weights,
    )
