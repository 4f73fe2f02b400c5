"""Training methods behind one interface: simclr, dcl, hcl, triplet, wcl (SPEC 2-3), erm, jtt.

A :class:`Method` owns its settings (an ``Options`` dataclass with defaults and checks), its
loss module (``criterion``, from :mod:`debiascl.losses.modules`) and its encoders
(``encoder_d`` and/or ``encoder_b``), and turns a pair of views into a scalar loss. The trainer
builds one optimizer per entry of :meth:`param_groups` (E_d uses ``optim.lr``, E_b uses
``optim.lr_b``) and calls :meth:`training_step`. A class decorated with :func:`register_method`
is a choice of ``method.name`` everywhere (config, ``debiascl train``/``compare``); its
``Options`` fields are its ``method.*`` settings.

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

from dataclasses import dataclass, is_dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from debiascl.config import Config, OptimConfig, check_setting, collect_method_settings
from debiascl.errors import DebiasclError
from debiascl.losses import (
    WEIGHT_FORMS,
    DebiasedContrastiveLoss,
    HardNegativeContrastiveLoss,
    InfoNCELoss,
    SelfSupervisedTripletLoss,
    WCLLoss,
)
from debiascl.models import DatasetInfo, Encoder, build_backbone, build_encoder
from debiascl.registry import METHODS

Views = tuple[torch.Tensor, torch.Tensor]
Logs = dict[str, torch.Tensor]


@dataclass
class MethodOptions:
    """The settings every method has.

    ``temperature``: t > 0 of the contrastive losses; evaluation's and the training monitor's
    kNN classifier weight neighbours by it too, so supervised methods have it as well.
    """

    temperature: float = 0.5

    def check(self) -> None:
        """Raise a DebiasclError naming the first setting out of its range."""
        check_setting(self.temperature > 0, "method.temperature", "> 0", self.temperature)


@dataclass
class DebiasedOptions(MethodOptions):
    """Settings of the methods that correct for false negatives (SPEC 2-3)."""

    tau_plus: float = 0.1

    def check(self) -> None:
        super().check()
        check_setting(0 <= self.tau_plus < 1, "method.tau_plus", "in [0, 1)", self.tau_plus)


@dataclass
class TripletOptions(DebiasedOptions):
    """Settings of the methods with WCL's biased encoder E_b (SPEC 3.1).

    ``triplet_debias``: the debiased (default) or plain triplet form.
    """

    triplet_debias: bool = True


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` the method ``cls.name`` (a choice of ``method.name``).

    Raises:
        TypeError: ``cls.Options`` is not a :class:`MethodOptions` dataclass, or declares a
            setting that another method declares with another type or default.
        ValueError: the name is registered already.
    """
    if not (is_dataclass(cls.Options) and issubclass(cls.Options, MethodOptions)):
        raise TypeError(f"method '{cls.name}': Options must be a MethodOptions dataclass")
    collect_method_settings((*METHODS.registered().items(), (cls.name, cls)))
    METHODS.add(cls.name, cls, supervised=cls.supervised)
    for alias in cls.aliases:
        METHODS.add_alias(alias, cls.name)
    return cls


def bias_discovery_method() -> str:
    """The method whose run discovers the bias for methods without a bias encoder."""
    return next(name for name, cls in METHODS.items() if cls.discovers_bias)


class Method(nn.Module):
    """Base class: reads its options, builds its criterion and the encoders of ``encoder_keys``.

    A subclass sets ``name``, declares its settings as a nested ``Options`` dataclass (a
    :class:`MethodOptions` subclass; its fields are the ``method.*`` keys it reads, its
    ``check`` their ranges), builds its loss module in :meth:`build_criterion`, and is
    registered with :func:`register_method`.

    Args:
        config: the run configuration (reads ``model`` and the method's own ``method.*``).
        dataset: the training data (reads ``kind``, ``input_shape``, ``num_classes``).
        gather_distributed: gather projections over DDP ranks inside the losses (SPEC 6).
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    """Other names accepted for ``method.name`` (a config keeps ``name``)."""
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    supervised: ClassVar[bool] = False
    """Trains on class labels (``training_step`` needs ``targets``; evaluated on its classifier)."""
    encoder_keys: ClassVar[tuple[str, ...]] = ("d",)
    product_encoder: ClassVar[str] = "d"
    discovers_bias: ClassVar[bool] = False
    """Its run of a seed discovers the bias groups for the methods without a bias encoder."""
    driver: ClassVar[str | None] = None
    """``"module:function"`` of a training driver with several stages (see
    :func:`debiascl.train.train`); None: one run of :class:`debiascl.trainer.Trainer`."""

    def __init__(
        self, config: Config, dataset: DatasetInfo, gather_distributed: bool = False
    ) -> None:
        super().__init__()
        self.options = config.method.options_of(self.Options)
        self.gather_distributed = gather_distributed
        self.criterion = self.build_criterion()
        for key in self.encoder_keys:
            self.add_module(f"encoder_{key}", self.build_encoder(config, dataset))

    def build_criterion(self) -> nn.Module | None:
        """The loss module of the method, from ``self.options`` (None: the step computes it)."""
        return None

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
    """A contrastive method with one encoder trained by ``criterion(z1, z2)``."""

    def training_step(
        self, views: Views, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Logs]:
        """Loss of one batch (``targets`` is ignored: the method is self-supervised)."""
        loss = self.criterion(*self.project(self.product_encoder, views))
        return loss, {f"loss_{self.product_encoder}": loss.detach()}


@register_method
class SimCLR(SingleEncoderContrastive):
    """SimCLR: InfoNCE / NT-Xent on E_d (SPEC 2; Chen et al. 2020)."""

    name = "simclr"

    def build_criterion(self) -> nn.Module:
        return InfoNCELoss(self.options.temperature, gather_distributed=self.gather_distributed)


@register_method
class DCL(SingleEncoderContrastive):
    """Debiased contrastive loss on E_d (SPEC 2; Chuang et al. 2020).

    DCL here is Chuang et al.'s *Debiased* Contrastive Learning, not the *Decoupled*
    Contrastive Learning (Yeh et al. 2022) that lightly calls DCL; ``debiased_contrastive`` is
    accepted as another name of the method.
    """

    name = "dcl"
    aliases = ("debiased_contrastive",)
    Options = DebiasedOptions

    def build_criterion(self) -> nn.Module:
        return DebiasedContrastiveLoss(
            self.options.temperature,
            self.options.tau_plus,
            gather_distributed=self.gather_distributed,
        )


@register_method
class HCL(SingleEncoderContrastive):
    """Hard-negative contrastive loss on E_d (SPEC 2; Robinson et al. 2021)."""

    name = "hcl"

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


def make_triplet_criterion(options: TripletOptions, gather_distributed: bool) -> nn.Module:
    """E_b's self-supervised triplet loss with the method's ``tau_plus`` and form (SPEC 3.1)."""
    return SelfSupervisedTripletLoss(
        options.tau_plus, debias=options.triplet_debias, gather_distributed=gather_distributed
    )


@register_method
class Triplet(SingleEncoderContrastive):
    """The paper's biased baseline: WCL's E_b trained alone by the triplet loss (SPEC 3.1).

    Its encoder is "b" (so it trains at ``optim.lr_b``) and is also the product encoder; its
    run discovers the bias groups for the single-encoder methods in a comparison.
    """

    name = "triplet"
    Options = TripletOptions
    encoder_keys = ("b",)
    product_encoder = "b"
    discovers_bias = True

    def build_criterion(self) -> nn.Module:
        return make_triplet_criterion(self.options, self.gather_distributed)


@register_method
class WCL(Method):
    """WCL (SPEC 3; Jang & Wang, CVPR 2023): E_b by the triplet loss, E_d by the weighted loss.

    loss = triplet loss(E_b) + WCL loss(E_d; w from E_d and E_b), one backward. The weights
    are computed under stop-gradient inside the WCL loss, so E_b receives gradient only from
    the triplet term and E_d only from the weighted term. ``criterion`` is the WCL loss;
    ``triplet_criterion`` E_b's.
    """

    name = "wcl"
    encoder_keys = ("d", "b")

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

    def training_step(
        self, views: Views, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Logs]:
        """``loss_b + loss_d`` of one batch; ``targets`` is ignored."""
        zd1, zd2 = self.project("d", views)
        zb1, zb2 = self.project("b", views)
        loss_b = self.triplet_criterion(zb1, zb2)
        loss_d = self.criterion(zd1, zd2, zb1, zb2)
        return loss_d + loss_b, {"loss_d": loss_d.detach(), "loss_b": loss_b.detach()}


@register_method
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


@register_method
class JTT(ERM):
    """JTT's final model (Liu et al. 2021, "Just Train Twice"): ERM on an up-weighted error set.

    Model and step are ERM's; :mod:`debiascl.jtt` runs the two stages (an ERM run of
    ``method.jtt_epochs`` epochs, then this model from scratch with the samples that run
    misclassified repeated ``method.jtt_upweight`` times per epoch).
    """

    name = "jtt"
    driver = "debiascl.jtt:train_jtt"

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


def build_method(config: Config, dataset: DatasetInfo, gather_distributed: bool = False) -> Method:
    """The method ``config.method.name`` with freshly initialised encoders for ``dataset``."""
    cls = METHODS.lookup(config.method.name)
    return cls(config, dataset, gather_distributed=gather_distributed)
