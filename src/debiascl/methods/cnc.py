"""Cross-group contrast (after Correct-N-Contrast, Zhang et al., ICML 2022): SimCLR's InfoNCE
plus a contrast whose positives share the anchor's class but not its group.

The groups are the run's (``train.groups``: discovered (class, flag) groups, or the true ones).
A sample's positives are the other samples (and views) of its class in *another* group, its
negatives every sample of another class. Pulling a class's groups together and pushing the
classes apart leaves the encoder no reason to keep the bias feature that separates the groups
of a class, which is what a plain linear probe would otherwise learn to use. CnC takes its groups
from an ERM model's predictions and trains a classifier jointly; here the groups are those of the
discovery, the product is the encoder (evaluated by the probes), and the InfoNCE term keeps the
self-supervised objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from debiascl.batch import Batch
from debiascl.config import check_setting
from debiascl.losses import InfoNCELoss
from debiascl.methods.base import Logs, MethodOptions, SingleEncoderContrastive, register_method


def cross_group_contrast(
    z: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over anchors of -log( sum_P exp(s / t) / sum_{P u N} exp(s / t) ).

    s is the cosine similarity; for anchor i, P = {j != i: y_j = y_i, g_j != g_i} (its class in
    another group) and N = {j: y_j != y_i}. Anchors without a positive or a negative do not
    count (0 when none counts). Computed with log-sum-exp, in float32 at least (half-precision
    projections under autocast are promoted).

    Args:
        z: (N, D) projections (any scale; normalised here).
        y: (N,) int64 classes.
        groups: (N,) int64 group ids.
        temperature: t > 0.

    Returns:
        The scalar loss.
    """
    z = F.normalize(z.to(torch.promote_types(z.dtype, torch.float32)), dim=1)
    logits = z @ z.T / temperature
    same_class = y[:, None] == y[None, :]
    positive = same_class & (groups[:, None] != groups[None, :])
    negative = ~same_class
    counted = positive.any(1) & negative.any(1)
    if not bool(counted.any()):
        return z.sum() * 0.0
    floor = torch.finfo(logits.dtype).min
    log_positive = logits.masked_fill(~positive, floor).logsumexp(1)
    log_all = logits.masked_fill(~(positive | negative), floor).logsumexp(1)
    return (log_all - log_positive)[counted].mean()


@dataclass
class CrossGroupOptions(MethodOptions):
    """``cnc_weight``: lambda >= 0 of the cross-group term (0: SimCLR)."""

    cnc_weight: float = 1.0

    def check(self) -> None:
        super().check()
        check_setting(self.cnc_weight >= 0, "method.cnc_weight", ">= 0", self.cnc_weight)


@register_method
class CrossGroupContrast(SingleEncoderContrastive):
    """InfoNCE of the two views + ``cnc_weight`` x :func:`cross_group_contrast` over both views
    (2B projections, each sample's two views sharing its class and group).

    Reads ``batch.y`` and ``batch.group`` (``train.groups``); the cross-group term is computed
    on each rank's own batch (not gathered under DDP).
    """

    name = "cnc"
    Options = CrossGroupOptions
    trains_on_groups = True

    def build_criterion(self) -> nn.Module:
        return InfoNCELoss(self.options.temperature, gather_distributed=self.gather_distributed)

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        z1, z2 = self.project(self.product_encoder, batch.two_views(self.name))
        groups, _ = batch.groups_of(self.name)
        info_nce = self.criterion(z1, z2)
        cross = cross_group_contrast(
            torch.cat([z1, z2]),
            batch.y.repeat(2),
            groups.repeat(2),
            self.options.temperature,
        )
        loss = info_nce + self.options.cnc_weight * cross
        return loss, {"loss_d": loss.detach(), "loss_cross_group": cross.detach()}
