"""The dataset contract: every data set yields ``(index, x, y, a)`` and describes itself."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch.utils.data import Dataset

from debiascl.errors import DebiasclError
from debiascl.metrics import group_counts, group_ids, majority_aligned
from debiascl.registry import DATASETS, check_dataset

SPLITS = ("train", "val", "test")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
"""The integer code of each split (stored split columns, seeded split assignments, RNG streams)."""


class BiasedDataset(Dataset):
    """A labelled data set with an optional bias attribute.

    Subclasses set the attributes below in ``__init__`` and implement ``load(i) -> x``.

    Attributes:
        name: registry name of the data set.
        split: "train", "val" or "test".
        kind: "image" or "table".
        input_shape: (C, H, W) for images (fixed size), (F,) for tables.
        num_classes: number of target classes.
        num_attributes: number of bias-attribute values (0 when there is no bias attribute).
        class_names: one name per class.
        attribute_names: one name per bias value (empty when there is none).
        targets: (n,) int64 class of each sample.
        attributes: (n,) int64 bias attribute of each sample, -1 where unknown.
        mean, std: per-channel normalisation statistics for images; empty tuples for tables
            (tables are standardised by the loader with training statistics).
        train_group_counts: (C, A) int64 samples of the *training* split per group (y, a), set
            by builders that know the training split when building val or test; None lets the
            training split use its own counts (:attr:`group_counts`).
    """

    name: str
    split: str
    kind: str
    input_shape: tuple[int, ...]
    num_classes: int
    num_attributes: int
    class_names: list[str]
    attribute_names: list[str]
    targets: torch.Tensor
    attributes: torch.Tensor
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    train_group_counts: torch.Tensor | None = None

    def load(self, index: int) -> torch.Tensor:
        """The input of sample ``index``: float32 in [0, 1] of ``input_shape`` (images) or (F,)."""
        raise NotImplementedError

    @property
    def reads_files(self) -> bool:
        """True when items are decoded from files (worth loader workers); False in memory."""
        return False

    def load_batch(self, indices: Sequence[int]) -> torch.Tensor:
        """The inputs of samples ``indices`` stacked: (B, *input_shape) float32.

        Subclasses that can read many samples at once (a decoded-image cache) override it.
        """
        return torch.stack([self.load(index) for index in indices])

    def get_batch(
        self, indices: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Items ``indices`` already collated: index (B,), x (B, *input_shape), y (B,), a (B,).

        Equal to collating ``[self[i] for i in indices]``, but loads through :meth:`load_batch`.
        """
        index = torch.as_tensor(indices, dtype=torch.int64)
        return index, self.load_batch(indices), self.targets[index], self.attributes[index]

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, int, int]:
        return index, self.load(index), int(self.targets[index]), int(self.attributes[index])

    @property
    def groups(self) -> torch.Tensor:
        """(n,) int64 group id g = y * num_attributes + a, -1 where a is unknown (SPEC 8,
        :func:`debiascl.metrics.group_ids`)."""
        if self.num_attributes == 0:
            return torch.full_like(self.targets, -1)
        return group_ids(self.targets, self.attributes, self.num_attributes)

    @property
    def group_counts(self) -> torch.Tensor:
        """(C, A) int64 samples of this split per group (y, a); a = -1 is not counted.

        (C, 0) when the data set has no bias attribute.
        """
        if self.num_attributes == 0:
            return torch.zeros(self.num_classes, 0, dtype=torch.int64)
        counts = group_counts(self.targets, self.attributes, self.num_classes, self.num_attributes)
        return torch.from_numpy(counts)

    def bias_alignment(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(aligned (n,), known (n,)) bool: :attr:`bias_aligned` and where alignment is defined.

        :func:`debiascl.metrics.majority_aligned` on the training split's group counts
        (``train_group_counts``, or this split's own when it is the training split).

        None without a bias attribute, without any known attribute, or for a val / test split
        whose builder did not give the training split's counts.
        """
        if self.num_attributes == 0 or not bool((self.attributes >= 0).any()):
            return None
        counts = self.train_group_counts
        if counts is None and self.split == "train":
            counts = self.group_counts
        if counts is None:
            return None
        aligned, known = majority_aligned(self.targets, self.attributes, counts)
        return torch.from_numpy(aligned), torch.from_numpy(known)

    @property
    def bias_aligned(self) -> torch.Tensor | None:
        """(n,) bool: True where a sample's bias attribute a is the one that goes with its class y.

        The project's one definition of alignment (evaluation, JTT's error-set composition,
        discovery and ``debiascl datasets describe`` all use it): a sample is bias-aligned when
        a is the *majority attribute among the training samples of class y*
        (:func:`debiascl.metrics.majority_aligned` on the training split's group counts; every
        value tied for the maximum counts). The direction is "a given y", not "y given a":
        the bias is a shortcut that predicts the class from the attribute, so a sample follows it
        when it carries its class's usual attribute (SPEC section 9 scores discovery against
        "a != class's majority attribute"; the paper's Section 5.2 calls the samples that E_b
        learns easily bias-aligned); the built-in benchmarks are built that way (a share
        ``rho`` of each class's training images gets the class's own background, so for
        ``rho > 1 / A`` the aligned samples are exactly those with a == y). The training split
        defines it for every split, so a group-balanced test split is still split into aligned
        and conflicting samples by the training correlation.

        False where a is unknown (-1) or the class has no training sample with a known
        attribute; None when alignment is undefined (see :attr:`bias_conflicting`).
        """
        alignment = self.bias_alignment()
        return None if alignment is None else alignment[0]

    @property
    def bias_conflicting(self) -> torch.Tensor | None:
        """(n,) bool: samples whose alignment is known and who are not bias-aligned.

        None without a bias attribute, when every attribute is unknown, or for a val / test
        split built without the training split's counts (``train_group_counts``).
        """
        alignment = self.bias_alignment()
        return None if alignment is None else alignment[1] & ~alignment[0]


class DatasetBuilder(Protocol):
    """Signature of a registered builder."""

    def __call__(
        self, root: str | None, split: str, download: bool = False, **options: object
    ) -> BiasedDataset: ...


def register_dataset(name: str) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator adding a builder to :data:`DATASETS` under ``name``.

    The first line of the builder's docstring is its summary (``debiascl datasets``).
    """

    def decorator(builder: DatasetBuilder) -> DatasetBuilder:
        return DATASETS.add(name, builder, summary=dataset_summary(builder))

    return decorator


def build_dataset(
    name: str, root: str | None, split: str, download: bool = False, **options: object
) -> BiasedDataset:
    """Build a registered data set.

    Args:
        name: a name from :func:`list_datasets`.
        root: folder holding the data in its standard layout (None: the data set's default).
        split: "train", "val" or "test".
        download: fetch the files when the source allows it (never by default).
        **options: data-set specific options (e.g. rho, target_attr, bias_attr).
    """
    check_dataset(name)
    if split not in SPLITS:
        raise DebiasclError(
            f"unknown split '{split}' for dataset '{name}'; expected one of {SPLITS}"
        )
    return DATASETS[name](root, split, download=download, **options)


def dataset_summary(builder: DatasetBuilder) -> str:
    """The first line of ``builder``'s docstring ("" without one)."""
    doc = (builder.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def existing_root(name: str, root: str | os.PathLike[str], layout: str) -> Path:
    """``root`` (``~`` expanded, resolved) when it is a folder; a given root must exist.

    Args:
        name: the data set (named in the error).
        root: the folder the user gave (setting data.root).
        layout: what the folder should hold, for the error message.

    Raises:
        DebiasclError: one line naming the folder and the setting when it is not a folder.
    """
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise DebiasclError(
            f"data root {path} of dataset '{name}' (setting data.root) does not exist; "
            f"expected a folder holding {layout}"
        )
    return path


def download_torchvision(name: str, root: str | None, make: Callable[[str], object]) -> None:
    """Run a torchvision download of data set ``name`` into ``root`` (network).

    Args:
        name: the data set (named in errors).
        root: the folder to download into (None is an error: there is nowhere to put the files).
        make: called with the root as a string; builds torchvision's data set with
            ``download=True``.

    Raises:
        DebiasclError: one line when root is None or the download fails (network, disk or
            checksum errors alike).
    """
    if root is None:
        raise DebiasclError(f"dataset '{name}' needs a root folder (data.root) to download into")
    try:
        make(str(Path(root).expanduser()))
    except Exception as error:  # network, disk and checksum failures alike
        reason = " ".join(str(error).split())  # one line, whatever torchvision wrote
        raise DebiasclError(f"download of dataset '{name}' into {root} failed: {reason}") from error
