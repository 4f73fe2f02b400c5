"""The bundled presets (debiascl/configs/*.yaml) load, validate, and hold the authors' values
(image presets: their code, row by row) or SPEC section 5 (tabular presets)."""

from __future__ import annotations

from dataclasses import fields
from types import ModuleType, SimpleNamespace

import pytest
import torch
import torchvision.models._api as torchvision_weights_api

from debiascl.config import build_config, list_presets
from debiascl.data import DATASETS, list_datasets, synthetic, tabular
from debiascl.errors import DebiasclError
from debiascl.methods import METHODS, build_method
from debiascl.models import build_encoder

NO_PRESET = {"csv", "metadata-csv"}
"""Generic loaders of the user's own files: no paper settings to bundle."""
PRESETS = list_presets()


def _built_in(package: ModuleType) -> list[str]:
    """The presets whose data set a module of ``package`` registers."""
    prefix = package.__name__ + "."
    return [name for name in PRESETS if DATASETS[name].__module__.startswith(prefix)]


TABLES = _built_in(tabular)
BUILTIN = _built_in(synthetic)


def test_every_dataset_has_a_preset() -> None:
    """Every registered data set has a preset or is a generic loader, and nothing else has one."""
    assert set(list_datasets()) >= NO_PRESET
    assert set(PRESETS) == set(list_datasets()) - NO_PRESET
    assert {"cifar10", "celeba", "waterbirds", "imagenet100", "adult", "biased-digits"} <= set(
        PRESETS
    )


def _groups(method: str) -> dict[str, str]:
    """The setting a method that trains on groups needs (the oracle's: no run to read)."""
    return {"train.groups": "true"} if METHODS[method].trains_on_groups else {}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_fits_its_data(name: str, monkeypatch) -> None:
    """Every method builds on every preset, without network: ImageNet weights are switched off
    here (the presets' value is checked in AUTHORS, the offline error below)."""

    def must_not_download(*args, **kwargs):
        raise AssertionError("a preset test tried to download weights")

    monkeypatch.setattr(torchvision_weights_api, "load_state_dict_from_url", must_not_download)
    config = build_config(preset=name)
    assert config.data.name == name
    assert config.method.name == "wcl"  # presets leave the method to the command line
    for method in METHODS:  # every registered method runs on every preset
        overrides = {"method.name": method} | _groups(method)
        assert build_config(preset=name, overrides=overrides).method.name == method
    kind = "table" if name in TABLES else "image"
    shape = (14,) if kind == "table" else (3, 32, 32)
    data = SimpleNamespace(name=name, kind=kind, input_shape=shape, num_classes=2)
    offline = build_config(preset=name, overrides={"model.pretrained": "null"})
    encoder = build_encoder(offline.model, data)  # raises if the backbone does not fit the kind
    assert encoder.head[-1].out_features == config.model.proj_dim
    torch.manual_seed(0)
    for method in METHODS:
        overrides = {"method.name": method, "model.pretrained": "null"} | _groups(method)
        build_method(build_config(preset=name, overrides=overrides), data)


IMAGENET_WEIGHTS = ["celeba", "waterbirds", "imagenet100"]


@pytest.mark.parametrize("name", IMAGENET_WEIGHTS)
def test_imagenet_weights_offline_are_one_clear_error(name: str, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision_weights_api, "load_state_dict_from_url", offline)
    config = build_config(preset=name)
    assert config.model.pretrained == "imagenet"
    data = SimpleNamespace(name=name, kind="image", input_shape=(3, 32, 32), num_classes=2)
    with pytest.raises(DebiasclError) as error:
        build_method(config, data)
    message = str(error.value)
    assert message.startswith(
        "setting 'model.pretrained' = 'imagenet': could not fetch torchvision's "
    )
    assert "OSError: network unreachable" in message and "\n" not in message


ALL_METHODS_PRESETS = ["celeba", "waterbirds", "imagenet100", "cifar10", "cifar100", "stl10"]
EVERY_IMAGE_PRESET = {
    # setting: (the authors' value, where their code sets it)
    "optim.milestones": ([350], "main-wctr.py:451-452"),
    "optim.gamma": (0.1, "main-wctr.py:451-452"),
    "train.batch_size": (256, "main-wctr.py:376; train.sh:5, 27; train-Copy1.sh:5"),
    "method.triplet_debias": (True, "main-wctr.py:178, 212"),
    "method.beta": (1.0, "main-wctr.py:379 (HCL's; WCL ignores it, main-wctr.py:136-137)"),
    "method.weight_form": ("paper", "main-wctr.py:102"),
}
IMAGE_MODEL = {  # Image_Model: CelebA, Waterbirds, ImageNet-100 (main-wctr.py:401-411)
    "model.backbone": ("resnet18", "model.py:35"),
    "model.cifar_stem": (False, "model.py:35"),
    "model.pretrained": ("imagenet", "model.py:35"),
    "model.head": ("biased", "model.py:36-43"),
    "model.head_hidden_dim": (512, "model.py:36"),
    "model.proj_dim": (256, "model.py:39"),
    "optim.name": ("sgd", "main-wctr.py:444-446"),
    "optim.momentum": (0.9, "main-wctr.py:445-446"),
    "optim.weight_decay": (1e-4, "main-wctr.py:445-446"),
    "data.image_size": (224, "utils.py:274, 309, 324"),
    "eval.probe_batch_size": (256, "linear_binary.py:95; linear.py:108"),
}
CIFAR_MODEL = {  # Model: CIFAR-10/100, STL-10 (main-wctr.py:413-423)
    "model.backbone": ("resnet50", "model.py:13"),
    "model.cifar_stem": (True, "model.py:14-16"),
    "model.pretrained": (None, "model.py:13"),
    "model.head": ("cifar", "model.py:21-22"),
    "model.head_hidden_dim": (512, "model.py:21"),
    "model.proj_dim": (128, "main-wctr.py:372"),
    "optim.name": ("adam", "main-wctr.py:447-449"),
    "optim.weight_decay": (1e-6, "main-wctr.py:448-449"),
    "optim.lr": (1e-3, "main-wctr.py:382"),
    "method.temperature": (0.5, "main-wctr.py:373"),
    "data.augmentation": ("simclr", "utils.py:255-260"),
    "data.image_size": (32, "utils.py:256"),
    "eval.probe_lr": (1e-3, "linear.py:112"),
    "eval.probe_batch_size": (256, "linear.py:108"),
}
AUTHORS: dict[str, dict[str, tuple[object, str]]] = {
    "celeba": IMAGE_MODEL
    | {
        "data.augmentation": ("crop_flip", "utils.py:273-279"),
        "method.temperature": (0.5, "main-wctr.py:373 (train-Copy1.sh:5 keeps the default)"),
        "method.tau_plus": (0.3, "train-Copy1.sh:5, evaluated at train-Copy1.sh:9-10"),
        "optim.lr": (1e-3, "main-wctr.py:382"),
        "optim.lr_b": (1e-3, "train-Copy1.sh:5"),
        "train.epochs": (20, "train-Copy1.sh:5"),
        "eval.probe_epochs": (20, "train-Copy1.sh:9-10"),
        "eval.probe_lr": (1e-5, "train-Copy1.sh:9-10"),
    },
    "waterbirds": IMAGE_MODEL
    | {
        "data.augmentation": ("crop_flip", "utils.py:307-314"),
        "method.temperature": (0.5, "train.sh:5 (default, main-wctr.py:373)"),
        "method.tau_plus": (0.1, "train.sh:5"),
        "optim.lr": (1e-3, "main-wctr.py:382"),
        "optim.lr_b": (1e-3, "train.sh:5"),
        "train.epochs": (400, "train.sh:5"),
        "eval.probe_epochs": (150, "train.sh:13"),
        "eval.probe_lr": (1e-3, "linear_binary.py:99"),
    },
    "imagenet100": IMAGE_MODEL
    | {
        "data.augmentation": ("crop_flip_wide", "utils.py:323-328"),
        "method.temperature": (0.07, "train.sh:27"),
        "method.tau_plus": (0.01, "train.sh:27"),
        "optim.lr": (3e-2, "train.sh:27"),
        "optim.lr_b": (1e-2, "train.sh:27; train_linear.sh:1-2"),
        "train.epochs": (500, "train.sh:27"),
        "eval.probe_epochs": (150, "train_linear.sh:1-2"),
        "eval.probe_lr": (1e-3, "linear.py:112"),
    },
    "cifar10": CIFAR_MODEL
    | {
        "method.tau_plus": (0.1, "main-wctr.py:374"),
        "optim.lr_b": (1e-2, "main-wctr.py:381"),
        "train.epochs": (500, "main-wctr.py:377"),
        "eval.probe_epochs": (100, "linear.py:109"),
    },
    "cifar100": CIFAR_MODEL
    | {
        "method.tau_plus": (0.05, "train.sh:1"),
        "optim.lr_b": (1e-2, "main-wctr.py:381"),
        "train.epochs": (600, "train.sh:1"),
        "eval.probe_epochs": (100, "linear.py:109 (train.sh:2 sets none)"),
    },
    "stl10": CIFAR_MODEL
    | {
        "data.options.unlabeled": (True, "utils.py:949"),
        "method.tau_plus": (0.1, "train_linear_2.sh:1-2 (checkpoint name)"),
        "optim.lr_b": (1e-3, "train_linear_2.sh:1-2 (checkpoint name)"),
        "train.epochs": (500, "train_linear_2.sh:1-2 (checkpoint name)"),
        "eval.probe_epochs": (150, "train_linear_2.sh:1-2"),
    },
}
"""The authors' code (github.com/Taeuk-Jang/WCL at 11d804f): data set -> setting -> (value,
file:line). Every image preset must match its rows; README's table shows the same rows."""
AUTHORS_ROWS = [
    (name, key, *row)
    for name in ALL_METHODS_PRESETS
    for key, row in (EVERY_IMAGE_PRESET | AUTHORS[name]).items()
]


def setting(preset: str, key: str) -> object:
    """The value of a dotted key (``data.options.<name>`` included) in a run of ``preset``; a
    ``method.*`` key in a run of the first method that reads it (only the run's method reads
    its settings)."""
    section, name = key.split(".", 1)
    owners = [m for m, cls in METHODS.items() if name in {f.name for f in fields(cls.Options)}]
    overrides = {"method.name": owners[0]} if section == "method" else {}
    config = build_config(preset=preset, overrides=overrides)
    if name.startswith("options."):
        return config.data.options.get(name.removeprefix("options."))
    return getattr(getattr(config, section), name)


@pytest.mark.parametrize(
    ("name", "key", "value", "source"),
    AUTHORS_ROWS,
    ids=[f"{name}-{key}" for name, key, *_ in AUTHORS_ROWS],
)
def test_image_presets_hold_the_authors_values(name: str, key: str, value, source: str) -> None:
    assert source, "every row names the authors' file:line"
    found = setting(name, key)
    assert found == value, f"{name} {key} = {found!r}; the authors' code has {value!r} ({source})"


def test_the_authors_table_covers_every_image_preset() -> None:
    image_presets = {name for name in PRESETS if name not in TABLES and name not in BUILTIN}
    assert image_presets == set(ALL_METHODS_PRESETS) == set(AUTHORS)


@pytest.mark.parametrize(
    ("name", "jtt_epochs", "jtt_upweight"), [("waterbirds", 60, 100), ("celeba", 1, 50)]
)
def test_jtt_settings_of_the_jtt_paper(name: str, jtt_epochs: int, jtt_upweight: int) -> None:
    c = build_config(preset=name, overrides={"method.name": "jtt"})
    assert (c.method.jtt_epochs, c.method.jtt_upweight) == (jtt_epochs, jtt_upweight)


@pytest.mark.parametrize("method", ["erm", "jtt"])
def test_supervised_methods_train_on_labelled_stl10_images(method: str) -> None:
    """STL-10's unlabelled images (the authors' pre-training set) are off for the supervised
    methods, whose loss needs a class for every sample."""
    config = build_config(preset="stl10", overrides={"method.name": method})
    assert config.data.options["unlabeled"] is False


@pytest.mark.parametrize("name", ["celeba", "waterbirds"])
@pytest.mark.parametrize("method", ["erm", "jtt"])
def test_supervised_references_keep_no_schedule(name: str, method: str) -> None:
    """The JTT-paper references have no step schedule, whatever the contrastive runs use."""
    config = build_config(preset=name, overrides={"method.name": method})
    assert config.optim.milestones == []


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
