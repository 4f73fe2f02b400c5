"""What every image builder shares: its options, its root folder and files, seeded holdouts, and
reading the integer columns of a metadata CSV with errors that name the file, line and column."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from debiascl.data.base import SPLIT_CODES, existing_root
from debiascl.data.options import resolve_options
from debiascl.data.sampling import stratified_split
from debiascl.errors import DebiasclError

DEFAULT_IMAGE_SIZE = 224
DEFAULT_VAL_FRACTION = 0.1
SPLIT_NAMES = {
    **{str(code): split for split, code in SPLIT_CODES.items()},
    **{split: split for split in SPLIT_CODES},
}
"""A metadata file's split value (0/1/2, :data:`SPLIT_CODES`, or the name) -> the split's name."""


def image_options(name: str, given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """:func:`~debiascl.data.options.resolve_options`, then the image options' own checks."""
    options = resolve_options(name, given, defaults)
    if "image_size" in options:
        size = options["image_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise DebiasclError(f"dataset option image_size must be an integer >= 8, got {size!r}")
    for key, kind in (("split_seed", int), ("unlabeled", bool)):
        if key in options and not isinstance(options[key], kind):
            raise DebiasclError(
                f"dataset option {key} must be {kind.__name__}, got {options[key]!r}"
            )
    if "val_fraction" in options:
        fraction = options["val_fraction"]
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise DebiasclError(f"dataset option val_fraction must be a number, got {fraction!r}")
        if not 0 <= fraction < 1:
            raise DebiasclError(f"dataset option val_fraction must be in [0, 1), got {fraction}")
    return options


def dataset_root(name: str, root: str | os.PathLike[str] | None, layout: str) -> Path:
    """The existing root folder of data set ``name`` (``layout`` describes what it holds)."""
    if root is None:
        raise DebiasclError(f"dataset '{name}' needs a root folder (data.root) holding {layout}")
    return existing_root(name, root, layout)


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else an error saying it should hold ``what``."""
    if not path.is_file():
        raise DebiasclError(f"missing file {path}: expected {what}")
    return path


def no_download(name: str, download: bool, source: str) -> None:
    """An error when ``download`` is asked of a data set that must be fetched by hand."""
    if download:
        raise DebiasclError(
            f"dataset '{name}' cannot be downloaded automatically; get it from {source} "
            "and set data.root to its folder"
        )


def stratified_holdout(
    targets: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded class-stratified holdout (:func:`debiascl.data.sampling.stratified_split`).

    ``floor(val_fraction * n_c + 0.5)`` samples of each class c are held out.

    Args:
        targets: (n,) int64 classes.
        val_fraction: fraction in [0, 1) held out from each class.
        seed: seed of the permutation.

    Returns:
        (train_idx, val_idx): sorted int64 indices into targets, disjoint, together all of it.
    """
    codes = stratified_split(targets.numpy(), val_fraction, 0.0, seed, generator="torch")
    codes = torch.from_numpy(codes)
    train_idx = torch.nonzero(codes == SPLIT_CODES["train"]).flatten()
    return train_idx, torch.nonzero(codes == SPLIT_CODES["val"]).flatten()


def holdout_part(split: str, targets: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
    """Indices of ``split`` ("train" or "val") in the official training set ``targets`` (n,).

    With ``val_fraction=0`` the val split is empty and train is the whole training set.
    """
    train_idx, val_idx = stratified_holdout(
        targets, float(options["val_fraction"]), int(options["split_seed"])
    )
    return train_idx if split == "train" else val_idx


def read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file with a header holding every column of ``required``."""
    require_file(path, f"a CSV table with columns {', '.join(required)}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # Excel's BOM, CRLF too
            reader = csv.DictReader(handle)
            columns = [column.strip() for column in reader.fieldnames or []]
            missing = [column for column in required if column not in columns]
            if missing:
                raise DebiasclError(
                    f"{path}: missing column {', '.join(missing)}; expected columns "
                    f"{', '.join(required)}, found {', '.join(columns) or 'none'}"
                )
            reader.fieldnames = columns
            return list(reader)
    except UnicodeDecodeError:
        raise DebiasclError(f"{path} is not UTF-8 text; save it as UTF-8 CSV") from None
    except csv.Error as error:
        raise DebiasclError(f"{path} is not a readable CSV table ({error})") from None


def _integer(text: str) -> int:
    """``text`` as an int ("3" and "3.0" alike); anything else raises ValueError."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def int_column(rows: list[dict[str, str]], column: str, path: Path) -> torch.Tensor:
    """Column ``column`` of CSV ``rows`` as (n,) int64; a non-integer value is an error."""
    values = []
    for line, row in enumerate(rows, start=2):
        text = (row[column] or "").strip()
        try:
            values.append(_integer(text))
        except ValueError as error:
            raise DebiasclError(
                f"{path}, line {line}: column '{column}' must be an integer, got '{text}'"
            ) from error
    return torch.tensor(values, dtype=torch.int64)


def check_range(values: torch.Tensor, low: int, high: int, column: str, path: Path) -> None:
    """Every value in [low, high], else an error naming the column and the first bad line."""
    bad = torch.nonzero((values < low) | (values > high)).flatten()
    if len(bad):
        raise DebiasclError(
            f"{path}, line {int(bad[0]) + 2}: column '{column}' must be in [{low}, {high}], "
            f"got {int(values[bad[0]])}"
        )
