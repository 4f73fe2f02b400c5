"""Building what a run trains with from its configuration (one factory for every driver).

:func:`build_training` makes the training split, its view pipeline, the method (on the device,
in channels_last where it helps, prepared for DDP), one optimizer and one learning-rate schedule
per parameter group, and the training loader, in an order that keeps runs reproducible:
everything is built right after seeding with ``train.seed``, so every rank starts from the same
weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.optim import SGD, Adam, Optimizer
from torch.optim.lr_scheduler import MultiStepLR
from torch.utils.data import DataLoader

from debiascl.allocator import tune_malloc
from debiascl.checkpoint import seed_everything
from debiascl.config import Config, OptimConfig
from debiascl.data.base import BiasedDataset
from debiascl.data.loading import (
    batch_loader,
    configured_dataset,
    configured_views,
    resolve_workers,
)
from debiascl.data.sampling import EpochBatchSampler, balanced_probabilities, mix_seed
from debiascl.data.views import ViewPipeline
from debiascl.discovery import balanced_weights
from debiascl.distributed import Runtime, prepare_distributed, run_on_main
from debiascl.errors import DebiasclError
from debiascl.groups import training_groups
from debiascl.methods import METHODS, Method, build_method


def use_channels_last(
    setting: bool | None, device: torch.device, data_kind: str, backbone: str
) -> bool:
    """Whether to train in the channels_last memory layout.

    Only images (4-D batches) have that layout. ``setting`` (``train.channels_last``) True or
    False forces it; None (auto) turns it on where it helps: CUDA training of a ResNet backbone,
    whose convolutions run faster on NHWC tensors (with tensor cores). It is off on the CPU and
    for the small CNN, whose tiny convolutions gain nothing from it.

    Args:
        setting: ``train.channels_last`` (True, False, or None for auto).
        device: the training device.
        data_kind: the data set's kind ("image" or "tabular").
        backbone: ``model.backbone``.
    """
    if data_kind != "image":
        return False
    if setting is not None:
        return setting
    return device.type == "cuda" and backbone.startswith("resnet")


def use_malloc_tuning(setting: bool, device: torch.device, data_kind: str) -> bool:
    """Whether to raise glibc's malloc thresholds (:func:`debiascl.allocator.tune_malloc`):
    ``train.malloc_tuning`` (``setting``) is on and the run trains on the CPU from images,
    whose batches of views are the large buffers that glibc would otherwise give back."""
    return setting and device.type == "cpu" and data_kind == "image"


def build_optimizers(groups: list[dict], optim: OptimConfig) -> dict[str, Optimizer]:
    """One optimizer per parameter group ("d", "b"), with the group's own learning rate."""
    optimizers: dict[str, Optimizer] = {}
    for group in groups:
        settings = {key: value for key, value in group.items() if key != "name"}
        if optim.name == "adam":
            optimizers[group["name"]] = Adam([settings], weight_decay=optim.weight_decay)
        else:
            optimizers[group["name"]] = SGD(
                [settings], momentum=optim.momentum, weight_decay=optim.weight_decay
            )
    return optimizers


@dataclass
class TrainingParts:
    """What a run trains with (see :func:`build_training`).

    Attributes:
        train_set: the training split.
        views: its view pipeline, on the training device.
        method: the method, on the device, in train mode (channels_last and DDP as needed).
        optimizers: one optimizer per parameter group ("d", "b").
        schedulers: one MultiStepLR per optimizer.
        channels_last: whether inputs and weights use channels_last (:func:`use_channels_last`).
        repeats: (n_train,) int64 draws of each sample per epoch, or None (once each).
        epoch_size: samples drawn per epoch.
        sampler: this rank's batches of an epoch (set its ``epoch`` and ``start`` before each).
        loader: the training loader over ``sampler`` (its worker processes persist).
        groups: (n_train,) int64 group id of each training sample in [0, G)
            (:func:`debiascl.groups.training_groups`), or None (``train.groups: none``).
        group_sizes: (G,) int64 training samples per group, or None.
        sample_weights: (n_train,) float32 loss weight n / (G n_g) of each training sample
            (``train.group_weighting: balanced``), or None.
    """

    train_set: BiasedDataset
    views: ViewPipeline
    method: Method
    optimizers: dict[str, Optimizer]
    schedulers: dict[str, MultiStepLR]
    channels_last: bool
    repeats: torch.Tensor | None
    epoch_size: int
    sampler: EpochBatchSampler
    loader: DataLoader
    groups: torch.Tensor | None = None
    group_sizes: torch.Tensor | None = None
    sample_weights: torch.Tensor | None = None


def _check_labels(config: Config, train_set: BiasedDataset) -> None:
    """A supervised method needs a class for every training sample."""
    unlabelled = int((train_set.targets < 0).sum())
    if unlabelled and METHODS[config.method.name].supervised:
        raise DebiasclError(
            f"method '{config.method.name}' is supervised but the train split of "
            f"'{config.data.name}' has {unlabelled} unlabelled samples (y = -1); turn "
            "them off in the data options (e.g. data.options.unlabeled=false)"
        )


def _epoch_size(config: Config, train_set: BiasedDataset, repeats: torch.Tensor | None) -> int:
    """Training samples per epoch (``repeats``' sum when given); at least one batch.

    Raises:
        DebiasclError: fewer samples per epoch than ``train.batch_size``.
    """
    if repeats is not None and repeats.shape != (len(train_set),):
        raise ValueError(f"repeats: expected shape ({len(train_set)},), got {tuple(repeats.shape)}")
    epoch_size = len(train_set) if repeats is None else int(repeats.sum())
    if epoch_size < config.train.batch_size:
        raise DebiasclError(
            f"dataset '{config.data.name}' gives {epoch_size} training samples per "
            f"epoch, fewer than train.batch_size = {config.train.batch_size}; lower it"
        )
    return epoch_size


def _training_method(
    config: Config, train_set: BiasedDataset, runtime: Runtime, channels_last: bool
) -> Method:
    """The run's method on its device in training mode (channels_last and DDP-wrapped encoders
    where they apply)."""
    device = runtime.device
    method = build_method(config, train_set, gather_distributed=runtime.world_size > 1).to(device)
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    if runtime.world_size > 1:
        method = prepare_distributed(method, device)
    return method.train()


def _batches(
    config: Config,
    train_set: BiasedDataset,
    runtime: Runtime,
    repeats: torch.Tensor | None,
    probabilities: torch.Tensor | None,
) -> tuple[EpochBatchSampler, DataLoader]:
    """This rank's batch sampler (from epoch 0) and the loader that reads its batches."""
    sampler = EpochBatchSampler(
        len(train_set),
        config.train.batch_size,
        config.train.seed,
        0,
        (runtime.rank, runtime.world_size),
        repeats=repeats,
        probabilities=probabilities,
    )
    loader = batch_loader(
        train_set,
        sampler,
        resolve_workers(config.data.num_workers, train_set, runtime.world_size),
        runtime.device,
        # Its own generator: creating an iterator must not draw from the global RNG.
        generator=torch.Generator().manual_seed(mix_seed(config.train.seed, 1)),
    )
    return sampler, loader


def build_training(
    config: Config, runtime: Runtime, repeats: torch.Tensor | None = None
) -> TrainingParts:
    """Seed with ``train.seed`` and build the parts of a run (see the module docstring).

    Args:
        config: a validated configuration.
        runtime: rank, world size and device of this process.
        repeats: optional (n_train,) int64 times each training sample appears per epoch
            (JTT's up-weighting; see :func:`debiascl.data.sampling.epoch_order`).

    Raises:
        DebiasclError: unlabelled samples for a supervised method, or fewer samples per epoch
            than ``train.batch_size``.
    """
    seed_everything(config.train.seed)
    data, device = config.data, runtime.device
    train_set = configured_dataset(data, "train", data.download, runtime.world_size)
    _check_labels(config, train_set)
    epoch_size = _epoch_size(config, train_set, repeats)
    # A discovery made here must not move the seeded random state the weights are drawn from.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        groups = run_on_main(runtime, lambda: training_groups(config, train_set, device))
    balanced = groups is not None and config.train.group_sampling == "balanced"
    weighted = groups is not None and config.train.group_weighting == "balanced"
    views = configured_views(data, train_set).to(device)
    channels_last = use_channels_last(
        config.train.channels_last, device, train_set.kind, config.model.backbone
    )
    if use_malloc_tuning(config.train.malloc_tuning, device, train_set.kind):
        tune_malloc()
    method = _training_method(config, train_set, runtime, channels_last)
    optimizers = build_optimizers(method.param_groups(config.optim), config.optim)
    schedulers = {
        name: MultiStepLR(optimizer, config.optim.milestones, config.optim.gamma)
        for name, optimizer in optimizers.items()
    }
    probabilities = balanced_probabilities(groups) if balanced else None
    sampler, loader = _batches(config, train_set, runtime, repeats, probabilities)
    return TrainingParts(
        train_set,
        views,
        method,
        optimizers,
        schedulers,
        channels_last,
        repeats,
        epoch_size,
        sampler,
        loader,
        groups,
        None if groups is None else torch.bincount(groups),
        balanced_weights(groups) if weighted else None,
    )
