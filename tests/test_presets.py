"""The bundled presets (debiascl/configs/*.yaml) load, validate and hold SPEC section 5."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from debiascl.config import build_config, list_presets
from debiascl.data import DATASETS, list_datasets, synthetic, tabular
from debiascl.methods import METHODS
from debiascl.models import build_encoder

NO_PRESET = {"csv", "metadata-csv"}
"""Generic loaders of the user's own files: no paper settings to bundle."""
PRESETS = list_presets()
TABLES = [name for name in PRESETS if DATASETS[name].__module__ == tabular.__name__]
BUILTIN = [name for name in PRESETS if DATASETS[name].__module__ == synthetic.__name__]


def test_every_dataset_has_a_preset() -> None:
    """Every registered data set has a preset or is a generic loader, and nothing else has one."""
    assert set(list_datasets()) >= NO_PRESET
    assert set(PRESETS) == set(list_datasets()) - NO_PRESET
    assert {"cifar10", "celeba", "waterbirds", "imagenet100", "adult", "biased-digits"} <= set(
        PRESETS
    )


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_fits_its_data(name: str) -> None:
    config = build_config(preset=name)
    assert config.data.name == name
    assert config.method.name == "wcl"  # presets leave the method to the command line
    for method in METHODS:  # every registered method runs on every preset
        assert build_config(preset=name, overrides={"method.name": method}).method.name == method
    kind = "table" if name in TABLES else "image"
    shape = (14,) if kind == "table" else (3, 32, 32)
    data = SimpleNamespace(name=name, kind=kind, input_shape=shape, num_classes=2)
    encoder = build_encoder(config.model, data)  # raises if the backbone does not fit the kind
    assert encoder.head[-1].out_features == config.model.proj_dim


@pytest.mark.parametrize(
    ("name", "tau_plus", "epochs"),
    [("cifar10", 0.1, 500), ("cifar100", 0.05, 600), ("stl10", 0.1, 500)],
)
def test_cifar_column(name: str, tau_plus: float, epochs: int) -> None:
    c = build_config(preset=name)
    assert (c.method.temperature, c.method.tau_plus, c.method.beta) == (0.5, tau_plus, 1.0)
    assert (c.optim.name, c.optim.lr, c.optim.lr_b, c.optim.weight_decay) == (
        "adam",
        1e-3,
        1e-2,
        1e-6,
    )
    assert (c.optim.milestones, c.optim.gamma) == ([350], 0.1)
    assert (c.train.batch_size, c.train.epochs) == (256, epochs)
    assert (c.model.backbone, c.model.cifar_stem, c.model.head) == ("resnet50", True, "cifar")
    assert (c.model.head_hidden_dim, c.model.proj_dim) == (512, 128)
    assert (c.data.augmentation, c.data.image_size) == ("simclr", 32)


@pytest.mark.parametrize(
    ("name", "epochs", "jtt_epochs", "jtt_upweight"),
    [("waterbirds", 400, 60, 100), ("celeba", 20, 1, 50)],
)
def test_celeba_waterbirds_column(name: str, epochs: int, jtt_epochs: int, jtt_upweight: int):
    c = build_config(preset=name)
    assert (c.model.backbone, c.model.cifar_stem, c.model.head) == ("resnet18", False, "biased")
    assert (c.model.head_hidden_dim, c.model.proj_dim) == (512, 256)
    assert (c.optim.name, c.optim.momentum, c.optim.weight_decay, c.optim.lr) == (
        "sgd",
        0.9,
        1e-4,
        1e-3,
    )
    assert (c.method.temperature, c.method.tau_plus) == (0.5, 0.1)
    assert (c.train.batch_size, c.train.epochs) == (256, epochs)
    assert (c.data.augmentation, c.data.image_size) == ("crop_flip", 224)
    assert (c.method.jtt_epochs, c.method.jtt_upweight) == (jtt_epochs, jtt_upweight)
    assert c.model.pretrained is None  # ImageNet weights only when the user asks


def test_imagenet100() -> None:
    c = build_config(preset="imagenet100")
    assert (c.method.temperature, c.method.tau_plus, c.train.epochs) == (0.07, 0.01, 500)


@pytest.mark.parametrize("name", TABLES)
def test_tabular_column(name: str) -> None:
    c = build_config(preset=name)
    assert (c.model.backbone, c.model.head, c.optim.name) == ("mlp", "mlp", "adam")
    assert (c.method.temperature, c.method.tau_plus, c.train.batch_size) == (0.5, 0.1, 256)
    assert c.data.augmentation in ("scarf", "gaussian_noise")


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_benchmarks_are_cpu_sized(name: str) -> None:
    c = build_config(preset=name)
    assert c.model.backbone == "small_cnn"
    assert c.train.epochs <= 60
    assert c.data.augmentation == "crop_flip"


def test_command_line_overrides_a_preset() -> None:
    c = build_config(preset="cifar10", overrides={"train.epochs": 3}, sets=["tau_plus=0.2"])
    assert (c.train.epochs, c.method.tau_plus, c.optim.lr_b) == (3, 0.2, 1e-2)
