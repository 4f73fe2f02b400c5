"""Registries of the named building blocks a config chooses from, and the built-ins' names.

Each registry maps a name to what builds it (a method class, a data set's, a backbone's, a
projection head's or an augmentation's builder, a probe protocol's fit, a probe group kind's
groups, a metric), with the light facts a listing needs as ``info`` (a method's kind, a
backbone's data kind, an augmentation's data kinds, a probe group kind's labels). The modules
that define the blocks fill them when imported (``register_method``, ``register_dataset``,
``BACKBONES.add`` ...). The built-in blocks are also *declared* here, by name, with the module
that registers them and the little the choices need (a method's kind, a data set's summary),
so that listing or checking a choice (``--help``, ``debiascl datasets``, an unknown name)
imports neither torch nor the modules: looking a declared name up imports its module then.
Plugins register names that are not declared; they are choices once their module is imported.

This module imports nothing heavy, so config and the command line can import it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from debiascl.errors import DebiasclError

T = TypeVar("T")


class HalfRegisteredError(DebiasclError, LookupError):
    """A declared name whose module did not register it: a user error on the command line (one
    line), a LookupError to code that catches those."""


class Registry(Mapping[str, T], Generic[T]):
    """Names of one kind of building block: the declared ones first, then the others added.

    Iterating, ``len``, ``in`` and :meth:`info` read the names only; getting an entry of a
    declared name that is not registered yet imports the module that registers it.

    Args:
        setting: the config key that chooses among them (e.g. "method.name"); named in errors.
    """

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self._declared: dict[str, tuple[str, dict[str, Any]]] = {}
        self._entries: dict[str, T] = {}
        self._info: dict[str, dict[str, Any]] = {}
        self._aliases: dict[str, str] = {}

    def declare(self, name: str, module: str, **info: Any) -> None:
        """Declare that importing ``module`` registers ``name`` (with these ``info`` values)."""
        if name in self._declared:
            raise ValueError(f"{self.setting} '{name}' is declared twice")
        self._declared[name] = (module, info)

    def add(self, name: str, entry: T, **info: Any) -> T:
        """Register ``entry`` under ``name``, with the light ``info`` a listing shows (a declared
        name given no info takes its declaration's).

        Raises:
            ValueError: the name is registered already, or registered with other info than
                its declaration's (a programming error).
        """
        if name in self._entries:
            raise ValueError(f"{self.setting} '{name}' is registered twice")
        if name in self._declared and not info:
            info = self._declared[name][1]
        if name in self._declared and self._declared[name][1] != info:
            raise ValueError(
                f"{self.setting} '{name}' is registered with {info} but declared in "
                f"debiascl.registry with {self._declared[name][1]}"
            )
        self._entries[name] = entry
        self._info[name] = info
        return entry

    def info(self, name: str) -> dict[str, Any]:
        """The light values of ``name`` (declared or registered), without importing anything."""
        name = self.canonical(name)
        if name in self._declared:
            return self._declared[name][1]
        if name not in self._info:
            raise self._unknown(name)
        return self._info[name]

    def registered(self) -> dict[str, T]:
        """The entries registered so far (imports nothing), in registration order."""
        return dict(self._entries)

    def add_alias(self, alias: str, name: str) -> None:
        """Accept ``alias`` wherever ``name`` is accepted (listings show only ``name``); an
        alias given again for the same name (declared, then registered) is accepted."""
        if self._aliases.get(alias, name) != name or alias in self._entries or name not in self:
            raise ValueError(f"{self.setting} alias '{alias}' of '{name}' is not available")
        self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        """The registered name of ``name`` or of the alias ``name`` (anything else unchanged)."""
        return self._aliases.get(name, name)

    def lookup(self, name: str) -> T:
        """The entry of ``name`` (or alias), or a DebiasclError naming the setting and every
        choice."""
        if self.canonical(name) not in self:
            raise self._unknown(name)
        return self[name]

    def _unknown(self, name: str) -> DebiasclError:
        return DebiasclError(
            f"setting '{self.setting}' = {name!r}: expected one of {', '.join(self)}"
        )

    def __getitem__(self, name: str) -> T:
        name = self.canonical(name)
        if name not in self._entries and name in self._declared:
            module = self._declared[name][0]
            importlib.import_module(module)
            if name not in self._entries:
                raise HalfRegisteredError(
                    f"{self.setting} '{name}' is declared in debiascl.registry, but importing "
                    f"{module} did not register it"
                )
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._declared or name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._declared, *self._entries]))

    def __len__(self) -> int:
        return len(self._declared.keys() | self._entries.keys())

    def __repr__(self) -> str:
        return f"Registry({self.setting}: {', '.join(self)})"


METHODS: Registry[type] = Registry("method.name")
"""Method classes (:class:`debiascl.methods.Method` subclasses), filled by ``register_method``;
info ``supervised`` (has a classifier trained on class labels) and ``groups`` (trains on
``train.groups``)."""
DATASETS: Registry[Any] = Registry("data.name")
"""Data set builders (:class:`debiascl.data.base.DatasetBuilder`), filled by
``register_dataset``; info ``summary`` (the first line of the builder's docstring)."""
BACKBONES: Registry[Any] = Registry("model.backbone")
"""Backbone builders ``(ModelConfig, input channels or features) -> (module, F)``
(:data:`debiascl.models.BackboneBuilder`), filled by ``register_backbone``; info ``kind``, the
data kind it reads ("image" or "table")."""
HEADS: Registry[Any] = Registry("model.head")
"""Projection head builders ``(ModelConfig, F) -> module`` (:data:`debiascl.models.HeadBuilder`),
filled by debiascl.models."""
AUGMENTATIONS: Registry[Any] = Registry("data.augmentation")
"""View pipeline builders ``(dataset, ViewSettings) -> ViewPipeline``
(:data:`debiascl.data.views.ViewBuilder`), filled by ``register_augmentation``; info ``kinds``,
the data kinds it applies to."""
PROBE_PROTOCOLS: Registry[Any] = Registry("eval.probe")
"""Linear probe protocols: fits ``(ProbeData, ProbeSpec) -> LinearProbe``
(:data:`debiascl.evaluate.probes.ProbeFit`), filled by ``register_probe_protocol``; info
``summary``."""
PROBE_GROUP_KINDS: Registry[Any] = Registry("probe_groups")
"""The groups a group-robust probe balances: ``(ProbeGroupInputs) -> split -> (n,) group ids``
or None (:data:`debiascl.evaluate.probe_groups.GroupsBuilder`), filled by
``register_probe_groups``; info ``summary`` (what balances the loss, in the probe's protocol
label), ``label`` (the tables' name), ``bias_labels`` (uses bias labels), ``discovery`` (reads
the run's bias discovery), ``fitted_on`` (the split the probe is fitted on) and ``marker`` (its
points in the trade-off plot, or None: a circle)."""
METRICS: Registry[Any] = Registry("metric")
"""The metrics :func:`debiascl.metrics.group_metrics` composes, in order:
``(Scored, metrics so far) -> new entries`` (:data:`debiascl.metrics.Metric`), filled by
``register_metric``."""

for _name, _supervised, _groups in (
    ("simclr", False, False),
    ("dcl", False, False),
    ("hcl", False, False),
    ("triplet", False, False),
    ("wcl", False, False),
    ("cnc", False, True),
    ("erm", True, False),
    ("jtt", True, False),
    ("gce", True, False),
    ("gdro", True, True),
):
    METHODS.declare(_name, f"debiascl.methods.{_name}", supervised=_supervised, groups=_groups)
METHODS.add_alias("debiased_contrastive", "dcl")  # lightly's "DCL" is another loss
for _name, _module, _summary in (
    ("cifar10", "images", "CIFAR-10 (10 classes, 32x32, no bias attribute)."),
    ("cifar100", "images", "CIFAR-100 (100 fine classes, 32x32, no bias attribute)."),
    ("stl10", "images", "STL-10 (10 classes, 96x96, no bias attribute)."),
    (
        "celeba",
        "images",
        "CelebA with a binary target and a binary bias attribute chosen by name.",
    ),
    (
        "waterbirds",
        "images",
        "Waterbirds as made by group_DRO's generator (target bird type, bias background).",
    ),
    ("metadata-csv", "images", "Any image folder with a SubpopBench-style ``root/metadata.csv``."),
    (
        "imagenet100",
        "images",
        "ImageNet-100: the classes of a class list, from an ImageFolder tree (no bias attribute).",
    ),
    (
        "biased-digits",
        "synthetic",
        "sklearn digits, 10 classes on a class-correlated background colour.",
    ),
    (
        "biased-digits-binary",
        "synthetic",
        "sklearn digits 0-4 vs 5-9 on land / water textures (4 groups).",
    ),
    (
        "biased-digits-patch",
        "synthetic",
        "sklearn digits 0-4 vs 5-9 with a small white patch at the top or the bottom (4 groups).",
    ),
    (
        "biased-fmnist",
        "synthetic",
        "Fashion-MNIST, 10 classes on a class-correlated background colour.",
    ),
    (
        "biased-fmnist-binary",
        "synthetic",
        "Fashion-MNIST clothing vs shoes/bags on land / water textures (4 groups).",
    ),
    (
        "adult",
        "tabular",
        "UCI Adult (income >50K), bias sex (Female/Male) or race (non-White/White).",
    ),
    (
        "compas",
        "tabular",
        "ProPublica COMPAS (target two_year_recid), bias race (Caucasian/African-American).",
    ),
    ("german", "tabular", "Statlog German credit (target good credit), bias sex or age."),
    (
        "csv",
        "tabular",
        "Any CSV file with a header: a numeric target column and an optional bias column.",
    ),
):
    DATASETS.declare(_name, f"debiascl.data.{_module}", summary=_summary)
for _name, _kind in (
    ("resnet18", "image"),
    ("resnet50", "image"),
    ("mlp", "table"),
    ("small_cnn", "image"),
):
    BACKBONES.declare(_name, "debiascl.models", kind=_kind)
for _name in ("cifar", "biased", "mlp"):
    HEADS.declare(_name, "debiascl.models")
for _name, _kinds in (
    ("simclr", ("image",)),
    ("crop_flip", ("image",)),
    ("crop_flip_wide", ("image",)),
    ("gaussian_noise", ("table",)),
    ("scarf", ("table",)),
    ("none", ("image", "table")),
):
    AUGMENTATIONS.declare(_name, "debiascl.data.views", kinds=_kinds)

for _name, _summary in (
    ("fast", "standardised features, full-batch L-BFGS, L2 strength chosen on val"),
    (
        "authors",
        "the authors' Adam probe (eval.probe_epochs, eval.probe_lr, eval.probe_batch_size)",
    ),
):
    PROBE_PROTOCOLS.declare(_name, "debiascl.evaluate.probes", summary=_summary)
for _name, _summary, _label, _bias_labels, _discovery, _fitted_on, _marker in (
    (
        "discovered",
        "discovered groups (class x discovery flag; no bias label used)",
        "discovered groups (no bias labels)",
        False,
        True,
        "train",
        "^",
    ),
    (
        "true",
        "true groups (class x bias attribute; oracle, uses bias labels)",
        "true groups (oracle: bias labels)",
        True,
        False,
        "train",
        "D",
    ),
    (
        "class",
        "classes (class-balanced; no bias label used)",
        "class-balanced (no bias labels)",
        False,
        False,
        "train",
        "v",
    ),
    (
        "val",
        "no groups: fitted on the val split instead of train (held-out labels; no bias label used)",
        "trained on val (no bias labels)",
        False,
        False,
        "val",
        None,
    ),
):
    PROBE_GROUP_KINDS.declare(
        _name,
        "debiascl.evaluate.probe_groups",
        summary=_summary,
        label=_label,
        bias_labels=_bias_labels,
        discovery=_discovery,
        fitted_on=_fitted_on,
        marker=_marker,
    )
for _name in (
    "accuracy",
    "per_class",
    "worst_class",
    "per_group",
    "worst_group",
    "mean_group",
    "avg_acc_train_weighted",
    "alignment",
):
    METRICS.declare(_name, "debiascl.metrics")


def named_object(target: str) -> Any:
    """The object ``"module:name"`` names (a method's ``driver`` or ``analyses``), imported.

    Raises:
        LookupError: the target is not ``module:name`` or its module has no such name (a
            programming error of the method that declares it).
    """
    module, _, name = target.partition(":")
    found = getattr(importlib.import_module(module), name, None) if name else None
    if found is None:
        raise LookupError(f"'{target}': expected module:name of an object in that module")
    return found


def self_supervised_methods() -> tuple[str, ...]:
    """The methods that train on neither class labels nor groups, in registration order (the
    defaults of ``compare`` and the demo; imports nothing)."""
    return tuple(
        name
        for name in METHODS
        if not METHODS.info(name)["supervised"] and not METHODS.info(name).get("groups")
    )


def other_methods() -> tuple[str, ...]:
    """The methods that read class labels or groups, in registration order (imports nothing)."""
    return tuple(name for name in METHODS if name not in self_supervised_methods())


def needs_discovery(probe_groups: Iterable[str]) -> bool:
    """Whether a probe group kind of ``probe_groups`` reads the run's bias discovery (its
    ``discovery`` info; imports nothing)."""
    return any(PROBE_GROUP_KINDS.info(kind)["discovery"] for kind in probe_groups)


def list_datasets() -> list[str]:
    """Names of every data set (declared or registered), sorted (imports nothing)."""
    return sorted(DATASETS)


def check_dataset(name: str) -> None:
    """Raise a DebiasclError naming every data set when ``name`` is none (imports nothing)."""
    if name not in DATASETS:
        raise DebiasclError(f"unknown dataset '{name}'; available: {', '.join(list_datasets())}")
