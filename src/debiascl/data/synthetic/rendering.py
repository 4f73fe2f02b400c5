"""Rendering a benchmark's images: a grey object composed over a coloured, textured or patched
background (see :mod:`debiascl.data.synthetic` for the construction), and exact channel stats."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

PALETTE = {
    "red": (0.85, 0.15, 0.15),
    "orange": (0.95, 0.55, 0.10),
    "yellow": (0.90, 0.85, 0.15),
    "green": (0.20, 0.70, 0.20),
    "teal": (0.10, 0.65, 0.65),
    "blue": (0.15, 0.35, 0.90),
    "purple": (0.55, 0.25, 0.80),
    "pink": (0.95, 0.45, 0.70),
    "brown": (0.55, 0.35, 0.15),
    "grey": (0.50, 0.50, 0.50),
}
LAND_COLOUR = (0.45, 0.55, 0.20)
WATER_COLOUR = (0.15, 0.40, 0.85)


def backgrounds(
    attributes: torch.Tensor, phases: torch.Tensor, size: int, cue: str
) -> torch.Tensor:
    """(n, 3, S, S) float backgrounds: palette colours ("colour"), land / water textures
    ("texture"), or black ("patch": the patch is drawn over the composed image)."""
    n = len(attributes)
    if cue == "colour":
        palette = torch.tensor(list(PALETTE.values()))
        return palette[attributes][:, :, None, None].expand(n, 3, size, size)
    if cue == "patch":
        return torch.zeros(n, 3, size, size)
    position = torch.arange(size, dtype=torch.float32) / size
    rows, cols = position[:, None], position[None, :]
    shift = phases[:, None, None]
    land = 0.7 + 0.3 * torch.sin(2 * math.pi * (4 * cols + shift))
    water = 0.7 + 0.3 * torch.sin(
        2 * math.pi * (4 * rows + 0.15 * torch.sin(2 * math.pi * cols) + shift)
    )
    is_water = attributes.bool()[:, None, None, None]
    land_rgb = land[:, None] * torch.tensor(LAND_COLOUR)[None, :, None, None]
    water_rgb = water[:, None] * torch.tensor(WATER_COLOUR)[None, :, None, None]
    return torch.where(is_water, water_rgb, land_rgb)


def draw_patches(images: torch.Tensor, attributes: torch.Tensor) -> None:
    """Draw the "patch" cue in place: a white square, ``max(2, round(S / 6))`` pixels a side,
    one pixel from the left edge and from the top (a = 0) or the bottom (a = 1) edge.

    Args:
        images: (n, 3, S, S) float images in [0, 1], modified in place.
        attributes: (n,) 0 or 1.
    """
    size = images.shape[-1]
    side = max(2, round(size / 6))
    top, bottom = 1, size - 1 - side
    for attribute, row in ((0, top), (1, bottom)):
        chosen = attributes == attribute
        images[chosen, :, row : row + side, 1 : 1 + side] = 1.0


def render(
    images: np.ndarray,
    attributes: np.ndarray,
    phases: np.ndarray,
    size: int,
    cue: str,
    chunk: int = 4096,
) -> torch.Tensor:
    """Compose grey images with backgrounds (and, for the "patch" cue, the patch).

    Args:
        images: (n, H, W) uint8 grey images.
        attributes: (n,) background of each image.
        phases: (n,) texture phase in [0, 1) (binary backgrounds only).
        size: output side S.
        cue: "colour", "texture" or "patch" (:class:`Construction`).

    Returns:
        (n, 3, S, S) uint8 images.
    """
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        grey = torch.from_numpy(images[start : start + chunk]).float().div(255.0)[:, None]
        if grey.shape[-1] != size:
            grey = F.interpolate(grey, size=(size, size), mode="bilinear", antialias=True)
            grey = grey.clamp(0, 1)
        alpha = (4 * grey).clamp(max=1.0)
        background = backgrounds(
            torch.from_numpy(attributes[start : start + chunk]),
            torch.from_numpy(phases[start : start + chunk]).float(),
            size,
            cue,
        )
        composed = torch.lerp(background, grey, alpha)  # alpha * grey + (1 - alpha) * background
        if cue == "patch":
            draw_patches(composed, torch.from_numpy(attributes[start : start + chunk]))
        out[start : start + chunk] = composed.mul_(255.0).round_().to(torch.uint8)
    return out


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of (n, 3, S, S) uint8 images, scaled to [0, 1] (exact)."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        mean = (counts * values).sum() / counts.sum()
        var = (counts * (values - mean) ** 2).sum() / counts.sum()
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)
