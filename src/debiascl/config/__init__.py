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

The layers: :mod:`~debiascl.config.sections` (the dataclasses), :mod:`~debiascl.config.settings`
(keys, types, applying values), :mod:`~debiascl.config.checks` (ranges and choices) and
:mod:`~debiascl.config.loading` (presets, files, :func:`build_config`, :func:`load_config`).
"""

from debiascl.config.checks import CHOICES, check_setting, groups_read, validate
from debiascl.config.loading import (
    PRESET_DIR,
    build_config,
    list_presets,
    load_config,
    load_yaml,
    preset_path,
)
from debiascl.config.sections import (
    MAX_IMAGE_SIZE,
    MAX_SEED,
    SECTION_TYPES,
    Config,
    DataConfig,
    EvalConfig,
    MethodConfig,
    MethodSetting,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    collect_method_settings,
    method_settings,
)
from debiascl.config.settings import (
    apply_mapping,
    canonical_key,
    closest_setting,
    parse_set_value,
    saved_method_section,
    set_value,
    setting_names,
)

__all__ = [
    "CHOICES",
    "MAX_IMAGE_SIZE",
    "MAX_SEED",
    "PRESET_DIR",
    "SECTION_TYPES",
    "Config",
    "DataConfig",
    "EvalConfig",
    "MethodConfig",
    "MethodSetting",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_mapping",
    "build_config",
    "canonical_key",
    "check_setting",
    "closest_setting",
    "collect_method_settings",
    "groups_read",
    "list_presets",
    "load_config",
    "load_yaml",
    "method_settings",
    "parse_set_value",
    "preset_path",
    "saved_method_section",
    "set_value",
    "setting_names",
    "validate",
]
