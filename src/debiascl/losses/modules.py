"""nn.Module wrappers that hold each loss's hyper-parameters (see :mod:`.functional`).

Each module checks its hyper-parameters once, when it is built, and its ``forward`` calls the
matching function of :mod:`debiascl.losses.functional`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from debiascl.losses import functional as LF

_CHECKS: dict[str, Callable[[Any], object]] = {
    "temperature": LF.check_temperature,
    "tau_plus": LF.check_tau_plus,
    "beta": LF.check_beta,
    "weight_form": LF.check_weight_form,
}
"""The check (raising ValueError) of each checked hyper-parameter."""


class _LossModule(nn.Module):
    """Base of the loss modules: checks, keeps and shows the hyper-parameters.

    Each keyword argument is checked (when ``_CHECKS`` names it), stored as the attribute of the
    same name, and listed in ``repr`` in the given order.
    """

    def __init__(self, **hyper_parameters: float | bool | str) -> None:
        super().__init__()
        for name, value in hyper_parameters.items():
            if name in _CHECKS:
                _CHECKS[name](value)
            setattr(self, name, value)
        self._hyper_parameters = tuple(hyper_parameters)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in self._hyper_parameters)


class InfoNCELoss(_LossModule):
    """SimCLR's InfoNCE / NT-Xent loss (SPEC section 2; Chen et al., ICML 2020).

    Args:
        temperature: t > 0.
        gather_distributed: with an initialised process group, contrast every anchor with the
            views of all ranks (SPEC section 6).

    Shape:
        z1, z2: (B, D) projections of the two views, row i of each is the same sample.
        sample_weights (optional): (B,) per-sample weights of the anchors' losses.
        Output: scalar.

    Example:
        >>> loss_fn = InfoNCELoss(temperature=0.5)
        >>> loss = loss_fn(torch.randn(8, 128), torch.randn(8, 128))
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = False) -> None:
        super().__init__(temperature=temperature, gather_distributed=gather_distributed)

    def forward(self, z1: Tensor, z2: Tensor, sample_weights: Tensor | None = None) -> Tensor:
        return LF.info_nce_loss(
            z1,
            z2,
            self.temperature,
            gather_distributed=self.gather_distributed,
            sample_weights=sample_weights,
        )


class DebiasedContrastiveLoss(_LossModule):
    """Debiased contrastive loss, DCL (SPEC section 2; Chuang et al., NeurIPS 2020).

    DCL here is the *Debiased* Contrastive Learning of Chuang et al., not the *Decoupled*
    Contrastive Learning (Yeh et al., ECCV 2022) that lightly calls DCL.

    Args:
        temperature: t > 0.
        tau_plus: prior probability of a false negative, in [0, 1).
        gather_distributed: contrast with the views of all ranks (SPEC section 6).

    Shape:
        z1, z2: (B, D) projections of the two views; sample_weights (optional): (B,).
        Output: scalar.

    Example:
        >>> loss_fn = DebiasedContrastiveLoss(temperature=0.5, tau_plus=0.1)
        >>> loss = loss_fn(torch.randn(8, 128), torch.randn(8, 128))
    """

    def __init__(
        self, temperature: float = 0.5, tau_plus: float = 0.1, gather_distributed: bool = False
    ) -> None:
        super().__init__(
            temperature=temperature, tau_plus=tau_plus, gather_distributed=gather_distributed
        )

    def forward(self, z1: Tensor, z2: Tensor, sample_weights: Tensor | None = None) -> Tensor:
        return LF.dcl_loss(
            z1,
            z2,
            self.temperature,
            self.tau_plus,
            gather_distributed=self.gather_distributed,
            sample_weights=sample_weights,
        )


class HardNegativeContrastiveLoss(_LossModule):
    """Hard-negative contrastive loss, HCL (SPEC section 2; Robinson et al., ICLR 2021).

    Args:
        temperature: t > 0.
        tau_plus: prior probability of a false negative, in [0, 1).
        beta: concentration of the importance weights, >= 0 (0 gives DCL).
        gather_distributed: contrast with the views of all ranks (SPEC section 6).
        detach_weights: stop the gradient through the importance weights (default False, as
            the authors' code).

    Shape:
        z1, z2: (B, D) projections of the two views; sample_weights (optional): (B,).
        Output: scalar.

    Example:
        >>> loss_fn = HardNegativeContrastiveLoss(temperature=0.5, tau_plus=0.1, beta=1.0)
        >>> loss = loss_fn(torch.randn(8, 128), torch.randn(8, 128))
    """

    def __init__(
        self,
        temperature: float = 0.5,
        tau_plus: float = 0.1,
        beta: float = 1.0,
        gather_distributed: bool = False,
        detach_weights: bool = False,
    ) -> None:
        super().__init__(
            temperature=temperature,
            tau_plus=tau_plus,
            beta=beta,
            gather_distributed=gather_distributed,
            detach_weights=detach_weights,
        )

    def forward(self, z1: Tensor, z2: Tensor, sample_weights: Tensor | None = None) -> Tensor:
        return LF.hcl_loss(
            z1,
            z2,
            self.temperature,
            self.tau_plus,
            self.beta,
            gather_distributed=self.gather_distributed,
            detach_weights=self.detach_weights,
            sample_weights=sample_weights,
        )


class SelfSupervisedTripletLoss(_LossModule):
    """Self-supervised (debiased) triplet loss of WCL's biased encoder (SPEC 3.1).

    From Jang & Wang, "Difficulty-Based Sampling for Debiased Contrastive Representation
    Learning", CVPR 2023: squared Euclidean distances between normalised projections, no margin.

    Args:
        tau_plus: prior probability of a false negative, in [0, 1).
        debias: use the debiased form; False gives the mean over negatives of (d+ - d_j).
        gather_distributed: use the views of all ranks as negatives (SPEC section 6).

    Shape:
        z1, z2: (B, D) E_b's projections of the two views. Output: scalar.

    Example:
        >>> loss_fn = SelfSupervisedTripletLoss(tau_plus=0.1)
        >>> loss = loss_fn(torch.randn(8, 128), torch.randn(8, 128))
    """

    def __init__(
        self, tau_plus: float = 0.1, debias: bool = True, gather_distributed: bool = False
    ) -> None:
        super().__init__(tau_plus=tau_plus, debias=debias, gather_distributed=gather_distributed)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return LF.triplet_loss(
            z1, z2, self.tau_plus, debias=self.debias, gather_distributed=self.gather_distributed
        )


class WCLLoss(_LossModule):
    """WCL's weighted, debiased contrastive loss for the debiased encoder E_d (SPEC 3.2-3.3).

    From Jang & Wang, "Difficulty-Based Sampling for Debiased Contrastive Representation
    Learning", CVPR 2023. The relative-difficulty weights come from both encoders' projections
    and are detached, so only E_d receives a gradient.

    Args:
        temperature: t > 0, used by the loss and by the weights.
        tau_plus: prior probability of a false negative, in [0, 1).
        gather_distributed: use the views of all ranks as negatives (SPEC section 6).
        weight_form: "paper" (the published w, default), "mirror" (w = 1 + qn_b / (qn_b +
            qn_d): up-weights the negatives E_b finds similar) or "none" (w = 1: DCL's loss);
            see :data:`debiascl.losses.functional.WEIGHT_FORMS`.

    Shape:
        zd1, zd2: (B, D) E_d's projections of the two views.
        zb1, zb2: (B, D') E_b's projections of the same views.
        sample_weights (optional): (B,) per-sample weights of the anchors' losses.
        Output: scalar.

    Example:
        >>> loss_fn = WCLLoss(temperature=0.5, tau_plus=0.1)
        >>> zd1, zd2, zb1, zb2 = torch.randn(4, 8, 128).unbind(0)
        >>> loss = loss_fn(zd1, zd2, zb1, zb2)
    """

    def __init__(
        self,
        temperature: float = 0.5,
        tau_plus: float = 0.1,
        gather_distributed: bool = False,
        weight_form: str = "paper",
    ) -> None:
        super().__init__(
            temperature=temperature,
            tau_plus=tau_plus,
            gather_distributed=gather_distributed,
            weight_form=weight_form,
        )

    def forward(
        self,
        zd1: Tensor,
        zd2: Tensor,
        zb1: Tensor,
        zb2: Tensor,
        sample_weights: Tensor | None = None,
    ) -> Tensor:
        return LF.wcl_loss(
            zd1,
            zd2,
            zb1,
            zb2,
            self.temperature,
            self.tau_plus,
            gather_distributed=self.gather_distributed,
            weight_form=self.weight_form,
            sample_weights=sample_weights,
        )
