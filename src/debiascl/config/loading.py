"""Building a run's configuration in layers: presets, YAML files, overrides and sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from debiascl.config.checks import validate
from debiascl.config.sections import SECTION_TYPES, Config
from debiascl.config.settings import apply_mapping, parse_set_value, set_value
from debiascl.errors import DebiasclError
from debiascl.records import read_text

PRESET_DIR = Path(__file__).parent.parent / "configs"


def list_presets() -> list[str]:
    """Names of the bundled YAML presets (``debiascl/configs/*.yaml``)."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


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
    missing = [section for section in SECTION_TYPES if section not in mapping]
    if run and missing:
        raise DebiasclError(
            f"config file '{path}' has no section {', '.join(missing)}: a run's config.yaml lists "
            "every section (truncated or edited?); restore it, or train the run again"
        )
    config = Config()
    apply_mapping(config, mapping, str(path))
    validate(config)
    return config
