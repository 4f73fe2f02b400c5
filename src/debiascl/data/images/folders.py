"""Image folders described by a metadata table: Waterbirds, any SubpopBench-style
``metadata.csv`` folder, and ImageNet-100 (an ImageFolder tree and a class list)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from debiascl.data.base import BiasedDataset, register_dataset
from debiascl.data.images.datasets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFileDataset,
    ImageFiles,
)
from debiascl.data.images.reading import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_VAL_FRACTION,
    SPLIT_NAMES,
    check_range,
    dataset_root,
    holdout_part,
    image_options,
    int_column,
    no_download,
    read_csv,
    require_file,
)
from debiascl.errors import DebiasclError
from debiascl.metrics import group_counts


def _split_rows(rows: list[dict[str, str]], split: str, path: Path) -> list[dict[str, str]]:
    """The rows whose ``split`` column (0/1/2 or train/val/test) names ``split``."""
    chosen = []
    for line, row in enumerate(rows, start=2):
        code = (row["split"] or "").strip().lower().removesuffix(".0")
        if code not in SPLIT_NAMES:
            raise DebiasclError(
                f"{path}, line {line}: column 'split' must be 0/1/2 or train/val/test, "
                f"got '{row['split']}'"
            )
        if SPLIT_NAMES[code] == split:
            chosen.append(row)
    return chosen


def _train_counts(
    rows: list[dict[str, str]], path: Path, y: str, a: str, num_classes: int, num_attributes: int
) -> torch.Tensor:
    """(C, A) int64 rows of the train split per group (columns ``y``, ``a``)."""
    train = _split_rows(rows, "train", path)
    counts = group_counts(
        int_column(train, y, path), int_column(train, a, path), num_classes, num_attributes
    )
    return torch.from_numpy(counts)


@register_dataset("waterbirds")
def build_waterbirds(
    root: str | None, split: str, download: bool = False, **given: Any
) -> BiasedDataset:
    """Waterbirds as made by group_DRO's generator (target bird type, bias background).

    ``root/metadata.csv`` has columns img_filename, y (0 landbird, 1 waterbird), split
    (0/1/2 = train/val/test) and place (0 land, 1 water); image paths are relative to root.
    Option: image_size (default 224).
    """
    options = image_options("waterbirds", given, {"image_size": DEFAULT_IMAGE_SIZE})
    no_download("waterbirds", download, "https://github.com/kohpangwei/group_DRO")
    folder = dataset_root("waterbirds", root, "group_DRO's folder with metadata.csv")
    path = folder / "metadata.csv"
    every = read_csv(path, ["img_filename", "y", "split", "place"])
    rows = _split_rows(every, split, path)
    targets, places = int_column(rows, "y", path), int_column(rows, "place", path)
    check_range(targets, 0, 1, "y", path)
    check_range(places, 0, 1, "place", path)
    return ImageFileDataset(
        name="waterbirds",
        split=split,
        images=ImageFiles(
            folder=folder,
            files=[row["img_filename"].strip() for row in rows],
            targets=targets,
            attributes=places,
            class_names=["landbird", "waterbird"],
            attribute_names=["land", "water"],
            source=path,
        ),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=options["image_size"],
        train_group_counts=_train_counts(every, path, "y", "place", 2, 2),
    )


@register_dataset("metadata-csv")
def build_metadata_csv(
    root: str | None, split: str, download: bool = False, **given: Any
) -> BiasedDataset:
    """Any image folder with a SubpopBench-style ``root/metadata.csv``.

    Columns: filename (relative to root, or absolute), split (0/1/2 or train/val/test),
    y (class, 0..K-1), a (bias attribute, 0..M-1, or -1 where unknown); an ``id`` column may be
    present and is not used. K and M are counted over all splits. Option: image_size
    (default 224).
    """
    options = image_options("metadata-csv", given, {"image_size": DEFAULT_IMAGE_SIZE})
    no_download("metadata-csv", download, "your own files")
    folder = dataset_root(
        "metadata-csv", root, "a folder with metadata.csv (filename, split, y, a)"
    )
    path = folder / "metadata.csv"
    every = read_csv(path, ["filename", "split", "y", "a"])
    if not every:
        raise DebiasclError(f"{path} has a header but no rows")
    all_y, all_a = int_column(every, "y", path), int_column(every, "a", path)
    num_classes, num_attributes = int(all_y.max()) + 1, max(int(all_a.max()) + 1, 0)
    check_range(all_y, 0, num_classes - 1, "y", path)
    check_range(all_a, -1, num_attributes - 1, "a", path)
    rows = _split_rows(every, split, path)
    return ImageFileDataset(
        name="metadata-csv",
        split=split,
        images=ImageFiles(
            folder=folder,
            files=[row["filename"].strip() for row in rows],
            targets=int_column(rows, "y", path),
            attributes=int_column(rows, "a", path),
            class_names=[str(k) for k in range(num_classes)],
            attribute_names=[str(m) for m in range(num_attributes)],
            source=path,
        ),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=options["image_size"],
        train_group_counts=_train_counts(every, path, "y", "a", num_classes, num_attributes),
    )


def _class_list(path: Path) -> list[str]:
    """The wnids of a class-list file (one a line; blank lines and # comments skipped)."""
    require_file(path, "the ImageNet-100 class list, one wnid a line (e.g. CMC's imagenet100.txt)")
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    wnids = [line.split()[0] for line in lines if line]
    if not wnids or len(set(wnids)) != len(wnids):
        raise DebiasclError(f"{path}: expected distinct class folder names, one a line")
    return wnids


def _image_folder(folder: Path, wnids: list[str]) -> tuple[list[str], torch.Tensor]:
    """(files, (n,) int64 classes) of the listed class folders of an ImageFolder tree."""
    for wnid in wnids:
        if not (folder / wnid).is_dir():
            raise DebiasclError(
                f"missing folder {folder / wnid}: expected one folder of images per class "
                "in the class list"
            )
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    try:
        samples = make_dataset(str(folder), {w: k for k, w in enumerate(wnids)}, IMG_EXTENSIONS)
    except FileNotFoundError as error:
        raise DebiasclError(f"{folder}: {error}") from error
    files = [file for file, _ in samples]
    return files, torch.tensor([label for _, label in samples], dtype=torch.int64)


@register_dataset("imagenet100")
def build_imagenet100(
    root: str | None, split: str, download: bool = False, **given: Any
) -> BiasedDataset:
    """ImageNet-100: the classes of a class list, from an ImageFolder tree (no bias attribute).

    ``root/train/<wnid>/`` and ``root/val/<wnid>/`` (the official validation images sorted into
    class folders) hold the images. test = the ``val/`` folder; train/val = a seeded stratified
    holdout of ``train/``. Options: class_list (default ``root/imagenet100.txt``), val_fraction,
    split_seed, image_size (default 224).
    """
    options = image_options(
        "imagenet100",
        given,
        {
            "class_list": None,
            "val_fraction": DEFAULT_VAL_FRACTION,
            "split_seed": 0,
            "image_size": DEFAULT_IMAGE_SIZE,
        },
    )
    no_download("imagenet100", download, "https://image-net.org")
    folder = dataset_root("imagenet100", root, "ImageFolder train/ and val/ and a class list")
    class_list = options["class_list"] or folder / "imagenet100.txt"
    wnids = _class_list(Path(class_list).expanduser())
    tree = folder / ("val" if split == "test" else "train")
    if not tree.is_dir():
        raise DebiasclError(f"missing folder {tree}: expected ImageNet class folders")
    files, targets = _image_folder(tree, wnids)
    if split != "test":
        index = holdout_part(split, targets, options)
        files, targets = [files[i] for i in index.tolist()], targets[index]
    return ImageFileDataset(
        name="imagenet100",
        split=split,
        images=ImageFiles(
            folder=tree,
            files=files,
            targets=targets,
            attributes=torch.full_like(targets, -1),
            class_names=wnids,
            attribute_names=[],
            source=tree,
        ),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=options["image_size"],
    )
