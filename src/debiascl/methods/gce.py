"""GCE: a bias-amplified classifier, ERM's model trained with generalized cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from debiascl.batch import Batch
from debiascl.config import check_setting
from debiascl.methods.base import Logs, MethodOptions, register_method
from debiascl.methods.erm import ERM, supervised_logs


@register_method
class GCE(ERM):
    """A bias-amplified classifier: ERM's model trained with generalized cross-entropy.

    GCE (Zhang & Sabuncu, NeurIPS 2018) as LfF's biased model uses it (Nam et al., NeurIPS 2020):
    the loss of an example is (1 - p_y^q) / q, whose gradient is p_y^q times cross-entropy's, so
    the examples the model already finds easy (the bias-aligned ones) dominate and the model
    leans on the bias. Its per-sample confidence is a discovery signal (``debiascl discover
    --signal gce``); q -> 0 gives cross-entropy.
    """

    name = "gce"
    reads_sample_weights = False

    @dataclass
    class Options(MethodOptions):
        """GCE's setting: ``gce_q`` in (0, 1] (LfF's 0.7)."""

        gce_q: float = 0.7

        def check(self) -> None:
            super().check()
            check_setting(0 < self.gce_q <= 1, "method.gce_q", "in (0, 1]", self.gce_q)

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """Mean of (1 - p_y^q) / q over every view of every sample (p_y = exp(-cross-entropy))."""
        per_example, logits, labels = self.per_example_loss(batch)
        q = self.options.gce_q
        loss = ((1 - torch.exp(-q * per_example)) / q).mean()
        return loss, supervised_logs(loss, logits, labels)
