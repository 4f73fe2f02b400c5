"""Encoders: a backbone f (its output h is the representation) and a projection head g.

Backbones (``model.backbone``):

- ``resnet18`` / ``resnet50``: torchvision ResNets built with ``weights=None``; ``fc`` is replaced
  by ``Identity`` so the backbone returns the pooled features h (512 / 2048 dims). With
  ``model.cifar_stem`` the 7x7 stride-2 stem and its max-pool become a 3x3 stride-1 conv and no
  pool (SPEC section 5, CIFAR/STL).
- ``small_cnn``: four conv-BN-ReLU blocks and global average pooling (~220k parameters, h of 192
  dims, ~17 MFLOPs per 32 px image), sized for the built-in 16-32 px benchmarks on a CPU.
- ``mlp``: Linear-BN-ReLU blocks of ``model.mlp_hidden_dims`` for tables.

Weights are random unless ``model.pretrained`` asks otherwise, never silently: the path of a
state dict saved with ``torch.save`` (any backbone; a classifier ``fc.*`` in it is ignored), or
``"imagenet"`` for a ResNet with the standard stem (torchvision's weights API: the one case that
downloads). Every encoder of a method (E_d and E_b of WCL) starts from the same weights.

Heads (``model.head``, F = backbone feature dim, H = ``model.head_hidden_dim``,
P = ``model.proj_dim``):

- ``cifar``: Linear(F, H, bias=False) -> BN -> ReLU -> Linear(H, P)  (SPEC 5: 2048 -> 512 -> 128).
- ``biased``: Linear(F, H) -> ReLU -> Linear(H, P)  (SPEC 5, CelebA/Waterbirds: 512 -> 512 -> 256).
- ``mlp``: Linear(F, H) -> BN -> ReLU -> Linear(H, P), the general-purpose head (tables and the
  built-in benchmarks): like ``cifar`` but with the first layer's bias kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from debiascl.config import ModelConfig
from debiascl.errors import DebiasclError
from debiascl.registry import BACKBONES, HEADS

RESNETS = ("resnet18", "resnet50")
SMALL_CNN_WIDTHS = (24, 48, 96, 192)

BackboneBuilder = Callable[[ModelConfig, int], tuple[nn.Module, int]]
"""(model settings, input channels (images) or features (tables)) -> (backbone, F)."""
HeadBuilder = Callable[[ModelConfig, int], nn.Module]
"""(model settings, feature dim F) -> a projection head (B, F) -> (B, model.proj_dim)."""


def register_backbone(name: str, kind: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator: make a builder the backbone ``name`` (a choice of ``model.backbone``) for
    data of ``kind`` ("image": inputs (C, H, W); "table": inputs (F,))."""
    if kind not in ("image", "table"):
        raise ValueError(f"backbone '{name}': kind must be 'image' or 'table', got {kind!r}")

    def register(builder: BackboneBuilder) -> BackboneBuilder:
        BACKBONES.add(name, builder, kind=kind)
        return builder

    return register


class DatasetInfo(Protocol):
    """What model building needs from a :class:`~debiascl.data.base.BiasedDataset`."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    num_classes: int


@dataclass(frozen=True)
class ModelInfo:
    """A :class:`DatasetInfo` as plain values: what a checkpoint keeps to rebuild its model
    without opening the data set."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    num_classes: int

    @classmethod
    def of(cls, dataset: DatasetInfo) -> ModelInfo:
        """The model-building facts of ``dataset``."""
        return cls(dataset.name, dataset.kind, tuple(dataset.input_shape), dataset.num_classes)

    def to_dict(self) -> dict[str, Any]:
        """A dict of strings, ints and a list of ints (what a weights-only checkpoint holds)."""
        return {**asdict(self), "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(
            str(values["name"]),
            str(values["kind"]),
            tuple(int(size) for size in values["input_shape"]),
            int(values["num_classes"]),
        )


class Encoder(nn.Module):
    """Backbone f followed by projection head g.

    Args:
        backbone: maps x (B, *input_shape) to h (B, F).
        head: maps h (B, F) to z (B, P).
        feature_dim: F, the representation size.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projection z = g(f(x)), (B, P), not normalised (the losses normalise)."""
        return self.head(self.backbone(x))

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """Representation h = f(x), (B, F): the backbone output used downstream."""
        return self.backbone(x)


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def small_cnn(in_channels: int = 3) -> tuple[nn.Sequential, int]:
    """A four-block CNN for small images: (B, C, H, W) -> (B, 192), about 220k parameters.

    Blocks of 3x3 conv-BN-ReLU with widths 24, 48, 96, 192 and strides 1, 2, 2, 2, then global
    average pooling, so any H, W >= 8 works (a 32 px input ends at 4x4 before pooling).
    """
    widths = (in_channels, *SMALL_CNN_WIDTHS)
    blocks = [
        _conv_bn_relu(widths[i], widths[i + 1], stride=1 if i == 0 else 2)
        for i in range(len(SMALL_CNN_WIDTHS))
    ]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten()), SMALL_CNN_WIDTHS[-1]


def mlp_backbone(input_dim: int, hidden_dims: list[int]) -> tuple[nn.Sequential, int]:
    """Linear-BN-ReLU blocks for tables: (B, input_dim) -> (B, hidden_dims[-1])."""
    if not hidden_dims or any(dim < 1 for dim in hidden_dims):
        raise DebiasclError(
            f"setting 'model.mlp_hidden_dims' = {hidden_dims!r}: expected a non-empty list of "
            "positive layer widths, e.g. [256, 256]"
        )
    dims = [input_dim, *hidden_dims]
    layers: list[nn.Module] = []
    for in_dim, out_dim in itertools.pairwise(dims):
        layers += [nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers), dims[-1]


def resnet(name: str, in_channels: int = 3, cifar_stem: bool = False) -> tuple[nn.Module, int]:
    """A randomly initialised torchvision ResNet whose output is the pooled feature, (B, F).

    Args:
        name: "resnet18" (F = 512) or "resnet50" (F = 2048).
        in_channels: input channels; the stem conv is rebuilt when it is not 3.
        cifar_stem: 3x3 stride-1 stem conv and no max-pool (for 32-96 px inputs).
    """
    import torchvision.models  # here: torchvision's import costs about as much as torch's

    model = getattr(torchvision.models, name)(weights=None)
    if cifar_stem:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    feature_dim = model.fc.in_features
    model.fc = nn.Identity()
    return model, feature_dim


def _resnet_backbone(name: str, config: ModelConfig, channels: int) -> tuple[nn.Module, int]:
    return resnet(name, channels, config.cifar_stem)


for _name in RESNETS:
    register_backbone(_name, "image")(partial(_resnet_backbone, _name))


@register_backbone("small_cnn", "image")
def _small_cnn_backbone(config: ModelConfig, channels: int) -> tuple[nn.Module, int]:
    return small_cnn(channels)


@register_backbone("mlp", "table")
def _mlp_backbone(config: ModelConfig, features: int) -> tuple[nn.Module, int]:
    return mlp_backbone(features, config.mlp_hidden_dims)


def _imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``name`` (downloads them on first use)."""
    import torchvision.models

    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return weights.get_state_dict(progress=False)
    except Exception as error:  # network, disk or hash failures all end here
        raise DebiasclError(
            f"setting 'model.pretrained' = 'imagenet': could not fetch torchvision's {weights} "
            f"({type(error).__name__}: {error}); download it where there is network access, "
            "or give model.pretrained the path of a saved state dict"
        ) from None


def _file_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save`` at ``path``."""
    if not Path(path).is_file():
        raise DebiasclError(
            f"setting 'model.pretrained' = {path!r}: no such file; expected 'imagenet' or the "
            "path of a backbone state dict saved with torch.save"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise DebiasclError(
            f"setting 'model.pretrained': '{path}' is not a readable torch state dict "
            f"({type(error).__name__}: {error})"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise DebiasclError(
            f"setting 'model.pretrained': '{path}' holds a {type(state).__name__}, expected a "
            "state dict (a mapping of parameter names to tensors)"
        )
    return dict(state)


def load_pretrained(backbone: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``backbone`` strictly, ignoring a classifier ``fc.*`` it may hold.

    Raises:
        DebiasclError: naming missing, unexpected or mis-shaped keys.
    """
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    problems = [
        f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape", mismatched),
        )
        if keys
    ]
    if problems:
        raise DebiasclError(
            f"setting 'model.pretrained': the weights from {source} do not fit this backbone ("
            + "; ".join(problems)
            + "); check model.backbone and model.cifar_stem"
        )
    backbone.load_state_dict(state)


def _check_kind(config: ModelConfig, dataset: DatasetInfo) -> None:
    """Reject an unknown backbone, or one that does not fit the data kind and input rank."""
    expected = BACKBONES.info(config.backbone)["kind"]
    rank = 3 if expected == "image" else 1
    if dataset.kind != expected or len(dataset.input_shape) != rank:
        fitting = [name for name in BACKBONES if BACKBONES.info(name)["kind"] != expected]
        raise DebiasclError(
            f"setting 'model.backbone' = {config.backbone!r} needs {expected} data, but dataset "
            f"'{dataset.name}' is of kind '{dataset.kind}' with input shape "
            f"{tuple(dataset.input_shape)}; use model.backbone={' or '.join(fitting)}"
        )


def build_backbone(config: ModelConfig, dataset: DatasetInfo) -> tuple[nn.Module, int]:
    """The backbone named by ``config.backbone`` for ``dataset``'s inputs, and its feature dim F.

    Raises:
        DebiasclError: a backbone that does not fit the data kind, or pretrained weights that
            are missing, unreachable or do not fit.
    """
    _check_kind(config, dataset)
    channels_or_features = dataset.input_shape[0]
    imagenet = config.pretrained == "imagenet"
    if imagenet and (
        config.backbone not in RESNETS or config.cifar_stem or channels_or_features != 3
    ):
        raise DebiasclError(
            "setting 'model.pretrained' = 'imagenet' needs a resnet18/resnet50 backbone with "
            "the standard stem (model.cifar_stem=false) on 3-channel images; got "
            f"model.backbone={config.backbone}, model.cifar_stem={config.cifar_stem}, "
            f"{channels_or_features} channels"
        )
    backbone, feature_dim = BACKBONES.lookup(config.backbone)(config, channels_or_features)
    if imagenet:
        load_pretrained(backbone, _imagenet_state_dict(config.backbone), "torchvision (ImageNet)")
    elif config.pretrained:
        load_pretrained(backbone, _file_state_dict(config.pretrained), f"'{config.pretrained}'")
    return backbone, feature_dim


def _projection_head(
    config: ModelConfig, feature_dim: int, batch_norm: bool, first_bias: bool
) -> nn.Sequential:
    """Linear(F, H) -> [BN] -> ReLU -> Linear(H, P), H = ``model.head_hidden_dim``."""
    hidden_dim = config.head_hidden_dim
    norm: list[nn.Module] = [nn.BatchNorm1d(hidden_dim)] if batch_norm else []
    return nn.Sequential(
        nn.Linear(feature_dim, hidden_dim, bias=first_bias),
        *norm,
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, config.proj_dim),
    )


for _name, _batch_norm, _first_bias in (
    ("cifar", True, False),
    ("biased", False, True),
    ("mlp", True, True),
):
    HEADS.add(_name, partial(_projection_head, batch_norm=_batch_norm, first_bias=_first_bias))


def build_head(config: ModelConfig, feature_dim: int) -> nn.Module:
    """The projection head ``config.head``: (B, F) -> (B, config.proj_dim) (see module doc)."""
    builder = HEADS.lookup(config.head)
    if config.head_hidden_dim < 1:
        raise DebiasclError(
            f"setting 'model.head_hidden_dim' = {config.head_hidden_dim!r}: expected >= 1"
        )
    return builder(config, feature_dim)


def build_encoder(config: ModelConfig, dataset: DatasetInfo) -> Encoder:
    """Backbone + projection head for ``dataset`` as described by ``config``."""
    backbone, feature_dim = build_backbone(config, dataset)
    return Encoder(backbone, build_head(config, feature_dim), feature_dim)
