"""The augmentation registry's builders: ``data.augmentation`` name -> a view pipeline."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from debiascl.data.base import BiasedDataset
from debiascl.data.views.geometry import CROP_FLIP_SCALE, SIMCLR_SCALE
from debiascl.data.views.pipelines import (
    GaussianNoiseViews,
    IdentityViews,
    ImageViews,
    ScarfViews,
    ViewPipeline,
    reference_table,
)
from debiascl.errors import DebiasclError
from debiascl.registry import AUGMENTATIONS


@dataclass(frozen=True)
class ViewSettings:
    """The ``data.*`` settings a view pipeline may read: ``image_size`` (side of the square
    output views; None keeps the input's (H, W)), ``noise_std`` (of "gaussian_noise") and
    ``corruption_rate`` (fraction of features "scarf" replaces)."""

    image_size: int | None = None
    noise_std: float = 0.1
    corruption_rate: float = 0.6


ViewBuilder = Callable[[BiasedDataset, ViewSettings], "ViewPipeline"]
"""(training data set, settings) -> the view pipeline of an augmentation."""


def register_augmentation(name: str, *kinds: str) -> Callable[[ViewBuilder], ViewBuilder]:
    """Decorator: make a builder the augmentation ``name`` (a choice of ``data.augmentation``)
    for data of ``kinds`` ("image", "table")."""

    def register(builder: ViewBuilder) -> ViewBuilder:
        AUGMENTATIONS.add(name, builder, kinds=kinds)
        return builder

    return register


def build_views(
    augmentation: str,
    dataset: BiasedDataset,
    image_size: int | None = None,
    noise_std: float = 0.1,
    corruption_rate: float = 0.6,
) -> ViewPipeline:
    """The view pipeline of a data set: the builder registered as ``augmentation``.

    Args:
        augmentation: "simclr", "crop_flip" (crop area in (0.7, 1)) or "crop_flip_wide" (crop
            area in (0.08, 1), no colour steps: torchvision's ImageNet training crop) for images,
            "gaussian_noise" or "scarf" for tables, "none" (deterministic: resize +
            normalise for images, identity for tables), or one registered by a plugin.
        dataset: the (training) data set; gives kind, input_shape, mean/std, and for "scarf" the
            reference rows.
        image_size: side of the square output views; None keeps the input's (H, W).
        noise_std: standard deviation of the "gaussian_noise" views.
        corruption_rate: fraction of features replaced by "scarf".

    Returns:
        A :class:`ViewPipeline` (an nn.Module: move it with ``.to(device)``).
    """
    kind = dataset.kind
    allowed = [name for name in AUGMENTATIONS if kind in AUGMENTATIONS.info(name)["kinds"]]
    if augmentation not in allowed:
        known = "unknown" if augmentation not in AUGMENTATIONS else f"not for {kind} data"
        raise DebiasclError(
            f"data.augmentation '{augmentation}' is {known} (dataset '{dataset.name}'); "
            f"expected one of {', '.join(allowed)} for {kind} data"
        )
    settings = ViewSettings(image_size, noise_std, corruption_rate)
    return AUGMENTATIONS[augmentation](dataset, settings)


def _image_views(
    augmentation: str,
    dataset: BiasedDataset,
    settings: ViewSettings,
    crop_scale: tuple[float, float] | None,
    colour: bool,
) -> ImageViews:
    """Views of images: random resized crop of ``crop_scale`` area (None: none), flip, and
    SimCLR's colour steps when ``colour``; normalised by the data set's mean and std."""
    shape, image_size = tuple(dataset.input_shape), settings.image_size
    channels = shape[0]
    if len(dataset.mean) != channels or len(dataset.std) != channels:
        raise DebiasclError(
            f"dataset '{dataset.name}' has mean {dataset.mean} and std {dataset.std}; "
            f"expected {channels} values each (one per channel)"
        )
    if image_size is not None and image_size <= 0:
        raise DebiasclError(f"data.image_size must be a positive integer, got {image_size}")
    size = (shape[1], shape[2]) if image_size is None else (image_size, image_size)
    return ImageViews(augmentation, shape, size, dataset.mean, dataset.std, crop_scale, colour)


for _name, _scale, _colour in (
    ("simclr", SIMCLR_SCALE, True),
    ("crop_flip", CROP_FLIP_SCALE, False),
    ("crop_flip_wide", SIMCLR_SCALE, False),
):
    register_augmentation(_name, "image")(
        partial(_image_views, _name, crop_scale=_scale, colour=_colour)
    )


@register_augmentation("gaussian_noise", "table")
def _gaussian_noise_views(dataset: BiasedDataset, settings: ViewSettings) -> ViewPipeline:
    _check_range("data.noise_std", settings.noise_std, 0.0, math.inf)
    return GaussianNoiseViews(tuple(dataset.input_shape), settings.noise_std)


@register_augmentation("scarf", "table")
def _scarf_views(dataset: BiasedDataset, settings: ViewSettings) -> ViewPipeline:
    _check_range("data.corruption_rate", settings.corruption_rate, 0.0, 1.0)
    return ScarfViews(reference_table(dataset), settings.corruption_rate)


@register_augmentation("none", "image", "table")
def _deterministic_views(dataset: BiasedDataset, settings: ViewSettings) -> ViewPipeline:
    """Images resized and normalised, tables as they are."""
    if dataset.kind == "image":
        return _image_views("none", dataset, settings, crop_scale=None, colour=False)
    return IdentityViews(tuple(dataset.input_shape))


def _check_range(setting: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise DebiasclError(f"{setting} must be in [{low}, {high}], got {value}")
