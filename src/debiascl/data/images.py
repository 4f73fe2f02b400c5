"""The paper's image data sets, read from their standard on-disk layouts.

Every builder returns a :class:`~debiascl.data.base.BiasedDataset` whose items are
``(index, x, y, a)`` with ``x`` float32 in [0, 1] of shape ``(3, S, S)``: resized to a fixed
size ``S`` when loaded (option ``image_size``), neither normalised nor augmented.

========================  ================================================================
name                      layout under ``root``
========================  ================================================================
``cifar10``               ``cifar-10-batches-py/`` (torchvision's pickles)
``cifar100``              ``cifar-100-python/`` (torchvision's pickles)
``stl10``                 ``stl10_binary/`` (torchvision's binaries)
``celeba``                official: ``img_align_celeba/``, ``list_attr_celeba.txt``,
                          ``list_eval_partition.txt``; Kaggle: the same names as ``.csv``,
                          images in ``img_align_celeba/img_align_celeba/`` (also accepted under
                          ``root/celeba/``, torchvision's folder)
``waterbirds``            group_DRO's generator output: ``metadata.csv`` (img_filename, y,
                          split, place) and the image folders it names
``imagenet100``           ``train/<wnid>/``, ``val/<wnid>/`` and a class list (one wnid a line)
``metadata-csv``          ``metadata.csv`` (filename, split, y, a; SubpopBench's convention)
========================  ================================================================

Split choices (documented here because the sources differ):

* CIFAR-10/100, STL-10 and ImageNet-100 have no official validation split. ``val`` is a
  seeded, class-stratified holdout of ``val_fraction`` (default 0.1, seed ``split_seed``,
  default 0; ``floor(val_fraction * n_c + 0.5)`` images of each class c, the rule of every
  data set's split) of the official training set and ``train`` is the rest; ``test`` is the official
  test set (ImageNet-100: the official ``val/`` folder, as its test labels are not public).
  ``val_fraction=0`` trains on the whole official training set, as the paper does; the ``val``
  split is then empty (training turns its kNN monitor off, evaluation uses train and test).
* CelebA, Waterbirds and metadata-csv use their official partitions; a partition without val
  rows gives an empty ``val`` split (an empty train or test split is an error).
* STL-10 with ``unlabeled=True`` appends the 100 000 unlabeled images to ``train`` (for
  contrastive pre-training) with ``y = -1``; ``val`` and ``test`` ignore the option, and
  evaluation should use the labelled train split (``unlabeled=False``).

Only CIFAR and STL-10 can be downloaded (through torchvision, and only with ``download=True``).
CIFAR/STL-10 have no bias attribute (``a = -1``; evaluation reports worst-class accuracy).
File-based sets resize the shorter image side to ``image_size`` (default 224, SPEC section 5)
and centre-crop a square; images are decoded only when an item is read, or once into a
decoded-image cache that later reads come from (:mod:`debiascl.data.cache`).
"""

from __future__ import annotations

import csv
import os
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import datasets as tv_datasets
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset
from torchvision.transforms import InterpolationMode

from debiascl.data.base import (
    SPLIT_CODES,
    BiasedDataset,
    download_torchvision,
    existing_root,
    register_dataset,
)
from debiascl.data.options import resolve_options
from debiascl.data.sampling import stratified_split
from debiascl.errors import DebiasclError
from debiascl.metrics import group_counts

if TYPE_CHECKING:
    from debiascl.data.cache import DecodedImages

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# CIFAR-10 statistics as in the authors' (and DCL's) training code.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

DEFAULT_IMAGE_SIZE = 224
DEFAULT_VAL_FRACTION = 0.1
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
SPLIT_NAMES = {
    **{str(code): split for split, code in SPLIT_CODES.items()},
    **{split: split for split in SPLIT_CODES},
}
"""A metadata file's split value (0/1/2, :data:`SPLIT_CODES`, or the name) -> the split's name."""


# ---------------------------------------------------------------- the two dataset classes


class ImageArray(Protocol):
    """Random access to uint8 images: ``images[row] -> (3, H, W)`` array."""

    def __getitem__(self, row: int) -> np.ndarray: ...


class ArrayImageDataset(BiasedDataset):
    """Images stored as uint8 arrays (CIFAR pickles, STL-10 binaries), converted per item.

    Args:
        name: registry name.
        split: "train", "val" or "test".
        parts: image sources; ``parts[p][r]`` is a (3, H, W) uint8 image.
        rows: (n, 2) int64 array, sample i is ``parts[rows[i, 0]][rows[i, 1]]``.
        targets: (n,) int64 classes (-1 for unlabeled samples).
        class_names: one name per class.
        mean, std: per-channel normalisation statistics.
        image_size: side S of the returned (3, S, S) images (resized when it differs).
    """

    kind = "image"

    def __init__(
        self,
        *,
        name: str,
        split: str,
        parts: Sequence[ImageArray],
        rows: np.ndarray,
        targets: torch.Tensor,
        class_names: list[str],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        image_size: int,
    ) -> None:
        self.name, self.split = name, split
        self.parts, self.rows = list(parts), rows
        self.targets = targets.to(torch.int64)
        self.attributes = torch.full_like(self.targets, -1)
        self.class_names, self.attribute_names = class_names, []
        self.num_classes, self.num_attributes = len(class_names), 0
        self.mean, self.std = mean, std
        self.input_shape = (3, image_size, image_size)

    def load(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 (3, S, S) in [0, 1]."""
        part, row = self.rows[index]
        x = torch.tensor(self.parts[part][row], dtype=torch.float32).div_(255)
        size = self.input_shape[1]
        if x.shape[1:] != (size, size):
            x = TF.resize(x, [size, size], antialias=True).clamp_(0, 1)
        return x


class ImageFileDataset(BiasedDataset):
    """Images stored as files listed by a metadata table, decoded lazily with PIL.

    Args:
        name: registry name.
        split: "train", "val" or "test".
        folder: directory the file names are relative to (absolute names are kept).
        files: n file names (n = 0 only for an empty val split; empty train / test is an error).
        targets: (n,) int64 classes.
        attributes: (n,) int64 bias attribute, -1 where unknown.
        class_names, attribute_names: one name per class / bias value.
        mean, std: per-channel normalisation statistics.
        image_size: side S of the returned (3, S, S) images.
        source: the metadata file that lists the images (named in error messages).
        train_group_counts: (C, A) training images per group (y, a), which define
            :attr:`bias_aligned` for a val / test split; None for the train split itself.
    """

    kind = "image"

    def __init__(
        self,
        *,
        name: str,
        split: str,
        folder: Path,
        files: list[str],
        targets: torch.Tensor,
        attributes: torch.Tensor,
        class_names: list[str],
        attribute_names: list[str],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        image_size: int,
        source: Path,
        train_group_counts: torch.Tensor | None = None,
    ) -> None:
        if not files and split != "val":
            raise DebiasclError(f"{source}: no images in split '{split}' of dataset '{name}'")
        self.name, self.split = name, split
        self.folder, self.files, self.source = folder, files, source
        self.targets, self.attributes = targets.to(torch.int64), attributes.to(torch.int64)
        self.class_names, self.attribute_names = class_names, attribute_names
        self.num_classes, self.num_attributes = len(class_names), len(attribute_names)
        self.mean, self.std = mean, std
        self.input_shape = (3, image_size, image_size)
        self.train_group_counts = train_group_counts
        self.decoded: DecodedImages | None = None  # see debiascl.data.cache.attach_cache
        if files and not (folder / files[0]).is_file():
            raise DebiasclError(
                f"image file {folder / files[0]} (from {source}) does not exist; "
                f"expected the images of dataset '{name}' under {folder}"
            )

    @property
    def reads_files(self) -> bool:
        """True while items are decoded from the files (no decoded-image cache attached)."""
        return self.decoded is None

    def load(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 (3, S, S) in [0, 1]."""
        if self.decoded is None:
            return load_image(self.folder / self.files[index], self.input_shape[1], self.source)
        return self.load_batch([index])[0]

    def load_batch(self, indices: Sequence[int]) -> torch.Tensor:
        """Images ``indices`` as float32 (B, 3, S, S), read at once from the cache when attached."""
        if self.decoded is None:
            return super().load_batch(indices)
        return torch.from_numpy(self.decoded.rows(indices)).float().div_(255)


def decode_image(path: Path, image_size: int, source: Path | None = None) -> torch.Tensor:
    """Decode an image file to RGB, resize its shorter side to S and centre-crop a square.

    Args:
        path: the image file (any format PIL reads).
        image_size: side S of the output.
        source: the metadata file listing the image, named in error messages.

    Returns:
        uint8 (3, S, S).
    """
    listed = f" (from {source})" if source is not None else ""
    try:
        with Image.open(path) as image:
            rgb = to_rgb(image)
    except FileNotFoundError as error:
        raise DebiasclError(f"image file {path}{listed} does not exist") from error
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DebiasclError(f"cannot read image {path}{listed}: {error}") from error
    rgb = TF.resize(rgb, image_size, interpolation=InterpolationMode.BILINEAR)
    rgb = TF.center_crop(rgb, [image_size, image_size])
    return TF.pil_to_tensor(rgb)


WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
"""PIL modes of more than 8 bits per pixel (16-bit and 32-bit greyscale)."""


def _wide_to_grey(image: Image.Image) -> Image.Image:
    """A 16-bit or 32-bit greyscale image scaled to 8 bits: 16-bit values (0..65535, also in
    mode I) by 255/65535, float values in [0, 1] by 255; other ranges cannot be scaled
    faithfully without knowing the sensor's range."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high, top = 0.0, 1.0, 1.0
    else:
        low, high, top = 0.0, 65535.0, 65535.0
    if values.size and (values.min() < low or values.max() > high or np.isnan(values).any()):
        raise ValueError(
            f"its mode {image.mode} pixels lie outside {low:g}..{high:g} and cannot be scaled "
            "to 8 bits faithfully; save it as an 8-bit or 16-bit image"
        )
    return Image.fromarray(np.rint(values * (255.0 / top)).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """An opened image as 8-bit RGB, converted faithfully whatever its mode.

    16-bit and 32-bit greyscale are scaled to 8 bits (:func:`_wide_to_grey`, not clipped to
    white as ``convert("RGB")`` does); palette images go through their palette (with their
    transparency); transparent images (RGBA, LA, PA, palette with transparency) are composited
    over black, so a transparent pixel counts for what is seen, not its hidden colour; CMYK,
    YCbCr, 1-bit and L use PIL's conversion.

    Raises:
        ValueError: a mode or value range that cannot be converted (saying which).
    """
    if image.mode in WIDE_MODES:
        return _wide_to_grey(image).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise ValueError(f"its mode {image.mode} cannot be converted to RGB") from error


def load_image(path: Path, image_size: int, source: Path | None = None) -> torch.Tensor:
    """:func:`decode_image` as float32 (3, S, S) in [0, 1] (the decoded bytes / 255)."""
    return decode_image(path, image_size, source).float().div_(255)


# ---------------------------------------------------------------- options and checks


def _options(name: str, given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
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


def _root(name: str, root: str | os.PathLike[str] | None, layout: str) -> Path:
    """The existing root folder of data set ``name`` (``layout`` describes what it holds)."""
    if root is None:
        raise DebiasclError(f"dataset '{name}' needs a root folder (data.root) holding {layout}")
    return existing_root(name, root, layout)


def _file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else an error saying it should hold ``what``."""
    if not path.is_file():
        raise DebiasclError(f"missing file {path}: expected {what}")
    return path


def _no_download(name: str, download: bool, source: str) -> None:
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


def _holdout_part(split: str, targets: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
    """Indices of ``split`` ("train" or "val") in the official training set ``targets`` (n,).

    With ``val_fraction=0`` the val split is empty and train is the whole training set.
    """
    train_idx, val_idx = stratified_holdout(
        targets, float(options["val_fraction"]), int(options["split_seed"])
    )
    return train_idx if split == "train" else val_idx


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file with a header holding every column of ``required``."""
    _file(path, f"a CSV table with columns {', '.join(required)}")
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


def _int_column(rows: list[dict[str, str]], column: str, path: Path) -> torch.Tensor:
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


def _check_range(values: torch.Tensor, low: int, high: int, column: str, path: Path) -> None:
    """Every value in [low, high], else an error naming the column and the first bad line."""
    bad = torch.nonzero((values < low) | (values > high)).flatten()
    if len(bad):
        raise DebiasclError(
            f"{path}, line {int(bad[0]) + 2}: column '{column}' must be in [{low}, {high}], "
            f"got {int(values[bad[0]])}"
        )


# ---------------------------------------------------------------- CIFAR-10 / CIFAR-100


# What unpickling a damaged file can raise (a truncated stream, garbage opcodes or references).
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, LookupError)
_PICKLE_ERRORS += (AttributeError, ImportError, OverflowError, MemoryError)


def _unpickle(path: Path) -> Any:
    """The object in a CIFAR pickle; a truncated or corrupt file is an error naming it."""
    _file(path, "a CIFAR batch pickle (from torchvision's download)")
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
    """Where CIFAR-10 and CIFAR-100 differ: torchvision's class (file names), label key, stats."""

    name: str
    source: type[tv_datasets.CIFAR10]
    label_key: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _rows(part: int, index: torch.Tensor) -> np.ndarray:
    """(n, 2) int64 (part, row) table of rows ``index`` of image source ``part``."""
    return np.stack([np.full(len(index), part, dtype=np.int64), index.numpy()], axis=1)


def _cifar(
    spec: _CifarSpec, root: str | None, split: str, download: bool, given: dict[str, Any]
) -> ArrayImageDataset:
    """CIFAR-10 or CIFAR-100 from torchvision's pickle folder (file names from ``spec.source``)."""
    options = _options(
        spec.name, given, {"val_fraction": DEFAULT_VAL_FRACTION, "split_seed": 0, "image_size": 32}
    )
    source = spec.source
    if download:
        download_torchvision(spec.name, root, lambda r: source(r, train=False, download=True))
    layout = f"torchvision's {source.base_folder}/ folder"
    folder = _root(spec.name, root, layout) / source.base_folder
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
    if split == "test":
        index = torch.arange(len(targets))
    else:
        index = _holdout_part(split, targets, options)
    return ArrayImageDataset(
        name=spec.name,
        split=split,
        parts=[np.concatenate([data for data, _ in batches])],
        rows=_rows(0, index),
        targets=targets[index],
        class_names=class_names,
        mean=spec.mean,
        std=spec.std,
        image_size=options["image_size"],
    )


CIFAR10 = _CifarSpec("cifar10", tv_datasets.CIFAR10, "labels", CIFAR10_MEAN, CIFAR10_STD)
CIFAR100 = _CifarSpec("cifar100", tv_datasets.CIFAR100, "fine_labels", CIFAR100_MEAN, CIFAR100_STD)


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


# ---------------------------------------------------------------- STL-10


class StlBinary:
    """The images of an STL-10 ``*_X.bin`` file, memory-mapped on first access.

    The file stores each image as 3 x 96 x 96 bytes in column-major order; ``self[row]``
    returns it as a (3, 96, 96) uint8 (C, H, W) array. The map is not pickled (workers reopen it).
    """

    side = 96

    def __init__(self, path: Path) -> None:
        _file(path, "an STL-10 image binary (torchvision's stl10_binary)")
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
    _file(path, "an STL-10 label binary (torchvision's stl10_binary)")
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
    options = _options(
        "stl10",
        given,
        {
            "val_fraction": DEFAULT_VAL_FRACTION,
            "split_seed": 0,
            "image_size": 96,
            "unlabeled": False,
        },
    )
    if download:
        download_torchvision(
            "stl10", root, lambda r: tv_datasets.STL10(r, split="test", download=True)
        )
    base = tv_datasets.STL10.base_folder
    folder = _root("stl10", root, f"torchvision's {base}/ folder") / base
    if not folder.is_dir():
        raise DebiasclError(
            f"missing folder {folder}: expected torchvision's STL-10 binaries "
            "(use download=True to fetch them)"
        )
    prefix = "test" if split == "test" else "train"
    parts = [StlBinary(folder / f"{prefix}_X.bin")]
    targets = _stl_labels(folder / f"{prefix}_y.bin", len(parts[0]))
    if split == "test":
        index = torch.arange(len(targets))
    else:
        index = _holdout_part(split, targets, options)
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
        parts=parts,
        rows=rows,
        targets=targets,
        class_names=class_names,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=options["image_size"],
    )


# ---------------------------------------------------------------- CelebA


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
    options = _options(
        "celeba",
        given,
        {"target_attr": "Attractive", "bias_attr": "Male", "image_size": DEFAULT_IMAGE_SIZE},
    )
    _no_download("celeba", download, "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html")
    target, bias = str(options["target_attr"]), str(options["bias_attr"])
    if target == bias:
        raise DebiasclError(f"CelebA target_attr and bias_attr must differ, both are '{target}'")
    folder = _celeba_folder(_root("celeba", root, "CelebA's official or Kaggle files"))
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
        folder=images,
        files=[ids[k] for k in chosen],
        targets=torch.tensor(y, dtype=torch.int64)[chosen],
        attributes=torch.tensor(a, dtype=torch.int64)[chosen],
        class_names=[f"not {target}", target],
        attribute_names=[f"not {bias}", bias],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=options["image_size"],
        source=path,
        train_group_counts=torch.from_numpy(group_counts(train_y, train_a, 2, 2)),
    )


# ---------------------------------------------------------------- metadata.csv data sets


def _split_rows(rows: list[dict[str, str]], split: str, path: Path) -> list[dict[str, str]]:
    """The rows whose ``split`` column (0/1/2 or train/val/test) names ``split``."""
    chosen = []
    for line, row in enumerate(rows, start=2):
        code = (row["split"] or "").strip().lower().removesuffix(".0")
        if code not in SPLIT_NAMES:
            raise DebiasclError(
                f"{path}, line {line}: column 'split' must be 0/1/2 or train/val/test, "
                f"got '{row['split']}'"
            )
        if SPLIT_NAMES[code] == split:
            chosen.append(row)
    return chosen


def _train_counts(
    rows: list[dict[str, str]], path: Path, y: str, a: str, num_classes: int, num_attributes: int
) -> torch.Tensor:
    """(C, A) int64 rows of the train split per group (columns ``y``, ``a``)."""
    train = _split_rows(rows, "train", path)
    counts = group_counts(
        _int_column(train, y, path), _int_column(train, a, path), num_classes, num_attributes
    )
    return torch.from_numpy(counts)


@register_dataset("waterbirds")
def build_waterbirds(
    root: str | None, split: str, download: bool = False, **given: Any
) -> BiasedDataset:
    """Waterbirds as made by group_DRO's generator (target bird type, bias background).

    ``root/metadata.csv`` has columns img_filename, y (0 landbird, 1 waterbird), split
    (0/1/2 = train/val/test) and place (0 land, 1 water); image paths are relative to root.
    Option: image_size (default 224).
    """
    options = _options("waterbirds", given, {"image_size": DEFAULT_IMAGE_SIZE})
    _no_download("waterbirds", download, "https://github.com/kohpangwei/group_DRO")
    folder = _root("waterbirds", root, "group_DRO's folder with metadata.csv")
    path = folder / "metadata.csv"
    every = _read_csv(path, ["img_filename", "y", "split", "place"])
    rows = _split_rows(every, split, path)
    targets, places = _int_column(rows, "y", path), _int_column(rows, "place", path)
    _check_range(targets, 0, 1, "y", path)
    _check_range(places, 0, 1, "place", path)
    return ImageFileDataset(
        name="waterbirds",
        split=split,
        folder=folder,
        files=[row["img_filename"].strip() for row in rows],
        targets=targets,
        attributes=places,
        class_names=["landbird", "waterbird"],
        attribute_names=["land", "water"],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=options["image_size"],
        source=path,
        train_group_counts=_train_counts(every, path, "y", "place", 2, 2),
    )


@register_dataset("metadata-csv")
def build_metadata_csv(
    root: str | None, split: str, download: bool = False, **given: Any
) -> BiasedDataset:
    """Any image folder with a SubpopBench-style ``root/metadata.csv``.

    Columns: filename (relative to root, or absolute), split (0/1/2 or train/val/test),
    y (class, 0..K-1), a (bias attribute, 0..M-1, or -1 where unknown); an ``id`` column may be
    present and is not used. K and M are counted over all splits. Option: image_size
    (default 224).
    """
    options = _options("metadata-csv", given, {"image_size": DEFAULT_IMAGE_SIZE})
    _no_download("metadata-csv", download, "your own files")
    folder = _root("metadata-csv", root, "a folder with metadata.csv (filename, split, y, a)")
    path = folder / "metadata.csv"
    every = _read_csv(path, ["filename", "split", "y", "a"])
    if not every:
        raise DebiasclError(f"{path} has a header but no rows")
    all_y, all_a = _int_column(every, "y", path), _int_column(every, "a", path)
    num_classes, num_attributes = int(all_y.max()) + 1, max(int(all_a.max()) + 1, 0)
    _check_range(all_y, 0, num_classes - 1, "y", path)
    _check_range(all_a, -1, num_attributes - 1, "a", path)
    rows = _split_rows(every, split, path)
    return ImageFileDataset(
        name="metadata-csv",
        split=split,
        folder=folder,
        files=[row["filename"].strip() for row in rows],
        targets=_int_column(rows, "y", path),
        attributes=_int_column(rows, "a", path),
        class_names=[str(k) for k in range(num_classes)],
        attribute_names=[str(m) for m in range(num_attributes)],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=options["image_size"],
        source=path,
        train_group_counts=_train_counts(every, path, "y", "a", num_classes, num_attributes),
    )


# ---------------------------------------------------------------- ImageNet-100


def _class_list(path: Path) -> list[str]:
    """The wnids of a class-list file (one a line; blank lines and # comments skipped)."""
    _file(path, "the ImageNet-100 class list, one wnid a line (e.g. CMC's imagenet100.txt)")
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    wnids = [line.split()[0] for line in lines if line]
    if not wnids or len(set(wnids)) != len(wnids):
        raise DebiasclError(f"{path}: expected distinct class folder names, one a line")
    return wnids


def _image_folder(folder: Path, wnids: list[str]) -> tuple[list[str], torch.Tensor]:
    """(files, (n,) int64 classes) of the listed class folders of an ImageFolder tree."""
    for wnid in wnids:
        if not (folder / wnid).is_dir():
            raise DebiasclError(
                f"missing folder {folder / wnid}: expected one folder of images per class "
                "in the class list"
            )
    try:
        samples = make_dataset(str(folder), {w: k for k, w in enumerate(wnids)}, IMG_EXTENSIONS)
    except FileNotFoundError as error:
        raise DebiasclError(f"{folder}: {error}") from error
    files = [file for file, _ in samples]
    return files, torch.tensor([label for _, label in samples], dtype=torch.int64)


@register_dataset("imagenet100")
def build_imagenet100(
    root: str | None, split: str, download: bool = False, **given: Any
) -> BiasedDataset:
    """ImageNet-100: the classes of a class list, from an ImageFolder tree (no bias attribute).

    ``root/train/<wnid>/`` and ``root/val/<wnid>/`` (the official validation images sorted into
    class folders) hold the images. test = the ``val/`` folder; train/val = a seeded stratified
    holdout of ``train/``. Options: class_list (default ``root/imagenet100.txt``), val_fraction,
    split_seed, image_size (default 224).
    """
    options = _options(
        "imagenet100",
        given,
        {
            "class_list": None,
            "val_fraction": DEFAULT_VAL_FRACTION,
            "split_seed": 0,
            "image_size": DEFAULT_IMAGE_SIZE,
        },
    )
    _no_download("imagenet100", download, "https://image-net.org")
    folder = _root("imagenet100", root, "ImageFolder train/ and val/ and a class list")
    class_list = options["class_list"] or folder / "imagenet100.txt"
    wnids = _class_list(Path(class_list).expanduser())
    tree = folder / ("val" if split == "test" else "train")
    if not tree.is_dir():
        raise DebiasclError(f"missing folder {tree}: expected ImageNet class folders")
    files, targets = _image_folder(tree, wnids)
    if split != "test":
        index = _holdout_part(split, targets, options)
        files, targets = [files[i] for i in index.tolist()], targets[index]
    return ImageFileDataset(
        name="imagenet100",
        split=split,
        folder=tree,
        files=files,
        targets=targets,
        attributes=torch.full_like(targets, -1),
        class_names=wnids,
        attribute_names=[],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=options["image_size"],
        source=tree,
    )
