"""``debiascl predict`` and ``debiascl embed``: a model applied to new inputs, in batches.

An INPUT is one of:

- a folder with ``metadata.csv`` (column ``filename``; optional ``split``, ``id`` and ``y``): the
  listed images (``split`` chooses rows of one split), id = ``id`` or the file name;
- any other folder: every image file below it (sorted), id = its path relative to the folder;
- a CSV file of table rows: a header with exactly the model's raw feature columns (any order)
  and optionally ``id``; id = ``id`` or the data row's number (1-based).

Images are read as the model was trained to read them (:mod:`debiascl.model_folder`): an image
of another size is resized (shorter side) and centre-cropped, so any size is accepted; a file
that cannot be decoded is an error naming it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from debiascl.atomic import write_atomic
from debiascl.data.images import SPLIT_NAMES, decode_image, read_csv
from debiascl.data.loading import resolve_workers
from debiascl.errors import DebiasclError
from debiascl.model_folder import Classifier, FeatureExtractor, Preprocess

METADATA_FILE = "metadata.csv"
ID_COLUMN = "id"
DEFAULT_BATCH_SIZE = 512
"""Samples per forward pass (evaluation's feature extraction uses the same)."""


@dataclass
class Inputs:
    """Samples to run a model on.

    Attributes:
        ids: n sample ids, in order.
        load: indices (B,) -> raw inputs (B, *input_shape) (uint8 images or float rows).
        targets: (n,) known classes (-1 where unknown), or None without a class column.
    """

    ids: list[str]
    load: Callable[[Sequence[int]], torch.Tensor]
    targets: list[int] | None = None


@dataclass
class ImageFiles:
    """Image files decoded a batch at a time: ``images[indices]`` -> uint8 (B, 3, S, S).

    An object rather than a closure, so loader worker processes can receive it.
    """

    files: list[Path]
    size: int
    source: Path | None
    reads_files = True  # loader processes help (debiascl.data.loading.resolve_workers)

    def __call__(self, indices: Sequence[int]) -> torch.Tensor:
        return torch.stack([decode_image(self.files[i], self.size, self.source) for i in indices])

    __getitem__ = __call__

    def __len__(self) -> int:
        return len(self.files)


def _images(files: list[Path], size: int, source: Path | None) -> ImageFiles:
    return ImageFiles(files, size, source)


def _metadata_inputs(folder: Path, size: int, split: str | None) -> Inputs:
    path = folder / METADATA_FILE
    rows = read_csv(path, ["filename"] if split is None else ["filename", "split"])
    if split is not None:
        rows = [row for row in rows if SPLIT_NAMES.get((row["split"] or "").strip()) == split]
    if not rows:
        raise DebiasclError(f"{path}: no rows{'' if split is None else f' of split {split}'}")
    files = [Path((row["filename"] or "").strip()) for row in rows]
    ids = [(row.get(ID_COLUMN) or str(name)).strip() for row, name in zip(rows, files, strict=True)]
    targets = [_label(row.get("y"), path, line) for line, row in enumerate(rows, start=2)]
    known = None if "y" not in rows[0] else targets
    return Inputs(ids, _images([folder / name for name in files], size, path), known)


def _label(text: str | None, path: Path, line: int) -> int:
    """A metadata row's class ``y`` (-1 when empty or absent)."""
    text = (text or "").strip()
    try:
        return int(text) if text else -1
    except ValueError:
        raise DebiasclError(
            f"{path}, line {line}: column 'y' must be an integer, got '{text}'"
        ) from None


def _folder_inputs(folder: Path, size: int) -> Inputs:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in IMG_EXTENSIONS
    )
    if not files:
        raise DebiasclError(
            f"no image files under '{folder}' (expected {', '.join(IMG_EXTENSIONS)}, or a "
            f"{METADATA_FILE})"
        )
    ids = [path.relative_to(folder).as_posix() for path in files]
    return Inputs(ids, _images(files, size, None))


def _table_inputs(path: Path, transform: Preprocess) -> Inputs:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if any(field.strip() for field in row)]
    except UnicodeDecodeError:
        raise DebiasclError(f"{path} is not UTF-8 text; save it as UTF-8 CSV") from None
    except (OSError, csv.Error) as error:
        raise DebiasclError(f"cannot read {path}: {error}") from None
    if len(rows) < 2:
        raise DebiasclError(f"{path}: expected a header line and data rows")
    header, body = [column.strip() for column in rows[0]], rows[1:]
    expected = transform.columns
    missing = [column for column in expected if column not in header]
    extra = [column for column in header if column not in (*expected, ID_COLUMN)]
    repeated = sorted({column for column in header if header.count(column) > 1})
    if missing or extra or repeated:
        problems = [
            f"{label} {', '.join(columns)}"
            for label, columns in (
                ("missing column(s)", missing),
                ("unexpected column(s)", extra),
                ("repeated column(s)", repeated),
            )
            if columns
        ]
        raise DebiasclError(
            f"{path}: {'; '.join(problems)}; the model reads exactly the columns "
            f"{', '.join(expected)} (and optionally {ID_COLUMN})"
        )
    for number, row in enumerate(body, start=1):
        if len(row) != len(header):
            raise DebiasclError(
                f"{path}: data row {number} has {len(row)} fields; expected {len(header)}"
            )
    columns = {name: [row[header.index(name)] for row in body] for name in header}
    features = transform.encode_rows({name: columns[name] for name in expected}, str(path))
    ids = columns.get(ID_COLUMN) or [str(number) for number in range(1, len(body) + 1)]
    return Inputs([i.strip() for i in ids], lambda indices: features[list(indices)])


def read_inputs(path: str | Path, transform: Preprocess, split: str | None = None) -> Inputs:
    """The samples of INPUT ``path`` (see the module docstring) for a model's ``transform``.

    Raises:
        DebiasclError: a missing path, an input of the wrong kind for the model, a metadata.csv
            or CSV whose columns do not fit, or ``split`` on an input without splits.
    """
    path = Path(path)
    if not path.exists():
        raise DebiasclError(f"input '{path}' does not exist")
    if transform.kind == "table":
        if path.is_dir():
            raise DebiasclError(
                f"input '{path}' is a folder, but this model reads table rows: give a CSV file "
                f"with the columns {', '.join(transform.columns)}"
            )
        if split is not None:
            raise DebiasclError(f"--split {split}: a CSV of rows has no splits")
        return _table_inputs(path, transform)
    if not path.is_dir():
        raise DebiasclError(
            f"input '{path}' is a file, but this model reads images: give a folder of images "
            f"or a folder with {METADATA_FILE}"
        )
    size = transform.input_shape[1]
    if (path / METADATA_FILE).is_file():
        return _metadata_inputs(path, size, split)
    if split is not None:
        raise DebiasclError(f"--split {split}: '{path}' has no {METADATA_FILE} naming splits")
    return _folder_inputs(path, size)


def _batches(inputs: Inputs, batch_size: int) -> Iterator[torch.Tensor]:
    """The raw inputs of consecutive batches; image files are decoded by loader processes
    (``min(8, CPUs - 1)``, as training's ``data.num_workers: auto`` for files)."""
    batches = [
        list(range(start, min(start + batch_size, len(inputs.ids))))
        for start in range(0, len(inputs.ids), batch_size)
    ]
    workers = resolve_workers("auto", inputs.load)
    if workers == 0:
        yield from (inputs.load(batch) for batch in batches)
        return
    yield from DataLoader(inputs.load, sampler=batches, batch_size=None, num_workers=workers)


@torch.no_grad()
def run_batches(
    model: nn.Module,
    inputs: Inputs,
    device: str | torch.device = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    desc: str = "batches",
) -> Iterator[torch.Tensor]:
    """``model(x)`` of every batch of ``inputs`` in order, on the CPU, with a progress bar.

    Yields:
        (B, ...) outputs, one tensor per batch of ``batch_size`` samples.
    """
    if batch_size < 1:
        raise DebiasclError(f"batch size {batch_size}: expected >= 1")
    model.to(device).eval()
    with tqdm(total=len(inputs.ids), desc=desc, unit="sample", disable=None) as bar:
        for x in _batches(inputs, batch_size):
            yield model(x.to(device)).cpu()
            bar.update(x.shape[0])


def probabilities_csv(ids: list[str], probabilities: torch.Tensor, class_names: list[str]) -> str:
    """The predictions file: id, predicted class name, then one probability column per class."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([ID_COLUMN, "predicted", *(f"prob_{name}" for name in class_names)])
    predicted = probabilities.argmax(dim=1).tolist()
    for sample, row, best in zip(ids, probabilities.tolist(), predicted, strict=True):
        writer.writerow([sample, class_names[best], *(f"{p:.9g}" for p in row)])
    return text.getvalue()


def write_text(path: Path, text: str) -> None:
    """``text`` to ``path`` atomically (its folder created)."""
    write_atomic(path, lambda file: file.write(text.encode("utf-8")))


def save_features(path: Path, features: np.ndarray, ids: list[str]) -> Path:
    """``features`` (n, F) as ``path`` (.npy) and the ids, one per row, as ``<stem>.ids.csv``;
    returns the ids file."""
    buffer = io.BytesIO()
    np.save(buffer, features)
    write_atomic(path, lambda file: file.write(buffer.getvalue()))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerows([[ID_COLUMN], *([sample] for sample in ids)])
    ids_path = path.with_suffix(".ids.csv")
    write_text(ids_path, text.getvalue())
    return ids_path


@dataclass
class Predictions:
    """What :func:`write_predictions` wrote.

    Attributes:
        ids: n sample ids.
        probabilities: (n, C) class probabilities.
        accuracy: accuracy on the samples whose class the input names (metadata.csv ``y``),
            or None.
        labelled: how many samples the input names a class for.
    """

    ids: list[str]
    probabilities: torch.Tensor
    accuracy: float | None
    labelled: int


def apply_model(
    model: FeatureExtractor | Classifier,
    input_path: str | Path,
    split: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[Inputs, torch.Tensor]:
    """INPUT's samples (see the module docstring) and ``model``'s outputs, (n, F) features or
    (n, C) logits, in the same order."""
    inputs = read_inputs(input_path, model.transform, split)
    desc = "predict" if isinstance(model, Classifier) else "embed"
    return inputs, torch.cat(list(run_batches(model, inputs, device, batch_size, desc)))


def write_predictions(
    inputs: Inputs, logits: torch.Tensor, class_names: list[str], out: str | Path
) -> Predictions:
    """Write ``out`` (:func:`probabilities_csv`) from (n, C) ``logits``; the accuracy where
    ``inputs`` name the classes."""
    probabilities = torch.softmax(logits, dim=1)
    write_text(Path(out), probabilities_csv(inputs.ids, probabilities, class_names))
    accuracy, labelled = None, 0
    if inputs.targets is not None:
        targets = torch.tensor(inputs.targets)
        known = targets >= 0
        labelled = int(known.sum())
        if labelled:
            correct = logits.argmax(dim=1)[known] == targets[known]
            accuracy = float(correct.float().mean())
    return Predictions(inputs.ids, probabilities, accuracy, labelled)
