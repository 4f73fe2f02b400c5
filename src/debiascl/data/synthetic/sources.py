"""The source images of the built-in benchmarks: scikit-learn's digits and Fashion-MNIST's IDX
files (found under a root, in Debian's package, or downloaded by torchvision on request)."""

from __future__ import annotations

import functools
import gzip
import logging
import math
from pathlib import Path

import numpy as np

from debiascl.data.base import SPLIT_CODES, download_torchvision, existing_root
from debiascl.data.sampling import stratified_split
from debiascl.errors import DebiasclError

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


def source_splits(
    name: str, source: str, root: str | None, download: bool, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split name -> (images uint8 (n, H, W), source labels (n,)) before any bias.

    Args:
        name: the benchmark (named in messages).
        source: "digits" (scikit-learn's, split here with ``seed``) or "fmnist" (the IDX files
            under ``root``, or Debian's, downloaded on request; val a seeded 10% holdout).
        root, download: where Fashion-MNIST's files are, and whether to fetch them.
        seed: seed of the splits.
    """
    if source == "digits":
        images, labels = _digits()
        codes = stratified_split(labels, 0.2, 0.2, seed)
        return {split: (images[codes == c], labels[codes == c]) for split, c in SPLIT_CODES.items()}
    files = _fmnist_files(name, root, download)
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
