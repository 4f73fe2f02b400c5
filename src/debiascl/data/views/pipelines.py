"""The view pipelines: modules that make two augmented, normalised views of a batch."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from debiascl.data.base import BiasedDataset
from debiascl.data.views.colour import (
    color_jitter_,
    random_gaussian_blur_,
    random_grayscale_,
    sample_jitter,
)
from debiascl.data.views.draws import bernoulli
from debiascl.data.views.geometry import resize, resized_crop, sample_crop_boxes
from debiascl.errors import DebiasclError

SCARF_TABLE_ROWS = 10_000
CPU_CHUNK_BYTES = 8 << 20  # float32 views per augmentation pass on the CPU


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
        flip = bernoulli(batch, 0.5, x.device)
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


class IdentityViews(ViewPipeline):
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
