"""SimCLR: InfoNCE / NT-Xent on E_d (SPEC 2; Chen et al. 2020)."""

from __future__ import annotations

from torch import nn

from debiascl.losses import InfoNCELoss
from debiascl.methods.base import SingleEncoderContrastive, register_method


@register_method
class SimCLR(SingleEncoderContrastive):
    """SimCLR: InfoNCE / NT-Xent on E_d (SPEC 2; Chen et al. 2020)."""

    name = "simclr"
    reads_sample_weights = True

    def build_criterion(self) -> nn.Module:
        return InfoNCELoss(self.options.temperature, gather_distributed=self.gather_distributed)
