"""Hyper-parameter grids for ``debiascl compare --grid`` and the rule that picks a point.

A grid axis is one setting and the values to try, for every method that has the setting or for
the methods it names (``wcl:method.tau_plus=0.05,0.1``, ``dcl,wcl:method.tau_plus=0.05,0.1``).
A method's grid is the Cartesian product of its axes; every point is trained with every seed
(or with some, see ``compare``'s ``select_seeds``), and the point with the best mean selection
metric on the validation split over the seeds is the one reported on test (SubpopBench's
protocol).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from debiascl.config import canonical_key, parse_set_value
from debiascl.errors import DebiasclError
from debiascl.registry import METHODS

DEFAULT_POINT = "default"
"""The name of a method's only point when no axis applies to it."""

GridPoint = tuple[tuple[str, Any], ...]
"""((setting, value), ...) in the order the axes were given."""


@dataclass(frozen=True)
class GridAxis:
    """One setting of a grid and its values.

    Attributes:
        key: a dotted setting, e.g. ``method.tau_plus`` or ``optim.lr``.
        values: the values to try, in order (parsed like ``--set`` values).
        methods: the only methods this axis applies to; None for every method with the setting.
    """

    key: str
    values: tuple[Any, ...]
    methods: tuple[str, ...] | None = None


def parse_grid(text: str) -> GridAxis:
    """``[M1,M2,...:]KEY=V1,V2,...`` -> :class:`GridAxis` (each value parsed as YAML).

    Raises:
        DebiasclError: no ``=``, no key, no value, an empty method name, or a value or method
            given twice.
    """
    target, equals, values_text = text.partition("=")
    prefix, colon, key = target.rpartition(":")
    values = tuple(parse_set_value(value.strip()) for value in values_text.split(","))
    methods = tuple(name.strip() for name in prefix.split(",")) if colon else None
    if (
        not equals
        or not key.strip()
        or any(value == "" for value in values)
        or (methods is not None and not all(methods))
    ):
        raise DebiasclError(
            "grid: expected [METHOD,...:]KEY=V1,V2,... (e.g. method.tau_plus=0.05,0.1 or "
            f"dcl,wcl:method.tau_plus=0.05,0.1), got '{text}'"
        )
    if len(set(map(repr, values))) != len(values):
        raise DebiasclError(f"grid: '{text}' gives a value twice")
    if methods is not None and len(set(methods)) != len(methods):
        raise DebiasclError(f"grid: '{text}' names a method twice")
    return GridAxis(key.strip(), values, methods)


def check_axes(
    axes: Sequence[GridAxis],
    methods: Sequence[str],
    has_setting: Callable[[str], Callable[[str], bool]],
) -> list[GridAxis]:
    """The axes with their keys written ``section.name``, each checked to apply to a method.

    Args:
        axes: the parsed axes.
        methods: the comparison's methods.
        has_setting: method -> whether it has a dotted setting.

    Raises:
        DebiasclError: an axis naming a method that is not among ``methods``, an axis key that
            is no setting (naming the closest valid one), or an axis that applies to none of
            ``methods`` (it would be dropped without a word).
    """
    strangers = sorted(
        {name for axis in axes for name in axis.methods or () if name not in methods}
    )
    if strangers:
        raise DebiasclError(
            f"grid: method(s) {', '.join(strangers)} are not among the methods {', '.join(methods)}"
        )
    checked = []
    for axis in axes:
        key = axis.key
        if not key.startswith("data.options."):  # a data set's options are checked by it
            try:
                key = canonical_key(key)
            except DebiasclError as error:
                raise DebiasclError(f"grid: {error}") from None
        targets = methods if axis.methods is None else axis.methods
        if not any(has_setting(method)(key) for method in targets):
            raise DebiasclError(
                f"grid: setting '{key}' belongs to none of the methods {', '.join(targets)}; "
                "give the axis a METHOD: prefix naming a method that has it"
            )
        checked.append(GridAxis(key, axis.values, axis.methods))
    return checked


def applicable_axes(
    method: str, axes: Sequence[GridAxis], has_setting: Callable[[str], bool]
) -> list[GridAxis]:
    """The axes that vary ``method``'s runs: those naming it, or naming no method and setting
    one it has (so ``method.beta`` only varies HCL's runs).

    Raises:
        DebiasclError: an axis naming this method sets a setting it does not have, or two
            applicable axes set the same setting.
    """
    applicable = []
    for axis in axes:
        if axis.methods is not None and method not in axis.methods:
            continue
        if not has_setting(axis.key):
            if axis.methods is None:
                continue
            raise DebiasclError(f"grid: method '{method}' has no setting '{axis.key}'")
        applicable.append(axis)
    keys = [axis.key for axis in applicable]
    if len(set(keys)) != len(keys):
        raise DebiasclError(f"grid: method '{method}' gets two axes for one setting: {keys}")
    return applicable


def method_grid(
    method: str, axes: Sequence[GridAxis], has_setting: Callable[[str], bool]
) -> list[GridPoint]:
    """The points of one method's grid: the product of its :func:`applicable_axes` (one empty
    point when none applies)."""
    applicable = applicable_axes(method, axes, has_setting)
    keys = [axis.key for axis in applicable]
    return [
        tuple(zip(keys, values, strict=True))
        for values in itertools.product(*(axis.values for axis in applicable))
    ]


def grid_size(method: str, axes: Sequence[GridAxis], has_setting: Callable[[str], bool]) -> int:
    """How many points :func:`method_grid` gives, computed without listing them."""
    return math.prod(len(axis.values) for axis in applicable_axes(method, axes, has_setting))


def point_name(point: GridPoint) -> str:
    """A point's name and folder name: ``method.tau_plus=0.1,optim.lr=0.001`` or ``default``."""
    if not point:
        return DEFAULT_POINT
    return ",".join(f"{key}={value}" for key, value in point).replace("/", "_")


def method_sets(sets: Sequence[str], method: str) -> list[str]:
    """The ``key=value`` settings of ``sets`` that apply to ``method``: those without a method
    prefix, and those whose ``M1,M2,...:`` prefix (the grid's) names it, without the prefix.

    Raises:
        DebiasclError: a prefix naming an empty or unknown method.
    """
    applied = []
    for text in sets:
        target, equals, value = text.partition("=")
        prefix, colon, key = target.rpartition(":")
        if not colon:
            applied.append(text)
            continue
        names = [name.strip() for name in prefix.split(",")]
        unknown = [name for name in names if name not in METHODS]
        if unknown or not all(names):
            raise DebiasclError(
                f"set '{text}': expected [METHOD,...:]KEY=VALUE with known methods, got "
                f"{', '.join(repr(name) for name in unknown or names)}; methods: "
                f"{', '.join(METHODS)}"
            )
        if method in {METHODS.canonical(name) for name in names}:
            applied.append(f"{key}{equals}{value}")
    return applied


def point_sets(point: GridPoint) -> list[str]:
    """The point as ``key=value`` settings (the form of ``--set``)."""
    return [f"{key}={value}" for key, value in point]


def select_point(scores: Mapping[str, Sequence[float]]) -> str:
    """The point with the highest mean score over its seeds (the first of tied points).

    Args:
        scores: point name -> the selection metric of each of its seeds, in grid order.

    Raises:
        DebiasclError: no point has a score.
    """
    means = {
        name: sum(values) / len(values)
        for name, values in scores.items()
        if values and not any(math.isnan(value) for value in values)
    }
    if not means:
        raise DebiasclError("select: no grid point has a selection score to compare")
    best = max(means.values())
    return next(name for name, mean in means.items() if mean == best)
