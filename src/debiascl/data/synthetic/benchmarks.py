"""The five built-in benchmarks: their constructions, the cached rendering of every split, the
dataset class and the registry entries (options validated into a :class:`BenchmarkSpec`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from debiascl.config import MAX_IMAGE_SIZE
from debiascl.data.base import SPLIT_CODES, BiasedDataset, register_dataset
from debiascl.data.options import number_option, resolve_options
from debiascl.data.sampling import stratified_split
from debiascl.data.synthetic.bias import assign_balanced_bias, assign_train_bias
from debiascl.data.synthetic.rendering import PALETTE, channel_stats, render
from debiascl.data.synthetic.sources import FMNIST_CLASSES, source_splits
from debiascl.errors import DebiasclError
from debiascl.metrics import group_counts

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


@functools.lru_cache(maxsize=2)
def _benchmark(
    spec: BenchmarkSpec,
) -> tuple[dict[str, SplitTensors], tuple[float, ...], tuple[float, ...]]:
    """Every split of a benchmark, rendered, with the train split's channel mean and std."""
    construction = CONSTRUCTIONS[spec.name]
    num_attributes = len(construction.attribute_names)
    splits = {}
    sources = source_splits(spec.name, construction.source, spec.root, spec.download, spec.seed)
    for split, (images, labels) in sources.items():
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
