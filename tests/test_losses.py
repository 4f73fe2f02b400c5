"""Tests of debiascl.losses against naive per-anchor loops written directly from SPEC 2-4."""

from __future__ import annotations

import math
import runpy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fakes import all_losses, random_projections
from torch import Tensor

from debiascl.losses import (
    DebiasedContrastiveLoss,
    HardNegativeContrastiveLoss,
    InfoNCELoss,
    SelfSupervisedTripletLoss,
    WCLLoss,
    dcl_loss,
    hcl_loss,
    info_nce_loss,
    relative_difficulty,
    triplet_loss,
    wcl_loss,
    weighted,
)
from debiascl.losses import functional as LF

# ----------------------------------------------------------------------------------------------
# Naive references: one anchor at a time, one negative at a time, straight from SPEC.


def _unit_views(z1: Tensor, z2: Tensor) -> list[Tensor]:
    """The 2B normalised views, ordered view1 then view2."""
    return [z / z.norm() for z in torch.cat([z1, z2])]


def _partner(a: int, batch: int) -> int:
    return a + batch if a < batch else a - batch


def _negatives(a: int, batch: int) -> list[int]:
    return [j for j in range(2 * batch) if j not in (a, _partner(a, batch))]


def _anchor_mean(losses: list[Tensor], weights: Tensor | None) -> Tensor:
    """(1 / 2B) sum_a w_{a mod B} L_a: the mean over anchors, weighted by their sample's w."""
    batch = len(losses) // 2
    if weights is None:
        return sum(losses) / len(losses)
    return sum(weights[a % batch] * loss for a, loss in enumerate(losses)) / len(losses)


def _debiased_ng(neg_term: Tensor, pos: Tensor, tau_plus: float, n: int, t: float) -> Tensor:
    floor = torch.tensor(n * math.exp(-1.0 / t), dtype=neg_term.dtype)
    return torch.maximum((neg_term - tau_plus * n * pos) / (1 - tau_plus), floor)


def naive_info_nce(z1: Tensor, z2: Tensor, t: float, weights: Tensor | None = None) -> Tensor:
    zs, batch = _unit_views(z1, z2), z1.shape[0]
    losses = []
    for a in range(2 * batch):
        pos = torch.exp(zs[a] @ zs[_partner(a, batch)] / t)
        neg = sum(torch.exp(zs[a] @ zs[j] / t) for j in _negatives(a, batch))
        losses.append(-torch.log(pos / (pos + neg)))
    return _anchor_mean(losses, weights)


def naive_hcl(
    z1: Tensor,
    z2: Tensor,
    t: float,
    tau_plus: float,
    beta: float,
    detach: bool = False,
    weights: Tensor | None = None,
) -> Tensor:
    """HCL of SPEC 2; beta = 0 makes it DCL (every importance weight is 1)."""
    zs, batch = _unit_views(z1, z2), z1.shape[0]
    n = 2 * batch - 2
    losses = []
    for a in range(2 * batch):
        pos = torch.exp(zs[a] @ zs[_partner(a, batch)] / t)
        negs = [torch.exp(zs[a] @ zs[j] / t) for j in _negatives(a, batch)]
        imps = [(ng.detach() if detach else ng) ** beta for ng in negs]
        reweighted = sum(i * ng for i, ng in zip(imps, negs, strict=True)) / (sum(imps) / n)
        ng_a = _debiased_ng(reweighted, pos, tau_plus, n, t)
        losses.append(-torch.log(pos / (pos + ng_a)))
    return _anchor_mean(losses, weights)


def naive_dcl(
    z1: Tensor, z2: Tensor, t: float, tau_plus: float, weights: Tensor | None = None
) -> Tensor:
    zs, batch = _unit_views(z1, z2), z1.shape[0]
    n = 2 * batch - 2
    losses = []
    for a in range(2 * batch):
        pos = torch.exp(zs[a] @ zs[_partner(a, batch)] / t)
        neg = sum(torch.exp(zs[a] @ zs[j] / t) for j in _negatives(a, batch))
        ng_a = _debiased_ng(neg, pos, tau_plus, n, t)
        losses.append(-torch.log(pos / (pos + ng_a)))
    return _anchor_mean(losses, weights)


def naive_triplet(z1: Tensor, z2: Tensor, tau_plus: float, debias: bool) -> Tensor:
    zs, batch = _unit_views(z1, z2), z1.shape[0]
    n = 2 * batch - 2
    losses = []
    for a in range(2 * batch):
        d_pos = ((zs[a] - zs[_partner(a, batch)]) ** 2).sum()
        d_negs = [((zs[a] - zs[j]) ** 2).sum() for j in _negatives(a, batch)]
        if debias:
            losses.append(d_pos - (sum(d_negs) - tau_plus * n * d_pos) / (1 - tau_plus))
        else:
            losses.append(sum(d_pos - d for d in d_negs) / n)
    return torch.stack(losses).mean()


def naive_weights(
    zd1: Tensor,
    zd2: Tensor,
    zb1: Tensor,
    zb2: Tensor,
    t: float,
    eps: float = 1e-6,
    form: str = "paper",
) -> Tensor:
    """SPEC 3.2's direct formula, as a (2B, 2B) matrix with 0 off the negatives.

    SPEC's eps = 1e-6 guards the division; with eps = 0 it equals the stable sigmoid form exactly.
    ``form`` "mirror" swaps qn_d for qn_b in the numerator; "none" gives 1 at every negative.
    """
    zd, zb, batch = _unit_views(zd1, zd2), _unit_views(zb1, zb2), zd1.shape[0]
    w = torch.zeros(2 * batch, 2 * batch, dtype=zd1.dtype)
    with torch.no_grad():
        for a in range(2 * batch):
            negs = _negatives(a, batch)
            qd = {j: torch.exp(zd[a] @ zd[j] / t) for j in negs}
            qb = {j: torch.exp(zb[a] @ zb[j] / t) for j in negs}
            norm_d = torch.sqrt(sum(q**2 for q in qd.values()))
            norm_b = torch.sqrt(sum(q**2 for q in qb.values()))
            for j in negs:
                qn_d, qn_b = qd[j] / norm_d, qb[j] / norm_b
                numerator = {"paper": qn_d, "mirror": qn_b, "none": 0.0}[form]
                w[a, j] = 1 + numerator / (qn_b + qn_d + eps)
    return w


def naive_wcl(
    zd1: Tensor,
    zd2: Tensor,
    zb1: Tensor,
    zb2: Tensor,
    t: float,
    tau_plus: float,
    form: str = "paper",
    weights: Tensor | None = None,
) -> Tensor:
    w = naive_weights(zd1, zd2, zb1, zb2, t, eps=0.0, form=form)
    zs, batch = _unit_views(zd1, zd2), zd1.shape[0]
    n = 2 * batch - 2
    losses = []
    for a in range(2 * batch):
        pos = torch.exp(zs[a] @ zs[_partner(a, batch)] / t)
        neg = sum(w[a, j] * torch.exp(zs[a] @ zs[j] / t) for j in _negatives(a, batch))
        ng_a = _debiased_ng(neg, pos, tau_plus, n, t)
        losses.append(-torch.log(pos / (pos + ng_a)))
    return _anchor_mean(losses, weights)


# ----------------------------------------------------------------------------------------------
# Helpers


def _value_and_grads(fn: Callable[..., Tensor], inputs: list[Tensor]) -> tuple[Tensor, list]:
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    loss = fn(*inputs)
    grads = torch.autograd.grad(loss, inputs[:2])
    return loss.detach(), list(grads)


def _assert_same_loss(fn, ref, inputs: list[Tensor], rtol: float = 1e-9, atol: float = 1e-10):
    loss, grads = _value_and_grads(fn, inputs)
    ref_loss, ref_grads = _value_and_grads(ref, inputs)
    torch.testing.assert_close(loss, ref_loss, rtol=rtol, atol=atol)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=rtol, atol=atol)


CASES = [  # batch, dim, temperature, tau_plus, beta
    (2, 3, 0.5, 0.1, 1.0),
    (3, 5, 0.1, 0.0, 0.5),
    (4, 8, 1.0, 0.3, 2.0),
    (6, 4, 0.2, 0.1, 0.0),
    (5, 16, 2.0, 0.05, 1.0),
]


# ----------------------------------------------------------------------------------------------
# Values and gradients against the naive loops


@pytest.mark.parametrize(("batch", "dim", "t", "tau_plus", "beta"), CASES)
def test_info_nce_matches_naive_loop(batch, dim, t, tau_plus, beta):
    _assert_same_loss(
        lambda a, b: info_nce_loss(a, b, t),
        lambda a, b: naive_info_nce(a, b, t),
        random_projections(batch, dim),
    )


@pytest.mark.parametrize(("batch", "dim", "t", "tau_plus", "beta"), CASES)
def test_dcl_matches_naive_loop(batch, dim, t, tau_plus, beta):
    _assert_same_loss(
        lambda a, b: dcl_loss(a, b, t, tau_plus),
        lambda a, b: naive_dcl(a, b, t, tau_plus),
        random_projections(batch, dim),
    )


@pytest.mark.parametrize(("batch", "dim", "t", "tau_plus", "beta"), CASES)
def test_sample_weights_weight_each_anchor_like_the_naive_loops(batch, dim, t, tau_plus, beta):
    weights = torch.rand(batch, generator=torch.Generator().manual_seed(batch), dtype=torch.float64)
    weights = 2 * weights
    pairs = {
        "info_nce": (
            lambda a, b: info_nce_loss(a, b, t, sample_weights=weights),
            lambda a, b: naive_info_nce(a, b, t, weights),
        ),
        "dcl": (
            lambda a, b: dcl_loss(a, b, t, tau_plus, sample_weights=weights),
            lambda a, b: naive_dcl(a, b, t, tau_plus, weights),
        ),
        "hcl": (
            lambda a, b: hcl_loss(a, b, t, tau_plus, beta, sample_weights=weights),
            lambda a, b: naive_hcl(a, b, t, tau_plus, beta, weights=weights),
        ),
    }
    for fn, ref in pairs.values():
        _assert_same_loss(fn, ref, random_projections(batch, dim))
    _assert_same_loss(
        lambda a, b, c, d: wcl_loss(a, b, c, d, t, tau_plus, sample_weights=weights),
        lambda a, b, c, d: naive_wcl(a, b, c, d, t, tau_plus, weights=weights),
        random_projections(batch, dim, count=4),
    )
    with pytest.raises(ValueError, match="sample_weights: expected shape"):
        info_nce_loss(*random_projections(batch, dim), t, sample_weights=weights[:-1])


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize(("batch", "dim", "t", "tau_plus", "beta"), CASES)
def test_hcl_matches_naive_loop(batch, dim, t, tau_plus, beta, detach):
    _assert_same_loss(
        lambda a, b: hcl_loss(a, b, t, tau_plus, beta, detach_weights=detach),
        lambda a, b: naive_hcl(a, b, t, tau_plus, beta, detach),
        random_projections(batch, dim),
    )


def test_hcl_detach_weights_changes_only_the_gradient():
    z1, z2 = random_projections(4, 6)
    flowing, flowing_grads = _value_and_grads(lambda a, b: hcl_loss(a, b, beta=1.0), [z1, z2])
    detached, detached_grads = _value_and_grads(
        lambda a, b: hcl_loss(a, b, beta=1.0, detach_weights=True), [z1, z2]
    )
    torch.testing.assert_close(flowing, detached)
    assert not torch.allclose(flowing_grads[0], detached_grads[0])


@pytest.mark.parametrize("debias", [True, False])
@pytest.mark.parametrize(("batch", "dim", "t", "tau_plus", "beta"), CASES)
def test_triplet_matches_naive_loop(batch, dim, t, tau_plus, beta, debias):
    _assert_same_loss(
        lambda a, b: triplet_loss(a, b, tau_plus, debias),
        lambda a, b: naive_triplet(a, b, tau_plus, debias),
        random_projections(batch, dim),
    )


@pytest.mark.parametrize(("batch", "dim", "t", "tau_plus", "beta"), CASES)
def test_wcl_matches_naive_loop(batch, dim, t, tau_plus, beta):
    zd1, zd2, zb1, zb2 = random_projections(batch, dim, count=4)
    _assert_same_loss(
        lambda a, b: wcl_loss(a, b, zb1, zb2, t, tau_plus),
        lambda a, b: naive_wcl(a, b, zb1, zb2, t, tau_plus),
        [zd1, zd2],
    )


@pytest.mark.parametrize("form", ["mirror", "none"])
@pytest.mark.parametrize(("batch", "t", "tau_plus"), [(3, 0.5, 0.1), (6, 0.2, 0.05)])
def test_wcl_weight_forms_match_naive_loop(form, batch, t, tau_plus):
    zd1, zd2, zb1, zb2 = random_projections(batch, 5, count=4, seed=batch)
    _assert_same_loss(
        lambda a, b: wcl_loss(a, b, zb1, zb2, t, tau_plus, weight_form=form),
        lambda a, b: naive_wcl(a, b, zb1, zb2, t, tau_plus, form=form),
        [zd1, zd2],
    )
    w = relative_difficulty(zd1, zd2, zb1, zb2, t, weight_form=form)
    torch.testing.assert_close(w, naive_weights(zd1, zd2, zb1, zb2, t, eps=0.0, form=form))


def test_mirror_weights_reflect_the_paper_weights_and_none_is_dcl():
    zd1, zd2, zb1, zb2 = random_projections(5, 6, count=4, seed=7)
    paper = relative_difficulty(zd1, zd2, zb1, zb2, 0.3)
    mirror = relative_difficulty(zd1, zd2, zb1, zb2, 0.3, weight_form="mirror")
    negatives = paper != 0
    torch.testing.assert_close(mirror[negatives], 3.0 - paper[negatives])  # sigmoid(-x) = 1 - ...
    assert torch.equal(mirror == 0, ~negatives)
    torch.testing.assert_close(
        wcl_loss(zd1, zd2, zb1, zb2, 0.3, 0.1, weight_form="none"), dcl_loss(zd1, zd2, 0.3, 0.1)
    )
    with pytest.raises(ValueError, match="weight_form must be one of paper, mirror, none"):
        wcl_loss(zd1, zd2, zb1, zb2, weight_form="inverse")


def test_clamp_is_active_and_matches_naive_loop():
    # Identical positives and a large tau_plus push sum(neg) - tau_plus * N * pos below zero.
    z1 = random_projections(5, 4)[0]
    z2 = z1.detach().clone()
    n, t, tau_plus = 8, 0.2, 0.6
    expected = F.softplus(torch.tensor(math.log(n) - 2.0 / t, dtype=torch.float64))
    for fn in (dcl_loss, hcl_loss):
        torch.testing.assert_close(fn(z1, z2, t, tau_plus), expected)
    torch.testing.assert_close(wcl_loss(z1, z2, z1, z2, t, tau_plus), expected)
    _assert_same_loss(
        lambda a, b: dcl_loss(a, b, t, tau_plus),
        lambda a, b: naive_dcl(a, b, t, tau_plus),
        [z1, z2],
    )


def test_wcl_sends_no_gradient_to_the_biased_encoder():
    zd1, zd2, zb1, zb2 = random_projections(4, 6, count=4)
    wcl_loss(zd1, zd2, zb1, zb2).backward()
    assert zb1.grad is None and zb2.grad is None
    assert zd1.grad is not None and torch.count_nonzero(zd1.grad) > 0


# ----------------------------------------------------------------------------------------------
# Identities


@pytest.mark.parametrize(("batch", "dim", "t", "tau_plus", "beta"), CASES)
def test_dcl_with_zero_tau_plus_is_info_nce(batch, dim, t, tau_plus, beta):
    _assert_same_loss(
        lambda a, b: dcl_loss(a, b, t, 0.0),
        lambda a, b: info_nce_loss(a, b, t),
        random_projections(batch, dim),
    )


@pytest.mark.parametrize(("batch", "dim", "t", "tau_plus", "beta"), CASES)
def test_hcl_with_zero_beta_is_dcl(batch, dim, t, tau_plus, beta):
    _assert_same_loss(
        lambda a, b: hcl_loss(a, b, t, tau_plus, 0.0),
        lambda a, b: dcl_loss(a, b, t, tau_plus),
        random_projections(batch, dim),
    )


@pytest.mark.parametrize("t", [0.05, 0.5, 2.0])
def test_info_nce_is_cross_entropy_with_self_masked(t):
    z1, z2 = random_projections(6, 8)
    batch = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / t).masked_fill(torch.eye(2 * batch, dtype=torch.bool), -math.inf)
    targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)])
    torch.testing.assert_close(info_nce_loss(z1, z2, t), F.cross_entropy(logits, targets))


def test_wcl_with_unit_weights_is_dcl(monkeypatch):
    # w = 1 + sigmoid(logit); forcing the logit to -inf forces every weight to exactly 1.
    monkeypatch.setattr(
        weighted,
        "_difficulty_logit",
        lambda logits_d, logits_b, sims: torch.full_like(logits_d, -1e30),
    )
    zd1, zd2, zb1, zb2 = random_projections(5, 6, count=4)
    _assert_same_loss(
        lambda a, b: wcl_loss(a, b, zb1, zb2, 0.3, 0.1),
        lambda a, b: dcl_loss(a, b, 0.3, 0.1),
        [zd1, zd2],
    )


def test_wcl_with_identical_encoders_weights_every_negative_by_one_and_a_half():
    zd1, zd2 = random_projections(5, 6)
    w = relative_difficulty(zd1, zd2, zd1, zd2)
    mask = w != 0
    torch.testing.assert_close(w[mask], torch.full_like(w[mask], 1.5))
    _assert_same_loss(
        lambda a, b: wcl_loss(a, b, zd1, zd2, 0.5, 0.1),
        lambda a, b: naive_wcl(a, b, zd1, zd2, 0.5, 0.1),
        [zd1, zd2],
    )


# ----------------------------------------------------------------------------------------------
# Relative difficulty (SPEC 3.2)


@pytest.mark.parametrize(("batch", "t"), [(2, 0.5), (5, 0.2), (8, 1.0)])
def test_relative_difficulty_matches_direct_formula(batch, t):
    zd1, zd2, zb1, zb2 = random_projections(batch, 6, count=4, seed=batch)
    w = relative_difficulty(zd1, zd2, zb1, zb2, t)
    assert w.shape == (2 * batch, 2 * batch)
    assert not w.requires_grad
    # Equal to SPEC's formula up to its 1e-6 term, and exactly equal without it.
    torch.testing.assert_close(w, naive_weights(zd1, zd2, zb1, zb2, t), rtol=0, atol=1e-3)
    exact = naive_weights(zd1, zd2, zb1, zb2, t, eps=0.0)
    torch.testing.assert_close(w, exact, rtol=1e-10, atol=1e-12)
    idx = torch.arange(batch)
    partners = torch.cat([idx + batch, idx])
    assert torch.all(w.diagonal() == 0)
    assert torch.all(w[torch.arange(2 * batch), partners] == 0)
    neg_mask = w != 0
    assert neg_mask.sum() == 2 * batch * (2 * batch - 2)
    assert torch.all((w[neg_mask] > 1) & (w[neg_mask] < 2))


def test_relative_difficulty_prefers_negatives_hard_for_the_debiased_encoder():
    # Anchor 0's negative 1 is close under E_d but far under E_b: it must get the largest w.
    zd1 = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    zb1 = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.0, 1.0]])
    w = relative_difficulty(zd1, zd1 + 0.01, zb1, zb1 + 0.01, temperature=0.5)
    assert w[0, 1] > 1.5 > w[0, 2]


# ----------------------------------------------------------------------------------------------
# gradcheck in float64


LOSSES: dict[str, Callable[..., Tensor]] = {
    "info_nce": lambda a, b: info_nce_loss(a, b, 0.3),
    "dcl": lambda a, b: dcl_loss(a, b, 0.3, 0.1),
    "hcl": lambda a, b: hcl_loss(a, b, 0.3, 0.1, 1.0),
    "triplet": lambda a, b: triplet_loss(a, b, 0.1),
    "triplet_plain": lambda a, b: triplet_loss(a, b, 0.1, debias=False),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck(name):
    z1, z2 = random_projections(3, 4)
    assert torch.autograd.gradcheck(LOSSES[name], (z1, z2))


def test_gradcheck_wcl(monkeypatch):
    # The weights are detached by design, so freeze them at the starting point: the loss is
    # then an ordinary function of zd whose gradient gradcheck can verify.
    zd1, zd2, zb1, zb2 = random_projections(3, 4, count=4)
    frozen: list[Tensor] = []
    real_logit = weighted._difficulty_logit

    def frozen_logit(logits_d: Tensor, logits_b: Tensor, sims) -> Tensor:
        if not frozen:
            frozen.append(real_logit(logits_d, logits_b, sims))
        return frozen[0].clone()  # the caller works on it in place

    monkeypatch.setattr(weighted, "_difficulty_logit", frozen_logit)
    assert torch.autograd.gradcheck(lambda a, b: wcl_loss(a, b, zb1, zb2, 0.3, 0.1), (zd1, zd2))


# ----------------------------------------------------------------------------------------------
# Numerical stability (SPEC 4)


def _assert_finite_with_finite_grads(z1: Tensor, z2: Tensor, t: float) -> dict[str, Tensor]:
    losses = all_losses(z1, z2, t)
    for name, loss in losses.items():
        assert loss.dtype in (torch.float32, torch.float64), name
        assert torch.isfinite(loss), name
        g1, g2 = torch.autograd.grad(loss, (z1, z2))
        assert torch.isfinite(g1).all() and torch.isfinite(g2).all(), name
    return {name: loss.detach() for name, loss in losses.items()}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("t", [0.05, 2.0])
def test_low_precision_inputs_at_extreme_temperatures(dtype, t):
    z1, z2 = (z.detach().to(dtype).requires_grad_() for z in random_projections(16, 32))
    losses = _assert_finite_with_finite_grads(z1, z2, t)
    # Computed in float32: equal to the float64 value of the same (rounded) inputs.
    reference = all_losses(z1.detach().double(), z2.detach().double(), t)
    for name, loss in losses.items():
        assert loss.dtype == torch.float32, name
        torch.testing.assert_close(loss.double(), reference[name], rtol=1e-4, atol=1e-4)


def test_under_cpu_autocast_the_loss_is_float32():
    torch.manual_seed(0)
    head = torch.nn.Linear(32, 64)
    x1, x2 = torch.randn(16, 32), torch.randn(16, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = head(x1), head(x2)
        assert z1.dtype == torch.bfloat16
        losses = all_losses(z1, z2, 0.05)
    reference = all_losses(z1.detach().double(), z2.detach().double(), 0.05)
    for name, loss in losses.items():
        assert loss.dtype == torch.float32, name
        # A bf16 matmul would be off by ~1e-2 relative at t = 0.05.
        torch.testing.assert_close(loss.double(), reference[name], rtol=1e-5, atol=1e-4)
        loss.backward(retain_graph=True)
        assert all(torch.isfinite(p.grad).all() for p in head.parameters()), name


def test_identical_vectors():
    batch, t = 6, 0.05
    base = torch.randn(1, 8, dtype=torch.float64).expand(batch, 8)
    z1, z2 = base.clone().requires_grad_(), base.clone().requires_grad_()
    losses = _assert_finite_with_finite_grads(z1, z2, t)
    n, tau_plus = 2 * batch - 2, 0.1
    # pos = neg for every pair: Ng = N pos for InfoNCE/DCL/HCL, WCL weights are all 1.5.
    log_one_plus_n = torch.tensor(math.log(1 + n), dtype=torch.float64)
    for name in ("info_nce", "dcl", "hcl"):
        torch.testing.assert_close(losses[name], log_one_plus_n)
    wcl_expected = math.log(1 + (1.5 - tau_plus) * n / (1 - tau_plus))
    torch.testing.assert_close(losses["wcl"], torch.tensor(wcl_expected, dtype=torch.float64))
    torch.testing.assert_close(losses["triplet"], torch.tensor(0.0, dtype=torch.float64))


@pytest.mark.parametrize("t", [0.05, 0.5])
def test_antipodal_views(t):
    z1 = torch.randn(8, 16)
    z1, z2 = z1.clone().requires_grad_(), (-z1).requires_grad_()
    losses = _assert_finite_with_finite_grads(z1, z2, t)
    reference = all_losses(z1.detach().double(), z2.detach().double(), t)
    for name, loss in losses.items():
        torch.testing.assert_close(loss.double(), reference[name], rtol=1e-5, atol=1e-4)


def test_smallest_batch():
    z1, z2 = random_projections(2, 3)
    _assert_finite_with_finite_grads(z1, z2, 0.05)


@pytest.mark.slow
def test_large_batch_stays_finite():
    z1, z2, zb1, zb2 = (torch.randn(4096, 8) for _ in range(4))
    z1.requires_grad_()
    loss = wcl_loss(z1, z2, zb1, zb2, temperature=0.05, tau_plus=0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all()


def test_a_nan_in_any_projection_gives_a_nan_loss():
    z1, z2, zb1, zb2 = (z.detach() for z in random_projections(6, 8, count=4))
    bad = z1.clone()
    bad[2, 3] = math.nan
    for name, loss in all_losses(bad, z2, 0.5).items():
        assert torch.isnan(loss), name
    bad_b = zb1.clone()
    bad_b[0, 0] = math.nan  # only E_b's projections: the weights are NaN, so is the loss
    assert torch.isnan(wcl_loss(z1, z2, bad_b, zb2, 0.5, 0.1))
    assert torch.isfinite(wcl_loss(z1, z2, zb1, zb2, 0.5, 0.1))


def test_projections_whose_norm_overflows_float32_keep_their_direction():
    z1, z2 = (z.detach().float() for z in random_projections(6, 8))
    huge1, huge2 = z1 * 3e19, z2 * 3e19  # finite, but their squared norms overflow float32
    assert torch.isinf(huge1.pow(2).sum(dim=1)).all()
    want, got = all_losses(z1, z2, 0.5), all_losses(huge1, huge2, 0.5)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_complex_projections_are_a_value_error(name):
    z1, z2 = (torch.randn(4, 3, dtype=torch.complex64) for _ in range(2))
    with pytest.raises(ValueError, match=r"z1 must be a real tensor, got dtype torch\.complex64"):
        LOSSES[name](z1, z2)
    with pytest.raises(ValueError, match="zb1 must be a real tensor"):
        wcl_loss(z1.real, z2.real, z1, z2)


# ----------------------------------------------------------------------------------------------
# Argument validation


def _z(batch: int = 4, dim: int = 3) -> Tensor:
    return torch.randn(batch, dim)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: info_nce_loss(_z(), _z(), temperature=0.0), "temperature"),
        (lambda: dcl_loss(_z(), _z(), temperature=-1.0), "temperature"),
        (lambda: wcl_loss(_z(), _z(), _z(), _z(), temperature=float("nan")), "temperature"),
        (lambda: dcl_loss(_z(), _z(), tau_plus=1.0), r"tau_plus.*\[0, 1\)"),
        (lambda: hcl_loss(_z(), _z(), tau_plus=-0.1), r"tau_plus.*\[0, 1\)"),
        (lambda: triplet_loss(_z(), _z(), tau_plus=1.5), r"tau_plus.*\[0, 1\)"),
        (lambda: wcl_loss(_z(), _z(), _z(), _z(), tau_plus=1.0), r"tau_plus.*\[0, 1\)"),
        (lambda: hcl_loss(_z(), _z(), beta=-0.5), r"beta.*>= 0"),
        (lambda: info_nce_loss(_z(4), _z(5)), "same shape"),
        (lambda: dcl_loss(_z(4, 3), _z(4, 2)), "same shape"),
        (lambda: wcl_loss(_z(4), _z(4), _z(5), _z(5)), "zb1.*batch size"),
        (lambda: relative_difficulty(_z(), _z(), _z(), _z(5)), "zb1 and zb2"),
        (lambda: info_nce_loss(_z(1), _z(1)), "B must be >= 2"),
        (lambda: triplet_loss(_z(1), _z(1)), "B must be >= 2"),
        (lambda: info_nce_loss(torch.randn(4), torch.randn(4)), "z1 must be 2-D"),
        (lambda: hcl_loss(torch.randn(2, 4, 3), torch.randn(2, 4, 3)), "z1 must be 2-D"),
        (lambda: InfoNCELoss(temperature=0), "temperature"),
        (lambda: DebiasedContrastiveLoss(tau_plus=1), "tau_plus"),
        (lambda: HardNegativeContrastiveLoss(beta=-1), "beta"),
        (lambda: SelfSupervisedTripletLoss(tau_plus=-1), "tau_plus"),
        (lambda: WCLLoss(temperature=-0.5), "temperature"),
    ],
)
def test_invalid_arguments_raise_value_error(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


@pytest.mark.parametrize(
    "make",
    [
        np.float32,
        np.float64,
        np.int64,
        torch.tensor,
        lambda v: torch.tensor(v, dtype=torch.float16),
    ],
    ids=["np.float32", "np.float64", "np.int64", "0-d tensor", "0-d half tensor"],
)
def test_real_number_types_are_accepted_and_give_the_same_loss(make):
    z1, z2 = _z(6, 3), _z(6, 3)
    want = hcl_loss(z1, z2, temperature=2.0, tau_plus=0.0, beta=1.0)
    got = hcl_loss(z1, z2, temperature=make(2), tau_plus=make(0), beta=make(1))
    assert isinstance(got, Tensor) and torch.allclose(got, want)
    assert LF.check_temperature(make(2)) == 2.0 and isinstance(LF.check_temperature(make(2)), float)
    assert torch.allclose(
        WCLLoss(temperature=make(2))(z1, z2, z1, z2), wcl_loss(z1, z2, z1, z2, 2.0)
    )


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (LF.check_temperature, np.float32("inf"), "temperature must be a finite number > 0"),
        (LF.check_temperature, np.float64(-0.5), r"temperature must be > 0 \(allowed range"),
        (LF.check_temperature, torch.tensor(float("nan")), "temperature must be a finite number"),
        (LF.check_temperature, torch.tensor([0.5]), "temperature must be a finite number"),
        (LF.check_temperature, torch.tensor(0.5, requires_grad=True), "temperature must be"),
        (LF.check_temperature, True, "temperature must be a finite number"),
        (LF.check_temperature, "0.5", "temperature must be a finite number"),
        (LF.check_tau_plus, np.float32(1.0), r"tau_plus must lie in \[0, 1\)"),
        (LF.check_tau_plus, torch.tensor(-0.1), r"tau_plus must lie in \[0, 1\)"),
        (LF.check_tau_plus, np.bool_(False), r"tau_plus must lie in \[0, 1\)"),
        (LF.check_beta, np.float64("inf"), r"beta must be a finite number >= 0"),
        (LF.check_beta, torch.tensor(-1.0), r"beta must be a finite number >= 0"),
        (LF.check_beta, False, r"beta must be a finite number >= 0"),
    ],
)
def test_non_numbers_bools_and_out_of_range_values_are_rejected(check, value, message):
    with pytest.raises(ValueError, match=message):
        check(value)


# ----------------------------------------------------------------------------------------------
# Module wrappers


def test_modules_equal_functions():
    zd1, zd2, zb1, zb2 = (z.detach() for z in random_projections(5, 7, count=4))
    pairs = [
        (InfoNCELoss(0.3)(zd1, zd2), info_nce_loss(zd1, zd2, 0.3)),
        (DebiasedContrastiveLoss(0.3, 0.2)(zd1, zd2), dcl_loss(zd1, zd2, 0.3, 0.2)),
        (
            HardNegativeContrastiveLoss(0.3, 0.2, 1.5, detach_weights=True)(zd1, zd2),
            hcl_loss(zd1, zd2, 0.3, 0.2, 1.5, detach_weights=True),
        ),
        (
            SelfSupervisedTripletLoss(0.2, debias=False)(zd1, zd2),
            triplet_loss(zd1, zd2, 0.2, False),
        ),
        (WCLLoss(0.3, 0.2)(zd1, zd2, zb1, zb2), wcl_loss(zd1, zd2, zb1, zb2, 0.3, 0.2)),
    ]
    for module_value, function_value in pairs:
        torch.testing.assert_close(module_value, function_value, rtol=0, atol=0)
    assert "tau_plus=0.2" in repr(WCLLoss(0.3, 0.2))


# ----------------------------------------------------------------------------------------------
# The benchmark script still runs (benchmarks/losses.py)


def test_benchmark_script_runs(capsys):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "losses.py"
    benchmark = runpy.run_path(str(script), run_name="benchmark")
    benchmark["main"](["--batch-sizes", "8", "--dim", "4", "--repeats", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "info_nce_loss",
        "dcl_loss",
        "hcl_loss",
        "triplet_loss",
        "wcl_loss",
    ]
    info_nce = rows[1].split("|")
    assert float(info_nce[4]) == float(info_nce[6]) == 1.0  # its own time and memory ratios
