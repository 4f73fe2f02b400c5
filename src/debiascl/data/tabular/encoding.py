"""Encoding raw table columns as features with the train split's statistics.

Numeric columns are standardised, categorical ones one-hot encoded over the train categories,
missing values imputed (median / mode); :class:`ColumnEncoding` keeps what each column needs so
new rows are encoded the same way (a model folder's preprocessing.json).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from debiascl.errors import DebiasclError

MISSING = frozenset({"", "?", "NA", "nan", "NaN"})


def parse_float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class ColumnEncoding:
    """How one raw column becomes features, with the train split's statistics.

    Attributes:
        name: the column's name.
        kind: "numeric" (one standardised feature) or "categorical" (one-hot over
            ``categories``).
        fill: the train split's median (numeric, a float) or mode (categorical) that replaces
            a missing value.
        mean, std: the numeric column's train mean and the divisor (its train std, 1.0 for a
            constant column); unused for a categorical one.
        categories: the categorical column's sorted train categories; a value never seen in
            train encodes as all zeros.
    """

    name: str
    kind: str
    fill: float | str
    mean: float = 0.0
    std: float = 1.0
    categories: tuple[str, ...] = ()

    @property
    def feature_names(self) -> list[str]:
        """``name`` (numeric) or one ``name=category`` per category."""
        if self.kind == "numeric":
            return [self.name]
        return [f"{self.name}={c}" for c in self.categories]

    def to_dict(self) -> dict[str, object]:
        """Plain values (what a model folder's preprocessing.json holds)."""
        return {**asdict(self), "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> ColumnEncoding:
        """Inverse of :meth:`to_dict`."""
        kind = str(values["kind"])
        fill = values["fill"]
        return cls(
            str(values["name"]),
            kind,
            float(fill) if kind == "numeric" else str(fill),  # type: ignore[arg-type]
            float(values.get("mean", 0.0)),  # type: ignore[arg-type]
            float(values.get("std", 1.0)),  # type: ignore[arg-type]
            tuple(str(c) for c in values.get("categories", ())),  # type: ignore[union-attr]
        )

    def encode(self, values: list[str], source: str) -> tuple[np.ndarray, np.ndarray]:
        """(n, 1 or K) float64 block of stripped raw ``values`` (n,) and their (n,) missing mask.

        Raises:
            DebiasclError: a numeric column holding a value that is not a number (naming
                ``source``, the column and the row).
        """
        missing = np.array([v in MISSING for v in values], dtype=bool)
        filled = [str(self.fill) if m else v for v, m in zip(values, missing, strict=True)]
        if self.kind == "categorical":
            position = {c: k for k, c in enumerate(self.categories)}
            codes = np.array([position.get(v, -1) for v in filled])
            block = codes[:, None] == np.arange(len(self.categories))[None, :]
            return block.astype(np.float64), missing
        column = np.empty(len(values))
        for row, (value, gap) in enumerate(zip(values, missing, strict=True)):
            parsed = self.fill if gap else parse_float(value)
            if parsed is None:
                raise DebiasclError(
                    f"{source}: column '{self.name}' has {value!r} in data row {row + 1}; "
                    "expected a number"
                )
            column[row] = parsed
        return ((column - self.mean) / self.std)[:, None], missing


def _fit_column(
    name: str, values: list[str], missing: np.ndarray, train: np.ndarray
) -> ColumnEncoding:
    """The encoding of one stripped raw column from its train rows (see the module docstring)."""
    numeric = all(parse_float(v) is not None for v, m in zip(values, missing, strict=True) if not m)
    observed = [v for v, keep in zip(values, train & ~missing, strict=True) if keep]
    if not observed:
        raise DebiasclError(f"column '{name}' has no value in the train split")
    if numeric:
        median = float(np.median(np.array([float(v) for v in observed])))
        column = np.array([median if m else float(v) for v, m in zip(values, missing, strict=True)])
        mean, std = column[train].mean(), column[train].std()
        return ColumnEncoding(name, "numeric", median, float(mean), float(std) if std > 0 else 1.0)
    categories, counts = np.unique(np.array(observed), return_counts=True)
    mode = str(categories[np.argmax(counts)])
    return ColumnEncoding(name, "categorical", mode, categories=tuple(str(c) for c in categories))


def apply_encoding(
    encoding: Sequence[ColumnEncoding], columns: dict[str, list[str]], source: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Encode raw string columns with fitted column encodings.

    Args:
        encoding: one :class:`ColumnEncoding` per feature column, in feature order.
        columns: name -> (n,) raw values (stripped here); must hold every encoded column.
        source: the file the values come from, named in errors.

    Returns:
        features (n, F) float32 and name -> (n,) bool mask of the imputed cells of each column
        that had any.
    """
    blocks, imputed = [], {}
    n = len(next(iter(columns.values()))) if columns else 0
    for column in encoding:
        block, missing = column.encode([v.strip() for v in columns[column.name]], source)
        blocks.append(block)
        if missing.any():
            imputed[column.name] = missing
    features = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
    return features.astype(np.float32), imputed


def encode_features(
    columns: dict[str, list[str]], train: np.ndarray, source: str = "table"
) -> tuple[np.ndarray, list[str], dict[str, np.ndarray], list[ColumnEncoding]]:
    """Encode raw string columns with train-split statistics.

    Args:
        columns: name -> (n,) raw values; a column is numeric when every non-missing value parses
            as a float, categorical otherwise.
        train: (n,) bool, rows of the train split.
        source: the file the values come from, named in errors.

    Returns:
        features (n, F) float32, the F feature names, name -> (n,) bool mask of the imputed
        cells of each column that had any, and the fitted encoding of each column.
    """
    encoding = []
    for name, values in columns.items():
        stripped = [v.strip() for v in values]
        missing = np.array([v in MISSING for v in stripped], dtype=bool)
        encoding.append(_fit_column(name, stripped, missing, train))
    features, imputed = apply_encoding(encoding, columns, source)
    names = [feature for column in encoding for feature in column.feature_names]
    return features, names, imputed, encoding
