"""The paper's biased baseline: WCL's E_b trained alone by the triplet loss (SPEC 3.1)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from debiascl.losses import SelfSupervisedTripletLoss
from debiascl.methods.base import DebiasedOptions, SingleEncoderContrastive, register_method


@dataclass
class TripletOptions(DebiasedOptions):
    """Settings of the methods with WCL's biased encoder E_b (SPEC 3.1).

    ``triplet_debias``: the debiased (default) or plain triplet form.
    """

    triplet_debias: bool = True


def make_triplet_criterion(options: TripletOptions, gather_distributed: bool) -> nn.Module:
    """E_b's self-supervised triplet loss with the method's ``tau_plus`` and form (SPEC 3.1)."""
    return SelfSupervisedTripletLoss(
        options.tau_plus, debias=options.triplet_debias, gather_distributed=gather_distributed
    )


@register_method
class Triplet(SingleEncoderContrastive):
    """The paper's biased baseline: WCL's E_b trained alone by the triplet loss (SPEC 3.1).

    Its encoder is "b", the bias encoder (so it trains at ``optim.lr_b``) and also the product
    encoder; its run discovers the bias groups for the single-encoder methods in a comparison.
    """

    name = "triplet"
    Options = TripletOptions
    encoder_keys = ("b",)
    product_encoder = "b"
    bias_encoder = "b"
    discovers_bias = True

    def build_criterion(self) -> nn.Module:
        return make_triplet_criterion(self.options, self.gather_distributed)
