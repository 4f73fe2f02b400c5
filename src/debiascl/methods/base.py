"""What every method is: the :class:`Method` base class, its :class:`MethodOptions` and
:func:`register_method`.

A :class:`Method` owns its settings (an ``Options`` dataclass with defaults and checks), its
loss module (``criterion``, from :mod:`debiascl.losses.modules`) and its encoders
(``encoder_d`` and/or ``encoder_b``), and turns a :class:`~debiascl.batch.Batch` (indices,
views, y, and a / groups where training is given them) into a scalar loss. The trainer
builds one optimizer group per entry of :meth:`Method.param_groups` and calls
:meth:`Method.training_step`. A class decorated with :func:`register_method` is a choice of
``method.name`` everywhere (config, ``debiascl train``/``compare``); its ``Options`` fields are
its ``method.*`` settings, read and checked only when it is the run's method.

A method also *declares* what the rest of the library may assume of it (class attributes of
:class:`Method`): its encoders and which one is the product (``encoder_keys``,
``product_encoder``) and which one learns the bias (``bias_encoder``, trained at
``optim.lr_b``); whether it trains on labels (``supervised``, then it must define
:meth:`Method.predict`), on groups or per-sample weights; whether its run discovers the bias;
a training driver of several stages; and the analyses of a trained run that only it supports
(``analyses``, e.g. WCL's weight report).

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
from torch import nn

from debiascl.batch import Batch
from debiascl.config import Config, OptimConfig, check_setting, collect_method_settings
from debiascl.errors import DebiasclError
from debiascl.models import DatasetInfo, Encoder, build_encoder
from debiascl.registry import METHODS

Logs = dict[str, torch.Tensor]


@dataclass
class MethodOptions:
    """The settings every method has (a method's ``Options`` may give them its own defaults).

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


def _check_declarations(cls: type[Method]) -> None:
    """Raise a TypeError naming the first declaration of ``cls`` that does not hold together."""
    if not (is_dataclass(cls.Options) and issubclass(cls.Options, MethodOptions)):
        raise TypeError(f"method '{cls.name}': Options must be a MethodOptions dataclass")
    for attribute in ("product_encoder", "bias_encoder"):
        key = getattr(cls, attribute)
        if key is not None and key not in cls.encoder_keys:
            raise TypeError(
                f"method '{cls.name}': {attribute} '{key}' is not one of its encoder_keys "
                f"{cls.encoder_keys}"
            )
    if cls.supervised and cls.predict is Method.predict:
        raise TypeError(
            f"method '{cls.name}' is supervised but defines no predict(x) -> class logits"
        )


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` the method ``cls.name`` (a choice of ``method.name``).

    Raises:
        TypeError: ``cls.Options`` is not a :class:`MethodOptions` dataclass or declares a
            setting that another method declares with another type; ``product_encoder`` or
            ``bias_encoder`` is not an encoder of the method; a supervised method has no
            :meth:`Method.predict`.
        ValueError: the name is registered already.
    """
    _check_declarations(cls)
    collect_method_settings((*METHODS.registered().items(), (cls.name, cls)))
    METHODS.add(cls.name, cls, supervised=cls.supervised, groups=cls.trains_on_groups)
    for alias in cls.aliases:
        METHODS.add_alias(alias, cls.name)
    return cls


def bias_discovery_method() -> str:
    """The method whose run discovers the bias for methods without a bias encoder."""
    return next(name for name, cls in METHODS.items() if cls.discovers_bias)


class Method(nn.Module):
    """Base class: reads its options, builds its criterion and the encoders of ``encoder_keys``.

    A subclass sets ``name``, declares its settings as a nested ``Options`` dataclass (a
    :class:`MethodOptions` subclass; its fields are the ``method.*`` keys it reads, with its
    own defaults, its ``check`` their ranges), builds its loss module in
    :meth:`build_criterion`, implements :meth:`training_step` (and :meth:`predict` when
    ``supervised``), and is registered with :func:`register_method`.

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
    """Trains on class labels (reads ``batch.y``; evaluated on its classifier, :meth:`predict`)."""
    encoder_keys: ClassVar[tuple[str, ...]] = ("d",)
    """Its encoders: "d" (debiased/product) and/or "b" (biased)."""
    product_encoder: ClassVar[str] = "d"
    """The encoder whose representation is the method's product (evaluated, exported)."""
    bias_encoder: ClassVar[str | None] = None
    """The encoder that learns the bias (trained at ``optim.lr_b``; its representation serves
    bias discovery), or None."""
    trains_on_groups: ClassVar[bool] = False
    """Reads ``batch.group``: the run must set ``train.groups`` (discovered or true)."""
    reads_sample_weights: ClassVar[bool] = False
    """Weights its loss per sample by ``batch.weight`` (``train.group_weighting``)."""
    discovers_bias: ClassVar[bool] = False
    """Its run of a seed discovers the bias groups for the methods without a bias encoder."""
    driver: ClassVar[str | None] = None
    """``"module:function"`` of a training driver with several stages (see
    :func:`debiascl.training.run.train`); None: one run of
    :class:`debiascl.training.loop.Trainer`."""
    analyses: ClassVar[tuple[str, ...]] = ()
    """``"module:function"`` of the analyses of a trained run that only this method supports;
    :func:`debiascl.report.write_report` calls each as
    ``function(run, pool_size=..., num_anchors=..., k=...) -> list[Path]`` (written files)."""

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

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) of inputs x (B, *input_shape); a supervised method
        must define it (:func:`register_method` checks), the others have none."""
        raise NotImplementedError(f"method '{self.name}' has no classifier")

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

    def learning_rate(self, key: str, optim: OptimConfig) -> float:
        """The learning rate of encoder ``key``: ``optim.lr_b`` for the bias encoder, else
        ``optim.lr``."""
        return optim.lr_b if key == self.bias_encoder else optim.lr

    def param_groups(self, optim: OptimConfig) -> list[dict]:
        """One optimizer group per encoder, named by its key, at :meth:`learning_rate`."""
        return [
            {
                "name": key,
                "params": list(encoder.parameters()),
                "lr": self.learning_rate(key, optim),
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


def build_method(config: Config, dataset: DatasetInfo, gather_distributed: bool = False) -> Method:
    """The method ``config.method.name`` with freshly initialised encoders for ``dataset``."""
    cls = METHODS.lookup(config.method.name)
    return cls(config, dataset, gather_distributed=gather_distributed)
