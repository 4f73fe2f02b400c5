"""Backbones, heads and encoders of debiascl.models."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torchvision.models._api as torchvision_weights_api
from torch import nn

from debiascl.config import ModelConfig
from debiascl.errors import DebiasclError
from debiascl.models import Encoder, build_backbone, build_encoder, build_head


def image_data(channels: int = 3, size: int = 32) -> SimpleNamespace:
    """The dataset attributes models read, for an image data set."""
    return SimpleNamespace(
        name="images", kind="image", input_shape=(channels, size, size), num_classes=10
    )


def table_data(features: int = 12) -> SimpleNamespace:
    return SimpleNamespace(name="table", kind="table", input_shape=(features,), num_classes=2)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("size", [16, 28, 32])
def test_small_cnn_shapes_and_size(size: int) -> None:
    encoder = build_encoder(ModelConfig(backbone="small_cnn", proj_dim=64), image_data(size=size))
    x = torch.rand(4, 3, size, size)
    assert encoder(x).shape == (4, 64)
    assert encoder.representation(x).shape == (4, 192)
    assert encoder.feature_dim == 192
    assert 100_000 <= n_params(encoder.backbone) <= 300_000


@pytest.mark.parametrize(("name", "feature_dim"), [("resnet18", 512), ("resnet50", 2048)])
def test_resnet_cifar_stem(name: str, feature_dim: int) -> None:
    backbone, dim = build_backbone(ModelConfig(backbone=name, cifar_stem=True), image_data())
    assert dim == feature_dim
    assert backbone.conv1.kernel_size == (3, 3)
    assert backbone.conv1.stride == (1, 1)
    assert isinstance(backbone.maxpool, nn.Identity)
    assert isinstance(backbone.fc, nn.Identity)
    expected = {"resnet18": 11.17e6, "resnet50": 23.50e6}[name]
    assert abs(n_params(backbone) - expected) / expected < 0.01
    backbone.eval()
    with torch.no_grad():
        assert backbone(torch.rand(2, 3, 32, 32)).shape == (2, feature_dim)


def test_resnet_standard_stem_and_channels() -> None:
    backbone, _ = build_backbone(ModelConfig(backbone="resnet18"), image_data(size=64))
    assert backbone.conv1.kernel_size == (7, 7)
    assert backbone.conv1.stride == (2, 2)
    assert isinstance(backbone.maxpool, nn.MaxPool2d)
    gray, _ = build_backbone(ModelConfig(backbone="resnet18"), image_data(channels=1, size=64))
    assert gray.conv1.in_channels == 1
    gray.eval()
    with torch.no_grad():
        assert gray(torch.rand(2, 1, 64, 64)).shape == (2, 512)


def test_mlp_backbone_blocks_and_shapes() -> None:
    config = ModelConfig(backbone="mlp", mlp_hidden_dims=[32, 16], head_hidden_dim=24, proj_dim=8)
    encoder = build_encoder(config, table_data(12))
    kinds = [type(m) for m in encoder.backbone]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2
    assert encoder.backbone[0].in_features == 12
    x = torch.randn(5, 12)
    assert encoder.representation(x).shape == (5, 16)
    assert encoder(x).shape == (5, 8)


def test_mlp_needs_hidden_dims() -> None:
    with pytest.raises(DebiasclError, match=r"model\.mlp_hidden_dims"):
        build_encoder(ModelConfig(backbone="mlp", mlp_hidden_dims=[]), table_data())


@pytest.mark.parametrize(
    ("head", "first_bias", "has_bn"),
    [("cifar", False, True), ("biased", True, False), ("mlp", True, True)],
)
def test_heads(head: str, first_bias: bool, has_bn: bool) -> None:
    config = ModelConfig(head=head, head_hidden_dim=512, proj_dim=256)
    module = build_head(config, 2048)
    linears = [m for m in module if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 512), (512, 256)]
    assert (linears[0].bias is not None) == first_bias
    assert linears[1].bias is not None
    assert any(isinstance(m, nn.BatchNorm1d) for m in module) == has_bn
    assert isinstance(module[-2], nn.ReLU)
    assert module(torch.randn(3, 2048)).shape == (3, 256)


def test_encoder_composes_backbone_and_head() -> None:
    encoder = Encoder(nn.Linear(4, 3), nn.Linear(3, 2), feature_dim=3)
    x = torch.randn(6, 4)
    torch.testing.assert_close(encoder(x), encoder.head(encoder.backbone(x)))
    torch.testing.assert_close(encoder.representation(x), encoder.backbone(x))


@pytest.mark.parametrize("backbone", ["resnet18", "small_cnn"])
def test_image_backbone_on_table_is_a_clear_error(backbone: str) -> None:
    with pytest.raises(DebiasclError, match=r"model.backbone.*'table'"):
        build_encoder(ModelConfig(backbone=backbone), table_data())


def test_unknown_backbone() -> None:
    with pytest.raises(DebiasclError, match=r"model\.backbone.*expected one of"):
        build_encoder(ModelConfig(backbone="vit"), image_data())


def test_mlp_on_images_is_a_clear_error() -> None:
    with pytest.raises(DebiasclError, match=r"model.backbone.*'image'"):
        build_encoder(ModelConfig(backbone="mlp"), image_data())


def test_pretrained_state_dict_file_is_loaded(tmp_path) -> None:
    source, _ = build_backbone(ModelConfig(backbone="resnet18"), image_data())
    state = source.state_dict()
    # A full ImageNet-style state dict also holds the classifier; it is ignored.
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    loaded, _ = build_backbone(ModelConfig(backbone="resnet18", pretrained=str(path)), image_data())
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    fresh, _ = build_backbone(ModelConfig(backbone="resnet18"), image_data())
    assert not torch.equal(fresh.conv1.weight, source.conv1.weight)


def test_pretrained_missing_file(tmp_path) -> None:
    config = ModelConfig(backbone="small_cnn", pretrained=str(tmp_path / "nope.pt"))
    with pytest.raises(DebiasclError, match=r"model.pretrained.*no such file"):
        build_backbone(config, image_data())


def test_pretrained_mismatched_weights(tmp_path) -> None:
    cifar, _ = build_backbone(ModelConfig(backbone="resnet18", cifar_stem=True), image_data())
    path = tmp_path / "cifar_stem.pt"
    torch.save(cifar.state_dict(), path)
    config = ModelConfig(backbone="resnet18", pretrained=str(path))
    with pytest.raises(DebiasclError, match=r"do not fit.*conv1.weight"):
        build_backbone(config, image_data())


def test_pretrained_file_that_is_not_a_state_dict(tmp_path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(DebiasclError, match="state dict"):
        build_backbone(ModelConfig(backbone="small_cnn", pretrained=str(path)), image_data())


def test_imagenet_weights_come_from_torchvision(monkeypatch) -> None:
    reference, _ = build_backbone(ModelConfig(backbone="resnet18"), image_data(size=64))
    urls = []

    def fake_download(url: str, *args, **kwargs) -> dict[str, torch.Tensor]:
        urls.append(url)
        return {**reference.state_dict(), "fc.weight": torch.zeros(1000, 512)}

    monkeypatch.setattr(torchvision_weights_api, "load_state_dict_from_url", fake_download)
    config = ModelConfig(backbone="resnet18", pretrained="imagenet")
    loaded, _ = build_backbone(config, image_data(size=64))
    assert len(urls) == 1 and "resnet18" in urls[0]
    torch.testing.assert_close(loaded.conv1.weight, reference.conv1.weight)


def test_imagenet_download_failure_is_a_clear_error(monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision_weights_api, "load_state_dict_from_url", offline)
    with pytest.raises(DebiasclError, match=r"model.pretrained.*could not fetch"):
        build_backbone(ModelConfig(backbone="resnet18", pretrained="imagenet"), image_data())


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(backbone="resnet18", cifar_stem=True, pretrained="imagenet"),
        ModelConfig(backbone="small_cnn", pretrained="imagenet"),
    ],
)
def test_imagenet_needs_a_standard_resnet(config: ModelConfig, monkeypatch) -> None:
    def must_not_download(*args, **kwargs):
        raise AssertionError("downloaded although the setting is invalid")

    monkeypatch.setattr(torchvision_weights_api, "load_state_dict_from_url", must_not_download)
    with pytest.raises(DebiasclError, match=r"model\.pretrained"):
        build_backbone(config, image_data())
