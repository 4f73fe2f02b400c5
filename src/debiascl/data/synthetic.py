"""Built-in biased benchmarks made offline from real images (scikit-learn digits, Fashion-MNIST).

Real grey-scale images get a *background* chosen by our code, so that in the train split the
background predicts the class (the spurious cue, as the place does in Waterbirds) while in val
and test it is independent of the class.

Rendering (every benchmark). The grey image is resized to ``image_size`` x ``image_size``
(bilinear) and scaled to g in [0, 1]; the object mask is alpha = clip(4 g, 0, 1); the RGB image
is ``alpha * g + (1 - alpha) * background``: the object keeps its grey levels, the (near-)black
surround shows the background. Images are stored as uint8 (n, 3, S, S); an item is float32 in
[0, 1]. ``mean`` / ``std`` are the per-channel statistics of the train split (same for all splits).

Constructions.

- ``biased-digits`` / ``biased-fmnist`` (10 classes, colour bias): the background is a flat colour
  from a palette of 10 (``attribute_names``: red, orange, yellow, green, teal, blue, purple, pink,
  brown, grey); class y's colour is a = y. Groups g = 10 y + a (100 groups).
- ``biased-digits-binary`` / ``biased-fmnist-binary`` (Waterbirds-like): two super-classes,
  digits 0-4 (y = 0) vs 5-9 (y = 1), and Fashion-MNIST upper-body clothing {T-shirt/top,
  Pullover, Coat, Shirt} (y = 0) vs shoes and bags {Sandal, Sneaker, Bag, Ankle boot} (y = 1;
  Trouser and Dress are left out), on two textured backgrounds: ``land`` (a = 0: olive, vertical
  stripes) and ``water`` (a = 1: blue, wavy horizontal stripes), each with a random phase per
  image. Class y's background is a = y. Groups g = 2 y + a (4 groups).
- ``biased-digits-patch`` (a bias that is not a colour): digits 0-4 (y = 0) vs 5-9 (y = 1) on a
  black background with one small white square, ``max(2, round(S / 6))`` pixels a side, one
  pixel from the image's edge: ``patch top`` (a = 0: in the top-left corner) or ``patch bottom``
  (a = 1: in the bottom-left corner). Only its position differs, and the vertical position
  survives a horizontal flip. Class y's patch is a = y. Groups g = 2 y + a (4 groups).

A sample is *bias-aligned* when a equals its class's background (a == y in all four):
``bias_aligned`` (:attr:`debiascl.data.base.BiasedDataset.bias_aligned`, the majority background
of the class in the training split) is exactly that for ``rho > 1 / A``.

Bias assignment (seeded by option ``seed``, default 0; deterministic).

- train: within each class (super-class for the binary variants) of n_c images, in a seeded
  random order, the first ``floor(rho * n_c + 0.5)`` are aligned; the others are conflicting and
  get the other backgrounds dealt in turn (starting at a seeded offset), so every conflicting
  background is equally frequent (to +-1). ``rho`` defaults to 0.95.
- val / test: group-balanced, the background independent of the class. With
  ``balanced_copies=True`` every image appears once with every background (exactly balanced;
  the split is num_attributes times larger); with False every image appears once and the
  backgrounds are dealt in turn within each class (balanced to +-1 per class). Default: True for
  the digits benchmarks (small), False for Fashion-MNIST.

Smaller train splits (option ``train_fraction`` f, default 1): the train split keeps
``floor(f n_c + 0.5)`` of each class's n_c images (seeded by ``seed``; super-classes for the
binary variants) before the bias is assigned; val and test are unchanged. For quick runs and
studies at the native image size, e.g. f = 0.1 keeps 4320 of biased-fmnist-binary's 43200.

Source splits and sizes (defaults: rho 0.95, seed 0).

- digits (sklearn's 1797 8x8 images; ``image_size`` default 16): seeded split stratified by
  digit, ``floor(0.2 n + 0.5)`` of each digit to test and to val: train 1079 / val 359 /
  test 359 images. ``biased-digits``: train 1079 (1029 aligned, 50 conflicting), val 3590 and
  test 3590 (359 aligned each, 359 per colour). ``biased-digits-binary``: train 1079 (541 of
  y = 0, 538 of y = 1; 1025 aligned, 54 conflicting), val 718 and test 718 (359 aligned).
- Fashion-MNIST (IDX files, 28x28; ``image_size`` default 28): official train -> train and a
  seeded class-stratified 10% val; official test -> test. ``biased-fmnist``: train 54000 (51300
  aligned), val 6000, test 10000 (100 per group). ``biased-fmnist-binary``: train 43200 (41040
  aligned), val 4800, test 8000 (2000 per group).

Fashion-MNIST's files (``train-images-idx3-ubyte`` etc., optionally ``.gz``) are looked for in
``root``, ``root/FashionMNIST/raw`` (torchvision's layout), then /usr/share/datasets/fashion-mnist
(Debian's package ``dataset-fashion-mnist``); with ``download=True`` torchvision fetches them into
``root`` (default ``~/.cache/debiascl``). A given ``root`` must exist (unless ``download=True``):
a mistyped folder is an error, not a silent fall-back to Debian's copy.
"""

from __future__ import annotations

import functools
import gzip
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from debiascl.config import MAX_IMAGE_SIZE
from debiascl.data.base import (
    SPLIT_CODES,
    BiasedDataset,
    download_torchvision,
    existing_root,
    register_dataset,
)
from debiascl.data.options import number_option, resolve_options
from debiascl.data.sampling import stratified_split
from debiascl.errors import DebiasclError
from debiascl.metrics import group_counts

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
FMNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
logger = logging.getLogger("debiascl")
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_LAYOUT = (
    "Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...)"
)
DEFAULT_DOWNLOAD_ROOT = Path("~/.cache/debiascl")
OPTIONS = ("rho", "seed", "image_size", "balanced_copies", "train_fraction")


@dataclass(frozen=True)
class Construction:
    """How one benchmark is made from its source images.

    Attributes:
        source: "digits" or "fmnist".
        superclass: source class -> target class for the binary variants (others dropped);
            None keeps the 10 classes.
        class_names: names of the target classes.
        cue: what the bias attribute changes: "colour" (a flat background colour), "texture"
            (land / water backgrounds) or "patch" (the position of a small white square).
    """

    source: str
    superclass: tuple[int, ...] | None
    class_names: tuple[str, ...]
    cue: str

    @property
    def binary(self) -> bool:
        return self.superclass is not None

    @property
    def attribute_names(self) -> list[str]:
        return {"colour": list(PALETTE), "texture": ["land", "water"]}.get(
            self.cue, ["patch top", "patch bottom"]
        )


CONSTRUCTIONS = {
    "biased-digits": Construction("digits", None, tuple(str(d) for d in range(10)), "colour"),
    "biased-digits-binary": Construction(
        "digits", (0, 0, 0, 0, 0, 1, 1, 1, 1, 1), ("digit 0-4", "digit 5-9"), "texture"
    ),
    "biased-digits-patch": Construction(
        "digits", (0, 0, 0, 0, 0, 1, 1, 1, 1, 1), ("digit 0-4", "digit 5-9"), "patch"
    ),
    "biased-fmnist": Construction("fmnist", None, tuple(FMNIST_CLASSES), "colour"),
    "biased-fmnist-binary": Construction(
        "fmnist",
        (0, -1, 0, -1, 0, 1, 0, 1, 1, 1),
        ("upper-body clothing", "shoes and bags"),
        "texture",
    ),
}


@dataclass(frozen=True)
class BenchmarkSpec:
    """Everything that determines the tensors of a benchmark (the cache key)."""

    name: str
    root: str | None
    download: bool
    rho: float
    seed: int
    image_size: int
    balanced_copies: bool
    train_fraction: float = 1.0


@dataclass
class SplitTensors:
    """One rendered split: images uint8 (n, 3, S, S), targets / attributes / image_ids (n,)."""

    images: torch.Tensor
    targets: torch.Tensor
    attributes: torch.Tensor
    image_ids: torch.Tensor


class SyntheticBiasedDataset(BiasedDataset):
    """One split of a built-in benchmark, held in memory.

    Attributes (besides :class:`BiasedDataset`'s):
        images: (n, 3, S, S) uint8 rendered images (shared with the cache: do not modify).
        train_group_counts: (C, A) training images per group (y, a); they define
            :attr:`bias_aligned` (for ``rho > 1 / A``: a == y, the class's own background).
        image_ids: (n,) int64 index of the source image in its source split (copies share it;
            the binary variants count the images of their kept classes only).
    """

    kind = "image"

    def __init__(
        self,
        spec: BenchmarkSpec,
        split: str,
        data: SplitTensors,
        train: SplitTensors,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        construction = CONSTRUCTIONS[spec.name]
        self.name = spec.name
        self.split = split
        self.images = data.images
        self.targets = data.targets
        self.attributes = data.attributes
        self.image_ids = data.image_ids
        self.class_names = list(construction.class_names)
        self.attribute_names = construction.attribute_names
        self.num_classes = len(self.class_names)
        self.num_attributes = len(self.attribute_names)
        self.train_group_counts = torch.from_numpy(
            group_counts(train.targets, train.attributes, self.num_classes, self.num_attributes)
        )
        self.input_shape = tuple(data.images.shape[1:])
        self.mean = mean
        self.std = std

    def load(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 (3, S, S) in [0, 1]."""
        return self.images[index].float().div_(255.0)

    def load_batch(self, indices: Sequence[int]) -> torch.Tensor:
        """Images ``indices`` as float32 (B, 3, S, S) in [0, 1], gathered at once."""
        return self.images[torch.as_tensor(indices, dtype=torch.int64)].float().div_(255.0)


# ----------------------------------------------------------------------------- sources


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (optionally gzipped) as a uint8 array of its dimensions."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DebiasclError(f"cannot read {path}: {error}") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DebiasclError(f"{path}: not an IDX file of unsigned bytes (magic 0x0000080N)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != math.prod(dims):
        raise DebiasclError(
            f"{path}: {len(data) - offset} data bytes; expected {math.prod(dims)} for shape {dims}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_fmnist(root: str | None) -> dict[str, Path] | None:
    """Paths of the four IDX files in the first folder that has them all, or None."""
    folders = [Path(root), Path(root) / "FashionMNIST" / "raw"] if root else []
    for folder in [*folders, DEBIAN_FMNIST]:
        found = {}
        for stem in (*FMNIST_FILES["train"], *FMNIST_FILES["test"]):
            candidates = [folder / stem, folder / f"{stem}.gz"]
            existing = [path for path in candidates if path.is_file()]
            if existing:
                found[stem] = existing[0]
        if len(found) == 4:
            return found
    return None


def _download_fmnist(folder: str) -> None:
    """Fetch Fashion-MNIST's train and test files into ``folder`` with torchvision (network)."""
    from torchvision.datasets import FashionMNIST

    for train in (True, False):
        FashionMNIST(folder, train=train, download=True)


def _fmnist_files(name: str, root: str | None, download: bool) -> dict[str, Path]:
    """The four IDX files: found (root first, then Debian's folder) or downloaded on request.

    A given ``root`` must exist unless ``download`` is set (then it is the download target).
    """
    if root is not None and not download:
        existing_root(name, root, FMNIST_LAYOUT)
    found = _find_fmnist(root)
    if found is None and download:
        target = str(Path(root) if root else DEFAULT_DOWNLOAD_ROOT.expanduser())
        download_torchvision(name, target, _download_fmnist)
        found = _find_fmnist(target)
    if found is None:
        looked = ", ".join(
            [*([root, f"{root}/FashionMNIST/raw"] if root else []), str(DEBIAN_FMNIST)]
        )
        raise DebiasclError(
            f"{FMNIST_LAYOUT} not found in {looked}; install Debian's package "
            "dataset-fashion-mnist, give a root holding them, or set download=True"
        )
    logger.info("Fashion-MNIST: reading the IDX files in %s", found[FMNIST_FILES["test"][0]].parent)
    return found


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: images uint8 (1797, 8, 8) in 0..255, labels (1797,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def _source(spec: BenchmarkSpec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split name -> (images uint8 (n, H, W), source labels (n,)) before any bias."""
    seed = spec.seed
    if CONSTRUCTIONS[spec.name].source == "digits":
        images, labels = _digits()
        codes = stratified_split(labels, 0.2, 0.2, seed)
        return {split: (images[codes == c], labels[codes == c]) for split, c in SPLIT_CODES.items()}
    files = _fmnist_files(spec.name, spec.root, spec.download)
    train_x, train_y = (read_idx(files[stem]) for stem in FMNIST_FILES["train"])
    test_x, test_y = (read_idx(files[stem]) for stem in FMNIST_FILES["test"])
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise DebiasclError(
            f"Fashion-MNIST files in {files[FMNIST_FILES['train'][0]].parent}: "
            "image and label counts differ"
        )
    codes = stratified_split(train_y.astype(np.int64), 0.1, 0.0, seed)
    return {
        "train": (train_x[codes == 0], train_y[codes == 0].astype(np.int64)),
        "val": (train_x[codes == 1], train_y[codes == 1].astype(np.int64)),
        "test": (test_x, test_y.astype(np.int64)),
    }


# ----------------------------------------------------------------------------- bias assignment


def assign_train_bias(
    targets: np.ndarray, num_attributes: int, rho: float, rng: np.random.Generator
) -> np.ndarray:
    """(n,) background of each training image: ``floor(rho n_c + 0.5)`` aligned (a = y) per class.

    The conflicting images of class c get the other backgrounds c+1, c+2, ... (mod A) in turn,
    starting at a seeded offset.
    """
    attributes = np.empty(len(targets), dtype=np.int64)
    for c in np.unique(targets):
        rows = rng.permutation(np.flatnonzero(targets == c))
        n_aligned = math.floor(rho * len(rows) + 0.5)
        dealt = (rng.integers(num_attributes - 1) + np.arange(len(rows) - n_aligned)) % (
            num_attributes - 1
        )
        attributes[rows[:n_aligned]] = c
        attributes[rows[n_aligned:]] = (c + 1 + dealt) % num_attributes
    return attributes


def assign_balanced_bias(
    targets: np.ndarray, num_attributes: int, copies: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Group-balanced backgrounds for val / test.

    Returns:
        rows (m,) indices into the images (each repeated num_attributes times when ``copies``)
        and their backgrounds (m,).
    """
    if copies:
        rows = np.repeat(np.arange(len(targets)), num_attributes)
        return rows, np.tile(np.arange(num_attributes), len(targets))
    attributes = np.empty(len(targets), dtype=np.int64)
    for c in np.unique(targets):
        rows = rng.permutation(np.flatnonzero(targets == c))
        attributes[rows] = (rng.integers(num_attributes) + np.arange(len(rows))) % num_attributes
    return np.arange(len(targets)), attributes


# ----------------------------------------------------------------------------- rendering


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


@functools.lru_cache(maxsize=2)
def _benchmark(
    spec: BenchmarkSpec,
) -> tuple[dict[str, SplitTensors], tuple[float, ...], tuple[float, ...]]:
    """Every split of a benchmark, rendered, with the train split's channel mean and std."""
    construction = CONSTRUCTIONS[spec.name]
    num_attributes = len(construction.attribute_names)
    splits = {}
    for split, (images, labels) in _source(spec).items():
        if construction.superclass is not None:
            targets = np.asarray(construction.superclass)[labels]
            images, targets = images[targets >= 0], targets[targets >= 0]
        else:
            targets = labels
        positions = np.arange(len(targets))
        if split == "train" and spec.train_fraction < 1:
            codes = stratified_split(targets, spec.train_fraction, 0.0, spec.seed)
            positions = positions[codes == SPLIT_CODES["val"]]
            images, targets = images[positions], targets[positions]
        rng = np.random.default_rng([spec.seed, SPLIT_CODES[split]])
        if split == "train":
            ids = np.arange(len(targets))
            attributes = assign_train_bias(targets, num_attributes, spec.rho, rng)
        else:
            ids, attributes = assign_balanced_bias(
                targets, num_attributes, spec.balanced_copies, rng
            )
        phases = rng.random(len(ids))
        splits[split] = SplitTensors(
            images=render(images[ids], attributes, phases, spec.image_size, construction.cue),
            targets=torch.from_numpy(targets[ids].astype(np.int64)),
            attributes=torch.from_numpy(attributes.astype(np.int64)),
            image_ids=torch.from_numpy(positions[ids].astype(np.int64)),
        )
    mean, std = channel_stats(splits["train"].images)
    return splits, mean, std


# ----------------------------------------------------------------------------- registry


def _spec(name: str, root: str | None, download: bool, options: dict[str, object]) -> BenchmarkSpec:
    """Validated options -> the cache key of a benchmark."""
    digits = CONSTRUCTIONS[name].source == "digits"
    defaults = dict(zip(OPTIONS, (0.95, 0, 16 if digits else 28, digits, 1.0), strict=True))
    options = resolve_options(name, options, defaults)
    rho = float(number_option(name, "rho", options["rho"], float, "a fraction in [0, 1]"))
    seed = int(number_option(name, "seed", options["seed"], int))
    image_size = int(
        number_option(
            name, "image_size", options["image_size"], int, f"an integer in [4, {MAX_IMAGE_SIZE}]"
        )
    )
    copies = options["balanced_copies"]
    fraction = float(
        number_option(
            name, "train_fraction", options["train_fraction"], float, "a fraction in (0, 1]"
        )
    )
    if not 0.0 < fraction <= 1.0:
        raise DebiasclError(
            f"dataset '{name}': option train_fraction={fraction}; expected a fraction in (0, 1]"
        )
    if not 0.0 <= rho <= 1.0:
        raise DebiasclError(f"dataset '{name}': option rho={rho}; expected a fraction in [0, 1]")
    if not 4 <= image_size <= MAX_IMAGE_SIZE:
        raise DebiasclError(
            f"dataset '{name}': option image_size={image_size}; expected an integer in "
            f"[4, {MAX_IMAGE_SIZE}]"
        )
    if not isinstance(copies, bool):
        raise DebiasclError(
            f"dataset '{name}': option balanced_copies={copies!r}; expected true/false"
        )
    return BenchmarkSpec(name, root, download, rho, seed, image_size, copies, fraction)


def _register(name: str, summary: str) -> None:
    def build(
        root: str | None, split: str, download: bool = False, **options: object
    ) -> SyntheticBiasedDataset:
        spec = _spec(name, root, download, options)
        splits, mean, std = _benchmark(spec)
        return SyntheticBiasedDataset(spec, split, splits[split], splits["train"], mean, std)

    build.__doc__ = f"{summary}\n\nOptions: {', '.join(OPTIONS)} (see debiascl.data.synthetic)."
    build.__name__ = name.replace("-", "_")
    register_dataset(name)(build)


_register("biased-digits", "sklearn digits, 10 classes on a class-correlated background colour.")
_register("biased-digits-binary", "sklearn digits 0-4 vs 5-9 on land / water textures (4 groups).")
_register(
    "biased-digits-patch",
    "sklearn digits 0-4 vs 5-9 with a small white patch at the top or the bottom (4 groups).",
)
_register("biased-fmnist", "Fashion-MNIST, 10 classes on a class-correlated background colour.")
_register(
    "biased-fmnist-binary",
    "Fashion-MNIST clothing vs shoes/bags on land / water textures (4 groups).",
)
