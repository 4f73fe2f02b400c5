"""How reports name ids and show feature rows (shared by the tables, the weight analysis and
the plots)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from debiascl.data.base import BiasedDataset

MAX_SHOWN_FEATURES = 8
"""Feature values shown per table row in the easy/hard negatives table."""


@dataclass(frozen=True)
class Names:
    """What a report shows beside ids: the names of the classes, of the bias attributes and of
    a table's features (empty or None when unknown: the ids alone, features ``x0, x1, ...``)."""

    classes: Sequence[str] = ()
    attributes: Sequence[str] = ()
    features: Sequence[str] | None = None

    @classmethod
    def of(cls, dataset: BiasedDataset) -> Names:
        """The names a data set gives its classes, attributes and (tables) features."""
        features = getattr(dataset, "feature_names", None)
        return cls(dataset.class_names, dataset.attribute_names, features)


def named(value: int, names: Sequence[str] | None) -> str:
    """``"<id> <name>"`` when ``names`` has a (different) name for ``value``, else ``"<id>"``."""
    name = names[value] if names and 0 <= value < len(names) else str(value)
    return str(value) if name == str(value) else f"{value} {name}"


def feature_text(values: torch.Tensor, names: Sequence[str] | None) -> str:
    """The first :data:`MAX_SHOWN_FEATURES` of an (F,) feature row as "name=value, ..."."""
    shown = [
        f"{names[i] if names else f'x{i}'}={float(value):.2f}"
        for i, value in enumerate(values[:MAX_SHOWN_FEATURES].tolist())
    ]
    hidden = values.shape[0] - len(shown)
    return ", ".join(shown) + (f", ... (+{hidden} more)" if hidden > 0 else "")
