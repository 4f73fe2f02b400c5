"""Validation of data-set options (``data.options`` / ``--set`` of ``datasets describe``).

Every builder checks its options through these helpers, so an unknown option, a number that is
not one and a value outside its choices read the same for every data set; each error is a
:class:`~debiascl.errors.DebiasclError` naming the data set and the option.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from debiascl.errors import DebiasclError


def resolve_options(
    name: str, given: Mapping[str, object], defaults: Mapping[str, object]
) -> dict[str, object]:
    """``defaults`` updated by ``given``; an option that ``defaults`` does not name is an error.

    Args:
        name: the data set (named in the error).
        given: the options the user set.
        defaults: every option the data set knows, with its default.

    Raises:
        DebiasclError: one line listing the unknown options and the valid ones.
    """
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise DebiasclError(
            f"unknown option for dataset '{name}': it has no option {', '.join(unknown)}; "
            f"valid options: {', '.join(sorted(defaults))}"
        )
    return {**defaults, **given}


def number_option(
    name: str, key: str, value: object, kind: type[int] | type[float], expected: str = ""
) -> int | float:
    """``value`` of option ``key`` converted by ``kind`` (a boolean is not a number).

    Args:
        name: the data set (named in the error).
        key: the option.
        value: what the user gave.
        kind: int or float.
        expected: what the error says is expected (default "an integer" or "a number").

    Raises:
        DebiasclError: ``dataset 'NAME': option KEY=VALUE; expected ...``.
    """
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        raise DebiasclError(
            f"dataset '{name}': option {key}={value!r}; expected "
            f"{expected or ('an integer' if kind is int else 'a number')}"
        ) from None


def choice_option(name: str, key: str, value: object, choices: Sequence[str]) -> str:
    """``value`` of option ``key`` when it is one of ``choices``; else a one-line error."""
    if value not in choices:
        raise DebiasclError(f"dataset '{name}': option {key}={value!r}; expected one of {choices}")
    return str(value)
