"""Throughput of the batched view pipeline vs torchvision's per-sample transforms in a DataLoader.

Both make two SimCLR views (SPEC 5, CIFAR row) of the same uint8 images, on the same machine, in
one run; a row's speed is source images per second (each gives two views), the best of
``--repeats`` timed passes over the images after one warm-up pass (the machine may be shared).

    python benchmarks/augment.py                  # CPU, 5000 random 32x32 images, batch 256
    python benchmarks/augment.py --device cuda    # batched pipeline on the GPU

The ratio column is the batched pipeline's speed divided by the row's speed.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms import v2

from debiascl.data.base import BiasedDataset
from debiascl.data.views import (
    BLUR_P,
    BLUR_SIGMA,
    CROP_RATIO,
    GRAYSCALE_P,
    JITTER,
    JITTER_P,
    SIMCLR_SCALE,
    build_views,
)

if TYPE_CHECKING:
    import kornia.augmentation as K

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class _Images(BiasedDataset):
    """uint8 images (n, 3, S, S) wrapped as an image data set (only its description is used)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.name, self.split, self.kind = "benchmark", "train", "image"
        self.input_shape = tuple(images.shape[1:])
        self.num_classes, self.num_attributes = 1, 0
        self.class_names, self.attribute_names = ["image"], []
        self.targets = torch.zeros(len(images), dtype=torch.long)
        self.attributes = torch.full((len(images),), -1, dtype=torch.long)
        self.mean, self.std = MEAN, STD
        self.images = images

    def load(self, index: int) -> torch.Tensor:
        return self.images[index].float() / 255


class _TwoViews(Dataset):
    """Per-sample torchvision pipeline: item i -> (t(image_i), t(image_i))."""

    def __init__(self, images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        return self.transform(image), self.transform(image)


def torchvision_simclr(size: int) -> v2.Compose:
    """torchvision.transforms.v2 equivalent of the "simclr" view pipeline (uint8 CHW input)."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=SIMCLR_SCALE, ratio=CROP_RATIO, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomApply([v2.ColorJitter(*JITTER)], p=JITTER_P),
            v2.RandomGrayscale(p=GRAYSCALE_P),
            v2.RandomApply([v2.GaussianBlur(3, sigma=BLUR_SIGMA)], p=BLUR_P),
            v2.Normalize(MEAN, STD),
        ]
    )


def kornia_simclr(size: int) -> K.AugmentationSequential:
    """kornia's batched equivalent of the "simclr" view pipeline (float input in [0, 1])."""
    import kornia.augmentation as K  # only here: benchmarks/data.py imports this module too

    return K.AugmentationSequential(
        K.RandomResizedCrop((size, size), scale=SIMCLR_SCALE, ratio=CROP_RATIO),
        K.RandomHorizontalFlip(),
        K.ColorJitter(*JITTER, p=JITTER_P),
        K.RandomGrayscale(p=GRAYSCALE_P),
        K.RandomGaussianBlur((3, 3), BLUR_SIGMA, p=BLUR_P),
        K.Normalize(torch.tensor(MEAN), torch.tensor(STD)),
    )


def _best_rate(
    run_pass: Callable[[], Iterable[object]], n: int, repeats: int, sync: Callable
) -> float:
    """Best images/second over ``repeats`` timed passes, after one warm-up pass."""
    best = 0.0
    for attempt in range(repeats + 1):
        start = time.perf_counter()
        for _ in run_pass():
            pass
        sync()
        if attempt > 0:
            best = max(best, n / (time.perf_counter() - start))
    return best


def measure_batched(images: torch.Tensor, library: str, args: argparse.Namespace) -> float:
    """Images/s of DataLoader (uint8 batches) -> device -> a batched two-view pipeline.

    ``library`` is "debiascl" (build_views) or "kornia" (kornia_simclr applied twice).
    """
    device = torch.device(args.device)
    if library == "debiascl":
        pipeline = build_views("simclr", _Images(images), image_size=args.image_size).to(device)
    else:
        augment = kornia_simclr(args.image_size).to(device)

        def pipeline(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = x.float() / 255
            return augment(x), augment(x)

    loader = DataLoader(TensorDataset(images), batch_size=args.batch_size)

    def run_pass() -> Iterable[object]:
        with torch.no_grad():
            for (batch,) in loader:
                yield pipeline(batch.to(device, non_blocking=True))

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return _best_rate(run_pass, len(images), args.repeats, sync)


def measure_torchvision(images: torch.Tensor, workers: int, args: argparse.Namespace) -> float:
    """Images/s of torchvision's per-sample pipeline (two views per image) in a DataLoader."""
    dataset = _TwoViews(images, torchvision_simclr(args.image_size))
    loader = DataLoader(
        dataset, batch_size=args.batch_size, num_workers=workers, persistent_workers=workers > 0
    )
    return _best_rate(lambda: iter(loader), len(images), args.repeats, lambda: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="device of the batched pipeline")
    parser.add_argument("--num-images", type=int, default=5000)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    shape = (args.num_images, 3, args.image_size, args.image_size)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)

    batched = measure_batched(images, "debiascl", args)
    rows = [(f"debiascl batched ({args.device})", "-", batched)]
    if importlib.util.find_spec("kornia") is None:
        print("kornia is not installed (pip install '.[bench]'): its row is left out")
    else:
        rows.append(
            (f"kornia batched ({args.device})", "-", measure_batched(images, "kornia", args))
        )
    for workers in args.workers:
        rows.append(
            ("torchvision v2 per-sample", str(workers), measure_torchvision(images, workers, args))
        )

    print(
        f"{args.num_images} images {args.image_size}x{args.image_size}, two views each, "
        f"batch {args.batch_size}, torch threads {torch.get_num_threads()}, "
        f"best of {args.repeats}"
    )
    print(f"| {'pipeline':<32} | {'workers':>7} | {'images/s':>9} | {'ratio':>6} |")
    print(f"| {'-' * 32} | {'-' * 7}:| {'-' * 9}:| {'-' * 6}:|")
    for name, workers, rate in rows:
        print(f"| {name:<32} | {workers:>7} | {rate:>9.0f} | {batched / rate:>6.2f} |")


if __name__ == "__main__":
    main()
