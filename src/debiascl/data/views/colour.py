"""SimCLR's colour steps on a whole batch with per-sample parameters: colour jitter (in a
per-sample random order), random grayscale and the 3x3 Gaussian blur (torchvision's formulas)."""

from __future__ import annotations

import torch
from torch import Tensor

from debiascl.data.views.draws import bernoulli, per_sample, uniform

JITTER = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
JITTER_P = 0.8
GRAYSCALE_P = 0.2
BLUR_P = 0.5
BLUR_SIGMA = (0.1, 2.0)
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale

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
        [uniform(batch, 1.0 - s, 1.0 + s, device) for s in strength[:3]]
        + [uniform(batch, -strength[3], strength[3], device)],
        dim=1,
    )
    order = torch.rand(batch, 4, device=device).argsort(dim=1)
    jittered = bernoulli(batch, p, device)
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
        target.mul_(per_sample(is_saturation[:, position]))
        target.add_(mean * per_sample(is_contrast[:, position]))
        x.lerp_(target, per_sample(weight[:, position])).clamp_(0.0, 1.0)
        if x.shape[1] == 3:
            chosen = (order[:, position] == 3).nonzero().squeeze(1)
            x.index_copy_(0, chosen, adjust_hue_(x[chosen], factors[chosen, 3]))
    return x


def random_grayscale_(x: Tensor, p: float = GRAYSCALE_P) -> Tensor:
    """Replace each RGB image (B, 3, H, W) by its grayscale with probability p, in place."""
    chosen = bernoulli(x.shape[0], p, x.device)
    return x.lerp_(rgb_to_grayscale(x), per_sample(chosen.to(x.dtype)))


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
    chosen = bernoulli(batch, p, x.device)
    side = torch.exp(-0.5 / uniform(batch, sigma[0], sigma[1], x.device).square())
    tap = per_sample(torch.where(chosen, side / (1.0 + 2.0 * side), 0.0))
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
