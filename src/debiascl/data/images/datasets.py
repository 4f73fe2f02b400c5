"""The two image dataset classes: uint8 arrays in memory, or files decoded when read.

Each split is described by one small record (:class:`ArrayImages`, :class:`ImageFiles`) of what
its builder read (which images, their labels and names); the dataset classes add the registry
name, the split, the output size and the normalisation statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from debiascl.data.base import BiasedDataset
from debiascl.data.images.decoding import load_image
from debiascl.errors import DebiasclError

if TYPE_CHECKING:
    from debiascl.data.cache import DecodedImages

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageArray(Protocol):
    """Random access to uint8 images: ``images[row] -> (3, H, W)`` array."""

    def __getitem__(self, row: int) -> np.ndarray: ...


@dataclass(frozen=True)
class ArrayImages:
    """The images of one split held as uint8 arrays, and their classes.

    Attributes:
        parts: image sources; ``parts[p][r]`` is a (3, H, W) uint8 image.
        rows: (n, 2) int64 array, sample i is ``parts[rows[i, 0]][rows[i, 1]]``.
        targets: (n,) int64 classes (-1 for unlabeled samples).
        class_names: one name per class.
    """

    parts: Sequence[ImageArray]
    rows: np.ndarray
    targets: torch.Tensor
    class_names: list[str]


class ArrayImageDataset(BiasedDataset):
    """Images stored as uint8 arrays (CIFAR pickles, STL-10 binaries), converted per item.

    Args:
        name: registry name.
        split: "train", "val" or "test".
        images: the split's images and classes (:class:`ArrayImages`); no bias attribute.
        mean, std: per-channel normalisation statistics.
        image_size: side S of the returned (3, S, S) images (resized when it differs).
    """

    kind = "image"

    def __init__(
        self,
        *,
        name: str,
        split: str,
        images: ArrayImages,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        image_size: int,
    ) -> None:
        self.name, self.split = name, split
        self.parts, self.rows = list(images.parts), images.rows
        self.targets = images.targets.to(torch.int64)
        self.attributes = torch.full_like(self.targets, -1)
        self.class_names, self.attribute_names = images.class_names, []
        self.num_classes, self.num_attributes = len(images.class_names), 0
        self.mean, self.std = mean, std
        self.input_shape = (3, image_size, image_size)

    def load(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 (3, S, S) in [0, 1]."""
        part, row = self.rows[index]
        x = torch.tensor(self.parts[part][row], dtype=torch.float32).div_(255)
        size = self.input_shape[1]
        if x.shape[1:] != (size, size):
            import torchvision.transforms.functional as TF  # imported when first needed

            x = TF.resize(x, [size, size], antialias=True).clamp_(0, 1)
        return x


@dataclass(frozen=True)
class ImageFiles:
    """The image files of one split, as a metadata table lists them, and their labels.

    Attributes:
        folder: directory the file names are relative to (absolute names are kept).
        files: n file names (n = 0 only for an empty val split; empty train / test is an error).
        targets: (n,) int64 classes.
        attributes: (n,) int64 bias attribute, -1 where unknown.
        class_names, attribute_names: one name per class / bias value.
        source: the metadata file that lists the images (named in error messages).
    """

    folder: Path
    files: list[str]
    targets: torch.Tensor
    attributes: torch.Tensor
    class_names: list[str]
    attribute_names: list[str]
    source: Path


class ImageFileDataset(BiasedDataset):
    """Images stored as files listed by a metadata table, decoded lazily with PIL.

    Args:
        name: registry name.
        split: "train", "val" or "test".
        images: the split's files and labels (:class:`ImageFiles`).
        mean, std: per-channel normalisation statistics.
        image_size: side S of the returned (3, S, S) images.
        train_group_counts: (C, A) training images per group (y, a), which define
            :attr:`bias_aligned` for a val / test split; None for the train split itself.
    """

    kind = "image"

    def __init__(
        self,
        *,
        name: str,
        split: str,
        images: ImageFiles,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        image_size: int,
        train_group_counts: torch.Tensor | None = None,
    ) -> None:
        folder, files, source = images.folder, images.files, images.source
        if not files and split != "val":
            raise DebiasclError(f"{source}: no images in split '{split}' of dataset '{name}'")
        self.name, self.split = name, split
        self.folder, self.files, self.source = folder, files, source
        self.targets = images.targets.to(torch.int64)
        self.attributes = images.attributes.to(torch.int64)
        self.class_names, self.attribute_names = images.class_names, images.attribute_names
        self.num_classes = len(images.class_names)
        self.num_attributes = len(images.attribute_names)
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
