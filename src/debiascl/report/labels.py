"""How reports name ids, evaluations and feature rows (shared by the tables, the weight analysis
and the plots): every label is rendered from a record, never parsed back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from debiascl.registry import PROBE_GROUP_KINDS
from debiascl.results import Evaluation

if TYPE_CHECKING:
    from debiascl.data.base import BiasedDataset

SUPERVISED_LABEL = "own classifier (supervised)"
"""The evaluation label of supervised methods (scored by their own classifier)."""
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


def evaluation_label(evaluation: Evaluation) -> str:
    """An evaluation's label in the tables (their ``evaluation`` column).

    "linear probe (<protocol>)" for the plain probe, :data:`SUPERVISED_LABEL` for a supervised
    method's classifier, and for a group-robust probe the probe label followed by its
    :func:`group_label` (which says whether bias labels were used).
    """
    if evaluation.kind == "classifier":
        return SUPERVISED_LABEL
    label = f"linear probe ({evaluation.protocol})"
    return label if evaluation.groups is None else f"{label}, {group_label(evaluation.groups)}"


def group_label(kind: str) -> str:
    """How the tables name the group-robust probe ``kind``: its ``label``
    (:data:`debiascl.registry.PROBE_GROUP_KINDS`)."""
    return PROBE_GROUP_KINDS.info(kind)["label"]


def short_name(evaluation: Evaluation) -> str:
    """An evaluation's short name in probes.md and the trade-off plot: "plain", the probe group
    kind of a group-robust probe, or "own classifier"."""
    if evaluation.kind == "classifier":
        return "own classifier"
    return "plain" if evaluation.groups is None else evaluation.groups
