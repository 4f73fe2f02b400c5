"""The registries of backbones, heads and augmentations hold builders: a registered name is
built by its own builder, and a declared name without one is an error, never a silent MLP or
un-augmented views."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from fakes import restore_registries
from test_views import ImageSet, TableSet
from torch import nn

from debiascl.config import ModelConfig, build_config
from debiascl.data.views import ViewPipeline, ViewSettings, build_views, register_augmentation
from debiascl.errors import DebiasclError
from debiascl.models import build_backbone, build_encoder, build_head, register_backbone
from debiascl.registry import AUGMENTATIONS, BACKBONES, HEADS

IMAGES = SimpleNamespace(name="toy", kind="image", input_shape=(3, 8, 8), num_classes=2)


@pytest.fixture(autouse=True)
def registries_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names registered or declared by a test are forgotten after it."""
    restore_registries(monkeypatch, BACKBONES, HEADS, AUGMENTATIONS)


def test_a_registered_backbone_and_head_are_built_by_their_builders() -> None:
    @register_backbone("pool_only", "image")
    def pool_only(config: ModelConfig, channels: int) -> tuple[nn.Module, int]:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), channels

    HEADS.add("linear", lambda config, features: nn.Linear(features, config.proj_dim))
    config = build_config(sets=["model.backbone=pool_only", "model.head=linear"])
    encoder = build_encoder(config.model, IMAGES)
    assert encoder.feature_dim == 3 and isinstance(encoder.head, nn.Linear)
    assert isinstance(encoder.backbone[0], nn.AdaptiveAvgPool2d)
    assert encoder(torch.rand(2, 3, 8, 8)).shape == (2, config.model.proj_dim)
    with pytest.raises(ValueError, match="kind must be 'image' or 'table'"):
        register_backbone("graph", "graph")


def test_a_declared_backbone_or_head_without_a_builder_is_an_error() -> None:
    BACKBONES.declare("ghost_net", "json", kind="image")  # json registers nothing
    HEADS.declare("ghost_head", "json")
    config = build_config(sets=["model.backbone=ghost_net"])
    with pytest.raises(LookupError, match=r"'ghost_net' is declared .* did not register it"):
        build_backbone(config.model, IMAGES)
    with pytest.raises(LookupError, match=r"'ghost_head' is declared .* did not register it"):
        build_head(build_config(sets=["model.head=ghost_head"]).model, 16)


def test_a_registered_augmentation_is_built_by_its_builder() -> None:
    class Flipped(ViewPipeline):
        def __init__(self, shape: tuple[int, ...]) -> None:
            super().__init__("flip", shape, shape)

        def augment(self, x: torch.Tensor) -> torch.Tensor:
            return x.flip(-1)

    seen: list[ViewSettings] = []

    @register_augmentation("flip", "image")
    def flip(dataset, settings: ViewSettings) -> ViewPipeline:
        seen.append(settings)
        return Flipped(tuple(dataset.input_shape))

    pipeline = build_views("flip", ImageSet(), image_size=12, noise_std=0.3)
    assert isinstance(pipeline, Flipped) and seen == [ViewSettings(12, 0.3, 0.6)]
    with pytest.raises(DebiasclError, match="'flip' is not for table data"):
        build_views("flip", TableSet())


def test_a_declared_augmentation_without_a_builder_is_an_error() -> None:
    AUGMENTATIONS.declare("ghost_views", "json", kinds=("image",))
    with pytest.raises(LookupError, match=r"'ghost_views' is declared .* did not register it"):
        build_views("ghost_views", ImageSet())
