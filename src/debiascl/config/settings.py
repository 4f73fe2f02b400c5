"""Settings by key: dotted keys (``method.tau_plus``, or a bare ``tau_plus`` when one section has
it), their types, and applying a mapping or one ``key=value`` onto a :class:`Config`."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable
from typing import Any

import yaml

from debiascl.config.sections import SECTION_TYPES, Config, method_settings
from debiascl.errors import DebiasclError
from debiascl.registry import METHODS


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
    if annotation in _SCALARS:
        return _SCALARS[annotation](value, key)
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def _to_bool(value: Any, key: str) -> bool:
    """``value`` as a boolean (``true``/``yes``/``1``/``on`` and their opposites as text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
        return False
    raise DebiasclError(f"setting '{key}': expected true or false, got {value!r}")


def _to_int(value: Any, key: str) -> int:
    """``value`` as an integer (a whole float or integer text too; never a boolean)."""
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


def _to_float(value: Any, key: str) -> float:
    """``value`` as a number (never a boolean)."""
    if isinstance(value, bool):
        raise DebiasclError(f"setting '{key}': expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DebiasclError(f"setting '{key}': expected a number, got {value!r}") from None


def _to_str(value: Any, key: str) -> str:
    """``value`` as text (a YAML boolean as ``true``/``false``; never a mapping or list)."""
    if isinstance(value, dict | list):
        raise DebiasclError(f"setting '{key}': expected a string, got {value!r}")
    if isinstance(value, bool):  # YAML reads `groups: true` as a boolean
        return "true" if value else "false"
    return str(value)


_SCALARS: dict[Any, Callable[[Any, str], Any]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
}


def _field_types(section: str) -> dict[str, Any]:
    """The type of each setting of ``section`` (for ``method``: those the methods declare)."""
    if section == "method":
        return {"name": str} | {key: s.annotation for key, s in method_settings().items()}
    return typing.get_type_hints(SECTION_TYPES[section])


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
    return [f"{section}.{name}" for section in SECTION_TYPES for name in _field_types(section)]


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
        if section not in SECTION_TYPES:
            raise DebiasclError(
                f"unknown setting '{key}'{closest_setting(key)}: sections are "
                f"{', '.join(SECTION_TYPES)}"
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
    holders = [s for s in SECTION_TYPES if key in _field_types(s)]
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
        if section_name not in SECTION_TYPES:
            raise DebiasclError(
                f"{source}: unknown section '{section_name}'; expected {', '.join(SECTION_TYPES)}"
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
