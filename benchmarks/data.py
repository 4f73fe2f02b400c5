"""Images/s of a training epoch's data path over a folder of JPEGs: debiascl vs torchvision.

The folder holds ``--num-images`` generated JPEGs of CelebA's size (178x218; smooth random
content, seed 0) in the metadata-csv layout; it is written once into ``--folder`` (default: a
temporary folder) and reused when it is already there. For each ``--sizes`` S a row is one
epoch's data path, load + two SimCLR views of every image (debiascl's views on ``--device``,
default the CPU):

* debiascl, first epoch: builds the decoded-image cache (``--workers`` decoding processes), then
  reads the epoch's batches from it into the batched view pipeline;
* debiascl, later epoch: batches straight from the cache into the batched view pipeline
  (best of ``--repeats`` epochs);
* debiascl, later epoch, loading only: the same without the views, i.e. the CPU's share of an
  epoch when the views are made on a GPU;
* torchvision: an ImageFolder-style data set (PIL decode, resize of the shorter side to S, as
  debiascl stores images) with ``transforms.v2`` per-sample views in a DataLoader with
  ``--workers`` persistent workers (best of ``--repeats`` epochs after a warm-up epoch), the
  default path of lightly/solo-learn users.

    python benchmarks/data.py                                  # 5000 images, S = 64 and 128
    python benchmarks/data.py --num-images 300 --sizes 64      # a quick check
    python benchmarks/data.py --no-malloc-tuning               # glibc's default thresholds

Like ``debiascl train`` on the CPU from images, the process first raises glibc's malloc
thresholds (:func:`debiascl.allocator.tune_malloc`, ``train.malloc_tuning``), for both paths;
``--no-malloc-tuning`` measures glibc's defaults (a setting of a process: one run each).

It prints a table with each row's ratio to the torchvision row of its size, the cache's size on
disk and the peak RSS of this process and of its largest child (a loader worker), and what the
cache's content check costs: opening a built cache (its key from the files' metadata and the
CRC-32 of every block of rows), against hashing the source files' bytes (the alternative,
not used) and a later epoch's loading.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from augment import torchvision_simclr
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF

from debiascl.allocator import tune_malloc
from debiascl.data import build_dataset, build_views
from debiascl.data.cache import attach_cache
from debiascl.data.loading import available_cpus, batch_loader, resolve_workers
from debiascl.data.sampling import EpochBatchSampler

CELEBA_SIZE = (178, 218)  # (W, H)


def make_folder(folder: Path, num_images: int) -> None:
    """``num_images`` JPEGs (178x218) and a metadata.csv listing them in ``folder`` (kept if there).

    Each image is random 12x14 noise upscaled bicubically plus mild pixel noise: smooth like a
    photo, so it compresses and decodes like one (pure noise would be ~10x larger).
    """
    metadata = folder / "metadata.csv"
    if metadata.is_file() and sum(1 for _ in metadata.open()) == num_images + 1:
        return
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with metadata.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "split", "y", "a"])
        for k in range(num_images):
            coarse = Image.fromarray(rng.integers(0, 256, (14, 12, 3), dtype=np.uint8))
            smooth = np.asarray(coarse.resize(CELEBA_SIZE, Image.BICUBIC), dtype=np.int16)
            noisy = smooth + rng.integers(-8, 9, smooth.shape, dtype=np.int16)
            name = f"images/{k:06d}.jpg"
            Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / name, quality=90)
            writer.writerow([name, 0, k % 2, (k // 2) % 2])


class _FolderTwoViews(Dataset):
    """ImageFolder-style: item i -> two views of the decoded, resized file i (per sample)."""

    def __init__(self, files: list[Path], size: int) -> None:
        self.files, self.size = files, size
        self.transform = torchvision_simclr(size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(self.files[index]) as image:
            rgb = TF.resize(image.convert("RGB"), self.size)  # shorter side, as a Resize(S)
        pixels = TF.pil_to_tensor(rgb)
        return self.transform(pixels), self.transform(pixels)


def _timed(run: Callable[[], int]) -> float:
    """Images/s of one call of ``run`` (which returns the number of images it processed)."""
    start = time.perf_counter()
    images = run()
    return images / (time.perf_counter() - start)


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _hash_sources(folder: Path) -> None:
    """sha256 of every image file's bytes: what keying the cache by content would cost."""
    for path in sorted((folder / "images").glob("*.jpg")):
        hashlib.sha256(path.read_bytes()).digest()


def measure_debiascl(
    folder: Path, size: int, cache_dir: Path, args: argparse.Namespace
) -> tuple[float, float, float, int, float, float]:
    """Images/s of debiascl's first epoch (building the cache), best later epoch, best later
    epoch without the views (what the CPU does when they run on a GPU), the cache's bytes, the
    seconds of opening the built cache (key + block checksums) and of hashing the sources."""
    dataset = build_dataset("metadata-csv", str(folder), "train", image_size=size)
    device = torch.device(args.device)
    views = build_views("simclr", dataset).to(device)
    sampler = EpochBatchSampler(len(dataset), args.batch_size, seed=0, epoch=0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def epoch(make_views: bool = True) -> int:
        loader = batch_loader(dataset, sampler, resolve_workers("auto", dataset), device)
        seen = 0
        with torch.no_grad():
            for _, x, _, _ in loader:
                if make_views:
                    views(x.to(device, non_blocking=True))
                seen += len(x)
        sync()
        sampler.epoch += 1
        return seen

    def first() -> int:
        attach_cache(dataset, cache_dir, args.workers)
        return epoch()

    first_rate = _timed(first)
    later = max(_timed(epoch) for _ in range(args.repeats))
    loading = max(_timed(lambda: epoch(make_views=False)) for _ in range(args.repeats))
    opening = min(_seconds(lambda: attach_cache(dataset, cache_dir)) for _ in range(3))
    hashing = min(_seconds(lambda: _hash_sources(folder)) for _ in range(3))
    return first_rate, later, loading, dataset.decoded.path.stat().st_size, opening, hashing


def measure_torchvision(folder: Path, size: int, args: argparse.Namespace) -> float:
    """Best epoch images/s of the per-sample torchvision path (after a warm-up epoch)."""
    files = sorted((folder / "images").glob("*.jpg"))
    loader = DataLoader(
        _FolderTwoViews(files, size),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )

    def epoch() -> int:
        return sum(len(v1) for v1, _ in loader)

    epoch()
    return max(_timed(epoch) for _ in range(args.repeats))


def _megabytes(kilobytes: int) -> str:
    return f"{kilobytes / 1024:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None, help="where the JPEGs go/are")
    parser.add_argument("--num-images", type=int, default=5000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, min(8, available_cpus() - 1)),
        help="decoding processes of both paths (default: data.num_workers auto's share)",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="where debiascl's views are made")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs, the best counts")
    parser.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="keep glibc's malloc thresholds (train.malloc_tuning=false)",
    )
    args = parser.parse_args()
    tuned = not args.no_malloc_tuning and tune_malloc()
    with tempfile.TemporaryDirectory(prefix="debiascl-bench-") as temp:
        folder = args.folder or Path(temp) / "jpegs"
        started = time.perf_counter()
        make_folder(folder, args.num_images)
        print(
            f"{args.num_images} JPEGs 178x218 in {folder} ({time.perf_counter() - started:.0f} s)"
        )
        rows, cache_sizes, checks, on = [], [], [], f" ({args.device})"
        for size in args.sizes:
            cache = Path(temp) / "cache"
            first, later, loading, cache_bytes, opening, hashing = measure_debiascl(
                folder, size, cache, args
            )
            epoch_seconds = args.num_images / loading
            checks.append(
                f"{size} px: opening the cache {opening:.3f} s ({opening / epoch_seconds:.1f} "
                f"loading-only epochs, {args.num_images / later / opening:.0f}x less than a "
                f"later epoch's {args.num_images / later:.2f} s); hashing the sources "
                f"instead {hashing:.3f} s"
            )
            baseline = measure_torchvision(folder, size, args)
            rows += [
                (f"debiascl, first epoch (builds the cache){on}", size, first, first / baseline),
                (f"debiascl, later epoch (cached){on}", size, later, later / baseline),
                ("debiascl, later epoch, loading only", size, loading, loading / baseline),
                ("torchvision v2 per-sample (cpu)", size, baseline, 1.0),
            ]
            cache_sizes.append(f"{size} px: {cache_bytes / 2**20:.0f} MiB")
    print(
        f"batch {args.batch_size}, {args.workers} workers, torch threads "
        f"{torch.get_num_threads()}, {available_cpus()} CPUs, best of {args.repeats} epochs, "
        f"malloc thresholds {'raised (train.malloc_tuning)' if tuned else 'as started'}"
    )
    print(f"| {'data path':<48} | {'size':>4} | {'images/s':>9} | {'vs torchvision':>14} |")
    print(f"| {'-' * 48} | {'-' * 3}:| {'-' * 8}:| {'-' * 13}:|")
    for name, size, rate, ratio in rows:
        print(f"| {name:<48} | {size:>4} | {rate:>9.0f} | {ratio:>13.1f}x |")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"cache on disk: {', '.join(cache_sizes)}")
    for line in checks:
        print(f"content check: {line}")
    print(f"peak RSS: this process {_megabytes(own)}, largest child {_megabytes(child)}")


if __name__ == "__main__":
    main()
