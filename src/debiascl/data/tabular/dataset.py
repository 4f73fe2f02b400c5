"""The table dataset class: one split of an encoded table, and how every builder makes it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from debiascl.data.base import SPLIT_CODES, BiasedDataset
from debiascl.data.options import number_option
from debiascl.data.sampling import stratified_split
from debiascl.data.tabular.encoding import ColumnEncoding, encode_features
from debiascl.errors import DebiasclError
from debiascl.metrics import group_counts

logger = logging.getLogger("debiascl")


@dataclass
class RawTable:
    """A parsed table before encoding.

    Attributes:
        source: the file(s) read, for messages.
        columns: feature column name -> (n,) raw string values.
        targets: (n,) int64 class index.
        attributes: (n,) int64 bias value, -1 where unknown.
        splits: (n,) int64 split code (0 train, 1 val, 2 test).
        class_names, attribute_names: names of the class and bias indices.
    """

    source: str
    columns: dict[str, list[str]]
    targets: np.ndarray
    attributes: np.ndarray
    splits: np.ndarray
    class_names: list[str]
    attribute_names: list[str]


class TableDataset(BiasedDataset):
    """Standardised feature rows of one split of a table.

    Attributes (besides :class:`BiasedDataset`'s):
        features: (n, F) float32 standardised / one-hot features.
        feature_names: F names, ``column`` for numeric and ``column=value`` for one-hot features.
        encoding: how each raw column became features (:class:`ColumnEncoding`, in feature
            order), so new rows can be encoded the same way (:func:`apply_encoding`).
        train_group_counts: (C, A) train-split rows per group (y, a); they define
            :attr:`bias_aligned`.
    """

    kind = "table"

    def __init__(
        self,
        name: str,
        split: str,
        features: np.ndarray,
        feature_names: list[str],
        raw: RawTable,
        rows: np.ndarray,
        encoding: Sequence[ColumnEncoding] = (),
    ) -> None:
        self.name = name
        self.encoding = list(encoding)
        self.split = split
        self.features = torch.from_numpy(np.ascontiguousarray(features[rows], dtype=np.float32))
        self.feature_names = feature_names
        self.targets = torch.from_numpy(raw.targets[rows].astype(np.int64))
        self.attributes = torch.from_numpy(raw.attributes[rows].astype(np.int64))
        self.class_names = list(raw.class_names)
        self.attribute_names = list(raw.attribute_names)
        self.num_classes = len(self.class_names)
        self.num_attributes = len(self.attribute_names)
        train = raw.splits == SPLIT_CODES["train"]
        self.train_group_counts = torch.from_numpy(
            group_counts(
                raw.targets[train], raw.attributes[train], self.num_classes, self.num_attributes
            )
        )
        self.input_shape = (self.features.shape[1],)
        self.mean = ()
        self.std = ()

    def load(self, index: int) -> torch.Tensor:
        """Row ``index`` as a float32 tensor of shape (F,)."""
        return self.features[index]

    def load_batch(self, indices: Sequence[int]) -> torch.Tensor:
        """Rows ``indices`` as float32 (B, F), gathered at once."""
        return self.features[torch.as_tensor(indices, dtype=torch.int64)]


def group_strata(targets: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """(n,) stratum id of (y, a) pairs, a = -1 included."""
    return targets * (int(attributes.max(initial=0)) + 2) + attributes + 1


def build_split(name: str, split: str, raw: RawTable) -> TableDataset:
    train = raw.splits == SPLIT_CODES["train"]
    if not train.any():
        raise DebiasclError(f"dataset '{name}' ({raw.source}): the train split is empty")
    features, feature_names, imputed, encoding = encode_features(raw.columns, train, raw.source)
    rows = np.flatnonzero(raw.splits == SPLIT_CODES[split])
    counts = {column: int(mask[rows].sum()) for column, mask in imputed.items()}
    total = sum(counts.values())
    detail = ", ".join(f"{column}: {count}" for column, count in counts.items() if count)
    logger.info(
        "%s (%s): imputed %d missing values%s (train-split median for numeric, mode for "
        "categorical columns)",
        name,
        split,
        total,
        f" ({detail})" if detail else "",
    )
    return TableDataset(name, split, features, feature_names, raw, rows, encoding)


SEEDED_SPLIT_OPTIONS = {"val_fraction": 0.1, "test_fraction": 0.2, "seed": 0}
"""The options of seeded splits and their defaults (data sets without official splits)."""


def seeded_splits(
    name: str, targets: np.ndarray, attributes: np.ndarray, options: dict[str, object]
) -> np.ndarray:
    """(n,) split codes from the resolved options val_fraction, test_fraction and seed."""
    return stratified_split(
        group_strata(targets, attributes),
        float(number_option(name, "val_fraction", options["val_fraction"], float)),
        float(number_option(name, "test_fraction", options["test_fraction"], float)),
        int(number_option(name, "seed", options["seed"], int)),
    )
