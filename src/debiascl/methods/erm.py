"""ERM: the supervised reference, cross-entropy of a linear classifier on the backbone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from debiascl.batch import Batch
from debiascl.config import Config
from debiascl.methods.base import Logs, Method, register_method
from debiascl.models import DatasetInfo, Encoder, build_backbone


def supervised_logs(loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> Logs:
    """``loss_d`` and ``acc`` (batch accuracy of logits (N, C) against labels (N,)), detached."""
    accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
    return {"loss_d": loss.detach(), "acc": accuracy}


@register_method
class ERM(Method):
    """Supervised reference: the same backbone + a linear classifier, cross-entropy on y.

    Encoder "d" is backbone + ``Linear(F, num_classes)`` (the classifier takes the place of the
    projection head), so its representation is the backbone output as for the other methods.
    Each step uses BOTH views as labelled inputs (2B examples, label repeated), so ERM sees the
    same augmented data as the contrastive methods. Per-sample weights (e.g. JTT's up-weighting
    by loss weights) come in ``batch.weight``; up-weighting by resampling needs no change.
    """

    name = "erm"
    supervised = True
    reads_sample_weights = True

    def build_encoder(self, config: Config, dataset: DatasetInfo) -> Encoder:
        backbone, feature_dim = build_backbone(config.model, dataset)
        return Encoder(backbone, nn.Linear(feature_dim, dataset.num_classes), feature_dim)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) of inputs x (B, *input_shape)."""
        return self.encoder_d(x)

    def per_example_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-entropy of every view of every sample against its class.

        Returns:
            ``(per_example, logits, labels)``: (V * B,) losses, (V * B, num_classes) logits and
            (V * B,) labels, view-major (row v * B + i is view v of sample i).
        """
        logits = torch.cat(self.project("d", batch.views))
        labels = batch.y.repeat(len(batch.views))
        return F.cross_entropy(logits, labels, reduction="none"), logits, labels

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """Cross-entropy of every view against ``batch.y``; with ``batch.weight`` (B,) the mean
        of w_i CE_i over the V * B examples (not renormalised, as the contrastive losses)."""
        per_example, logits, labels = self.per_example_loss(batch)
        if batch.weight is None:
            loss = per_example.mean()
        else:
            weights = batch.weight.to(per_example.dtype).repeat(len(batch.views))
            loss = (weights * per_example).mean()
        return loss, supervised_logs(loss, logits, labels)
