"""Batched view pipelines: two augmented, normalised views of a whole batch on its device.

Every random parameter (crop box, flip, jitter factors and order, grayscale, blur sigma, noise,
corrupted features) is drawn per sample from torch's global RNG on the input's device, so
``torch.manual_seed`` makes the views reproducible. The image operations follow torchvision's
formulas (``transforms.v2`` RandomResizedCrop, RandomHorizontalFlip, ColorJitter, RandomGrayscale,
GaussianBlur) but run on the whole batch at once with per-sample parameters:

- crop + resize + flip is per-sample separable bilinear resampling: two gathers and a lerp
  per axis when the images are no larger than the views (so no crop is shrunk; the usual case,
  e.g. a decoded-image cache at the training size), else two batched matmuls with anti-aliased
  resampling matrices (as torchvision's ``antialias=True``); crop boxes are continuous (not
  rounded to whole pixels);
- colour jitter is tensor math with per-sample factors and a per-sample random order of the four
  steps, as torchvision draws them;
- the 3x3 Gaussian blur is a separable 3-tap filter with a per-sample sigma.

kornia's equivalent ``AugmentationSequential`` is 3.3-3.5x slower on CPU at 32x32 (its ColorJitter
alone costs more than this whole pipeline; ``benchmarks/augment.py`` measures both against
torchvision), and its ColorJitter draws one step order per batch, not per sample.

One-channel images: the colour steps that need three channels (saturation, hue, grayscale) are
skipped; brightness, contrast and blur still apply.

The layers: :mod:`~debiascl.data.views.draws` (per-sample random draws),
:mod:`~debiascl.data.views.geometry` (crop, resize, flip), :mod:`~debiascl.data.views.colour`
(jitter, grayscale, blur), :mod:`~debiascl.data.views.pipelines` (the :class:`ViewPipeline`
modules) and :mod:`~debiascl.data.views.builders` (the registered augmentations,
:func:`build_views`); importing the package registers the built-in augmentations.
"""

from debiascl.data.views.builders import (
    ViewBuilder,
    ViewSettings,
    build_views,
    register_augmentation,
)
from debiascl.data.views.colour import (
    BLUR_P,
    BLUR_SIGMA,
    GRAY_WEIGHTS,
    GRAYSCALE_P,
    JITTER,
    JITTER_P,
    adjust_hue_,
    color_jitter_,
    random_gaussian_blur_,
    random_grayscale_,
    rgb_to_grayscale,
    sample_jitter,
)
from debiascl.data.views.geometry import (
    CROP_FLIP_SCALE,
    CROP_RATIO,
    SIMCLR_SCALE,
    bilinear_taps,
    resampling_weights,
    resize,
    resized_crop,
    sample_crop_boxes,
)
from debiascl.data.views.pipelines import (
    CPU_CHUNK_BYTES,
    SCARF_TABLE_ROWS,
    GaussianNoiseViews,
    IdentityViews,
    ImageViews,
    ScarfViews,
    ViewPipeline,
    reference_table,
)

__all__ = [
    "BLUR_P",
    "BLUR_SIGMA",
    "CPU_CHUNK_BYTES",
    "CROP_FLIP_SCALE",
    "CROP_RATIO",
    "GRAYSCALE_P",
    "GRAY_WEIGHTS",
    "JITTER",
    "JITTER_P",
    "SCARF_TABLE_ROWS",
    "SIMCLR_SCALE",
    "GaussianNoiseViews",
    "IdentityViews",
    "ImageViews",
    "ScarfViews",
    "ViewBuilder",
    "ViewPipeline",
    "ViewSettings",
    "adjust_hue_",
    "bilinear_taps",
    "build_views",
    "color_jitter_",
    "random_gaussian_blur_",
    "random_grayscale_",
    "reference_table",
    "register_augmentation",
    "resampling_weights",
    "resize",
    "resized_crop",
    "rgb_to_grayscale",
    "sample_crop_boxes",
    "sample_jitter",
]
