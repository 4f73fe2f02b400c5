"""Decoded-image cache: decode a file-based image data set once, read it from a memory map after.

The first use of a split of a file-based image data set (celeba, waterbirds, imagenet100,
metadata-csv) decodes every image with the function the uncached path uses
(:func:`~debiascl.data.images.decode_image`: resize the shorter side, centre-crop) into one uint8
array (n, 3, S, S) stored as a ``.npy`` file, plus a small JSON manifest. Items read from it are
``uint8 / 255`` exactly as the uncached path computes them, so a run gives the same numbers with
and without the cache. Later epochs and later runs read whole batches straight from the map.

* Where: ``data.cache_dir``, else ``$DEBIASCL_CACHE_DIR``, else ``$XDG_CACHE_HOME/debiascl``,
  else ``~/.cache/debiascl``; files ``images/<name>-<split>-<S>px-<folder hash>.npy`` and
  ``.json``. Deleting the folder clears the cache; ``data.cache=false`` turns it off.
* Keyed by the image files (path, size, mtime, and the inode and its change time, which the
  kernel sets on every write and no tool can set back: a file rewritten with other pixels of
  the same size and its mtime restored, as ``rsync -t`` or a restore from backup does, changes
  the key), the image size, the package version and the cache format: a changed file, file list
  or setting rebuilds the cache in place.
* Content-checked: the manifest holds a CRC-32 of every block of rows (about
  :data:`CHECK_BLOCK_BYTES`), computed on build and verified each time the cache is opened
  (2 GB/s on one core: 0.03 s for 5,000 images of 64 px; ``benchmarks/data.py`` prints it).
* Written atomically (a temporary file renamed over the old one, then the manifest, readable
  by everyone as the data is); a cache whose file size, header or checksums do not match its
  manifest (truncated, damaged), or whose manifest is not a sound one, is rebuilt with a log
  line, and the temporary files of a build that was killed are removed by the next build.
  One process builds while the others wait on a lock file, then read the result.
* Built in parallel (a DataLoader with ``workers`` processes decoding batches of files) with a
  progress bar on a terminal.
* A cache folder that cannot be written, or a disk without room for the cache, is a
  :class:`~debiascl.errors.DebiasclError` naming the folder and the settings to change (no
  silent fallback to the slow path). An existing valid cache is read from a read-only folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from debiascl import __version__
from debiascl.atomic import write_json
from debiascl.data.base import BiasedDataset
from debiascl.data.images import ImageFileDataset, decode_image
from debiascl.errors import DebiasclError

LOGGER = logging.getLogger("debiascl")
CACHE_FORMAT = 2
"""Bump when the stored bytes change (e.g. a different resize), so old caches are rebuilt.
2: 16-bit, palette and alpha images converted faithfully; block checksums in the manifest."""
CHECK_BLOCK_BYTES = 1 << 22
"""Bytes of decoded images (whole rows) per checksummed block of the cache."""
CACHE_DIR_ENV = "DEBIASCL_CACHE_DIR"
BUILD_BATCH = 32
"""Images a build worker decodes per batch it hands back."""
TURN_OFF = "set data.cache_dir (or DEBIASCL_CACHE_DIR) to another folder, or data.cache=false"


def default_cache_dir() -> Path:
    """``$DEBIASCL_CACHE_DIR``, else ``$XDG_CACHE_HOME/debiascl``, else ``~/.cache/debiascl``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "debiascl"


class DecodedImages:
    """The decoded images of one cache file, read from a memory map opened on first use.

    Pickles as its path only, so DataLoader workers open their own map instead of copying it.

    Args:
        path: the ``.npy`` file holding a uint8 (n, 3, S, S) array.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._array: np.ndarray | None = None

    def _map(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return len(self._map())

    def rows(self, indices: Sequence[int]) -> np.ndarray:
        """(B, 3, S, S) uint8 images ``indices`` (a copy in memory, in the given order)."""
        return self._map()[np.asarray(indices, dtype=np.int64)]

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])


class _FileImages(Dataset):
    """Item i -> (i, decode_image of file i) as uint8 (3, S, S): what a build worker decodes."""

    def __init__(self, dataset: ImageFileDataset) -> None:
        self.folder, self.files, self.source = dataset.folder, dataset.files, dataset.source
        self.size = dataset.input_shape[1]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, decode_image(self.folder / self.files[index], self.size, self.source)


def cache_key(dataset: ImageFileDataset) -> str:
    """sha256 of the files (path, size, mtime_ns, inode, ctime_ns), the image size, version and
    cache format."""
    files = []
    for name in dataset.files:
        path = dataset.folder / name
        try:
            stat = path.stat()
        except OSError as error:
            raise DebiasclError(
                f"image file {path} (from {dataset.source}) cannot be read: {error.strerror}"
            ) from error
        files.append([str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns])
    payload = {
        "format": CACHE_FORMAT,
        "version": __version__,
        "image_size": dataset.input_shape[1],
        "files": files,
    }
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def cache_path(dataset: ImageFileDataset, cache_dir: str | Path | None = None) -> Path:
    """The ``.npy`` file of a split's cache: one per (data set, split, image size, folder)."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    where = hashlib.sha256(f"{dataset.folder}\n{dataset.source}".encode()).hexdigest()[:12]
    stem = f"{dataset.name}-{dataset.split}-{dataset.input_shape[1]}px-{where}"
    return folder / "images" / f"{stem}.npy"


def _manifest_path(path: Path) -> Path:
    return path.with_suffix(".json")


def block_checksums(array: np.ndarray) -> tuple[int, list[int]]:
    """(rows per block, the CRC-32 of each block of rows) of a (n, 3, S, S) uint8 array."""
    rows = max(1, CHECK_BLOCK_BYTES // max(1, int(np.prod(array.shape[1:]))))
    sums = [
        zlib.crc32(array[start : start + rows].reshape(-1)) for start in range(0, len(array), rows)
    ]
    return rows, sums


def _manifest_problem(manifest: Any, key: str, shape: tuple[int, ...]) -> str | None:
    """What is wrong with a manifest's content (its shape, then its key), or None."""
    if not isinstance(manifest, dict):
        return f"damaged (its manifest holds a JSON {type(manifest).__name__}, not a mapping)"
    if manifest.get("key") != key:
        return "out of date (the image files or settings changed)"
    rows, sums = manifest.get("block_rows"), manifest.get("crc32")
    if (
        not isinstance(manifest.get("bytes"), int)
        or not isinstance(rows, int)
        or rows < 1
        or not isinstance(sums, list)
        or len(sums) != -(-shape[0] // rows)
        or not all(isinstance(value, int) for value in sums)
    ):
        return "damaged (its manifest lacks the size or the block checksums)"
    return None


def _problem(path: Path, key: str, shape: tuple[int, ...]) -> str | None:
    """Why the cache at ``path`` cannot be used for ``key`` and ``shape``; None when it can.

    Checks the manifest, the file's size and header, then every block's checksum.
    """
    manifest_path = _manifest_path(path)
    if not path.is_file() or not manifest_path.is_file():
        return "missing"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        return f"damaged (its manifest: {type(error).__name__})"
    problem = _manifest_problem(manifest, key, shape)
    if problem is not None:
        return problem
    try:
        if path.stat().st_size != manifest["bytes"]:
            return f"damaged ({path.stat().st_size} bytes, expected {manifest['bytes']})"
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        return f"damaged ({type(error).__name__}: {error})"
    if array.dtype != np.uint8 or array.shape != shape:
        return f"damaged (holds {array.dtype} {array.shape}, expected uint8 {shape})"
    rows, sums = block_checksums(array)
    bad = sum(mine != stored for mine, stored in zip(sums, manifest["crc32"], strict=False))
    if rows != manifest["block_rows"] or bad:
        return f"damaged ({bad} of {len(sums)} blocks of rows fail their checksum)"
    return None


def _remove_orphans(path: Path) -> None:
    """Delete the temporary files of builds of ``path`` that were killed (the lock is held)."""
    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        orphan.unlink(missing_ok=True)


@contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (blocks while another process builds)."""
    lock = path.with_suffix(".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise DebiasclError(
            f"decoded-image cache folder {lock.parent} is not writable ({error.strerror}); "
            f"{TURN_OFF}"
        ) from error
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


def _check_space(folder: Path, needed: int, what: str) -> None:
    """A DebiasclError unless ``folder``'s disk has ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DebiasclError(
            f"the decoded-image cache of {what} needs {needed / 1e9:.2f} GB in {folder}, but its "
            f"disk has {free / 1e9:.2f} GB free; {TURN_OFF} (reads the image files each epoch)"
        )


def _fill(array: np.ndarray, dataset: ImageFileDataset, workers: int, what: str) -> None:
    """Decode every image of ``dataset`` into ``array`` (n, 3, S, S) uint8, ``workers`` at once."""
    workers = min(workers, (len(array) - 1) // BUILD_BATCH)  # no process without a batch to do
    loader = DataLoader(
        _FileImages(dataset),
        batch_size=BUILD_BATCH,
        num_workers=workers,
        generator=torch.Generator(),  # building must not draw from the global RNG
    )
    with tqdm(total=len(array), desc=f"caching {what}", unit="img", disable=None) as bar:
        for index, images in loader:
            array[index.numpy()] = images.numpy()
            bar.update(len(index))


def _write(path: Path, dataset: ImageFileDataset, workers: int, what: str) -> dict[str, Any]:
    """Write the decoded images as a ``.npy`` file: a temporary file renamed to ``path``.

    Returns:
        ``block_rows`` and ``crc32``: the block checksums (:func:`block_checksums`).
    """
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        os.chmod(temp, 0o644)  # a shared cache folder is readable by its other users
        shape = (len(dataset), *dataset.input_shape)
        array = np.lib.format.open_memmap(temp, mode="w+", dtype=np.uint8, shape=shape)
        _fill(array, dataset, workers, what)
        array.flush()
        rows, sums = block_checksums(array)
        del array
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return {"block_rows": rows, "crc32": sums}


def _build(dataset: ImageFileDataset, path: Path, key: str, workers: int) -> None:
    """Decode ``dataset`` into ``path`` atomically, then write its manifest (which validates it)."""
    size = dataset.input_shape[1]
    what = f"dataset '{dataset.name}' ({dataset.split} split, {len(dataset)} images at {size} px)"
    needed = len(dataset) * 3 * size * size
    _check_space(path.parent, needed + 2**20, what)
    _manifest_path(path).unlink(missing_ok=True)  # a half-replaced cache never looks valid
    _remove_orphans(path)
    try:
        checks = _write(path, dataset, workers, what)
    except OSError as error:
        raise DebiasclError(
            f"cannot write the decoded-image cache {path} ({error.strerror}); {TURN_OFF}"
        ) from error
    manifest = {"key": key, "bytes": path.stat().st_size, "shape": [len(dataset), 3, size, size]}
    manifest |= {"version": __version__, "dataset": what, **checks}
    write_json(_manifest_path(path), manifest)
    os.chmod(_manifest_path(path), 0o644)  # readable by the cache's other users, as the data


def attach_cache(
    dataset: BiasedDataset, cache_dir: str | Path | None = None, workers: int = 0
) -> BiasedDataset:
    """Make a file-based image data set read its images from the decoded-image cache.

    Builds the cache first when it is missing, out of date or damaged (one process at a time;
    the others wait and read it). Other data sets, and empty splits, are returned unchanged.

    Args:
        dataset: any data set; only an :class:`ImageFileDataset` is cached.
        cache_dir: the cache folder (None: :func:`default_cache_dir`).
        workers: processes decoding images while the cache is built (0: this process).

    Returns:
        ``dataset`` itself, with ``dataset.decoded`` set when it is cached.

    Raises:
        DebiasclError: the folder cannot be written or its disk cannot hold the cache.
    """
    if not isinstance(dataset, ImageFileDataset) or not dataset.files:
        return dataset
    path = cache_path(dataset, cache_dir)
    key = cache_key(dataset)
    shape = (len(dataset), *dataset.input_shape)
    problem = _problem(path, key, shape)
    if problem is not None:
        with _build_lock(path):
            problem = _problem(path, key, shape)  # another process may have built it meanwhile
            if problem is not None:
                if problem == "missing":
                    LOGGER.info("building the decoded-image cache %s", path)
                else:
                    LOGGER.warning("decoded-image cache %s is %s; rebuilding it", path, problem)
                _build(dataset, path, key, workers)
    dataset.decoded = DecodedImages(path)
    return dataset
