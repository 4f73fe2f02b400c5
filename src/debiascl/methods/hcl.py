"""HCL: the hard-negative contrastive loss on E_d (SPEC 2; Robinson et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from debiascl.config import check_setting
from debiascl.losses import HardNegativeContrastiveLoss
from debiascl.methods.base import DebiasedOptions, SingleEncoderContrastive, register_method


@register_method
class HCL(SingleEncoderContrastive):
    """Hard-negative contrastive loss on E_d (SPEC 2; Robinson et al. 2021)."""

    name = "hcl"
    reads_sample_weights = True

    @dataclass
    class Options(DebiasedOptions):
        """HCL's settings: ``beta`` (concentration, >= 0) and ``detach_weights`` (stop the
        gradient through the importance weights; off by default, as in the authors' code)."""

        beta: float = 1.0
        detach_weights: bool = False

        def check(self) -> None:
            super().check()
            check_setting(self.beta >= 0, "method.beta", ">= 0", self.beta)

    def build_criterion(self) -> nn.Module:
        return HardNegativeContrastiveLoss(
            self.options.temperature,
            self.options.tau_plus,
            self.options.beta,
            gather_distributed=self.gather_distributed,
            detach_weights=self.options.detach_weights,
        )
