"""The decoded-image cache and the batch loaders, on small image folders in the real layouts."""

from __future__ import annotations

import csv
import fcntl
import logging
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from image_files import CELEBA_ROWS, WATERBIRDS_ROWS, make_celeba, make_waterbirds
from PIL import Image
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from debiascl.checkpoint import load_checkpoint
from debiascl.config import build_config
from debiascl.data import build_dataset, loading
from debiascl.data import cache as cache_module
from debiascl.data.cache import attach_cache, cache_path, default_cache_dir
from debiascl.data.images import ImageFileDataset
from debiascl.data.loading import batch_loader, configured_dataset, resolve_workers
from debiascl.data.sampling import IndexedSubset
from debiascl.errors import DebiasclError
from debiascl.train import train

SRC = Path(__file__).resolve().parents[1] / "src"
SIZE = 16
# file name, split, y, a, (W, H): mixed formats and shapes, all resized and centre-cropped
ROWS = [
    ("img/a0.jpg", 0, 0, 0, (23, 29)),
    ("img/a1.png", 0, 1, 1, (40, 31)),
    ("img/b/a2.jpg", 0, 1, 0, (16, 16)),
    ("img/a3.png", 0, 0, 1, (64, 48)),
    ("img/a4.jpg", 0, 0, 0, (9, 30)),
    ("img/a5.jpg", 2, 1, 1, (33, 33)),
]


def _noise(path: Path, size: tuple[int, int], seed: int) -> None:
    """A (W, H) = size image of random pixels, in the format its suffix names."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def make_metadata_csv(root: Path, rows: list[tuple] = ROWS) -> Path:
    """A SubpopBench-style folder: metadata.csv and random-noise images. Returns root."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "filename", "split", "y", "a"])
        for k, (name, split, y, a, size) in enumerate(rows):
            writer.writerow([k, name, split, y, a])
            if not (root / name).exists():
                _noise(root / name, size, seed=k)
    return root


def _images(dataset: ImageFileDataset) -> torch.Tensor:
    """(n, 3, S, S) every item's x, read one at a time (the per-item contract)."""
    return torch.stack([dataset[i][1] for i in range(len(dataset))])


def _cached(root: Path, cache_dir: Path, image_size: int = SIZE) -> ImageFileDataset:
    dataset = build_dataset("metadata-csv", str(root), "train", image_size=image_size)
    return attach_cache(dataset, cache_dir)


def _noisy(root: Path, layout: str) -> None:
    """``root`` in a real layout whose images are random noise of a non-square size."""
    if layout == "celeba":
        images = make_celeba(root, "official")
        names = [images / row[0] for row in CELEBA_ROWS]
    elif layout == "waterbirds":
        make_waterbirds(root)
        names = [root / row[0] for row in WATERBIRDS_ROWS]
    else:
        make_metadata_csv(root)
        names = []
    for k, path in enumerate(names):
        _noise(path, (21 + k, 34 - k), seed=100 + k)


@pytest.mark.parametrize("layout", ["metadata-csv", "celeba", "waterbirds"])
def test_cache_gives_exactly_the_uncached_images(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "data"
    _noisy(root, layout)
    for split in ("train", "test"):
        uncached = build_dataset(layout, str(root), split, image_size=SIZE)
        expected = _images(uncached)
        assert uncached.reads_files and expected.shape == (len(uncached), 3, SIZE, SIZE)
        assert len(torch.unique(expected)) > 100  # noise, not flat colour: resize is exercised
        rng = torch.get_rng_state()
        dataset = attach_cache(build_dataset(layout, str(root), split, image_size=SIZE))
        assert torch.equal(torch.get_rng_state(), rng)  # building draws no random numbers
        assert not dataset.reads_files
        assert cache_path(dataset).is_file()
        assert cache_path(dataset).parent.parent == default_cache_dir()
        assert torch.equal(_images(dataset), expected)
        order = list(range(len(dataset)))[::-1]
        index, x, y, a = dataset.get_batch(order)
        assert index.tolist() == order and torch.equal(x, expected[order])
        assert torch.equal(y, uncached.targets[order]) and torch.equal(
            a, uncached.attributes[order]
        )
    for path in root.rglob("*.jpg"):  # items now come from the cache, not from the files
        path.unlink()
    assert torch.equal(_images(dataset), expected)


def test_batch_loader_gives_what_per_item_collation_gives(tmp_path: Path) -> None:
    root = make_metadata_csv(tmp_path / "data")
    uncached = build_dataset("metadata-csv", str(root), "train", image_size=SIZE)
    cached = _cached(root, tmp_path / "cache")
    batches = [[4, 0, 2], [1, 3]]
    reference = list(DataLoader(uncached, batch_sampler=batches))
    for dataset in (uncached, cached):
        got = list(batch_loader(dataset, batches, 0, torch.device("cpu")))
        assert len(got) == len(reference)
        for mine, theirs in zip(got, reference, strict=True):
            assert all(torch.equal(m, t) for m, t in zip(mine, theirs, strict=True))
    subset = IndexedSubset(cached, torch.tensor([3, 1, 4]))
    sequential = BatchSampler(SequentialSampler(range(3)), 2, drop_last=False)
    index, x, _, _ = next(iter(batch_loader(subset, sequential, 0, torch.device("cpu"))))
    assert index.tolist() == [3, 1] and torch.equal(x, _images(uncached)[[3, 1]])


def test_cached_dataset_pickles_small_for_loader_workers(tmp_path: Path) -> None:
    root = make_metadata_csv(tmp_path / "data")
    dataset = _cached(root, tmp_path / "cache")
    expected = _images(dataset)  # opens the memory map
    clone = pickle.loads(pickle.dumps(dataset))
    assert len(pickle.dumps(dataset.decoded)) < 500  # the path, not the images
    assert torch.equal(_images(clone), expected)
    two_workers = DataLoader(dataset, batch_size=2, num_workers=2)
    assert torch.equal(torch.cat([x for _, x, _, _ in two_workers]), expected)


def test_changed_file_size_or_list_invalidates_the_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_metadata_csv(tmp_path / "data")
    cache = tmp_path / "cache"
    first = _cached(root, cache)
    path, before = first.decoded.path, _images(first)
    _noise(root / "img/a1.png", (40, 31), seed=999)  # same name and shape, new pixels
    os.utime(root / "img/a1.png", ns=(1, 1))  # even an older mtime is a change
    with caplog.at_level(logging.INFO, logger="debiascl"):
        changed = _cached(root, cache)
    assert "out of date" in caplog.text and changed.decoded.path == path
    uncached = build_dataset("metadata-csv", str(root), "train", image_size=SIZE)
    assert torch.equal(_images(changed), _images(uncached))
    assert not torch.equal(_images(changed)[1], before[1])
    assert torch.equal(_images(changed)[[0, 2, 3, 4]], before[[0, 2, 3, 4]])

    bigger = _cached(root, cache, image_size=SIZE * 2)
    assert bigger.decoded.path != path and _images(bigger).shape[-1] == SIZE * 2

    make_metadata_csv(root, ROWS[1:])  # one file fewer in the list
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="debiascl"):
        shorter = _cached(root, cache)
    assert "out of date" in caplog.text and len(shorter) == len(first) - 1
    assert torch.equal(_images(shorter), _images(uncached)[1:])
    assert torch.equal(_images(first), before)  # a map open during a rebuild keeps its file


def test_unchanged_data_reuses_the_cache_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_metadata_csv(tmp_path / "data")
    expected = _images(_cached(root, tmp_path / "cache"))

    def no_decoding(*args: object) -> None:
        raise AssertionError("a valid cache was rebuilt")

    monkeypatch.setattr(cache_module, "decode_image", no_decoding)
    with caplog.at_level(logging.INFO, logger="debiascl"):
        assert torch.equal(_images(_cached(root, tmp_path / "cache")), expected)
    assert caplog.text == ""


@pytest.mark.parametrize("damage", ["truncate", "manifest", "header"])
def test_damaged_cache_is_rebuilt_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    root = make_metadata_csv(tmp_path / "data")
    dataset = _cached(root, tmp_path / "cache")
    expected, path = _images(dataset), dataset.decoded.path
    if damage == "truncate":
        os.truncate(path, path.stat().st_size // 2)
    elif damage == "manifest":
        path.with_suffix(".json").write_text("{not json")
    else:
        with path.open("r+b") as handle:
            handle.write(b"garbage!")
    with caplog.at_level(logging.INFO, logger="debiascl"):
        rebuilt = _cached(root, tmp_path / "cache")
    assert f"decoded-image cache {path} is damaged" in caplog.text
    assert "rebuilding it" in caplog.text
    assert torch.equal(_images(rebuilt), expected)


BUILDER = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
from debiascl.data import build_dataset
from debiascl.data.cache import attach_cache
dataset = build_dataset("metadata-csv", sys.argv[1], "train", image_size={size})
print("ready", flush=True)
attach_cache(dataset, sys.argv[2], workers=1)
images = dataset.load_batch(list(range(len(dataset))))
print("sum", float(images.double().sum()), flush=True)
"""


@pytest.mark.slow
def test_two_processes_building_one_cache_do_not_corrupt_it(tmp_path: Path) -> None:
    rows = [(f"img/{k:03d}.jpg", 0, k % 2, k % 2, (30 + k % 7, 25)) for k in range(70)]
    root = make_metadata_csv(tmp_path / "data", rows)
    cache = tmp_path / "cache"
    uncached = build_dataset("metadata-csv", str(root), "train", image_size=SIZE)
    path = cache_path(uncached, cache)
    path.parent.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    script = BUILDER.format(size=SIZE)
    with path.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # both find no cache and queue up behind this lock
        builders = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(root), str(cache)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for builder in builders:
            assert builder.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        fcntl.flock(lock, fcntl.LOCK_UN)
    outputs = [builder.communicate(timeout=120) for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0], outputs
    logs = "".join(err for _, err in outputs)
    assert logs.count("building the decoded-image cache") == 1, logs
    assert "damaged" not in logs and "out of date" not in logs
    expected = float(_images(uncached).double().sum())
    for out, _ in outputs:
        assert out.split() == ["sum", str(expected)]
    assert torch.equal(_images(attach_cache(uncached, cache)), _images(uncached))
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [path.name, path.with_suffix(".json").name, path.with_suffix(".lock").name]
    )  # no temporary file left behind


def _deny_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating folders and opening files for writing fail, as in a read-only folder."""
    real_open = os.open

    def mkdir(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    def open_(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


def test_unwritable_cache_folder_is_a_one_line_error_but_a_built_cache_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_metadata_csv(tmp_path / "data")
    built = _images(_cached(root, tmp_path / "shared"))
    dataset = build_dataset("metadata-csv", str(root), "train", image_size=SIZE)
    with monkeypatch.context() as patch:
        _deny_writes(patch)
        assert torch.equal(_images(attach_cache(dataset, tmp_path / "shared")), built)
        with pytest.raises(DebiasclError) as error:
            attach_cache(dataset, tmp_path / "empty")
    message = str(error.value)
    assert "\n" not in message
    assert message == (
        f"decoded-image cache folder {tmp_path / 'empty' / 'images'} is not writable "
        "(Permission denied); set data.cache_dir (or DEBIASCL_CACHE_DIR) to another folder, "
        "or data.cache=false"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_cache_folder_on_disk(tmp_path: Path) -> None:
    root = make_metadata_csv(tmp_path / "data")
    folder = tmp_path / "cache" / "images"
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    try:
        with pytest.raises(DebiasclError, match=r"is not writable .*data.cache=false"):
            _cached(root, tmp_path / "cache")
    finally:
        folder.chmod(0o755)


def test_disk_without_room_says_how_much_and_how_to_turn_the_cache_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_metadata_csv(tmp_path / "data")
    real = cache_module.shutil.disk_usage

    def full(path: object) -> object:
        return real(path)._replace(free=1000)

    monkeypatch.setattr(cache_module.shutil, "disk_usage", full)
    with pytest.raises(DebiasclError) as error:
        _cached(root, tmp_path / "cache")
    assert str(error.value) == (
        "the decoded-image cache of dataset 'metadata-csv' (train split, 5 images at 16 px) "
        f"needs 0.00 GB in {tmp_path / 'cache' / 'images'}, but its disk has 0.00 GB free; "
        "set data.cache_dir (or DEBIASCL_CACHE_DIR) to another folder, or data.cache=false "
        "(reads the image files each epoch)"
    )
    assert [p.name for p in (tmp_path / "cache" / "images").iterdir()] == [
        cache_path(build_dataset("metadata-csv", str(root), "train", image_size=SIZE))
        .with_suffix(".lock")
        .name
    ]


def test_unreadable_image_while_building_names_the_file(tmp_path: Path) -> None:
    root = make_metadata_csv(tmp_path / "data")
    (root / "img/a3.png").write_bytes(b"not an image")
    with pytest.raises(DebiasclError, match=r"cannot read image .*a3.png"):
        _cached(root, tmp_path / "cache")
    assert [p.suffix for p in (tmp_path / "cache" / "images").iterdir()] == [".lock"]


def test_configured_dataset_follows_the_cache_settings(tmp_path: Path) -> None:
    root = make_metadata_csv(tmp_path / "data")
    sets = [f"data.root={root}", "data.options.image_size=16", "data.name=metadata-csv"]
    off = build_config(sets=[*sets, "data.cache=false"])
    assert configured_dataset(off.data, "train", download=False).reads_files
    elsewhere = build_config(sets=[*sets, f"data.cache_dir={tmp_path / 'mine'}"])
    dataset = configured_dataset(elsewhere.data, "train", download=False)
    assert not dataset.reads_files
    assert cache_path(dataset, tmp_path / "mine").is_file()
    assert cache_path(dataset).parent.parent == default_cache_dir() != tmp_path / "mine"
    assert not cache_path(dataset).exists()


def test_cache_folder_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir() == Path(os.environ["DEBIASCL_CACHE_DIR"])  # conftest's
    monkeypatch.delenv("DEBIASCL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "debiascl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "debiascl"


def test_auto_workers_only_for_decoding_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_metadata_csv(tmp_path / "data")
    files = build_dataset("metadata-csv", str(root), "train", image_size=SIZE)
    digits = build_dataset("biased-digits", None, "train")
    monkeypatch.setattr(loading, "available_cpus", lambda: 16)
    assert resolve_workers("auto", files) == 8  # capped
    assert resolve_workers("auto", files, world_size=4) == 3  # one CPU per rank for training
    assert resolve_workers("auto", digits) == 0  # in memory
    assert resolve_workers(5, digits) == 5  # an explicit number is kept
    monkeypatch.setattr(loading, "available_cpus", lambda: 1)
    assert resolve_workers("auto", files) == 0
    monkeypatch.setattr(loading, "available_cpus", lambda: 16)
    assert resolve_workers("auto", attach_cache(files, tmp_path / "cache")) == 0  # cached


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("3", 3), (0, 0), ("0", 0)])
def test_num_workers_setting(value: object, expected: object) -> None:
    assert build_config(sets=[f"data.num_workers={value}"]).data.num_workers == expected


@pytest.mark.parametrize("value", ["-1", "many", "1.5", "true"])
def test_bad_num_workers_is_named(value: str) -> None:
    with pytest.raises(DebiasclError, match=r"data.num_workers.*auto or an integer >= 0"):
        build_config(sets=[f"data.num_workers={value}"])


def test_cache_settings_defaults_and_checks() -> None:
    data = build_config().data
    assert data.cache is True and data.cache_dir is None and data.num_workers == "auto"
    with pytest.raises(DebiasclError, match=r"data.cache'?:? .*true or false"):
        build_config(sets=["data.cache=sometimes"])
    with pytest.raises(DebiasclError, match=r"data.cache_dir"):
        build_config(sets=["data.cache_dir=' '"])


@pytest.mark.slow
def test_training_reads_the_cache_and_learns_the_same_model(tmp_path: Path) -> None:
    rows = [
        (f"img/{k:02d}.png", k % 3 == 2, k % 2, (k // 2) % 2, (20 + k % 5, 18)) for k in range(24)
    ]
    root = make_metadata_csv(
        tmp_path / "data", [(n, int(s) * 2, y, a, wh) for n, s, y, a, wh in rows]
    )
    sets = [
        "data.name=metadata-csv",
        f"data.root={root}",
        "data.options.image_size=8",
        "data.augmentation=crop_flip",
        "method.name=simclr",
        "train.epochs=2",
        "train.batch_size=4",
        "train.device=cpu",
        "train.knn_every=0",
        "train.progress=false",
    ]
    models = {}
    variants = {  # cached; decoding files in one persistent loader process; in this process
        "cached": ["data.cache=true"],
        "worker": ["data.cache=false", "data.num_workers=1"],
        "inline": ["data.cache=false", "data.num_workers=0"],
    }
    for name, extra in variants.items():
        run_dir = train(build_config(sets=[*sets, *extra]), tmp_path / name)
        models[name] = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    written = list((default_cache_dir() / "images").glob("metadata-csv-train-8px-*.npy"))
    assert len(written) == 1  # by the cached run, in the cache folder the settings name
    for name in ("worker", "inline"):
        assert models[name].keys() == models["cached"].keys()
        assert all(torch.equal(models[name][k], models["cached"][k]) for k in models["cached"])
