"""Training methods behind one interface: simclr, dcl, hcl, triplet, wcl (SPEC 2-3), erm, jtt.

A :class:`Method` owns its encoders (``encoder_d`` and/or ``encoder_b``) and turns a pair of
views into a scalar loss. The trainer builds one optimizer per entry of :meth:`param_groups`
(E_d uses ``optim.lr``, E_b uses ``optim.lr_b``) and calls :meth:`training_step`.

Conventions shared by every method:

- Both views go through an encoder in ONE batched forward (``torch.cat([v1, v2])``), so
  BatchNorm statistics span the 2B views of the step, as in SimCLR implementations.
- ``training_step`` returns ``(loss, logs)`` where ``logs`` maps names to 0-dim *detached
  tensors* (not python floats), so no device sync happens on steps that are not logged; the
  trainer calls ``float(value)`` on log steps. Keys: ``loss_d`` for E_d's loss, ``loss_b`` for
  E_b's, ``acc`` for supervised batch accuracy.
- ``forward`` is ``training_step``, so the method can be wrapped in DistributedDataParallel.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from debiascl.config import Config, OptimConfig
from debiascl.errors import DebiasclError
from debiascl.losses import dcl_loss, hcl_loss, info_nce_loss, triplet_loss, wcl_loss
from debiascl.models import DatasetInfo, Encoder, build_backbone, build_encoder

Views = tuple[torch.Tensor, torch.Tensor]
Logs = dict[str, torch.Tensor]


class Method(nn.Module):
    """Base class: builds the encoders named by ``encoder_keys`` and exposes them.

    Args:
        config: the run configuration (reads ``model`` and ``method``).
        dataset: the training data (reads ``kind``, ``input_shape``, ``num_classes``).
        gather_distributed: gather projections over DDP ranks inside the losses (SPEC 6).
    """

    name: ClassVar[str]
    supervised: ClassVar[bool] = False
    encoder_keys: ClassVar[tuple[str, ...]] = ("d",)
    product_encoder: ClassVar[str] = "d"
    driver: ClassVar[str | None] = None
    """``"module:function"`` of a training driver with several stages (see
    :func:`debiascl.train.train`); None: one run of :class:`debiascl.trainer.Trainer`."""

    def __init__(
        self, config: Config, dataset: DatasetInfo, gather_distributed: bool = False
    ) -> None:
        super().__init__()
        self.temperature = config.method.temperature
        self.tau_plus = config.method.tau_plus
        self.gather_distributed = gather_distributed
        for key in self.encoder_keys:
            self.add_module(f"encoder_{key}", self.build_encoder(config, dataset))

    def build_encoder(self, config: Config, dataset: DatasetInfo) -> Encoder:
        """One encoder of this method (backbone + projection head)."""
        return build_encoder(config.model, dataset)

    def encoders(self) -> dict[str, Encoder]:
        """The method's encoders by key: "d" (debiased/product) and/or "b" (biased)."""
        return {key: getattr(self, f"encoder_{key}") for key in self.encoder_keys}

    def training_step(
        self, views: Views, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Logs]:
        """Loss of one batch.

        Args:
            views: two augmented views (B, *input_shape) each; row i of both is sample i.
            targets: (B,) class labels; used only by supervised methods.

        Returns:
            The scalar loss to backpropagate and a dict of 0-dim detached tensors to log.
        """
        raise NotImplementedError

    def forward(
        self, views: Views, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Logs]:
        """Same as :meth:`training_step` (lets DDP wrap the method)."""
        return self.training_step(views, targets)

    def project(self, key: str, views: Views) -> Views:
        """Both views through encoder ``key`` in one batched forward: two (B, P) projections."""
        if len(views) != 2 or views[0].shape != views[1].shape:
            raise ValueError(
                "views: expected two tensors of the same shape (B, *input_shape), got "
                f"{[tuple(v.shape) for v in views]}"
            )
        z1, z2 = self.encoders()[key](torch.cat(views)).chunk(2)
        return z1, z2

    def param_groups(self, optim: OptimConfig) -> list[dict]:
        """One optimizer group per encoder: E_d at ``optim.lr``, E_b at ``optim.lr_b``."""
        return [
            {
                "name": key,
                "params": list(encoder.parameters()),
                "lr": optim.lr if key == "d" else optim.lr_b,
                "weight_decay": optim.weight_decay,
            }
            for key, encoder in self.encoders().items()
        ]

    def representation(self, x: torch.Tensor, encoder: str | None = None) -> torch.Tensor:
        """Backbone output h (B, F) of encoder ``encoder`` (default: the product encoder)."""
        key = self.product_encoder if encoder is None else encoder
        if key not in self.encoder_keys:
            raise DebiasclError(
                f"method '{self.name}' has no encoder '{key}'; it has "
                f"{', '.join(self.encoder_keys)}"
            )
        return self.encoders()[key].representation(x)


class SingleEncoderContrastive(Method):
    """A contrastive method with one encoder trained by ``loss(z1, z2)``."""

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The objective on two (B, P) projections; a scalar."""
        raise NotImplementedError

    def training_step(
        self, views: Views, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Logs]:
        """Loss of one batch (``targets`` is ignored: the method is self-supervised)."""
        loss = self.loss(*self.project(self.product_encoder, views))
        return loss, {f"loss_{self.product_encoder}": loss.detach()}


class SimCLR(SingleEncoderContrastive):
    """SimCLR: InfoNCE / NT-Xent on E_d (SPEC 2; Chen et al. 2020)."""

    name = "simclr"

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return info_nce_loss(z1, z2, self.temperature, gather_distributed=self.gather_distributed)


class DCL(SingleEncoderContrastive):
    """Debiased contrastive loss on E_d (SPEC 2; Chuang et al. 2020)."""

    name = "dcl"

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return dcl_loss(
            z1, z2, self.temperature, self.tau_plus, gather_distributed=self.gather_distributed
        )


class HCL(SingleEncoderContrastive):
    """Hard-negative contrastive loss on E_d (SPEC 2; Robinson et al. 2021).

    Uses ``method.beta`` and ``method.detach_weights`` (stop the gradient through the
    importance weights; off by default, as in the authors' code).
    """

    name = "hcl"

    def __init__(
        self, config: Config, dataset: DatasetInfo, gather_distributed: bool = False
    ) -> None:
        super().__init__(config, dataset, gather_distributed)
        self.beta = config.method.beta
        self.detach_weights = config.method.detach_weights

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return hcl_loss(
            z1,
            z2,
            self.temperature,
            self.tau_plus,
            self.beta,
            detach_weights=self.detach_weights,
            gather_distributed=self.gather_distributed,
        )


class Triplet(SingleEncoderContrastive):
    """The paper's biased baseline: WCL's E_b trained alone by the triplet loss (SPEC 3.1).

    Its encoder is "b" (so it trains at ``optim.lr_b``) and is also the product encoder.
    ``method.triplet_debias`` picks the debiased (default) or plain triplet form.
    """

    name = "triplet"
    encoder_keys = ("b",)
    product_encoder = "b"

    def __init__(
        self, config: Config, dataset: DatasetInfo, gather_distributed: bool = False
    ) -> None:
        super().__init__(config, dataset, gather_distributed)
        self.debias = config.method.triplet_debias

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return triplet_loss(
            z1, z2, self.tau_plus, debias=self.debias, gather_distributed=self.gather_distributed
        )


class WCL(Method):
    """WCL (SPEC 3; Jang & Wang, CVPR 2023): E_b by the triplet loss, E_d by the weighted loss.

    loss = triplet_loss(E_b) + wcl_loss(E_d; w from E_d and E_b), one backward. The weights
    are computed under stop-gradient inside ``wcl_loss``, so E_b receives gradient only from
    the triplet term and E_d only from the weighted term.
    """

    name = "wcl"
    encoder_keys = ("d", "b")

    def __init__(
        self, config: Config, dataset: DatasetInfo, gather_distributed: bool = False
    ) -> None:
        super().__init__(config, dataset, gather_distributed)
        self.debias = config.method.triplet_debias

    def training_step(
        self, views: Views, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Logs]:
        """``loss_b + loss_d`` of one batch; ``targets`` is ignored."""
        zd1, zd2 = self.project("d", views)
        zb1, zb2 = self.project("b", views)
        loss_b = triplet_loss(
            zb1, zb2, self.tau_plus, debias=self.debias, gather_distributed=self.gather_distributed
        )
        loss_d = wcl_loss(
            zd1,
            zd2,
            zb1,
            zb2,
            self.temperature,
            self.tau_plus,
            gather_distributed=self.gather_distributed,
        )
        return loss_d + loss_b, {"loss_d": loss_d.detach(), "loss_b": loss_b.detach()}


class ERM(Method):
    """Supervised reference: the same backbone + a linear classifier, cross-entropy on y.

    Encoder "d" is backbone + ``Linear(F, num_classes)`` (the classifier takes the place of the
    projection head), so its representation is the backbone output as for the other methods.
    Each step uses BOTH views as labelled inputs (2B examples, label repeated), so ERM sees the
    same augmented data as the contrastive methods. Per-sample weights (e.g. JTT's up-weighting
    by loss weights) go in ``sample_weights``; up-weighting by resampling needs no change.
    """

    name = "erm"
    supervised = True

    def build_encoder(self, config: Config, dataset: DatasetInfo) -> Encoder:
        backbone, feature_dim = build_backbone(config.model, dataset)
        return Encoder(backbone, nn.Linear(feature_dim, dataset.num_classes), feature_dim)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) of inputs x (B, *input_shape)."""
        return self.encoder_d(x)

    def training_step(
        self,
        views: Views,
        targets: torch.Tensor | None = None,
        sample_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Logs]:
        """Cross-entropy of both views against ``targets``.

        Args:
            views: two views (B, *input_shape).
            targets: (B,) int64 class labels (required).
            sample_weights: optional (B,) non-negative weights; the loss is then the weighted
                mean sum_i w_i CE_i / sum_i w_i over the 2B examples.
        """
        if targets is None:
            raise DebiasclError(
                f"method '{self.name}' is supervised: training_step needs the class labels "
                "(targets) of the batch"
            )
        logits1, logits2 = self.project("d", views)
        logits = torch.cat([logits1, logits2])
        labels = targets.repeat(2)
        per_example = F.cross_entropy(logits, labels, reduction="none")
        if sample_weights is None:
            loss = per_example.mean()
        else:
            weights = sample_weights.to(per_example.dtype).repeat(2)
            loss = (weights * per_example).sum() / weights.sum()
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return loss, {"loss_d": loss.detach(), "acc": accuracy}


class JTT(ERM):
    """JTT's final model (Liu et al. 2021, "Just Train Twice"): ERM on an up-weighted error set.

    Model and step are ERM's; :mod:`debiascl.jtt` runs the two stages (an ERM run of
    ``method.jtt_epochs`` epochs, then this model from scratch with the samples that run
    misclassified repeated ``method.jtt_upweight`` times per epoch).
    """

    name = "jtt"
    driver = "debiascl.jtt:train_jtt"


METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (SimCLR, DCL, HCL, Triplet, WCL, ERM, JTT)
}


def build_method(config: Config, dataset: DatasetInfo, gather_distributed: bool = False) -> Method:
    """The method ``config.method.name`` with freshly initialised encoders for ``dataset``."""
    name = config.method.name
    if name not in METHODS:
        raise DebiasclError(
            f"setting 'method.name' = {name!r}: expected one of {', '.join(METHODS)}"
        )
    return METHODS[name](config, dataset, gather_distributed=gather_distributed)
