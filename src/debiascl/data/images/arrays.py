"""CIFAR-10, CIFAR-100 and STL-10: images stored as uint8 arrays (torchvision's files).

CIFAR's pickles are loaded whole; STL-10's binaries are memory-mapped. None has an official
validation split (``val`` is a seeded class-stratified holdout of the training set) or a bias
attribute (``a = -1``). See :mod:`debiascl.data.images` for the layouts and split rules.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from debiascl.data.base import BiasedDataset, download_torchvision, register_dataset
from debiascl.data.images.datasets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArrayImageDataset,
    ArrayImages,
)
from debiascl.data.images.reading import (
    DEFAULT_VAL_FRACTION,
    dataset_root,
    holdout_part,
    image_options,
    require_file,
)
from debiascl.errors import DebiasclError

# CIFAR-10 statistics as in the authors' (and DCL's) training code.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

STL10_CLASSES = [
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
]

# What unpickling a damaged file can raise (a truncated stream, garbage opcodes or references).
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, LookupError)
_PICKLE_ERRORS += (AttributeError, ImportError, OverflowError, MemoryError)


def _unpickle(path: Path) -> Any:
    """The object in a CIFAR pickle; a truncated or corrupt file is an error naming it."""
    require_file(path, "a CIFAR batch pickle (from torchvision's download)")
    try:
        with path.open("rb") as handle:
            return pickle.load(handle, encoding="latin1")
    except _PICKLE_ERRORS as error:
        raise DebiasclError(
            f"{path} is truncated or corrupt ({error}); delete the folder and download the "
            "data set again (download=True)"
        ) from error


def _cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, 32, 32) uint8 and labels (n,) int64 of one CIFAR batch file."""
    entry = _unpickle(path)
    try:
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except (KeyError, TypeError, IndexError, ValueError) as error:
        raise DebiasclError(
            f"{path} is not a CIFAR batch: expected a dict with keys 'data' and '{label_key}'"
        ) from error
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise DebiasclError(
            f"{path} is truncated or corrupt: expected data (n, 3072) and n labels, got data "
            f"{tuple(data.shape)} and {labels.size} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DebiasclError(f"{path}: labels must be in [0, {num_classes - 1}]")
    return data.reshape(-1, 3, 32, 32), labels


@dataclass(frozen=True)
class _CifarSpec:
    """Where CIFAR-10 and CIFAR-100 differ: torchvision's class (its name in
    ``torchvision.datasets``: file names), label key, stats."""

    name: str
    source: str
    label_key: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _torchvision_dataset(name: str) -> type:
    """``torchvision.datasets.<name>`` (imported when a data set is first built: torchvision's
    import costs about as much as torch's)."""
    import torchvision.datasets

    return getattr(torchvision.datasets, name)


def _rows(part: int, index: torch.Tensor) -> np.ndarray:
    """(n, 2) int64 (part, row) table of rows ``index`` of image source ``part``."""
    return np.stack([np.full(len(index), part, dtype=np.int64), index.numpy()], axis=1)


def _cifar(
    spec: _CifarSpec, root: str | None, split: str, download: bool, given: dict[str, Any]
) -> ArrayImageDataset:
    """CIFAR-10 or CIFAR-100 from torchvision's pickle folder (file names from ``spec.source``)."""
    options = image_options(
        spec.name, given, {"val_fraction": DEFAULT_VAL_FRACTION, "split_seed": 0, "image_size": 32}
    )
    source = _torchvision_dataset(spec.source)
    if download:
        download_torchvision(spec.name, root, lambda r: source(r, train=False, download=True))
    layout = f"torchvision's {source.base_folder}/ folder"
    folder = dataset_root(spec.name, root, layout) / source.base_folder
    if not folder.is_dir():
        raise DebiasclError(
            f"missing folder {folder}: expected torchvision's CIFAR pickles "
            "(use download=True to fetch them)"
        )
    meta_path, key = folder / source.meta["filename"], source.meta["key"]
    try:
        class_names = list(_unpickle(meta_path)[key])
    except (KeyError, TypeError) as error:
        raise DebiasclError(f"{meta_path}: expected a dict with the key '{key}'") from error
    files = source.test_list if split == "test" else source.train_list
    batches = [_cifar_batch(folder / file, spec.label_key, len(class_names)) for file, _ in files]
    targets = torch.from_numpy(np.concatenate([labels for _, labels in batches]))
    index = torch.arange(len(targets)) if split == "test" else holdout_part(split, targets, options)
    return ArrayImageDataset(
        name=spec.name,
        split=split,
        images=ArrayImages(
            parts=[np.concatenate([data for data, _ in batches])],
            rows=_rows(0, index),
            targets=targets[index],
            class_names=class_names,
        ),
        mean=spec.mean,
        std=spec.std,
        image_size=options["image_size"],
    )


CIFAR10 = _CifarSpec("cifar10", "CIFAR10", "labels", CIFAR10_MEAN, CIFAR10_STD)
CIFAR100 = _CifarSpec("cifar100", "CIFAR100", "fine_labels", CIFAR100_MEAN, CIFAR100_STD)


@register_dataset("cifar10")
def build_cifar10(
    root: str | None, split: str, download: bool = False, **options: Any
) -> BiasedDataset:
    """CIFAR-10 (10 classes, 32x32, no bias attribute).

    Options: val_fraction, split_seed, image_size (default 32).
    """
    return _cifar(CIFAR10, root, split, download, options)


@register_dataset("cifar100")
def build_cifar100(
    root: str | None, split: str, download: bool = False, **options: Any
) -> BiasedDataset:
    """CIFAR-100 (100 fine classes, 32x32, no bias attribute).

    Options as :func:`build_cifar10`.
    """
    return _cifar(CIFAR100, root, split, download, options)


class StlBinary:
    """The images of an STL-10 ``*_X.bin`` file, memory-mapped on first access.

    The file stores each image as 3 x 96 x 96 bytes in column-major order; ``self[row]``
    returns it as a (3, 96, 96) uint8 (C, H, W) array. The map is not pickled (workers reopen it).
    """

    side = 96

    def __init__(self, path: Path) -> None:
        require_file(path, "an STL-10 image binary (torchvision's stl10_binary)")
        size, item = path.stat().st_size, 3 * self.side * self.side
        if size == 0 or size % item:
            raise DebiasclError(
                f"{path} is truncated or corrupt: its size {size} is not a positive multiple "
                f"of {item} bytes (one 3x96x96 image)"
            )
        self.path, self.count = path, size // item
        self._map: np.ndarray | None = None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, row: int) -> np.ndarray:
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r").reshape(
                self.count, 3, self.side, self.side
            )
        return self._map[row].transpose(0, 2, 1)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_map": None}


def _stl_labels(path: Path, count: int) -> torch.Tensor:
    """(count,) int64 labels 0..9 of an STL-10 ``*_y.bin`` file (stored as bytes 1..10)."""
    require_file(path, "an STL-10 label binary (torchvision's stl10_binary)")
    labels = torch.from_numpy(np.fromfile(path, dtype=np.uint8).astype(np.int64)) - 1
    if len(labels) != count:
        raise DebiasclError(f"{path} holds {len(labels)} labels, expected {count} (one per image)")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DebiasclError(f"{path}: labels must be bytes 1..10")
    return labels


@register_dataset("stl10")
def build_stl10(
    root: str | None, split: str, download: bool = False, **given: Any
) -> BiasedDataset:
    """STL-10 (10 classes, 96x96, no bias attribute).

    Options: val_fraction, split_seed, image_size (default 96), unlabeled (default False:
    True appends the unlabeled images, y = -1, to the train split for pre-training).
    """
    options = image_options(
        "stl10",
        given,
        {
            "val_fraction": DEFAULT_VAL_FRACTION,
            "split_seed": 0,
            "image_size": 96,
            "unlabeled": False,
        },
    )
    stl10 = _torchvision_dataset("STL10")
    if download:
        download_torchvision("stl10", root, lambda r: stl10(r, split="test", download=True))
    base = stl10.base_folder
    folder = dataset_root("stl10", root, f"torchvision's {base}/ folder") / base
    if not folder.is_dir():
        raise DebiasclError(
            f"missing folder {folder}: expected torchvision's STL-10 binaries "
            "(use download=True to fetch them)"
        )
    prefix = "test" if split == "test" else "train"
    parts = [StlBinary(folder / f"{prefix}_X.bin")]
    targets = _stl_labels(folder / f"{prefix}_y.bin", len(parts[0]))
    index = torch.arange(len(targets)) if split == "test" else holdout_part(split, targets, options)
    rows, targets = _rows(0, index), targets[index]
    if split == "train" and options["unlabeled"]:
        parts.append(StlBinary(folder / "unlabeled_X.bin"))
        rows = np.concatenate([rows, _rows(1, torch.arange(len(parts[1])))])
        targets = torch.cat([targets, torch.full((len(parts[1]),), -1, dtype=torch.int64)])
    names_file = folder / "class_names.txt"
    class_names = names_file.read_text().split() if names_file.is_file() else STL10_CLASSES
    return ArrayImageDataset(
        name="stl10",
        split=split,
        images=ArrayImages(
            parts=parts,
            rows=rows,
            targets=targets,
            class_names=class_names,
        ),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=options["image_size"],
    )
