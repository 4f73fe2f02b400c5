"""Decoding image files: any PIL mode to 8-bit RGB, resized and centre-cropped to a square."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from debiascl.errors import DebiasclError


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
    import torchvision.transforms.functional as TF  # imported when first needed
    from torchvision.transforms import InterpolationMode

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
