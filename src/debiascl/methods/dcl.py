"""DCL: Chuang et al.'s debiased contrastive loss on E_d (SPEC 2)."""

from __future__ import annotations

from torch import nn

from debiascl.losses import DebiasedContrastiveLoss
from debiascl.methods.base import DebiasedOptions, SingleEncoderContrastive, register_method


@register_method
class DCL(SingleEncoderContrastive):
    """Debiased contrastive loss on E_d (SPEC 2; Chuang et al. 2020).

    DCL here is Chuang et al.'s *Debiased* Contrastive Learning, not the *Decoupled*
    Contrastive Learning (Yeh et al. 2022) that lightly calls DCL; ``debiased_contrastive`` is
    accepted as another name of the method.
    """

    name = "dcl"
    aliases = ("debiased_contrastive",)
    reads_sample_weights = True
    Options = DebiasedOptions

    def build_criterion(self) -> nn.Module:
        return DebiasedContrastiveLoss(
            self.options.temperature,
            self.options.tau_plus,
            gather_distributed=self.gather_distributed,
        )
