"""How reports name ids and show feature rows (shared by the tables, the weight analysis and
the plots)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

MAX_SHOWN_FEATURES = 8
"""Feature values shown per table row in the easy/hard negatives table."""


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
