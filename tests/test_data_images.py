"""Image data sets read from tiny fixtures written in each real on-disk format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from image_files import (
    CELEBA_ROWS,
    WATERBIRDS_ROWS,
    make_celeba,
    make_stl10,
    make_waterbirds,
    solid_image,
    write_csv,
)
from PIL import Image

from debiascl.cli import main
from debiascl.data import build_dataset, list_datasets
from debiascl.data.images import load_image, stratified_holdout
from debiascl.errors import DebiasclError

IMAGE_SETS = ["celeba", "cifar10", "cifar100", "imagenet100", "metadata-csv", "stl10", "waterbirds"]


def _stamp_id(x: torch.Tensor) -> int:
    """The id a fixture wrote into pixel (0, 0, 0) of an image (float in [0, 1])."""
    return round(float(x[0, 0, 0]) * 255)


# ---------------------------------------------------------------- CIFAR


def _cifar_images(rng: np.random.Generator, ids: range) -> np.ndarray:
    """(n, 3072) uint8 random images whose first byte (red pixel (0, 0)) is the id."""
    data = rng.integers(0, 256, size=(len(ids), 3072), dtype=np.uint8)
    data[:, 0] = np.asarray(ids, dtype=np.uint8)
    return data


def make_cifar10(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Five train batches of 4 images (each class twice) and a test batch of 6, as torchvision
    stores them. Returns (train data (20, 3072), train labels, test data, test labels)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train, labels = _cifar_images(rng, range(20)), np.arange(20) % 10
    for k in range(5):
        batch = {"data": train[4 * k : 4 * k + 4], "labels": labels[4 * k : 4 * k + 4].tolist()}
        (folder / f"data_batch_{k + 1}").write_bytes(pickle.dumps(batch))
    test, test_labels = _cifar_images(rng, range(100, 106)), np.array([3, 1, 4, 1, 5, 9])
    batch = {"data": test, "labels": test_labels.tolist(), "batch_label": "testing batch 1 of 1"}
    (folder / "test_batch").write_bytes(pickle.dumps(batch))
    names = [f"class{k}" for k in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return train, labels, test, test_labels


def make_cifar100(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-100 tree with 8 train and 4 test images. Returns (test data, fine test labels)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, ids, fine in [
        ("train", range(8), [0, 99, 5, 5, 7, 0, 99, 7]),
        ("test", range(50, 54), [42, 0, 99, 17]),
    ]:
        data = _cifar_images(rng, ids)
        entry = {"data": data, "fine_labels": fine, "coarse_labels": [19] * len(fine)}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"fine_label_names": [f"fine{k}" for k in range(100)], "coarse_label_names": ["c"]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return data, np.array(fine)


def test_registry_lists_every_image_dataset() -> None:
    assert set(IMAGE_SETS) <= set(list_datasets())


def test_cifar10_splits_items_and_metadata(tmp_path: Path) -> None:
    train, labels, test, test_labels = make_cifar10(tmp_path)
    options = {"val_fraction": 0.5, "split_seed": 3}
    parts = {s: build_dataset("cifar10", str(tmp_path), s, **options) for s in ("train", "val")}
    seen = []
    for split, ds in parts.items():
        assert ds.kind == "image" and ds.split == split and ds.input_shape == (3, 32, 32)
        assert ds.num_classes == 10 and ds.num_attributes == 0 and ds.attribute_names == []
        assert ds.class_names == [f"class{k}" for k in range(10)]
        assert ds.mean == (0.4914, 0.4822, 0.4465) and len(ds.std) == 3
        # stratified: one image of each class on each side of the holdout
        assert sorted(ds.targets.tolist()) == list(range(10))
        assert ds.targets.dtype == ds.attributes.dtype == torch.int64
        for i in range(len(ds)):
            index, x, y, a = ds[i]
            row = _stamp_id(x)
            assert (index, y, a) == (i, labels[row], -1)
            assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
            expected = torch.from_numpy(train[row].reshape(3, 32, 32)).float() / 255
            assert torch.equal(x, expected)
            seen.append(row)
    assert sorted(seen) == list(range(20))
    test_ds = build_dataset("cifar10", str(tmp_path), "test")
    assert test_ds.targets.tolist() == test_labels.tolist()
    assert [_stamp_id(test_ds[i][1]) for i in range(6)] == list(range(100, 106))
    assert torch.equal(test_ds[2][1], torch.from_numpy(test[2].reshape(3, 32, 32)).float() / 255)


def test_cifar_holdout_is_seeded_and_can_be_switched_off(tmp_path: Path) -> None:
    make_cifar10(tmp_path)

    def val_rows(seed: int) -> list[int]:
        ds = build_dataset("cifar10", str(tmp_path), "val", val_fraction=0.5, split_seed=seed)
        return sorted(_stamp_id(ds[i][1]) for i in range(len(ds)))

    assert val_rows(0) == val_rows(0) != val_rows(1)
    full = build_dataset("cifar10", str(tmp_path), "train", val_fraction=0)
    assert len(full) == 20


@pytest.mark.parametrize(
    ("name", "train_size"), [("cifar10", 20), ("stl10", 10), ("imagenet100", 8)]
)
def test_val_fraction_zero_gives_an_empty_val_split(
    tmp_path: Path, name: str, train_size: int
) -> None:
    """val_fraction=0: train is the whole official training set and val is empty, not an error."""
    {"cifar10": make_cifar10, "stl10": make_stl10, "imagenet100": make_imagenet}[name](tmp_path)
    train = build_dataset(name, str(tmp_path), "train", val_fraction=0)
    val = build_dataset(name, str(tmp_path), "val", val_fraction=0)
    assert len(train) == train_size and len(val) == 0
    assert val.split == "val" and val.class_names == train.class_names
    assert val.input_shape == train.input_shape and val.mean == train.mean
    assert val.targets.dtype == torch.int64 and val.groups.tolist() == []


def test_stratified_holdout_counts_per_class() -> None:
    targets = torch.tensor([0] * 10 + [1] * 20 + [2] * 3)
    train_idx, val_idx = stratified_holdout(targets, 0.3, seed=0)
    assert torch.bincount(targets[val_idx]).tolist() == [3, 6, 1]
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(33))


def test_cifar10_resizes_to_image_size(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    ds = build_dataset("cifar10", str(tmp_path), "test", image_size=16)
    x = ds[0][1]
    assert ds.input_shape == (3, 16, 16) and x.shape == (3, 16, 16)
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    test, fine = make_cifar100(tmp_path)
    ds = build_dataset("cifar100", str(tmp_path), "test")
    assert ds.num_classes == 100 and ds.class_names[42] == "fine42"
    assert ds.targets.tolist() == fine.tolist()
    assert torch.equal(ds[3][1], torch.from_numpy(test[3].reshape(3, 32, 32)).float() / 255)
    train = build_dataset("cifar100", str(tmp_path), "train", val_fraction=0.5)
    val = build_dataset("cifar100", str(tmp_path), "val", val_fraction=0.5)
    assert sorted(train.targets.tolist()) == sorted(val.targets.tolist()) == [0, 5, 7, 99]


def test_truncated_cifar_batch_names_the_file(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:5000])
    with pytest.raises(DebiasclError, match=r"data_batch_3.*truncated or corrupt"):
        build_dataset("cifar10", str(tmp_path), "train")
    batch.write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(DebiasclError, match=r"data_batch_3 is truncated or corrupt.*\(n, 3072\)"):
        build_dataset("cifar10", str(tmp_path), "train")


@pytest.mark.parametrize("missing", ["test_batch", "batches.meta"])
def test_missing_cifar_file_is_named(tmp_path: Path, missing: str) -> None:
    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / missing).unlink()
    with pytest.raises(DebiasclError, match=f"missing file .*{missing}"):
        build_dataset("cifar10", str(tmp_path), "test")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("split_seed", "a", "split_seed must be int"),
        ("image_size", 4, "image_size must be an integer >= 8"),
        ("val_fraction", 1.0, r"val_fraction must be in \[0, 1\)"),
        ("rho", 0.9, "no option rho; valid options: image_size, split_seed, val_fraction"),
    ],
)
def test_bad_cifar_options_are_named(
    tmp_path: Path, option: str, value: object, message: str
) -> None:
    make_cifar10(tmp_path)
    with pytest.raises(DebiasclError, match=message):
        build_dataset("cifar10", str(tmp_path), "train", **{option: value})


def test_missing_cifar_folder_and_root(tmp_path: Path) -> None:
    with pytest.raises(DebiasclError, match=r"cifar-10-batches-py"):
        build_dataset("cifar10", str(tmp_path), "train")
    with pytest.raises(DebiasclError, match=r"does-not-exist"):
        build_dataset("cifar10", str(tmp_path / "does-not-exist"), "train")
    with pytest.raises(DebiasclError, match=r"data\.root"):
        build_dataset("cifar100", None, "train")
    with pytest.raises(
        DebiasclError, match=r"data root .*typo of dataset 'waterbirds' \(setting data\.root\)"
    ):
        build_dataset("waterbirds", str(tmp_path / "typo"), "train")


# ---------------------------------------------------------------- STL-10


def test_stl10_reads_column_major_binaries(tmp_path: Path) -> None:
    arrays = make_stl10(tmp_path)
    test = build_dataset("stl10", str(tmp_path), "test")
    assert test.input_shape == (3, 96, 96) and test.class_names[7] == "monkey"
    assert test.targets.tolist() == [9, 8, 0, 5]
    for i in range(4):
        assert torch.equal(test[i][1], torch.from_numpy(arrays["test"][i]).float() / 255)
    train = build_dataset("stl10", str(tmp_path), "train", val_fraction=0.5)
    val = build_dataset("stl10", str(tmp_path), "val", val_fraction=0.5, unlabeled=True)
    rows = [_stamp_id(ds[i][1]) for ds in (train, val) for i in range(len(ds))]
    assert sorted(rows) == list(range(10))
    assert len(val) == 5  # unlabeled images never go into val
    for ds in (train, val):
        assert sorted(ds.targets.tolist()) == [0, 1, 2, 3, 4]
        _, x, y, a = ds[0]
        assert torch.equal(x, torch.from_numpy(arrays["train"][_stamp_id(x)]).float() / 255)
        assert (y, a) == (arrays["train_y"][_stamp_id(x)], -1)


def test_stl10_unlabeled_train_and_pickling(tmp_path: Path) -> None:
    arrays = make_stl10(tmp_path)
    ds = build_dataset("stl10", str(tmp_path), "train", val_fraction=0.5, unlabeled=True)
    assert len(ds) == 5 + 3
    assert ds.targets[-3:].tolist() == [-1, -1, -1] and (ds.targets[:5] >= 0).all()
    for k in range(3):
        expected = torch.from_numpy(arrays["unlabeled"][k]).float() / 255
        assert torch.equal(ds[5 + k][1], expected)
    clone = pickle.loads(pickle.dumps(ds))  # DataLoader workers under spawn
    assert torch.equal(clone[6][1], ds[6][1])
    small = build_dataset("stl10", str(tmp_path), "test", image_size=32)
    assert small[0][1].shape == (3, 32, 32)


def test_stl10_bad_binaries_are_named(tmp_path: Path) -> None:
    make_stl10(tmp_path)
    folder = tmp_path / "stl10_binary"
    (folder / "test_y.bin").write_bytes(bytes([1, 2]))
    with pytest.raises(DebiasclError, match=r"test_y.bin holds 2 labels, expected 4"):
        build_dataset("stl10", str(tmp_path), "test")
    (folder / "test_X.bin").write_bytes(bytes(1000))
    with pytest.raises(DebiasclError, match=r"test_X.bin is truncated"):
        build_dataset("stl10", str(tmp_path), "test")
    (folder / "unlabeled_X.bin").unlink()
    with pytest.raises(DebiasclError, match=r"missing file .*unlabeled_X.bin"):
        build_dataset("stl10", str(tmp_path), "train", unlabeled=True)


# ---------------------------------------------------------------- CelebA


@pytest.mark.parametrize("variant", ["official", "kaggle", "torchvision"])
def test_celeba_variants_give_the_same_data(tmp_path: Path, variant: str) -> None:
    make_celeba(tmp_path, variant)
    for split, part in [("train", 0), ("val", 1), ("test", 2)]:
        ds = build_dataset("celeba", str(tmp_path), split, image_size=8)
        rows = [row for row in CELEBA_ROWS if row[2] == part]
        assert ds.targets.tolist() == [int(values[1] == 1) for _, values, _, _ in rows]
        assert ds.attributes.tolist() == [int(values[2] == 1) for _, values, _, _ in rows]
        assert ds.class_names == ["not Attractive", "Attractive"]
        assert ds.attribute_names == ["not Male", "Male"]
        assert ds.num_classes == ds.num_attributes == 2 and ds.input_shape == (3, 8, 8)
        for i, (_, _, _, colour) in enumerate(rows):
            index, x, *_ = ds[i]
            assert index == i and x.shape == (3, 8, 8) and x.dtype == torch.float32
            expected = torch.tensor(colour, dtype=torch.float32).view(3, 1, 1) / 255
            assert torch.allclose(x, expected.expand(3, 8, 8), atol=3 / 255)  # JPEG


def test_celeba_attributes_chosen_by_name(tmp_path: Path) -> None:
    make_celeba(tmp_path, "official")
    ds = build_dataset(
        "celeba", str(tmp_path), "train", target_attr="Young", bias_attr="5_o_Clock_Shadow"
    )
    assert ds.targets.tolist() == [1, 1, 0] and ds.attributes.tolist() == [0, 1, 1]
    assert ds.groups.tolist() == [2, 3, 1]
    assert ds.input_shape == (3, 224, 224)  # SPEC default
    with pytest.raises(DebiasclError, match=r"'Atractive'.*target_attr.*Male, Young"):
        build_dataset("celeba", str(tmp_path), "train", target_attr="Atractive")
    with pytest.raises(DebiasclError, match=r"bias_attr"):
        build_dataset("celeba", str(tmp_path), "train", bias_attr="Blond")


def test_celeba_bad_files_are_named(tmp_path: Path) -> None:
    images = make_celeba(tmp_path, "official")
    (images / "000002.jpg").write_bytes(b"not an image")
    ds = build_dataset("celeba", str(tmp_path), "train", image_size=8)
    with pytest.raises(DebiasclError, match=r"cannot read image .*000002.jpg"):
        ds[1]
    (images / "000001.jpg").unlink()
    with pytest.raises(DebiasclError, match=r"000001.jpg .*does not exist"):
        build_dataset("celeba", str(tmp_path), "train")
    attr = tmp_path / "list_attr_celeba.txt"
    text = attr.read_text()
    attr.write_text(text.replace("000004.jpg -1 -1", "000004.jpg -1  0"))
    with pytest.raises(DebiasclError, match=r"list_attr_celeba.txt, line 6"):
        build_dataset("celeba", str(tmp_path), "val")
    attr.write_text(text)
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(DebiasclError) as error:
        build_dataset("celeba", str(tmp_path), "val")
    assert str(error.value) == (
        f"missing CelebA file in {tmp_path}: expected list_eval_partition.txt (official layout) "
        "or list_eval_partition.csv (Kaggle layout)"
    )
    with pytest.raises(DebiasclError, match=r"list_attr_celeba"):
        build_dataset("celeba", str(tmp_path / "img_align_celeba"), "val")
    with pytest.raises(DebiasclError, match=r"cannot be downloaded"):
        build_dataset("celeba", str(tmp_path), "val", download=True)


# ---------------------------------------------------------------- Waterbirds


def test_waterbirds_labels_groups_and_images(tmp_path: Path) -> None:
    make_waterbirds(tmp_path)
    for split, code in [("train", 0), ("val", 1), ("test", 2)]:
        ds = build_dataset("waterbirds", str(tmp_path), split, image_size=16)
        rows = [(k, row) for k, row in enumerate(WATERBIRDS_ROWS) if row[2] == code]
        assert ds.targets.tolist() == [row[1] for _, row in rows]
        assert ds.attributes.tolist() == [row[3] for _, row in rows]
        assert ds.groups.tolist() == [2 * row[1] + row[3] for _, row in rows]
        assert ds.class_names == ["landbird", "waterbird"] and ds.attribute_names == [
            "land",
            "water",
        ]
        k = rows[0][0]
        expected = torch.tensor([40 * k, 255 - 40 * k, 100], dtype=torch.float32) / 255
        assert torch.allclose(ds[0][1], expected.view(3, 1, 1).expand(3, 16, 16), atol=3 / 255)


def test_waterbirds_bad_metadata_is_named(tmp_path: Path) -> None:
    with pytest.raises(DebiasclError, match=r"missing file .*metadata.csv"):
        build_dataset("waterbirds", str(tmp_path), "train")
    make_waterbirds(tmp_path)
    metadata = tmp_path / "metadata.csv"
    text = metadata.read_text()
    metadata.write_text(text.replace("place_filename", "p_file").replace(",place,", ",where,"))
    with pytest.raises(DebiasclError, match=r"metadata.csv: missing column place"):
        build_dataset("waterbirds", str(tmp_path), "train")
    metadata.write_text(text.replace("Albatross_0001.jpg,1,0,1", "Albatross_0001.jpg,2,0,1"))
    with pytest.raises(DebiasclError, match=r"line 2: column 'y' must be in \[0, 1\]"):
        build_dataset("waterbirds", str(tmp_path), "train")
    metadata.write_text(text.replace("Albatross_0001.jpg,1,0,1", "Albatross_0001.jpg,1,x,1"))
    with pytest.raises(DebiasclError, match=r"line 2: column 'split'"):
        build_dataset("waterbirds", str(tmp_path), "train")
    metadata.write_text(text)
    with pytest.raises(DebiasclError, match=r"no option rho; valid options: image_size"):
        build_dataset("waterbirds", str(tmp_path), "train", rho=0.9)


# ---------------------------------------------------------------- ImageNet-100


def make_imagenet(root: Path) -> None:
    """train/ with 4 images in each of n01, n02 and an unlisted n03; val/ with 2 each."""
    for tree, count in (("train", 4), ("val", 2)):
        for wnid in ("n01", "n02", "n03"):
            for k in range(count):
                colour = (10 * k, 80 * int(wnid[-1]), 0)
                solid_image(root / tree / wnid / f"{wnid}_{k}.JPEG", colour, (10, 10))
    (root / "imagenet100.txt").write_text("n02\nn01\n")


def test_imagenet100_classes_follow_the_list(tmp_path: Path) -> None:
    make_imagenet(tmp_path)
    test = build_dataset("imagenet100", str(tmp_path), "test", image_size=8)
    assert test.class_names == ["n02", "n01"] and test.num_attributes == 0
    assert sorted(test.targets.tolist()) == [0, 0, 1, 1]
    assert all(Path(f).parent.parent.name == "val" for f in test.files)
    for i in range(len(test)):
        assert test[i][1].shape == (3, 8, 8)
        green = 80 * (2 if test[i][2] == 0 else 1)  # class 0 is n02, the list's first
        assert abs(float(test[i][1][1, 0, 0]) * 255 - green) < 4
    train = build_dataset("imagenet100", str(tmp_path), "train", val_fraction=0.25)
    val = build_dataset("imagenet100", str(tmp_path), "val", val_fraction=0.25)
    assert len(train) == 6 and len(val) == 2 and sorted(val.targets.tolist()) == [0, 1]
    assert not set(train.files) & set(val.files)
    assert all("n03" not in f and "/train/" in f for f in train.files + val.files)


def test_imagenet100_missing_list_or_folder_is_named(tmp_path: Path) -> None:
    make_imagenet(tmp_path)
    (tmp_path / "imagenet100.txt").rename(tmp_path / "classes.txt")
    with pytest.raises(DebiasclError, match=r"imagenet100.txt"):
        build_dataset("imagenet100", str(tmp_path), "train")
    (tmp_path / "classes.txt").write_text("n01\nn09\n")
    with pytest.raises(DebiasclError, match=r"missing folder .*train/n09"):
        build_dataset(
            "imagenet100", str(tmp_path), "train", class_list=str(tmp_path / "classes.txt")
        )


# ---------------------------------------------------------------- metadata-csv


def test_metadata_csv_exact_pixels_and_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, size=(3, 8, 12, 3), dtype=np.uint8)  # 3 images, H 8, W 12
    outside = tmp_path / "elsewhere" / "c.png"
    paths = [tmp_path / "img" / "a.png", tmp_path / "img" / "b.png", outside]
    for array, path in zip(pixels, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
    root = tmp_path / "data"
    root.mkdir()
    rows = [
        [0, "../img/a.png", "train", 2, 1],
        [1, "../img/b.png", 2, 0, -1],
        [2, str(outside), "0", 1, 0],
    ]
    write_csv(root / "metadata.csv", ["id", "filename", "split", "y", "a"], rows)
    train = build_dataset("metadata-csv", str(root), "train", image_size=8)
    assert train.targets.tolist() == [2, 1] and train.attributes.tolist() == [1, 0]
    assert train.class_names == ["0", "1", "2"] and train.attribute_names == ["0", "1"]
    for i, image in enumerate((0, 2)):
        # shorter side already 8: the square is the centre crop of columns 2..9
        expected = torch.from_numpy(pixels[image]).permute(2, 0, 1).float()[:, :, 2:10] / 255
        assert torch.equal(train[i][1], expected)
    test = build_dataset("metadata-csv", str(root), "test", image_size=8)
    assert test[0][2:] == (0, -1) and test.groups.tolist() == [-1]
    val = build_dataset("metadata-csv", str(root), "val")  # no val rows: an empty split
    assert len(val) == 0 and val.class_names == ["0", "1", "2"] and val.num_attributes == 2
    write_csv(root / "metadata.csv", ["filename", "split", "y", "a"], [["../img/a.png", 1, 0, 0]])
    with pytest.raises(DebiasclError, match=r"metadata.csv: no images in split 'test'"):
        build_dataset("metadata-csv", str(root), "test")


def test_describe_prints_an_empty_val_split_as_size_0(tmp_path: Path, capsys) -> None:
    make_cifar10(tmp_path / "cifar")
    args = ["datasets", "describe", "cifar10", "--root", str(tmp_path / "cifar")]
    assert main([*args, "--set", "val_fraction=0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[2:5]] == [
        ["train", "20", "-", "-", "20"],
        ["val", "0", "-", "-", "0"],
        ["test", "6", "-", "-", "6"],
    ]
    assert "val: class counts" in lines and lines[lines.index("val: class counts") + 2].split() == [
        "class0",
        "0",
    ]
    make_waterbirds(tmp_path / "birds")
    metadata = tmp_path / "birds" / "metadata.csv"
    rows = [line for line in metadata.read_text().splitlines() if line.split(",")[3] != "1"]
    metadata.write_text("\n".join(rows) + "\n")
    assert main(["datasets", "describe", "waterbirds", "--data-dir", str(tmp_path / "birds")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[3].split() == ["val", "0", "-", "-", "0"]
    assert "val: per-group counts (rows: class y, columns: bias a)" in out


def test_metadata_csv_bad_input_is_named(tmp_path: Path) -> None:
    write_csv(tmp_path / "metadata.csv", ["id", "filename", "split", "y"], [[0, "a.png", 0, 1]])
    with pytest.raises(DebiasclError, match=r"missing column a; expected columns filename"):
        build_dataset("metadata-csv", str(tmp_path), "train")
    rows = [[0, "a.png", 0, "cat", 0]]
    write_csv(tmp_path / "metadata.csv", ["id", "filename", "split", "y", "a"], rows)
    with pytest.raises(DebiasclError, match=r"line 2: column 'y' must be an integer, got 'cat'"):
        build_dataset("metadata-csv", str(tmp_path), "train")
    write_csv(
        tmp_path / "metadata.csv", ["id", "filename", "split", "y", "a"], [[0, "a.png", 0, 1, 0]]
    )
    with pytest.raises(DebiasclError, match=r"a.png \(from .*metadata.csv\) does not exist"):
        build_dataset("metadata-csv", str(tmp_path), "train")


def test_load_image_resizes_shorter_side_and_names_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (40, 20), (0, 0, 255)).save(path)
    x = load_image(path, 10)
    assert x.shape == (3, 10, 10) and torch.allclose(x[2], torch.ones(10, 10))
    grey = tmp_path / "grey.png"
    Image.new("L", (9, 9), 51).save(grey)
    assert torch.allclose(load_image(grey, 9), torch.full((3, 9, 9), 0.2))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DebiasclError, match=r"cannot read image .*broken.jpg"):
        load_image(broken, 10)
