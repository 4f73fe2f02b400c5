"""The sections of a run's configuration: one dataclass per section, and the ``method`` section
that only the chosen method reads (:class:`MethodConfig`)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from debiascl.errors import DebiasclError
from debiascl.registry import METHODS

MAX_IMAGE_SIZE = 4096
"""The largest image side accepted (data.image_size and the data sets' image_size option): a
batch of 3 x 4096 x 4096 float images is already 200 MB per image."""
MAX_SEED = 2**32 - 1
"""Seeds lie in [0, MAX_SEED] (numpy's range; torch accepts more)."""


@dataclass
class DataConfig:
    """Which data set, where, and how views are made (SPEC section 5, augmentation row).

    ``root``: the data folder, made absolute (against the working directory) when the
    configuration is built, so that a run evaluates from any folder; ``root_given``: the root
    as it was written (``--data-dir data``), kept for display only.
    ``num_workers``: loader processes, or "auto" (see :mod:`debiascl.data.loading`). ``cache``:
    decode file-based image sets once into a cache under ``cache_dir`` (null: the user cache
    folder; see :mod:`debiascl.data.cache`).
    """

    name: str = "biased-digits"
    root: str | None = None
    root_given: str | None = None
    download: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    augmentation: str = "simclr"
    image_size: int | None = None
    noise_std: float = 0.1
    corruption_rate: float = 0.6
    num_workers: int | str = "auto"
    cache: bool = True
    cache_dir: str | None = None


@dataclass
class ModelConfig:
    """Backbone and projection head of every encoder (SPEC section 5)."""

    backbone: str = "small_cnn"
    cifar_stem: bool = False
    pretrained: str | None = None
    mlp_hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    head: str = "mlp"
    head_hidden_dim: int = 512
    proj_dim: int = 128


@dataclass(frozen=True)
class MethodSetting:
    """One ``method.*`` setting as the registered methods declare it (each with its own
    default)."""

    annotation: Any
    methods: tuple[str, ...]
    """The methods that read it, in registration order."""


@functools.cache
def collect_method_settings(methods: tuple[tuple[str, type], ...]) -> dict[str, MethodSetting]:
    """The settings declared by the ``Options`` dataclasses of ``(name, method class)`` pairs.

    Two methods may give one setting different defaults, not different types: a
    ``method.<setting>`` key is read as one type whichever method the run chooses.

    Raises:
        DebiasclError: two methods declare one setting with different types (a plugin's method
            clashing with another's).
    """
    settings: dict[str, MethodSetting] = {}
    for name, cls in methods:
        hints = typing.get_type_hints(cls.Options)
        for option in dataclasses.fields(cls.Options):
            known = settings.get(option.name)
            if known is not None and known.annotation != hints[option.name]:
                raise DebiasclError(
                    f"method '{name}' declares setting 'method.{option.name}' as "
                    f"{hints[option.name]}, but {', '.join(known.methods)} declare it as "
                    f"{known.annotation}"
                )
            owners = () if known is None else known.methods
            settings[option.name] = MethodSetting(hints[option.name], (*owners, name))
    return settings


def method_settings() -> dict[str, MethodSetting]:
    """Every ``method.*`` setting of the registered methods (besides ``name``), by key."""
    return collect_method_settings(tuple(METHODS.items()))


OptionsT = TypeVar("OptionsT")


class MethodConfig:
    """The training objective: ``name`` and the ``method.*`` settings given (SPEC 2-3).

    A layer (a preset, a file, ``--set``) may give any setting that a registered method
    declares (a preset gives them for every method of its data set); they are kept in
    ``given``. Only the chosen method reads them: its ``Options`` dataclass takes the values
    given for its fields, its own defaults for the others, and checks them (:attr:`options`).
    ``config.method.<setting>`` is the chosen method's value, and ``config.yaml`` holds ``name``
    and the chosen method's options only, so which other methods or plugins are loaded does
    not change a run's file. A file of an earlier version, which listed every method's
    settings, reads back to the same options.
    """

    def __init__(self, name: str = "wcl", **values: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "given", dict(values))

    def __setattr__(self, key: str, value: Any) -> None:
        """``name``, or the value given for a setting."""
        if key == "name":
            object.__setattr__(self, key, value)
        else:
            self.given[key] = value

    def __getattr__(self, key: str) -> Any:
        """The chosen method's value of one of its settings."""
        if key.startswith("_") or key == "given":
            raise AttributeError(key)
        options = self.options
        if key not in {option.name for option in dataclasses.fields(options)}:
            raise AttributeError(f"method '{self.name}' has no setting '{key}'")
        return getattr(options, key)

    @property
    def options(self) -> Any:
        """The chosen method's ``Options``, filled and checked (:meth:`options_of`)."""
        return self.options_of(METHODS.lookup(self.name).Options)

    def options_of(self, options_type: type[OptionsT]) -> OptionsT:
        """One method's ``Options``: the values given for its fields, its defaults for the
        others, checked (its ``check()`` raises a DebiasclError naming a setting out of range).
        """
        names = {option.name for option in dataclasses.fields(options_type)}
        options = options_type(
            **{key: copy.deepcopy(value) for key, value in self.given.items() if key in names}
        )
        options.check()
        return options

    def to_dict(self) -> dict[str, Any]:
        """``name`` and the chosen method's options, as written in ``config.yaml``."""
        return {"name": self.name} | dataclasses.asdict(self.options)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MethodConfig) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass sections

    def __repr__(self) -> str:
        values = ", ".join(f"{key}={value!r}" for key, value in self.to_dict().items())
        return f"MethodConfig({values})"


@dataclass
class OptimConfig:
    """Optimizer and step schedule, one per encoder (E_d uses lr, E_b uses lr_b)."""

    name: str = "adam"
    lr: float = 1e-3
    lr_b: float = 1e-2
    weight_decay: float = 1e-6
    momentum: float = 0.9
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1


@dataclass
class TrainConfig:
    """The training loop: length, batch, device, precision, logging and checkpoints.

    ``channels_last``: null (auto) uses the channels_last memory layout where it helps, for
    CUDA training of images with a ResNet backbone; true or false force it on or off.
    ``checkpoint_every``: save the checkpoint every this many steps within an epoch;
    ``checkpoint_epochs``: and at the end of every this many epochs (1: each epoch; the last
    epoch always). Neither changes the result: a run resumes exactly from any checkpoint.
    ``malloc_tuning``: on the CPU with images, raise glibc's malloc thresholds so that freed
    buffers are reused instead of being handed back to the kernel (:mod:`debiascl.allocator`).

    Groups as a training input (SPEC 10, :mod:`debiascl.groups`): ``groups`` "none", "discovered"
    (the (class, flag) groups of ``groups_from``'s bias discovery; no bias label) or "true" (the
    (class, bias attribute) oracle; the batch then also carries a). ``group_sampling``
    "balanced" draws each epoch's samples with probability 1 / (G * n_g) (needs groups);
    ``group_weighting`` "balanced" weights each sample's loss by n / (G * n_g) instead (needs
    groups and a method that reads sample weights). ``discovered`` without ``groups_from``
    discovers first, in a stage-1 run of method ``groups_signal`` for ``groups_epochs`` epochs
    (:mod:`debiascl.discovery.stage`).
    """

    epochs: int = 20
    batch_size: int = 256
    device: str = "auto"
    precision: str = "32"
    channels_last: bool | None = None
    malloc_tuning: bool = True
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    checkpoint_epochs: int = 1
    knn_every: int = 5
    knn_k: int = 200
    max_consecutive_skips: int = 10
    progress: bool = True
    groups: str = "none"
    groups_from: str | None = None
    group_sampling: str = "none"
    group_weighting: str = "none"
    groups_signal: str = "gce"
    groups_epochs: int = 5


@dataclass
class EvalConfig:
    """Evaluation of frozen representations (SPEC section 7)."""

    probe: str = "fast"
    probe_epochs: int = 100
    probe_lr: float = 1e-3
    probe_batch_size: int = 256
    knn_k: int = 200
    tsne_samples: int = 2000


@dataclass
class Config:
    """Everything that defines one run; saved as ``config.yaml`` in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict (YAML/JSON serialisable)."""
        sections = {
            section.name: getattr(self, section.name) for section in dataclasses.fields(self)
        }
        return {
            name: section.to_dict() if isinstance(section, MethodConfig) else asdict(section)
            for name, section in sections.items()
        }

    def save(self, path: str | Path) -> None:
        """Write the resolved configuration as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "method": MethodConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}
