"""Any CSV file with a header as a table data set (registered as ``csv``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from debiascl.data.base import SPLIT_CODES, register_dataset
from debiascl.data.options import resolve_options
from debiascl.data.tabular.dataset import (
    SEEDED_SPLIT_OPTIONS,
    RawTable,
    TableDataset,
    build_split,
    seeded_splits,
)
from debiascl.data.tabular.encoding import MISSING, parse_float
from debiascl.data.tabular.files import check_width, header_index, read_rows, select_columns
from debiascl.errors import DebiasclError


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
    if all(parse_float(v) is not None for v in distinct):
        distinct.sort(key=float)
    return distinct


def _csv_targets(path: Path, column: str, values: list[str]) -> tuple[np.ndarray, list[str]]:
    """(n,) class indices of a numeric target column and the class names."""
    numbers = []
    for number, value in enumerate(values, start=1):
        parsed = parse_float(value.strip())
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


def _csv_features(
    path: Path,
    header: list[str],
    body: list[list[str]],
    options: dict[str, object],
    named: list[str],
) -> list[str]:
    """The feature columns chosen by the options features, drop and include_bias.

    Checks first that every ``named`` (target, bias, split) and listed column is in the header
    and that every data row has the header's width.
    """
    target, bias = options["target"], options["bias"]
    features = _name_list("csv", "features", options["features"])
    drop = _name_list("csv", "drop", options["drop"])
    header_index(path, header, [*named, *features, *drop])
    check_width(path, body, len(header))
    if str(target) in features:
        raise DebiasclError(f"dataset 'csv' ({path}): the target column {target} is in features")
    if not features:
        excluded = {str(target), str(options["split_column"]), *drop}
        features = [c for c in header if c not in excluded]
    if bias and not options["include_bias"]:
        features = [c for c in features if c != bias]
    return features


def _csv_attributes(values: list[str] | None, n: int) -> tuple[np.ndarray, list[str]]:
    """(n,) bias values of a bias column (indices of its sorted distinct values, -1 where
    missing) and their names; all -1 and no names without a bias column (``values`` None)."""
    if values is None:
        return np.full(n, -1, dtype=np.int64), []
    stripped = [v.strip() for v in values]
    names = _sorted_values([v for v in stripped if v not in MISSING])
    position = {v: k for k, v in enumerate(names)}
    return np.array([position.get(v, -1) for v in stripped], dtype=np.int64), names


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
    rows = read_rows(path, delimiter=str(options["delimiter"]))
    if len(rows) < 2:
        raise DebiasclError(f"{path}: expected a header line and data rows")
    header = [column.strip() for column in rows[0]]
    body = rows[1:]
    bias = options["bias"]
    split_column = options["split_column"]
    named = [str(c) for c in (target, bias, split_column) if c]
    features = _csv_features(path, header, body, options, named)
    columns = select_columns(header, body, [str(target), *features, *named])
    targets, class_names = _csv_targets(path, str(target), columns[str(target)])
    attributes, attribute_names = _csv_attributes(columns[str(bias)] if bias else None, len(body))
    if split_column:
        splits = _csv_splits(path, str(split_column), columns[str(split_column)])
    else:
        splits = seeded_splits("csv", targets, attributes, options)
    raw = RawTable(
        str(path),
        {c: columns[c] for c in features},
        targets,
        attributes,
        splits,
        class_names,
        attribute_names,
    )
    return build_split("csv", split, raw)


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
