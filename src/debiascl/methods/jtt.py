"""JTT's final model (Liu et al. 2021, "Just Train Twice"); its stages: :mod:`debiascl.jtt`."""

from __future__ import annotations

from dataclasses import dataclass

from debiascl.config import check_setting
from debiascl.methods.base import MethodOptions, register_method
from debiascl.methods.erm import ERM


@register_method
class JTT(ERM):
    """JTT's final model (Liu et al. 2021, "Just Train Twice"): ERM on an up-weighted error set.

    Model and step are ERM's; :mod:`debiascl.jtt` runs the two stages (an ERM run of
    ``method.jtt_epochs`` epochs, then this model from scratch with the samples that run
    misclassified repeated ``method.jtt_upweight`` times per epoch).
    """

    name = "jtt"
    driver = "debiascl.jtt:train_jtt"
    reads_sample_weights = False  # its stages up-weight the error set instead

    @dataclass
    class Options(MethodOptions):
        """JTT's settings: ``jtt_epochs`` (stage 1's epochs, T) and ``jtt_upweight``
        (lambda_up, the repeats of each misclassified sample per epoch), both >= 1."""

        jtt_epochs: int = 1
        jtt_upweight: int = 20

        def check(self) -> None:
            super().check()
            check_setting(self.jtt_epochs >= 1, "method.jtt_epochs", ">= 1", self.jtt_epochs)
            check_setting(self.jtt_upweight >= 1, "method.jtt_upweight", ">= 1", self.jtt_upweight)
