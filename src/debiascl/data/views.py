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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from debiascl.data.base import BiasedDataset
from debiascl.errors import DebiasclError
from debiascl.registry import AUGMENTATIONS

SIMCLR_SCALE = (0.08, 1.0)
CROP_FLIP_SCALE = (0.7, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
JITTER = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
JITTER_P = 0.8
GRAYSCALE_P = 0.2
BLUR_P = 0.5
BLUR_SIGMA = (0.1, 2.0)
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
SCARF_TABLE_ROWS = 10_000
CPU_CHUNK_BYTES = 8 << 20  # float32 views per augmentation pass on the CPU


def _uniform(batch: int, low: float, high: float, device: torch.device) -> Tensor:
    """(batch,) float32 draws from U(low, high) on ``device``."""
    return torch.rand(batch, device=device) * (high - low) + low


def _bernoulli(batch: int, p: float, device: torch.device) -> Tensor:
    """(batch,) bool, each True with probability p."""
    return torch.rand(batch, device=device) < p


def _per_sample(factor: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1) for broadcasting over images."""
    return factor[:, None, None, None]


# --------------------------------------------------------------------------- geometry


def sample_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = CROP_RATIO,
    device: torch.device | str = "cpu",
    attempts: int = 10,
) -> Tensor:
    """Random crop boxes as torchvision's RandomResizedCrop draws them, vectorised over the batch.

    Each sample tries ``attempts`` (area fraction, log aspect ratio) pairs and keeps the first box
    that fits; a sample for which none fits gets torchvision's fallback, the central crop with the
    aspect ratio clamped into ``ratio``. Sizes and offsets are continuous.

    Args:
        batch: number of boxes B.
        height, width: image size H, W in pixels.
        scale: range of the crop area as a fraction of H * W.
        ratio: range of the crop aspect ratio width / height.
        device: where to draw.
        attempts: tries per sample before the fallback.

    Returns:
        (B, 4) float32 boxes (x0, y0, x1, y1) in pixel-edge coordinates, 0 <= x0 < x1 <= W.
    """
    area = float(height * width)
    fraction = torch.rand(batch, attempts, device=device) * (scale[1] - scale[0]) + scale[0]
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(torch.rand(batch, attempts, device=device) * (log_hi - log_lo) + log_lo)
    w_try = torch.sqrt(area * fraction * aspect)
    h_try = torch.sqrt(area * fraction / aspect)
    fits = (w_try <= width) & (h_try <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)
    w_fb, h_fb = _fallback_crop_size(height, width, ratio)
    w = torch.where(found, w_try.gather(1, first).squeeze(1), w_fb)
    h = torch.where(found, h_try.gather(1, first).squeeze(1), h_fb)
    u = torch.where(found[:, None], torch.rand(batch, 2, device=device), 0.5)
    x0 = u[:, 0] * (width - w)
    y0 = u[:, 1] * (height - h)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def _fallback_crop_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[float, float]:
    """(w, h) of torchvision's fallback: the whole image, aspect ratio clamped into ratio."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return float(width), width / ratio[0]
    if in_ratio > ratio[1]:
        return height * ratio[1], float(height)
    return float(width), float(height)


def _sample_points(start: Tensor, step: Tensor, out_size: int) -> Tensor:
    """(B, out_size) input coordinates (pixel edges) that output pixels i sample:
    ``start + (i + 0.5) * step``, for spans starting at ``start`` (B,) with ``step`` (B,) input
    pixels per output pixel."""
    offsets = torch.arange(out_size, device=start.device, dtype=start.dtype) + 0.5
    return start[:, None] + offsets[None, :] * step[:, None]


def resampling_weights(start: Tensor, end: Tensor, in_size: int, out_size: int) -> Tensor:
    """Per-sample 1-D bilinear resampling matrices of the spans [start, end) along one axis.

    Output pixel i samples the input at ``start + (i + 0.5) * (end - start) / out_size`` (pixel-edge
    coordinates) with a triangle filter whose support widens by the shrink factor when the span is
    longer than ``out_size`` -- PyTorch's anti-aliased bilinear interpolation (``antialias=True``);
    weights of pixels outside the image are dropped and the rest renormalised, which equals
    clamping at the border. ``end < start`` gives the mirrored span (a flip).

    Args:
        start, end: (B,) span ends in pixel-edge coordinates, within [0, in_size].
        in_size: input length along the axis.
        out_size: output length.

    Returns:
        (B, out_size, in_size) weights, each row summing to 1.
    """
    step = (end - start) / out_size  # (B,) signed input pixels per output pixel
    centres = _sample_points(start, step, out_size)  # (B, out_size)
    pixels = torch.arange(in_size, device=start.device, dtype=start.dtype) + 0.5
    support = step.abs().clamp(min=1.0)[:, None, None]
    distance = (pixels[None, None, :] - centres[:, :, None]).abs_() / support
    weights = (1.0 - distance).clamp_(min=0.0)
    return weights / weights.sum(dim=2, keepdim=True)


def bilinear_taps(
    start: Tensor, end: Tensor, in_size: int, out_size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The two input pixels and the lerp weight of each output pixel along one axis.

    The same sampling points as :func:`resampling_weights`; valid where the span is at most
    ``out_size`` long (no shrink), where the triangle filter has support 1 and touches two pixels.
    Output pixel i is ``(1 - frac) * pixel[low] + frac * pixel[high]``; taps beyond the image are
    clamped to its border pixel, which equals dropping them and renormalising.

    Args:
        start, end: (B,) span ends in pixel-edge coordinates, within [0, in_size].
        in_size: input length along the axis.
        out_size: output length.

    Returns:
        low, high: (B, out_size) int64 pixel indices in [0, in_size).
        frac: (B, out_size) lerp weights of ``high``, in [0, 1).
    """
    centres = _sample_points(start, (end - start) / out_size, out_size) - 0.5  # pixel centres
    low = centres.floor()
    frac = centres - low
    low = low.long()
    return low.clamp(0, in_size - 1), (low + 1).clamp(max=in_size - 1), frac


def _two_tap_crop(
    x: Tensor,
    source: Tensor,
    box_x: tuple[Tensor, Tensor],
    box_y: tuple[Tensor, Tensor],
    size: tuple[int, int],
) -> Tensor:
    """Bilinear crops without shrink: gather two rows and lerp, then two columns and lerp.

    Args:
        x: (N, C, H, W) float images.
        source: (B,) int64, the image of x each crop reads.
        box_x, box_y: (start, end) spans along W and H, (B,) each (start > end mirrors).
        size: output (h, w).

    Returns:
        (B, C, h, w) crops.
    """
    channels, height, width = x.shape[1:]
    batch = source.shape[0]
    low, high, frac = bilinear_taps(*box_y, height, size[0])  # (B, h)
    channel = torch.arange(channels, device=x.device)
    first_row = ((source[:, None] * channels + channel) * height)[:, :, None]  # (B, C, 1)
    rows = x.reshape(-1, width)
    top = rows.index_select(0, (first_row + low[:, None]).view(-1))
    bottom = rows.index_select(0, (first_row + high[:, None]).view(-1))
    weight = frac[:, None, :, None].expand(batch, channels, size[0], 1).reshape(-1, 1)
    resized_rows = top.lerp_(bottom, weight).view(batch, channels, size[0], width)
    low, high, frac = bilinear_taps(*box_x, width, size[1])  # (B, w)
    shape = (batch, channels, size[0], size[1])
    left = resized_rows.gather(3, low[:, None, None, :].expand(shape))
    right = resized_rows.gather(3, high[:, None, None, :].expand(shape))
    return left.lerp_(right, frac[:, None, None, :])


def resized_crop(
    x: Tensor,
    boxes: Tensor,
    size: tuple[int, int],
    flip: Tensor | None = None,
    source: Tensor | None = None,
) -> Tensor:
    """Crop an image to each box, resize it to ``size`` and optionally mirror it.

    Equals torchvision's ``resized_crop`` (bilinear, antialias=True) inside the box; at the box's
    edges the bilinear taps read the pixels just outside the box instead of clamping to its edge.
    When the images are no larger than the output (boxes lie inside them, so none is shrunk and
    anti-aliasing is the identity), each output pixel mixes two rows and two columns: index
    gathers and lerps, O(S^2) per channel; the choice depends on shapes only, so it never waits
    on the device. Otherwise two batched matmuls with the anti-aliased resampling matrices of
    :func:`resampling_weights`, O(S^3) per channel (about 75 ms per 32 images at 224x224 on one
    CPU core; on a GPU it is negligible).

    Args:
        x: (N, C, H, W) float images.
        boxes: (B, 4) (x0, y0, x1, y1) in pixel-edge coordinates, one box per crop.
        size: output (h, w).
        flip: (B,) bool, mirror the crop left-right; None for no flip.
        source: (B,) int64, the image of x each box crops (several boxes may share one, e.g. two
            views); None for box i on image i (B = N).

    Returns:
        (B, C, h, w) crops.
    """
    if source is None:
        source = torch.arange(x.shape[0], device=x.device)
    x0, y0, x1, y1 = boxes.to(x.dtype).unbind(1)
    if flip is not None:
        x0, x1 = torch.where(flip, x1, x0), torch.where(flip, x0, x1)
    if x.shape[-2] <= size[0] and x.shape[-1] <= size[1]:
        return _two_tap_crop(x, source, (x0, x1), (y0, y1), size)
    rows = resampling_weights(y0, y1, x.shape[-2], size[0])  # (B, h, H)
    cols = resampling_weights(x0, x1, x.shape[-1], size[1])  # (B, w, W)
    return rows[:, None] @ x.index_select(0, source) @ cols.transpose(1, 2)[:, None]


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear, anti-aliased resize of (B, C, H, W) to (B, C, *size); a no-op at the same size."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


# --------------------------------------------------------------------------- colour
# The colour steps work in place on a view the pipeline owns: fresh full-size tensors cost page
# faults on CPU (large allocations are returned to the OS on free), which doubled their time.


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma (torchvision's weights); 1-channel input as is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    gray = (GRAY_WEIGHTS[0] * r).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2])
    return gray.unsqueeze(1)


def adjust_hue_(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of each RGB image (B, 3, H, W) in [0, 1] by shift (B,) turns, in place.

    torchvision's ``adjust_hue`` (RGB -> HSV, hue += shift, HSV -> RGB) in few tensor ops: V and
    chroma = max - min are kept, and the output is ``min + chroma * pure(hue)`` with the fully
    saturated colour ``pure = clamp(offset + sign * |6 hue - centre|, 0, 1)`` per channel
    (centre 3, 2, 4; sign +1, -1, -1; offset -1, 2, 2 for r, g, b).

    Returns:
        x, modified.
    """
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    chroma = maxc - minc
    safe = chroma.clamp(min=1e-12)  # gray pixels: numerator 0, any hue
    red_max = maxc == r
    green_max = (maxc == g) & ~red_max
    numerator = torch.where(red_max, g - b, torch.where(green_max, b - r, r - g))
    sector = numerator / safe + 2.0 * green_max + 4.0 * (~red_max & ~green_max)
    hue6 = torch.remainder(sector + 6.0 * shift[:, None, None], 6.0)  # new hue in sixths, [0, 6)
    centre, sign, offset = (
        torch.tensor(values, device=x.device, dtype=x.dtype)[None, :, None, None]
        for values in ((3.0, 2.0, 4.0), (1.0, -1.0, -1.0), (-1.0, 2.0, 2.0))
    )
    torch.sub(hue6.unsqueeze(1), centre, out=x)
    x.abs_().mul_(sign).add_(offset).clamp_(0.0, 1.0)
    return x.mul_(chroma.unsqueeze(1)).add_(minc.unsqueeze(1))


def sample_jitter(
    batch: int,
    strength: tuple[float, float, float, float] = JITTER,
    p: float = JITTER_P,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Per-sample ColorJitter parameters, drawn as torchvision draws them.

    Args:
        batch: B.
        strength: (brightness, contrast, saturation, hue) s; factors ~ U(1 - s, 1 + s) for the
            first three, the hue shift ~ U(-s, s) in turns.
        p: probability that a sample is jittered.
        device: where to draw.

    Returns:
        factors: (B, 4) float32 brightness, contrast, saturation factors and hue shift.
        order: (B, 4) int64, the steps (0 brightness, 1 contrast, 2 saturation, 3 hue) in the
            order applied, a random permutation per sample; all -1 for samples not jittered.
    """
    factors = torch.stack(
        [_uniform(batch, 1.0 - s, 1.0 + s, device) for s in strength[:3]]
        + [_uniform(batch, -strength[3], strength[3], device)],
        dim=1,
    )
    order = torch.rand(batch, 4, device=device).argsort(dim=1)
    jittered = _bernoulli(batch, p, device)
    return factors, torch.where(jittered[:, None], order, -1)


def color_jitter_(x: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    """Apply per-sample ColorJitter steps in per-sample order, in place (see sample_jitter).

    Brightness, contrast and saturation are all ``clamp(f * x + (1 - f) * target, 0, 1)`` with
    target 0, the grayscale mean and the grayscale (torchvision's formulas), so at each of the four
    positions one blend on the whole batch applies every sample's step there (factor 1 for the
    samples whose step is hue or that are not jittered); the hue step runs only on the samples
    that take it at that position.

    Args:
        x: (B, C, H, W) images in [0, 1]; C = 1 makes saturation the identity and skips hue.
        factors: (B, 4) from sample_jitter.
        order: (B, 4) from sample_jitter.

    Returns:
        x, modified: (B, C, H, W) in [0, 1].
    """
    blends = (order >= 0) & (order < 3)  # (B, 4) per position
    factor = torch.where(blends, factors.gather(1, order.clamp(0, 3)), 1.0)
    weight = (1.0 - factor).to(x.dtype)  # lerp weight towards the target
    is_contrast, is_saturation = (order == 1).to(x.dtype), (order == 2).to(x.dtype)
    for position in range(4):
        target = rgb_to_grayscale(x).clone()
        mean = target.mean(dim=(2, 3), keepdim=True)
        target.mul_(_per_sample(is_saturation[:, position]))
        target.add_(mean * _per_sample(is_contrast[:, position]))
        x.lerp_(target, _per_sample(weight[:, position])).clamp_(0.0, 1.0)
        if x.shape[1] == 3:
            chosen = (order[:, position] == 3).nonzero().squeeze(1)
            x.index_copy_(0, chosen, adjust_hue_(x[chosen], factors[chosen, 3]))
    return x


def random_grayscale_(x: Tensor, p: float = GRAYSCALE_P) -> Tensor:
    """Replace each RGB image (B, 3, H, W) by its grayscale with probability p, in place."""
    chosen = _bernoulli(x.shape[0], p, x.device)
    return x.lerp_(rgb_to_grayscale(x), _per_sample(chosen.to(x.dtype)))


def random_gaussian_blur_(
    x: Tensor, sigma: tuple[float, float] = BLUR_SIGMA, p: float = BLUR_P
) -> Tensor:
    """torchvision's GaussianBlur(kernel 3, sigma) applied with probability p per sample, in place.

    The normalised 3-tap kernel is ``[a, 1 - 2a, a]`` with ``a = e / (1 + 2e)``,
    ``e = exp(-1 / (2 sigma^2))``, applied along W then H with reflect padding as
    ``x + a * (left + right - 2x)``; a = 0 leaves a sample exactly unchanged.

    Args:
        x: (B, C, H, W) images (H, W >= 2).
        sigma: range of the per-sample standard deviation.
        p: probability that a sample is blurred.

    Returns:
        x, modified.
    """
    batch = x.shape[0]
    chosen = _bernoulli(batch, p, x.device)
    side = torch.exp(-0.5 / _uniform(batch, sigma[0], sigma[1], x.device).square())
    tap = _per_sample(torch.where(chosen, side / (1.0 + 2.0 * side), 0.0))
    for dim in (3, 2):
        x.addcmul_(_reflected_neighbours(x, dim).sub_(x, alpha=2.0), tap)
    return x


def _reflected_neighbours(x: Tensor, dim: int) -> Tensor:
    """(B, C, H, W) sum of each pixel's two neighbours along ``dim`` with reflect padding.

    Equals ``pad(x, reflect)`` narrowed left + right, without building the padded copy (CPU
    reflection padding cost as much as the rest of the blur): at the first pixel both
    neighbours are the second pixel, at the last both are the one before it.
    """
    size = x.shape[dim]
    neighbours = torch.empty_like(x)
    torch.add(
        x.narrow(dim, 0, size - 2),
        x.narrow(dim, 2, size - 2),
        out=neighbours.narrow(dim, 1, size - 2),
    )
    torch.mul(x.narrow(dim, 1, 1), 2.0, out=neighbours.narrow(dim, 0, 1))
    torch.mul(x.narrow(dim, size - 2, 1), 2.0, out=neighbours.narrow(dim, size - 1, 1))
    return neighbours


# --------------------------------------------------------------------------- pipelines


class ViewPipeline(nn.Module):
    """Makes two independently augmented, normalised views of a batch.

    Attributes:
        augmentation: the setting's name.
        input_shape: shape of one input sample, (C, H, W) or (F,).
        output_shape: shape of one view, (C, h, w) or (F,).
    """

    def __init__(
        self, augmentation: str, input_shape: tuple[int, ...], output_shape: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.augmentation = augmentation
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)

    byte_inputs = False  # whether uint8 inputs are accepted (images, scaled by 1/255)

    @torch.no_grad()
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Two views of x (never differentiable; x is left unchanged).

        On the CPU a large batch is augmented in chunks of about ``CPU_CHUNK_BYTES`` of float32
        samples, so that the chain of whole-tensor steps works in the CPU's caches instead of
        streaming the batch through memory once per step (2x faster at 128x128); elsewhere, and
        for a batch within one chunk, the whole batch is one pass.

        Args:
            x: (B, *input_shape) float inputs (images in [0, 1]), or uint8 images.

        Returns:
            (v1, v2), each (B, *output_shape) float32 on x's device.
        """
        x = self._check(x)
        chunk = self.chunk_size(x)
        if chunk >= x.shape[0]:
            views = self.augment_pair(self._as_float(x))  # one pass over both views
            return views[: x.shape[0]], views[x.shape[0] :]
        pair = torch.empty(2, x.shape[0], *self.output_shape, dtype=torch.float32, device=x.device)
        for start in range(0, x.shape[0], chunk):
            part = x[start : start + chunk]
            views = self.augment_pair(self._as_float(part))
            pair[:, start : start + part.shape[0]] = views.view(2, part.shape[0], *views.shape[1:])
        return pair[0], pair[1]

    def chunk_size(self, x: Tensor) -> int:
        """Samples of x augmented in one pass: all of them off the CPU, else a cache-sized part."""
        batch = max(1, x.shape[0])
        if x.device.type != "cpu":
            return batch
        largest = max(math.prod(self.input_shape), math.prod(self.output_shape))
        return max(1, min(batch, CPU_CHUNK_BYTES // (2 * 4 * largest)))  # 2 float32 views

    @torch.no_grad()
    def prepare(self, x: Tensor) -> Tensor:
        """The deterministic evaluation input: (B, *input_shape) -> (B, *output_shape) float32."""
        return self.normalise(self._as_float(self._check(x)))

    def augment(self, x: Tensor) -> Tensor:
        """One random view of a checked float32 batch (B, *input_shape) -> (B, *output_shape)."""
        raise NotImplementedError

    def augment_pair(self, x: Tensor) -> Tensor:
        """Two random views of each sample: (B, *input_shape) -> (2B, *output_shape), all first
        views, then all second views (independent draws, as ``augment`` of x twice)."""
        return self.augment(torch.cat([x, x]))

    def normalise(self, x: Tensor) -> Tensor:
        """Deterministic resize/normalisation of a checked batch; identity unless overridden."""
        return x

    def _check(self, x: Tensor) -> Tensor:
        """x itself after checking its shape and dtype (clear errors for a wrong batch)."""
        if x.dim() != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise DebiasclError(
                f"augmentation '{self.augmentation}' expects a batch of shape "
                f"(B, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )
        if not x.is_floating_point() and not (x.dtype == torch.uint8 and self.byte_inputs):
            expected = "float or uint8" if self.byte_inputs else "float"
            raise DebiasclError(
                f"augmentation '{self.augmentation}' expects {expected} inputs, got {x.dtype}"
            )
        return x

    @staticmethod
    def _as_float(x: Tensor) -> Tensor:
        """A checked batch as float32 (uint8 images scaled by 1/255 into [0, 1])."""
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        return x.float()

    def extra_repr(self) -> str:
        return f"{self.augmentation}, {self.input_shape} -> {self.output_shape}"


class ImageViews(ViewPipeline):
    """Image views: optional random resized crop + flip, optional SimCLR colour steps, normalise.

    Args:
        augmentation: "simclr", "crop_flip", "crop_flip_wide" or "none".
        input_shape: (C, H, W).
        size: output (h, w).
        mean, std: per-channel normalisation, C values each.
        crop_scale: area range of the random resized crop; None for no crop or flip.
        colour: apply colour jitter, grayscale and blur (SimCLR).
    """

    byte_inputs = True

    def __init__(
        self,
        augmentation: str,
        input_shape: tuple[int, ...],
        size: tuple[int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        crop_scale: tuple[float, float] | None,
        colour: bool,
    ) -> None:
        super().__init__(augmentation, input_shape, (input_shape[0], *size))
        self.size = size
        self.crop_scale = crop_scale
        self.colour = colour
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32)[:, None, None])
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32)[:, None, None])

    def normalise(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [0, 1] -> resized to (h, w) and normalised per channel."""
        return self._standardise_(resize(x, self.size).clone())

    def _standardise_(self, x: Tensor) -> Tensor:
        """(x - mean) / std per channel, in place on x (B, C, h, w)."""
        return x.sub_(self.mean.to(x.device)).div_(self.std.to(x.device))

    def augment(self, x: Tensor) -> Tensor:
        """One view (B, C, h, w) of (B, C, H, W) images in [0, 1]."""
        return self._views(x, torch.arange(x.shape[0], device=x.device))

    def augment_pair(self, x: Tensor) -> Tensor:
        """Two views (2B, C, h, w) of (B, C, H, W) images, cropped from x without copying it."""
        return self._views(x, torch.arange(x.shape[0], device=x.device).repeat(2))

    def _views(self, x: Tensor, source: Tensor) -> Tensor:
        """One view (V, C, h, w) of image ``source[v]`` of x (N, C, H, W) for each v."""
        if self.crop_scale is None:
            return self.normalise(x).index_select(0, source)
        batch, (height, width) = source.shape[0], x.shape[2:]
        boxes = sample_crop_boxes(batch, height, width, self.crop_scale, device=x.device)
        flip = _bernoulli(batch, 0.5, x.device)
        view = resized_crop(x, boxes, self.size, flip, source)
        if self.colour:
            color_jitter_(view, *sample_jitter(batch, device=x.device))
            if view.shape[1] == 3:
                random_grayscale_(view)
            random_gaussian_blur_(view)
        return self._standardise_(view)


class GaussianNoiseViews(ViewPipeline):
    """Table views x + noise_std * N(0, 1), independently per feature (the authors' choice)."""

    def __init__(self, input_shape: tuple[int, ...], noise_std: float) -> None:
        super().__init__("gaussian_noise", input_shape, input_shape)
        self.noise_std = noise_std

    def augment(self, x: Tensor) -> Tensor:
        """(B, F) -> (B, F) noisy copy."""
        return x + self.noise_std * torch.randn_like(x)


class ScarfViews(ViewPipeline):
    """SCARF views: per sample, round(rate * F) random features get values of other rows.

    A replaced entry (i, f) takes feature f of a uniformly drawn row of the reference table, i.e. a
    draw from that feature's empirical marginal, independently for every entry.

    Args:
        table: (N, F) reference rows (training inputs), stored as a buffer.
        corruption_rate: fraction of the F features replaced in each view.
    """

    def __init__(self, table: Tensor, corruption_rate: float) -> None:
        super().__init__("scarf", tuple(table.shape[1:]), tuple(table.shape[1:]))
        self.corruption_rate = corruption_rate
        self.num_corrupted = round(corruption_rate * table.shape[1])
        self.register_buffer("table", table.float())

    def augment(self, x: Tensor) -> Tensor:
        """(B, F) -> (B, F) with num_corrupted entries per row replaced."""
        batch, features = x.shape
        table = self.table.to(x.device)
        picked = torch.rand(batch, features, device=x.device).argsort(dim=1)[
            :, : self.num_corrupted
        ]
        corrupt = torch.zeros_like(x, dtype=torch.bool).scatter_(1, picked, True)
        rows = torch.randint(table.shape[0], (batch, features), device=x.device)
        donors = table[rows, torch.arange(features, device=x.device)]
        return torch.where(corrupt, donors, x)


class _IdentityViews(ViewPipeline):
    """Table views without augmentation: both views are the input itself."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        super().__init__("none", input_shape, input_shape)

    def augment(self, x: Tensor) -> Tensor:
        return x


def reference_table(dataset: BiasedDataset, max_rows: int = SCARF_TABLE_ROWS) -> Tensor:
    """(min(n, max_rows), F) inputs of the data set; a fixed-seed random subset if larger."""
    n = len(dataset)
    if n == 0:
        raise DebiasclError(
            f"augmentation 'scarf' needs training rows; dataset '{dataset.name}' is empty"
        )
    if n <= max_rows:
        indices = range(n)
    else:
        generator = torch.Generator().manual_seed(0)
        indices = torch.randperm(n, generator=generator)[:max_rows].tolist()
    return torch.stack([dataset.load(i) for i in indices]).float()


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
    return _IdentityViews(tuple(dataset.input_shape))


def _check_range(setting: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise DebiasclError(f"{setting} must be in [{low}, {high}], got {value}")
