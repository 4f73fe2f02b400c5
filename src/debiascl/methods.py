"""Training methods behind one interface: simclr, dcl, hcl, triplet, wcl (SPEC 2-3), erm, jtt,
gce, gdro (SPEC 10).

A :class:`Method` owns its settings (an ``Options`` dataclass with defaults and checks), its
loss module (``criterion``, from :mod:`debiascl.losses.modules`) and its encoders
(``encoder_d`` and/or ``encoder_b``), and turns a :class:`~debiascl.batch.Batch` (indices,
views, y, and a / groups where training is given them) into a scalar loss. The trainer
builds one optimizer per entry of :meth:`param_groups` (E_d uses ``optim.lr``, E_b uses
``optim.lr_b``) and calls :meth:`training_step`. A class decorated with :func:`register_method`
is a choice of ``method.name`` everywhere (config, ``debiascl train``/``compare``); its
``Options`` fields are its ``method.*`` settings.

Conventions shared by every method:

- All views go through an encoder in ONE batched forward (``torch.cat(views)``), so
  BatchNorm statistics span the 2B views of the step, as in SimCLR implementations.
- ``training_step`` returns ``(loss, logs)`` where ``logs`` maps names to 0-dim *detached
  tensors* (not python floats), so no device sync happens on steps that are not logged; the
  trainer calls ``float(value)`` on log steps. Keys: ``loss_d`` for E_d's loss, ``loss_b`` for
  E_b's, ``acc`` for supervised batch accuracy.
- ``forward`` is ``training_step``, so the method can be wrapped in DistributedDataParallel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, is_dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from debiascl.batch import Batch
from debiascl.config import Config, OptimConfig, check_setting, collect_method_settings
from debiascl.distributed import all_reduce_sum, get_world_size, is_distributed
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
    """Trains on class labels (reads ``batch.y``; evaluated on its classifier)."""
    encoder_keys: ClassVar[tuple[str, ...]] = ("d",)
    product_encoder: ClassVar[str] = "d"
    trains_on_groups: ClassVar[bool] = False
    """Reads ``batch.group``: the run must set ``train.groups`` (discovered or true)."""
    reads_sample_weights: ClassVar[bool] = False
    """Weights its loss per sample by ``batch.weight`` (``train.group_weighting``)."""
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

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """Loss of one batch.

        Args:
            batch: the step's samples (:class:`~debiascl.batch.Batch`): views (B, *input_shape)
                each, y (B,), and a / group (B,) where training is given them.

        Returns:
            The scalar loss to backpropagate and a dict of 0-dim detached tensors to log.
        """
        raise NotImplementedError

    def forward(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """Same as :meth:`training_step` (lets DDP wrap the method)."""
        return self.training_step(batch)

    def project(self, key: str, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """All views through encoder ``key`` in one batched forward: one (B, P) output per view."""
        if not views or any(view.shape != views[0].shape for view in views):
            raise ValueError(
                "views: expected one or more tensors of the same shape (B, *input_shape), got "
                f"{[tuple(v.shape) for v in views]}"
            )
        return list(self.encoders()[key](torch.cat(list(views))).chunk(len(views)))

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
    """A contrastive method with one encoder trained by ``criterion(z1, z2)``.

    Its anchors' losses are weighted by ``batch.weight`` when the run gives sample weights
    (``train.group_weighting``), so the subclasses whose criterion accepts them say
    ``reads_sample_weights``.
    """

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """``criterion(z1, z2)`` of the batch's two views (y is not read: self-supervised)."""
        z1, z2 = self.project(self.product_encoder, batch.two_views(self.name))
        weights = {} if batch.weight is None else {"sample_weights": batch.weight}
        loss = self.criterion(z1, z2, **weights)
        return loss, {f"loss_{self.product_encoder}": loss.detach()}


@register_method
class SimCLR(SingleEncoderContrastive):
    """SimCLR: InfoNCE / NT-Xent on E_d (SPEC 2; Chen et al. 2020)."""

    name = "simclr"
    reads_sample_weights = True

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
    reads_sample_weights = True
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
    reads_sample_weights = True

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


def supervised_logs(loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> Logs:
    """``loss_d`` and ``acc`` (batch accuracy of logits (N, C) against labels (N,)), detached."""
    accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
    return {"loss_d": loss.detach(), "acc": accuracy}


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


def group_dro_update(
    per_example: torch.Tensor,
    groups: torch.Tensor,
    weights: torch.Tensor,
    sizes: torch.Tensor,
    eta: float,
    adjustment: float,
    world_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of GroupDRO's online group weights and its loss (SPEC 10; Sagawa et al. 2020).

    With L_g the mean loss of the examples of group g in the batch:
    q_g <- q_g * exp(eta * (L_g + C / sqrt(n_g))) for every group present, q <- q / sum(q), and
    the loss is sum_g q_g L_g with the updated q (as the authors' code). A group absent from the
    batch keeps its q_g before the normalisation (the authors' code also adds C / sqrt(n_g) to
    absent groups; the two agree for C = 0).

    Under DDP (``world_size`` > 1, a process group running) the batch is the global one: the
    groups' loss sums and counts are summed over the ranks, so every rank updates q alike, and
    each rank's loss is K sum_g q_g S_g^r / N_g (its part of the global sum, K = world_size),
    whose gradients, averaged over the ranks, are the single process's; its value is the
    global sum_g q_g L_g.

    Args:
        per_example: (N,) losses with gradient (this rank's).
        groups: (N,) int64 group id of each example, in [0, G).
        weights: (G,) the current q (non-negative, summing to 1).
        sizes: (G,) training samples per group, n_g (used by the adjustment C).
        eta: step size of the weights (> 0).
        adjustment: C >= 0, the generalisation adjustment.
        world_size: the number of DDP ranks the batch is spread over.

    Returns:
        ``(loss, new_weights)``: the scalar loss and the (G,) updated q (detached).
    """
    num_groups = weights.numel()
    counts = torch.bincount(groups, minlength=num_groups).to(per_example.dtype)
    sums = torch.zeros(num_groups, dtype=per_example.dtype, device=per_example.device)
    sums = sums.index_add(0, groups, per_example)
    total_counts, total_sums = counts, sums.detach()
    if world_size > 1:
        total_counts, total_sums = all_reduce_sum(counts), all_reduce_sum(sums)
    group_loss = total_sums / total_counts.clamp(min=1)
    present = total_counts > 0
    step = eta * (group_loss + adjustment / sizes.to(group_loss.dtype).sqrt())
    updated = weights.to(group_loss.dtype) * torch.where(present, step.exp(), 1.0)
    updated = updated / updated.sum()
    local = world_size * (updated * sums / total_counts.clamp(min=1)).sum()
    objective = (updated * group_loss).sum()
    return local - local.detach() + objective, updated


@register_method
class GroupDRO(ERM):
    """GroupDRO (Sagawa et al., ICLR 2020): ERM's model, loss sum_g q_g L_g (SPEC 10).

    Trains on the run's groups (``train.groups``: discovered or true), read from
    ``batch.group``; the group weights q start uniform and are carried across steps as the
    module's extra state, so they are saved in every checkpoint and restored on resume. Under
    DDP the group losses are those of the global batch (:func:`group_dro_update`).
    """

    name = "gdro"
    trains_on_groups = True
    reads_sample_weights = False  # its group weights q take their place

    @dataclass
    class Options(MethodOptions):
        """GroupDRO's settings: ``gdro_eta`` (step size of q, > 0) and ``gdro_adjustment``
        (C >= 0, adds C / sqrt(n_g) to each group's loss in the update of q)."""

        gdro_eta: float = 0.01
        gdro_adjustment: float = 0.0

        def check(self) -> None:
            super().check()
            check_setting(self.gdro_eta > 0, "method.gdro_eta", "> 0", self.gdro_eta)
            check_setting(
                self.gdro_adjustment >= 0,
                "method.gdro_adjustment",
                ">= 0",
                self.gdro_adjustment,
            )

    def __init__(
        self, config: Config, dataset: DatasetInfo, gather_distributed: bool = False
    ) -> None:
        super().__init__(config, dataset, gather_distributed)
        self.group_weights = torch.empty(0)
        """(G,) GroupDRO's q; empty until the first step sees the groups."""

    def get_extra_state(self) -> torch.Tensor:
        """q, saved with the weights (``_extra_state`` in the state dict)."""
        return self.group_weights

    def set_extra_state(self, state: torch.Tensor) -> None:
        """Restore q from a state dict."""
        self.group_weights = state.detach().clone()

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """sum_g q_g L_g over the batch's groups, after updating q (:func:`group_dro_update`)."""
        groups, sizes = batch.groups_of(self.name)
        per_example, logits, labels = self.per_example_loss(batch)
        weights = self.group_weights.to(per_example.device)
        if weights.numel() == 0:
            weights = torch.full((sizes.numel(),), 1.0 / sizes.numel(), device=per_example.device)
        loss, updated = group_dro_update(
            per_example,
            groups.to(per_example.device).repeat(len(batch.views)),
            weights,
            sizes.to(per_example.device),
            self.options.gdro_eta,
            self.options.gdro_adjustment,
            get_world_size() if self.gather_distributed and is_distributed() else 1,
        )
        # A non-finite loss (a step the trainer skips) leaves q as it was.
        self.group_weights = torch.where(updated.isfinite().all(), updated, weights)
        logs = supervised_logs(loss, logits, labels)
        return loss, logs | {"max_group_weight": self.group_weights.max()}


def build_method(config: Config, dataset: DatasetInfo, gather_distributed: bool = False) -> Method:
    """The method ``config.method.name`` with freshly initialised encoders for ``dataset``."""
    cls = METHODS.lookup(config.method.name)
    return cls(config, dataset, gather_distributed=gather_distributed)
