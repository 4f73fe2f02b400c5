"""A trained model as a self-contained folder, and the nn.Modules rebuilt from it.

``debiascl export`` (:mod:`debiascl.export`) writes the folder; :func:`read_model_folder` reads
it back without the run directory or the data set. Its files:

- ``model.json``: what the model is (format, data set, method, encoder, seed, training step,
  backbone settings, input shape, class names) and, when it has one, what its linear head is
  (a probe and its groups, or the supervised method's own classifier) with the evaluation's
  headline metrics;
- ``preprocessing.json``: what an input must go through (:class:`Preprocess`): for images the
  decoding (RGB, shorter side resized to S, centre square of S x S, values / 255), the resize to
  the network's size and the per-channel mean and std; for tables the feature columns in order,
  each with its train-split statistics (:class:`debiascl.data.tabular.ColumnEncoding`);
- ``encoder.safetensors``: the backbone's weights (the frozen representation h = f(x));
- ``head.safetensors``: the head's ``weight`` (C, F), ``bias`` (C,) and the feature
  standardisation ``mean`` and ``std`` it applies first (0 and 1 for an own classifier);
- ``model.pt2`` (optional): a ``torch.export`` program of the whole classifier, loadable with
  ``torch.export.load`` alone; ``config.yaml``: the run's configuration; ``README.md``: the
  model card.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from debiascl.config import ModelConfig
from debiascl.data.images import decode_image
from debiascl.data.tabular import ColumnEncoding, apply_encoding
from debiascl.data.views import ImageViews
from debiascl.errors import DebiasclError
from debiascl.models import ModelInfo, build_backbone

FORMAT = "debiascl-model"
VERSION = 1
MODEL_FILE = "model.json"
PREPROCESSING_FILE = "preprocessing.json"
ENCODER_FILE = "encoder.safetensors"
HEAD_FILE = "head.safetensors"
PROGRAM_FILE = "model.pt2"
HEAD_TENSORS = ("weight", "bias", "mean", "std")


@dataclass
class ModelSpec:
    """Everything a model folder holds, in memory.

    Attributes:
        info: the content of ``model.json`` (see the module docstring).
        preprocessing: the content of ``preprocessing.json``.
        backbone: the backbone's state dict.
        head: the head's tensors (:data:`HEAD_TENSORS`), or None for an encoder alone.
    """

    info: dict[str, Any]
    preprocessing: dict[str, Any]
    backbone: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor] | None


class Preprocess(nn.Module):
    """A raw batch (B, *input_shape) -> the network's input, as evaluation prepares it.

    Images: float in [0, 1] or uint8 (scaled by 1/255), resized (bilinear, anti-aliased) to the
    network's size and normalised per channel, exactly the evaluation transform of the run's
    view pipeline. Tables: already encoded rows (:meth:`encode_rows`), as float32.

    Args:
        spec: the content of ``preprocessing.json``.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        super().__init__()
        self.spec = dict(spec)
        self.kind = str(spec["kind"])
        self.input_shape = tuple(int(size) for size in spec["input_shape"])
        self.views: ImageViews | None = None
        if self.kind == "image":
            self.views = ImageViews(
                "none",
                self.input_shape,
                (int(spec["size"][0]), int(spec["size"][1])),
                tuple(float(v) for v in spec["mean"]),
                tuple(float(v) for v in spec["std"]),
                None,
                colour=False,
            )
        self.encoding = [ColumnEncoding.from_dict(c) for c in spec.get("columns", [])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *input_shape) raw inputs -> (B, ...) float32 network inputs."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise DebiasclError(
                f"the model expects inputs of shape (B, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        if self.views is not None:
            return self.views.prepare(x)
        return x.float()

    def decode(self, path: str | Path) -> torch.Tensor:
        """An image file as the model reads it: uint8 (C, S, S) (see the module docstring).

        Raises:
            DebiasclError: not an image model, or a file that cannot be read as an image.
        """
        if self.kind != "image":
            raise DebiasclError(f"'{path}': this model reads table rows, not images")
        return decode_image(Path(path), self.input_shape[1])

    def encode_rows(self, columns: dict[str, list[str]], source: str) -> torch.Tensor:
        """Raw table columns (name -> n values) -> (n, F) float32 encoded rows.

        Raises:
            DebiasclError: not a table model, or a value that does not fit its column.
        """
        if self.kind != "table":
            raise DebiasclError(f"'{source}': this model reads images, not table rows")
        features, _ = apply_encoding(self.encoding, columns, source)
        return torch.from_numpy(np.ascontiguousarray(features))

    @property
    def columns(self) -> list[str]:
        """A table model's raw feature columns, in order (empty for images)."""
        return [column.name for column in self.encoding]


class FeatureExtractor(nn.Module):
    """The frozen representation: raw inputs (B, *input_shape) -> h = f(x), (B, F) float32.

    Attributes:
        transform: :class:`Preprocess` (``transform.decode(path)`` reads an image file as the
            model expects it, ``transform.encode_rows`` encodes table columns).
        backbone: the encoder's backbone f, an ordinary nn.Module (e.g. to fine-tune).
        encoder: which encoder of the run it is ("d" or "b").
        feature_dim: F.
        class_names: the data set's classes.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        info = spec.info
        try:
            config = replace(ModelConfig(**info["model"]), pretrained=None)
            model_info = ModelInfo.from_dict(info["model_info"])
        except (KeyError, TypeError, ValueError) as error:
            raise DebiasclError(
                f"{MODEL_FILE}: its model settings do not describe a backbone ({error!r})"
            ) from None
        backbone, feature_dim = build_backbone(config, model_info)
        try:
            backbone.load_state_dict(spec.backbone)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[-1].strip()
            raise DebiasclError(
                f"{ENCODER_FILE} does not fit the backbone {MODEL_FILE} describes ({first})"
            ) from None
        self.transform = Preprocess(spec.preprocessing)
        self.backbone = backbone
        self.encoder = str(info["encoder"])
        self.feature_dim = feature_dim
        self.class_names = list(info["class_names"])
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *input_shape) raw inputs -> (B, F) representations."""
        return self.backbone(self.transform(x)).float()


class LinearHead(nn.Module):
    """Logits of representations: ``linear((h - mean) / std)``, (B, F) -> (B, C).

    Args:
        tensors: ``weight`` (C, F), ``bias`` (C,), ``mean`` (F,) and ``std`` (F,) or (1,).
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        classes, features = tensors["weight"].shape
        self.linear = nn.Linear(features, classes)
        self.linear.load_state_dict({"weight": tensors["weight"], "bias": tensors["bias"]})
        self.register_buffer("mean", tensors["mean"].float().clone())
        self.register_buffer("std", tensors["std"].float().clone())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear((h.float() - self.mean) / self.std)


class Classifier(nn.Module):
    """Raw inputs (B, *input_shape) -> class logits (B, C): representation, then linear head.

    Attributes:
        features: the :class:`FeatureExtractor` (``features.transform`` reads inputs).
        head: the :class:`LinearHead`.
        class_names: C names.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.head is None:
            raise DebiasclError("this model has no classifier head (an encoder alone)")
        self.features = FeatureExtractor(spec)
        self.head = LinearHead(spec.head)
        self.class_names = self.features.class_names
        self.eval()

    @property
    def transform(self) -> Preprocess:
        """The inputs' preprocessing (see :class:`FeatureExtractor`)."""
        return self.features.transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *input_shape) raw inputs -> (B, C) logits."""
        return self.head(self.features(x))


# ----------------------------------------------------------------------------- reading


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DebiasclError(f"model folder file '{path}' is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DebiasclError(f"cannot read '{path}': {error}") from None
    if not isinstance(value, dict):
        raise DebiasclError(f"'{path}' holds a {type(value).__name__}, expected a JSON object")
    return value


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, with one-line errors for a missing or damaged file."""
    if not path.is_file():
        raise DebiasclError(f"model folder file '{path}' is missing")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors has its own error types for damaged files
        raise DebiasclError(f"'{path}' is damaged ({error})") from None


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``debiascl export`` (it holds model.json)."""
    return (Path(path) / MODEL_FILE).is_file()


def read_model_folder(path: str | Path) -> ModelSpec:
    """The :class:`ModelSpec` of a model folder.

    Raises:
        DebiasclError: not a model folder, another format or version, or a missing or damaged
            file.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DebiasclError(f"model folder '{folder}' does not exist")
    if not is_model_folder(folder):
        raise DebiasclError(
            f"'{folder}' is not a model folder (no {MODEL_FILE}); make one with "
            "`debiascl export RUN_DIR --out DIR`"
        )
    info = _json(folder / MODEL_FILE)
    if info.get("format") != FORMAT or info.get("version") != VERSION:
        raise DebiasclError(
            f"'{folder / MODEL_FILE}' is not a {FORMAT} file of version {VERSION} "
            f"(format {info.get('format')!r}, version {info.get('version')!r})"
        )
    head = read_tensors(folder / HEAD_FILE) if info.get("head") else None
    if head is not None and any(name not in head for name in HEAD_TENSORS):
        raise DebiasclError(f"'{folder / HEAD_FILE}' lacks one of {', '.join(HEAD_TENSORS)}")
    preprocessing = _json(folder / PREPROCESSING_FILE)
    return ModelSpec(info, preprocessing, read_tensors(folder / ENCODER_FILE), head)
