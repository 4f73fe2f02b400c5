"""CelebA: a binary target and a binary bias attribute chosen by name, official or Kaggle files."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from debiascl.data.base import BiasedDataset, register_dataset
from debiascl.data.images.datasets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFileDataset,
    ImageFiles,
)
from debiascl.data.images.reading import (
    DEFAULT_IMAGE_SIZE,
    SPLIT_NAMES,
    dataset_root,
    image_options,
    no_download,
)
from debiascl.errors import DebiasclError
from debiascl.metrics import group_counts


def _celeba_folder(root: Path) -> Path:
    """The folder holding CelebA's list files: ``root`` or torchvision's ``root/celeba``."""
    for folder in (root, root / "celeba"):
        if any((folder / f"list_attr_celeba.{ext}").is_file() for ext in ("txt", "csv")):
            return folder
    raise DebiasclError(
        f"missing file {root / 'list_attr_celeba.txt'}: expected CelebA's official files "
        "(img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt) or the Kaggle "
        "variant (list_attr_celeba.csv, list_eval_partition.csv)"
    )


def _celeba_file(folder: Path, stem: str) -> Path:
    """``stem``.txt (official) or, failing that, ``stem``.csv (Kaggle) in ``folder``."""
    for path in (folder / f"{stem}.txt", folder / f"{stem}.csv"):
        if path.is_file():
            return path
    raise DebiasclError(
        f"missing CelebA file in {folder}: expected {stem}.txt (official layout) or "
        f"{stem}.csv (Kaggle layout)"
    )


def _celeba_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line of a CelebA list file, read lazily.

    The official ``.txt`` files are whitespace-separated, the Kaggle ``.csv`` files comma-separated.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = csv.reader(handle) if path.suffix == ".csv" else (line.split() for line in handle)
        for number, fields in enumerate(rows, start=1):
            if fields:
                yield number, fields


def _celeba_column(names: list[str], name: str, option: str) -> int:
    """Field index (after the image id) of attribute ``name`` (dataset option ``option``)."""
    if name not in names:
        raise DebiasclError(
            f"unknown CelebA attribute '{name}' (dataset option {option}); valid names: "
            f"{', '.join(names)}"
        )
    return names.index(name) + 1


def _celeba_labels(path: Path, target: str, bias: str) -> tuple[list[str], list[int], list[int]]:
    """(image ids, y, a) from list_attr_celeba: 0/1 (from -1/1) of the target and bias attributes.

    The official file starts with an image count and a line of the 40 names; the Kaggle file
    has a header ``image_id,<40 names>``.
    """
    lines = _celeba_lines(path)
    if path.suffix == ".txt":
        next(lines, None)
    header = [name.strip() for name in next(lines, (0, []))[1]]
    names = header if path.suffix == ".txt" else header[1:]
    columns = [
        _celeba_column(names, target, "target_attr"),
        _celeba_column(names, bias, "bias_attr"),
    ]
    ids, y, a = [], [], []
    for number, fields in lines:
        if len(fields) != len(names) + 1 or any(fields[c] not in ("1", "-1") for c in columns):
            raise DebiasclError(
                f"{path}, line {number}: expected an image id and {len(names)} values of 1 or -1"
            )
        ids.append(fields[0])
        y.append(int(fields[columns[0]] == "1"))
        a.append(int(fields[columns[1]] == "1"))
    return ids, y, a


def _celeba_partition(path: Path) -> dict[str, str]:
    """image id -> "train" / "val" / "test" from list_eval_partition (0 / 1 / 2)."""
    lines = _celeba_lines(path)
    if path.suffix == ".csv":
        next(lines, None)
    partition = {}
    for number, fields in lines:
        if len(fields) != 2 or fields[1].strip() not in ("0", "1", "2"):
            raise DebiasclError(f"{path}, line {number}: expected an image id and 0, 1 or 2")
        partition[fields[0]] = SPLIT_NAMES[fields[1].strip()]
    return partition


@register_dataset("celeba")
def build_celeba(
    root: str | None, split: str, download: bool = False, **given: Any
) -> BiasedDataset:
    """CelebA with a binary target and a binary bias attribute chosen by name.

    Options: target_attr (default "Attractive"), bias_attr (default "Male"), image_size
    (default 224). y = 1 where the target attribute is 1, a = 1 where the bias attribute is;
    the official partition (list_eval_partition) gives train/val/test.
    """
    options = image_options(
        "celeba",
        given,
        {"target_attr": "Attractive", "bias_attr": "Male", "image_size": DEFAULT_IMAGE_SIZE},
    )
    no_download("celeba", download, "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html")
    target, bias = str(options["target_attr"]), str(options["bias_attr"])
    if target == bias:
        raise DebiasclError(f"CelebA target_attr and bias_attr must differ, both are '{target}'")
    folder = _celeba_folder(dataset_root("celeba", root, "CelebA's official or Kaggle files"))
    path = _celeba_file(folder, "list_attr_celeba")
    ids, y, a = _celeba_labels(path, target, bias)
    partition_path = _celeba_file(folder, "list_eval_partition")
    partition = _celeba_partition(partition_path)
    missing = [image for image in ids if image not in partition]
    if missing:
        raise DebiasclError(f"image {missing[0]} of {path} is missing from {partition_path}")
    chosen = [k for k, image in enumerate(ids) if partition[image] == split]
    train = [k for k, image in enumerate(ids) if partition[image] == "train"]
    train_y, train_a = np.asarray(y)[train], np.asarray(a)[train]
    images = folder / "img_align_celeba"
    if (images / "img_align_celeba").is_dir():  # the Kaggle archive nests the folder
        images = images / "img_align_celeba"
    if not images.is_dir():
        raise DebiasclError(f"missing folder {images}: expected CelebA's aligned images")
    return ImageFileDataset(
        name="celeba",
        split=split,
        images=ImageFiles(
            folder=images,
            files=[ids[k] for k in chosen],
            targets=torch.tensor(y, dtype=torch.int64)[chosen],
            attributes=torch.tensor(a, dtype=torch.int64)[chosen],
            class_names=[f"not {target}", target],
            attribute_names=[f"not {bias}", bias],
            source=path,
        ),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=options["image_size"],
        train_group_counts=torch.from_numpy(group_counts(train_y, train_a, 2, 2)),
    )
