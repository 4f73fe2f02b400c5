"""WCL (SPEC 3; Jang & Wang, CVPR 2023): E_b by the triplet loss, E_d by the weighted loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from debiascl.batch import Batch
from debiascl.config import Config
from debiascl.errors import DebiasclError
from debiascl.losses import WEIGHT_FORMS, WCLLoss
from debiascl.methods.base import Logs, Method, register_method
from debiascl.methods.triplet import TripletOptions, make_triplet_criterion
from debiascl.models import DatasetInfo


@register_method
class WCL(Method):
    """WCL (SPEC 3; Jang & Wang, CVPR 2023): E_b by the triplet loss, E_d by the weighted loss.

    loss = triplet loss(E_b) + WCL loss(E_d; w from E_d and E_b), one backward. The weights
    are computed under stop-gradient inside the WCL loss, so E_b receives gradient only from
    the triplet term and E_d only from the weighted term. ``criterion`` is the WCL loss;
    ``triplet_criterion`` E_b's. Its trained run's report adds the analysis of w
    (:func:`debiascl.report.weight_report.write_weight_report`).
    """

    name = "wcl"
    encoder_keys = ("d", "b")
    bias_encoder = "b"
    reads_sample_weights = True
    analyses = ("debiascl.report.weight_report:write_weight_report",)

    @dataclass
    class Options(TripletOptions):
        """WCL's settings: ``weight_form``, the form of the relative-difficulty weight w.

        "paper" (default): the published ``w = 1 + qn_d / (qn_b + qn_d)`` (SPEC 3.2);
        "mirror": ``1 + qn_b / (qn_b + qn_d)``, up-weighting the negatives E_b finds similar;
        "none": w = 1, so E_d's loss is DCL's (an ablation of the weights).
        """

        weight_form: str = "paper"

        def check(self) -> None:
            super().check()
            if self.weight_form not in WEIGHT_FORMS:
                raise DebiasclError(
                    f"setting 'method.weight_form' = {self.weight_form!r}: expected one of "
                    f"{', '.join(WEIGHT_FORMS)}"
                )

    def __init__(
        self, config: Config, dataset: DatasetInfo, gather_distributed: bool = False
    ) -> None:
        super().__init__(config, dataset, gather_distributed)
        self.triplet_criterion = make_triplet_criterion(self.options, gather_distributed)

    def build_criterion(self) -> nn.Module:
        return WCLLoss(
            self.options.temperature,
            self.options.tau_plus,
            gather_distributed=self.gather_distributed,
            weight_form=self.options.weight_form,
        )

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """``loss_b + loss_d`` of the batch's two views (y is not read)."""
        views = batch.two_views(self.name)
        zd1, zd2 = self.project("d", views)
        zb1, zb2 = self.project("b", views)
        loss_b = self.triplet_criterion(zb1, zb2)  # E_b stays the unweighted bias amplifier
        weights = {} if batch.weight is None else {"sample_weights": batch.weight}
        loss_d = self.criterion(zd1, zd2, zb1, zb2, **weights)
        return loss_d + loss_b, {"loss_d": loss_d.detach(), "loss_b": loss_b.detach()}
