"""WCL's losses (Jang & Wang, CVPR 2023): relative difficulty weights and the weighted loss.

The weight of negative j for anchor a compares how hard the debiased encoder E_d and the biased
encoder E_b find it (SPEC 3.2); :func:`wcl_loss` is DCL's debiased loss with the negatives
reweighted by it (SPEC 3.3). Both build on the masked core of :mod:`debiascl.losses.core`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from debiascl.losses.checks import (
    check_tau_plus,
    check_temperature,
    check_views,
    check_weight_form,
)
from debiascl.losses.core import Pairs, debiased_nce, masked_pairs


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
) -> tuple[Pairs, Tensor]:
    """Check the four projections; return E_d's core (with grad) and the detached w logit."""
    check_views(zd1, zd2, ("zd1", "zd2"))
    check_views(zb1, zb2, ("zb1", "zb2"))
    if zb1.shape[0] != zd1.shape[0]:
        raise ValueError(
            f"zb1 must have the same batch size B as zd1, got {zb1.shape[0]} and {zd1.shape[0]}"
        )
    pairs_d = masked_pairs(zd1, zd2, gather_distributed, 1.0 / temperature)
    with torch.no_grad():
        masked_b = masked_pairs(
            zb1.detach(), zb2.detach(), gather_distributed, 1.0 / temperature
        ).masked
    logit = _difficulty_logit(pairs_d.masked.detach(), masked_b, pairs_d.excluded)
    return pairs_d, logit


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

    Many parameters because: the public functional loss takes both encoders' two views and the
    settings of its module (:class:`~debiascl.losses.modules.WCLLoss`), like the other losses.

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
    return debiased_nce(
        torch.logsumexp(pairs.masked + log_w, dim=1),
        pairs.positive,
        tau_plus,
        pairs.num_negatives,
        temperature,
        sample_weights,
    )
