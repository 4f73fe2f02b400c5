"""Typed run configuration: dataclasses, YAML presets, command-line overrides, validation.

A run is described by one :class:`Config`. It is built in layers, each overriding the last:
the dataclass defaults, a preset from ``debiascl/configs/<name>.yaml`` (or a user YAML file),
explicit overrides (the command line's flags), then ``key=value`` sets. Keys are dotted
(``method.tau_plus``); a bare key (``tau_plus``) is accepted when exactly one section has it.
Every problem raises :class:`~debiascl.errors.DebiasclError` naming the key and what was expected.

The ``method`` section is not a fixed list: besides ``name`` it accepts every setting that a
registered method declares (each method's ``Options`` dataclass, :mod:`debiascl.methods`), and
only the chosen method reads, defaults and checks them (:class:`MethodConfig`); the choices of
``method.name``, ``model.backbone``, ``model.head`` and ``data.augmentation`` are the names in
their registries (:mod:`debiascl.registry`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from debiascl.errors import DebiasclError
from debiascl.records import read_text
from debiascl.registry import AUGMENTATIONS, BACKBONES, HEADS, METHODS, PROBE_PROTOCOLS

PRESET_DIR = Path(__file__).parent / "configs"
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


def saved_method_section(section: Any, source: str) -> dict[str, Any]:
    """The ``method`` section of a saved config (a ``config.yaml`` or a checkpoint's) as this
    version writes it: ``name`` and the chosen method's options. Earlier versions saved every
    registered method's settings; those of the other methods are dropped.

    Raises:
        DebiasclError: naming ``source``, for a setting no registered method declares or a
            value of the wrong type or range.
    """
    config = Config()
    apply_mapping(config, {"method": section}, source)
    return config.method.to_dict()


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
    ``malloc_tuning``: on the CPU with images, raise glibc's malloc thresholds so that freed
    buffers are reused instead of being handed back to the kernel (:mod:`debiascl.allocator`).

    Groups as a training input (SPEC 10, :mod:`debiascl.groups`): ``groups`` "none", "discovered"
    (the (class, flag) groups of ``groups_from``'s bias discovery; no bias label) or "true" (the
    (class, bias attribute) oracle; the batch then also carries a). ``group_sampling``
    "balanced" draws each epoch's samples with probability 1 / (G * n_g) (needs groups);
    ``group_weighting`` "balanced" weights each sample's loss by n / (G * n_g) instead (needs
    groups and a method that reads sample weights). ``discovered`` without ``groups_from``
    discovers first, in a stage-1 run of method ``groups_signal`` for ``groups_epochs`` epochs
    (:mod:`debiascl.discovery_stage`).
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


_SECTION_TYPES = {
    "data": DataConfig,
    "model": ModelConfig,
    "method": MethodConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}

CHOICES: dict[str, Collection[str]] = {
    "data.augmentation": AUGMENTATIONS,
    "model.backbone": BACKBONES,
    "model.head": HEADS,
    "method.name": METHODS,
    "optim.name": ("adam", "sgd"),
    "train.precision": ("32", "bf16", "fp16"),
    "train.groups": ("none", "discovered", "true"),
    "train.group_sampling": ("none", "balanced"),
    "train.group_weighting": ("none", "balanced"),
    "train.groups_signal": ("gce", "erm"),
    "eval.probe": PROBE_PROTOCOLS,
}


def list_presets() -> list[str]:
    """Names of the bundled YAML presets (``debiascl/configs/*.yaml``)."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert ``value`` to the type named by ``annotation`` or raise a DebiasclError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        for option in non_none[:-1]:  # int | str: "4" is 4, "auto" stays a string
            try:
                return _coerce(value, option, key)
            except DebiasclError:
                continue
        return _coerce(value, non_none[-1], key)
    if annotation is Any:
        return value
    if origin is list:
        (item_type,) = args
        if isinstance(value, str):
            value = [part for part in value.strip("[]").split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise DebiasclError(f"setting '{key}': expected a list, got {value!r}")
        return [_coerce(item, item_type, key) for item in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise DebiasclError(f"setting '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise DebiasclError(f"setting '{key}': expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise DebiasclError(f"setting '{key}': expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise DebiasclError(f"setting '{key}': expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise DebiasclError(f"setting '{key}': expected an integer, got {value!r}")
        return int(as_float)
    if annotation is float:
        if isinstance(value, bool):
            raise DebiasclError(f"setting '{key}': expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DebiasclError(f"setting '{key}': expected a number, got {value!r}") from None
    if annotation is str:
        if isinstance(value, dict | list):
            raise DebiasclError(f"setting '{key}': expected a string, got {value!r}")
        if isinstance(value, bool):  # YAML reads `groups: true` as a boolean
            return "true" if value else "false"
        return str(value)
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def _field_types(section: str) -> dict[str, Any]:
    """The type of each setting of ``section`` (for ``method``: those the methods declare)."""
    if section == "method":
        return {"name": str} | {key: s.annotation for key, s in method_settings().items()}
    return typing.get_type_hints(_SECTION_TYPES[section])


def _unknown_method_setting(key: str, method: str) -> DebiasclError:
    """The error for a ``method.*`` key that no registered method declares."""
    settings = method_settings()
    closest = closest_setting(key)
    if not method:
        return DebiasclError(
            f"unknown setting '{key}'{closest}: the registered methods accept name, "
            f"{', '.join(settings)}"
        )
    if method not in METHODS:
        return DebiasclError(
            f"unknown setting '{key}'{closest} for method '{method}', which is not registered; "
            f"the registered methods accept name, {', '.join(settings)}"
        )
    own = [name for name, s in settings.items() if method in s.methods]
    others = [name for name, s in settings.items() if method not in s.methods]
    return DebiasclError(
        f"unknown setting '{key}'{closest}: method '{method}' accepts "
        f"{', '.join(['name', *own])}"
        + (f" (other methods: {', '.join(others)})" if others else "")
    )


def setting_names() -> list[str]:
    """Every dotted setting (``section.name``) of the sections and the registered methods."""
    return [f"{section}.{name}" for section in _SECTION_TYPES for name in _field_types(section)]


def closest_setting(key: str) -> str:
    """`` (did you mean 'section.name'?)`` for the valid setting closest to ``key``, else ''.

    A bare ``key`` is also compared with the settings' names without their section.
    """
    names = setting_names()
    by_bare = {name.split(".", 1)[1]: name for name in names}
    match = difflib.get_close_matches(key, names, n=1, cutoff=0.6) or [
        by_bare[bare] for bare in difflib.get_close_matches(key, list(by_bare), n=1, cutoff=0.6)
    ]
    return f" (did you mean '{match[0]}'?)" if match else ""


def canonical_key(key: str) -> str:
    """``key`` as ``section.name`` (a bare name resolved to its one section).

    Raises:
        DebiasclError: no section has the setting (naming the closest valid one), or several.
    """
    section, name = _resolve_key(key, "")
    return f"{section}.{name}"


def _resolve_key(key: str, method: str) -> tuple[str, str]:
    """Split ``section.name`` or find the one section that holds a bare ``name``.

    ``method`` (the chosen ``method.name``) is named in the error for an unknown method key.
    """
    if "." in key:
        section, name = key.split(".", 1)
        if section not in _SECTION_TYPES:
            raise DebiasclError(
                f"unknown setting '{key}'{closest_setting(key)}: sections are "
                f"{', '.join(_SECTION_TYPES)}"
            )
        if section == "data" and name.startswith("options."):
            return section, name
        if section == "method" and name not in _field_types(section):
            raise _unknown_method_setting(key, method)
        if name not in _field_types(section):
            known = ", ".join(_field_types(section))
            raise DebiasclError(
                f"unknown setting '{key}'{closest_setting(key)}: '{section}' has {known}"
            )
        return section, name
    holders = [s for s in _SECTION_TYPES if key in _field_types(s)]
    if len(holders) == 1:
        return holders[0], key
    if not holders:
        raise DebiasclError(
            f"unknown setting '{key}'{closest_setting(key)}: use section.name, e.g. method.tau_plus"
        )
    options = ", ".join(f"{s}.{key}" for s in holders)
    raise DebiasclError(f"ambiguous setting '{key}': write one of {options}")


def set_value(config: Config, key: str, value: Any) -> None:
    """Set one (possibly bare) dotted key, converting ``value`` to the field's type."""
    section_name, name = _resolve_key(key, config.method.name)
    section = getattr(config, section_name)
    if name.startswith("options."):
        section.options[name.removeprefix("options.")] = parse_set_value(str(value))
        return
    annotation = _field_types(section_name)[name]
    value = _coerce(value, annotation, f"{section_name}.{name}")
    if (section_name, name) == ("method", "name"):
        value = METHODS.canonical(value)  # an alias (debiased_contrastive) is saved as its name
    setattr(section, name, value)


def parse_set_value(text: str) -> Any:
    """The value of a ``key=value`` set: parsed as YAML (``0.1``, ``[1, 2]``, ``true``);
    text that is not valid YAML (``[``, ``@``) stays a string, which the setting's type check
    then accepts or rejects by name. Empty text stays empty."""
    if not text.strip():
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_mapping(config: Config, mapping: dict[str, Any], source: str) -> None:
    """Apply a nested mapping (as read from YAML) onto ``config``."""
    if not isinstance(mapping, dict):
        raise DebiasclError(
            f"{source}: expected a mapping of sections, got {type(mapping).__name__}"
        )
    for section_name, values in mapping.items():
        if section_name not in _SECTION_TYPES:
            raise DebiasclError(
                f"{source}: unknown section '{section_name}'; expected {', '.join(_SECTION_TYPES)}"
            )
        if not isinstance(values, dict):
            raise DebiasclError(f"{source}: section '{section_name}' must be a mapping")
        for name, value in values.items():
            if name == "options" and section_name == "data":
                if not isinstance(value, dict):
                    raise DebiasclError(f"{source}: data.options must be a mapping")
                config.data.options.update(value)
                continue
            try:
                set_value(config, f"{section_name}.{name}", value)
            except DebiasclError as error:
                raise DebiasclError(f"{source}: {error}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file of sections into a dict.

    Raises:
        DebiasclError: naming the file, when it is missing, unreadable, not UTF-8 text, holds
            NUL bytes, is not valid YAML, or when its top level is not a mapping of sections.
    """
    path = Path(path)
    if not path.is_file():
        raise DebiasclError(f"config file '{path}' does not exist")
    text = read_text(path, "config file", "expected a YAML file", empty_ok=True)
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise DebiasclError(f"config file '{path}' is not valid YAML{where}: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise DebiasclError(
            f"config file '{path}': expected a mapping of sections (e.g. 'train:'), "
            f"got a {type(loaded).__name__}"
        )
    return loaded


def preset_path(name: str) -> Path:
    """The file of a bundled preset, or a DebiasclError listing the presets."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise DebiasclError(f"unknown preset '{name}'; presets: {', '.join(list_presets())}")
    return path


def _apply_layers(
    config: Config,
    layers: list[tuple[dict[str, Any], str]],
    overrides: dict[str, Any],
    sets: list[str],
    method: str | None,
) -> None:
    """Apply YAML layers (with their ``methods.<method>`` block), overrides, then sets."""
    for mapping, source in layers:
        per_method = mapping.get("methods", {})
        if not isinstance(per_method, dict):
            raise DebiasclError(f"{source}: 'methods' must map method names to sections")
        apply_mapping(config, {k: v for k, v in mapping.items() if k != "methods"}, source)
        if method in per_method:
            apply_mapping(config, per_method[method], f"{source} (methods.{method})")
    for key, value in overrides.items():
        if value is not None:
            set_value(config, key, value)
    for item in sets:
        if "=" not in item:
            raise DebiasclError(f"sets: expected key=value, got '{item}'")
        key, value = item.split("=", 1)
        set_value(config, key.strip(), parse_set_value(value))


def build_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> Config:
    """Build and validate a config: defaults < preset < file < overrides < ``key=value`` sets.

    A relative or ``~`` ``data.root`` is made absolute against the working directory (the form
    given is kept in ``data.root_given``).

    A YAML layer may hold a ``methods`` mapping of per-method sections (e.g. JTT's own
    optimiser under ``methods: {jtt: {optim: {lr: 1.0e-5}}}``); the block of the run's method
    is applied right after its layer, so explicit overrides still win.
    """
    layers = []
    if preset is not None:
        path = preset_path(preset)
        layers.append((load_yaml(path), str(path)))
    if config_file is not None:
        layers.append((load_yaml(config_file), str(config_file)))
    overrides, sets = overrides or {}, sets or []
    probe = Config()
    _apply_layers(probe, layers, overrides, sets, method=None)
    config = Config()
    _apply_layers(config, layers, overrides, sets, method=probe.method.name)
    root = config.data.root
    if root is not None and root != str(Path(root).expanduser().absolute()):
        config.data.root_given = root
        config.data.root = str(Path(root).expanduser().absolute())
    validate(config)
    return config


def load_config(path: str | Path, run: bool = False) -> Config:
    """Read a saved ``config.yaml`` (e.g. from a run directory) and validate it.

    Args:
        path: the file.
        run: it is a run directory's config.yaml, which lists every section: one without them
            all (truncated or edited) is refused rather than read with defaults.

    Raises:
        DebiasclError: naming the file, for any problem of :func:`load_yaml`, a missing section
            of a run's config, or a setting of the wrong type or range.
    """
    mapping = load_yaml(path)
    missing = [section for section in _SECTION_TYPES if section not in mapping]
    if run and missing:
        raise DebiasclError(
            f"config file '{path}' has no section {', '.join(missing)}: a run's config.yaml lists "
            "every section (truncated or edited?); restore it, or train the run again"
        )
    config = Config()
    apply_mapping(config, mapping, str(path))
    validate(config)
    return config


def check_setting(condition: bool, key: str, expected: str, value: Any) -> None:
    """Raise a DebiasclError naming ``key`` and the ``expected`` range unless ``condition``.

    Float settings must also be finite: ``inf`` and ``nan`` are out of every range.
    """
    if isinstance(value, float) and not math.isfinite(value):
        expected = f"a finite number {expected}"
    elif condition:
        return
    raise DebiasclError(f"setting '{key}' = {value!r} is out of range: expected {expected}")


def groups_read(train: TrainConfig, trains_on_groups: bool) -> str:
    """The groups (``train.groups``) a training reads: none unless it samples or weights by
    them or its method trains on groups (the setting alone changes nothing)."""
    used = train.group_sampling != "none" or train.group_weighting != "none" or trains_on_groups
    return train.groups if used else "none"


def _check_groups(train: TrainConfig, method: str) -> None:
    """The group settings fit together and the method (SPEC 10)."""
    check_setting(train.groups_epochs >= 1, "train.groups_epochs", ">= 1", train.groups_epochs)
    if train.groups == "discovered" and not train.groups_from and METHODS[method].driver:
        raise DebiasclError(
            f"setting 'train.groups' = 'discovered' with method '{method}', which trains in "
            "stages of its own, needs train.groups_from: a finished run whose discovery gives "
            "the groups"
        )
    if train.groups != "discovered" and train.groups_from is not None:
        raise DebiasclError(
            f"setting 'train.groups_from' is read only with train.groups=discovered "
            f"(train.groups is {train.groups!r})"
        )
    for key in ("group_sampling", "group_weighting"):
        if getattr(train, key) != "none" and train.groups == "none":
            raise DebiasclError(
                f"setting 'train.{key}' = {getattr(train, key)!r} needs groups: set "
                "train.groups to discovered or true"
            )
    if train.group_weighting != "none" and not METHODS[method].reads_sample_weights:
        raise DebiasclError(
            f"setting 'train.group_weighting' = {train.group_weighting!r}: method '{method}' "
            "does not weight its loss per sample (simclr, dcl, hcl, wcl and erm do)"
        )
    if METHODS[method].trains_on_groups and train.groups == "none":
        raise DebiasclError(
            f"method '{method}' trains on groups: set train.groups to discovered (with "
            "train.groups_from) or true"
        )
    if train.group_sampling != "none" and METHODS[method].driver is not None:
        raise DebiasclError(
            f"setting 'train.group_sampling' does not combine with method '{method}', whose "
            "stages choose their own sampling"
        )


def validate(config: Config) -> None:
    """Reject impossible settings with a message naming the key and the allowed range."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise DebiasclError(
                f"setting '{key}' = {value!r}: expected one of {', '.join(allowed)}"
            )
    _ = config.method.options  # the chosen method's options are filled and checked
    o, t, d, e = config.optim, config.train, config.data, config.eval
    check_setting(o.lr > 0, "optim.lr", "> 0", o.lr)
    check_setting(o.lr_b > 0, "optim.lr_b", "> 0", o.lr_b)
    check_setting(o.weight_decay >= 0, "optim.weight_decay", ">= 0", o.weight_decay)
    check_setting(0 <= o.momentum < 1, "optim.momentum", "in [0, 1)", o.momentum)
    check_setting(0 < o.gamma <= 1, "optim.gamma", "in (0, 1]", o.gamma)
    check_setting(
        all(ms > 0 for ms in o.milestones), "optim.milestones", "positive epochs", o.milestones
    )
    check_setting(t.epochs >= 1, "train.epochs", ">= 1", t.epochs)
    check_setting(0 <= t.seed <= MAX_SEED, "train.seed", f"in [0, {MAX_SEED}]", t.seed)
    check_setting(t.batch_size >= 2, "train.batch_size", ">= 2", t.batch_size)
    check_setting(t.log_every >= 1, "train.log_every", ">= 1", t.log_every)
    check_setting(t.checkpoint_every >= 1, "train.checkpoint_every", ">= 1", t.checkpoint_every)
    check_setting(
        t.knn_every >= 0, "train.knn_every", ">= 0 (0 turns the monitor off)", t.knn_every
    )
    check_setting(t.knn_k >= 1, "train.knn_k", ">= 1", t.knn_k)
    check_setting(
        t.max_consecutive_skips >= 1, "train.max_consecutive_skips", ">= 1", t.max_consecutive_skips
    )
    _check_groups(t, config.method.name)
    check_setting(
        t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"),
        "train.device",
        "auto, cpu, cuda or cuda:N",
        t.device,
    )
    check_setting(d.noise_std >= 0, "data.noise_std", ">= 0", d.noise_std)
    check_setting(
        0 <= d.corruption_rate < 1, "data.corruption_rate", "in [0, 1)", d.corruption_rate
    )
    check_setting(
        d.num_workers == "auto" or (isinstance(d.num_workers, int) and d.num_workers >= 0),
        "data.num_workers",
        "auto or an integer >= 0",
        d.num_workers,
    )
    check_setting(
        d.cache_dir is None or d.cache_dir.strip() != "",
        "data.cache_dir",
        "a folder, or null for the user cache folder",
        d.cache_dir,
    )
    check_setting(
        d.image_size is None or 8 <= d.image_size <= MAX_IMAGE_SIZE,
        "data.image_size",
        f"in [8, {MAX_IMAGE_SIZE}]",
        d.image_size,
    )
    check_setting(config.model.proj_dim >= 1, "model.proj_dim", ">= 1", config.model.proj_dim)
    check_setting(e.probe_epochs >= 1, "eval.probe_epochs", ">= 1", e.probe_epochs)
    check_setting(e.probe_lr > 0, "eval.probe_lr", "> 0", e.probe_lr)
    check_setting(e.probe_batch_size >= 1, "eval.probe_batch_size", ">= 1", e.probe_batch_size)
    check_setting(e.knn_k >= 1, "eval.knn_k", ">= 1", e.knn_k)
