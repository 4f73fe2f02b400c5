"""Data loaders that read whole batches, with worker counts fitted to the data and the machine.

``data.num_workers: auto`` gives loader worker processes only to data sets that decode files
per item (a file-based image set without its decoded-image cache): ``min(8, CPUs per process - 1)``
of them, where CPUs per process is this process's CPU affinity divided by the number of training
processes (one CPU stays with the training loop). In-memory tensors and cached images get 0:
their batches are one gather from memory, cheaper than handing them between processes (measured
on 2 shared CPUs: cached 224 px images, batches of 128, 1,700 images/s read in the training
process, 800 images/s through one loader process).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from torch.utils.data import DataLoader, Dataset

from debiascl.config import DataConfig
from debiascl.data.base import BiasedDataset, build_dataset
from debiascl.data.cache import attach_cache
from debiascl.data.views import ViewPipeline, build_views

MAX_AUTO_WORKERS = 8
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS tells it, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_workers(setting: int | str, dataset: Dataset, world_size: int = 1) -> int:
    """Loader worker processes for ``dataset``: ``setting`` itself, or for "auto" see the module.

    Args:
        setting: data.num_workers, an integer >= 0 or "auto".
        dataset: the data set to load (its ``reads_files`` decides "auto").
        world_size: training processes sharing this machine's CPUs.
    """
    if setting != "auto":
        return int(setting)
    if not getattr(dataset, "reads_files", False):
        return 0
    return max(0, min(MAX_AUTO_WORKERS, available_cpus() // world_size - 1))


def configured_dataset(
    data: DataConfig, split: str, download: bool, world_size: int = 1
) -> BiasedDataset:
    """Split ``split`` of the data set ``data`` describes, reading its decoded-image cache when
    ``data.cache`` is on (built here with ``data.num_workers`` decoding processes if needed)."""
    dataset = build_dataset(data.name, data.root, split, download=download, **data.options)
    if not data.cache:
        return dataset
    return attach_cache(
        dataset, data.cache_dir, resolve_workers(data.num_workers, dataset, world_size)
    )


def configured_views(data: DataConfig, train_set: BiasedDataset) -> ViewPipeline:
    """The view pipeline ``data`` describes (``data.augmentation`` and its settings), fitted to
    the training split ``train_set`` (its kind, shape, mean/std and, for "scarf", its rows).

    Returns:
        A :class:`~debiascl.data.views.ViewPipeline` on the CPU (move it with ``.to(device)``).
    """
    return build_views(
        data.augmentation,
        train_set,
        image_size=data.image_size,
        noise_std=data.noise_std,
        corruption_rate=data.corruption_rate,
    )


class BatchReader(Dataset):
    """Item ``[i_1, ..., i_B]`` -> ``dataset.get_batch([i_1, ..., i_B])``: one read per batch."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> Batch:
        return self.dataset.get_batch(indices)


def batch_loader(
    dataset: Dataset,
    batches: Iterable[list[int]],
    num_workers: int,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A loader of ``(index (B,), x (B, ...), y (B,), a (B,))`` batches, one per index list.

    Args:
        dataset: a BiasedDataset (or IndexedSubset): anything with ``get_batch(indices)``.
        batches: a sampler of index lists (the batches, in order).
        num_workers: loader processes; they persist across iterations of the loader.
        device: where the batches go; CUDA pins their memory for non-blocking copies.
        generator: seeds the workers, so creating an iterator draws nothing from the global RNG.
    """
    return DataLoader(
        BatchReader(dataset),
        sampler=batches,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        generator=generator,
    )
