"""Small image data sets written in their real on-disk formats (STL-10, CelebA, Waterbirds).

Shared by the tests of the loaders, the decoded-image cache and training.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """A CSV file with ``header`` and ``rows``."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def solid_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (20, 24)) -> None:
    """A (W, H) = size image of one colour, in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _stl_images(rng: np.random.Generator, ids: range) -> np.ndarray:
    """(n, 3, 96, 96) uint8 (C, H, W) random images with the id in pixel (0, 0, 0)."""
    images = rng.integers(0, 256, size=(len(ids), 3, 96, 96), dtype=np.uint8)
    images[:, 0, 0, 0] = np.asarray(ids, dtype=np.uint8)
    return images


def _write_stl(path: Path, images: np.ndarray) -> None:
    """STL-10 binaries store every channel column-major: (n, C, W, H) bytes."""
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())


def make_stl10(root: Path) -> dict[str, np.ndarray]:
    """A stl10_binary tree: 10 labelled train, 4 test and 3 unlabeled images."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    arrays = {
        "train": _stl_images(rng, range(10)),
        "train_y": np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]),
        "test": _stl_images(rng, range(20, 24)),
        "test_y": np.array([9, 8, 0, 5]),
        "unlabeled": _stl_images(rng, range(40, 43)),
    }
    for prefix in ("train", "test"):
        _write_stl(folder / f"{prefix}_X.bin", arrays[prefix])
        (folder / f"{prefix}_y.bin").write_bytes((arrays[f"{prefix}_y"] + 1).astype(np.uint8))
    _write_stl(folder / "unlabeled_X.bin", arrays["unlabeled"])
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    return arrays


CELEBA_NAMES = ["5_o_Clock_Shadow", "Attractive", "Male", "Young"]


# image id, attribute values (-1/1) in CELEBA_NAMES order, partition, colour
CELEBA_ROWS = [
    ("000001.jpg", [-1, 1, -1, 1], 0, (250, 10, 10)),
    ("000002.jpg", [1, -1, 1, 1], 0, (10, 250, 10)),
    ("000003.jpg", [1, 1, 1, -1], 0, (10, 10, 250)),
    ("000004.jpg", [-1, -1, -1, -1], 1, (200, 200, 20)),
    ("000005.jpg", [-1, 1, 1, 1], 2, (20, 200, 200)),
    ("000006.jpg", [1, -1, -1, -1], 2, (128, 128, 128)),
]


def make_celeba(root: Path, variant: str) -> Path:
    """A CelebA tree: 'official' (.txt lists), 'kaggle' (.csv lists, nested image folder) or
    'torchvision' (official files under root/celeba). Returns the image folder."""
    folder = root / "celeba" if variant == "torchvision" else root
    images = folder / "img_align_celeba"
    if variant == "kaggle":
        images = images / "img_align_celeba"
        rows = [[image, *values] for image, values, _, _ in CELEBA_ROWS]
        write_csv(folder / "list_attr_celeba.csv", ["image_id", *CELEBA_NAMES], rows)
        rows = [[image, part] for image, _, part, _ in CELEBA_ROWS]
        write_csv(folder / "list_eval_partition.csv", ["image_id", "partition"], rows)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        lines = [str(len(CELEBA_ROWS)), " ".join(CELEBA_NAMES) + " "]
        lines += [
            f"{image} " + " ".join(f"{v:2d}" for v in values) for image, values, *_ in CELEBA_ROWS
        ]
        (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
        lines = [f"{image} {part}" for image, _, part, _ in CELEBA_ROWS]
        (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    for image, _, _, colour in CELEBA_ROWS:
        solid_image(images / image, colour)
    return images


WATERBIRDS_HEADER = ["img_id", "img_filename", "y", "split", "place", "place_filename"]


# filename, y, split, place
WATERBIRDS_ROWS = [
    ("001.Black_footed_Albatross/Black_Footed_Albatross_0001.jpg", 1, 0, 1),
    ("001.Black_footed_Albatross/Black_Footed_Albatross_0002.jpg", 1, 0, 0),
    ("014.Indigo_Bunting/Indigo_Bunting_0001.jpg", 0, 0, 0),
    ("014.Indigo_Bunting/Indigo_Bunting_0002.jpg", 0, 1, 1),
    ("014.Indigo_Bunting/Indigo_Bunting_0003.jpg", 0, 2, 0),
    ("001.Black_footed_Albatross/Black_Footed_Albatross_0003.jpg", 1, 2, 1),
]


def make_waterbirds(root: Path) -> None:
    """group_DRO's layout under root: metadata.csv of WATERBIRDS_ROWS and one image each."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [
        [k + 1, name, y, split, place, f"/b/bamboo_forest/{k:08d}.jpg"]
        for k, (name, y, split, place) in enumerate(WATERBIRDS_ROWS)
    ]
    write_csv(root / "metadata.csv", WATERBIRDS_HEADER, rows)
    for k, (name, *_) in enumerate(WATERBIRDS_ROWS):
        solid_image(root / name, (40 * k, 255 - 40 * k, 100))
