"""Typed config: layering, coercion, per-method preset blocks and validation messages."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from fakes import BUILT_IN_METHODS

from debiascl.config import Config, build_config, list_presets, load_config
from debiascl.errors import DebiasclError
from debiascl.registry import AUGMENTATIONS, BACKBONES, HEADS, METHODS


def test_defaults_validate_and_round_trip(tmp_path):
    config = build_config()
    path = tmp_path / "config.yaml"
    config.save(path)
    assert load_config(path) == config


def test_layers_override_in_order(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text(yaml.safe_dump({"method": {"tau_plus": 0.2}, "train": {"epochs": 7}}))
    config = build_config(
        preset="cifar10",
        config_file=user,
        overrides={"train.epochs": 3, "train.batch_size": None},
        sets=["method.tau_plus=0.3"],
    )
    assert config.method.tau_plus == 0.3  # set > file > preset
    assert config.train.epochs == 3  # explicit override > file
    assert config.train.batch_size == 256  # None override leaves the preset's value


def test_sets_coerce_types_and_accept_bare_keys():
    config = build_config(
        sets=["tau_plus=0.25", "train.epochs=4", "optim.milestones=[2,3]", "channels_last=true"]
    )
    assert config.method.tau_plus == 0.25
    assert config.train.epochs == 4 and isinstance(config.train.epochs, int)
    assert config.optim.milestones == [2, 3]
    assert config.train.channels_last is True


def test_data_options_are_free_form():
    config = build_config(sets=["data.options.rho=0.9", "data.options.bias_attr=Male"])
    assert config.data.options == {"rho": 0.9, "bias_attr": "Male"}


def test_method_block_applies_to_its_method_only(tmp_path):
    path = tmp_path / "preset.yaml"
    path.write_text(
        yaml.safe_dump({"optim": {"lr": 1e-3}, "methods": {"jtt": {"optim": {"lr": 1e-5}}}})
    )
    assert build_config(config_file=path, sets=["method.name=jtt"]).optim.lr == 1e-5
    assert build_config(config_file=path, sets=["method.name=wcl"]).optim.lr == 1e-3
    explicit = build_config(config_file=path, sets=["method.name=jtt", "optim.lr=0.1"])
    assert explicit.optim.lr == 0.1


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["tau_plus=1.5"], "method.tau_plus"),
        (["method.temperature=0"], "method.temperature"),
        (["train.epochs=2.5"], "expected an integer"),
        (["train.epochs=abc"], "expected an integer"),
        (["nonsense=1"], "unknown setting 'nonsense'"),
        (["model.nonsense=1"], "unknown setting 'model.nonsense'"),
        (["method.name=byol"], "method.name"),
        (["train.precision=fp8"], "train.precision"),
        (["train.device=tpu"], "train.device"),
        (["tau_plus"], "key=value"),
        (["channels_last=maybe"], "true or false"),
    ],
)
def test_bad_settings_name_the_key(sets, message):
    with pytest.raises(DebiasclError, match=re.escape(message)):
        build_config(sets=sets)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(DebiasclError, match="does not exist"):
        build_config(config_file=tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("method: [unclosed")
    with pytest.raises(DebiasclError, match=r"broken\.yaml"):
        build_config(config_file=broken)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"optimizer": {"lr": 1}}))
    with pytest.raises(DebiasclError, match="unknown section 'optimizer'"):
        build_config(config_file=wrong)
    with pytest.raises(DebiasclError, match="unknown preset"):
        build_config(preset="no-such-preset")


def test_presets_are_listed():
    assert "cifar10" in list_presets()
    data = Config().to_dict()  # plain nested mappings, the shape config.yaml is written in
    assert data["method"]["name"] == Config().method.name
    assert yaml.safe_load(yaml.safe_dump(data)) == data


@pytest.mark.parametrize("text", ["just a string\n", "- train\n- method\n", "42\n"])
def test_a_file_whose_top_level_is_not_a_mapping_is_named(tmp_path, text):
    path = tmp_path / "flat.yaml"
    path.write_text(text)
    with pytest.raises(DebiasclError, match=r"flat\.yaml': expected a mapping of sections") as e:
        build_config(config_file=path)
    assert "\n" not in str(e.value)


def test_an_empty_file_changes_nothing(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert build_config(config_file=path) == build_config()


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DebiasclError, match=r"binary\.yaml' is not UTF-8 text"):
        build_config(config_file=path)


def test_an_unreadable_file_is_named(tmp_path, monkeypatch):
    path = tmp_path / "secret.yaml"
    path.write_text("train: {epochs: 2}\n")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(DebiasclError, match=r"secret\.yaml' cannot be read: Permission denied"):
        build_config(config_file=path)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("method.temperature", "a finite number > 0"),
        ("method.beta", "a finite number >= 0"),
        ("method.tau_plus", "a finite number in [0, 1)"),
        ("optim.lr", "a finite number > 0"),
        ("optim.lr_b", "a finite number > 0"),
        ("optim.weight_decay", "a finite number >= 0"),
        ("data.noise_std", "a finite number >= 0"),
        ("eval.probe_lr", "a finite number > 0"),
    ],
)
@pytest.mark.parametrize("value", ["inf", ".inf", "nan"])
def test_non_finite_floats_are_rejected_with_the_range(key, expected, value):
    with pytest.raises(DebiasclError, match=re.escape(f"setting '{key}' = ")) as error:
        build_config(sets=["method.name=hcl", f"{key}={value}"])  # hcl has every method.* here
    assert f"out of range: expected {expected}" in str(error.value)


def test_channels_last_defaults_to_auto_and_round_trips(tmp_path):
    config = build_config()
    assert config.train.channels_last is None
    path = tmp_path / "config.yaml"
    config.save(path)
    assert yaml.safe_load(path.read_text())["train"]["channels_last"] is None
    assert load_config(path).train.channels_last is None
    assert build_config(sets=["train.channels_last=null"]).train.channels_last is None
    assert build_config(sets=["train.channels_last=false"]).train.channels_last is False


LEGACY_METHOD_SECTION = {
    "name": "erm",
    "temperature": 0.5,
    "tau_plus": 0.01,
    "beta": 2.0,
    "detach_weights": False,
    "triplet_debias": True,
    "jtt_epochs": 3,
    "jtt_upweight": 50,
}
"""A method section of the first versions, which wrote every method's settings in every
config.yaml (later ones added weight_form, gce_q, gdro_eta and gdro_adjustment)."""


def test_config_yaml_holds_the_chosen_methods_options_and_old_files_load(tmp_path):
    assert Config().to_dict()["method"] == {"name": "wcl"} | asdict(METHODS["wcl"].Options())
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"method": LEGACY_METHOD_SECTION}))
    config = load_config(path)
    assert config.to_dict()["method"] == {"name": "erm", "temperature": 0.5}
    path.write_text(yaml.safe_dump({"method": LEGACY_METHOD_SECTION | {"name": "jtt"}}))
    assert load_config(path).to_dict()["method"] == {
        "name": "jtt",
        "temperature": 0.5,
        "jtt_epochs": 3,
        "jtt_upweight": 50,
    }


def test_only_the_chosen_method_reads_and_checks_its_settings():
    wcl = build_config(sets=["method.beta=-1", "method.gce_q=5"])  # hcl's and gce's settings
    assert "beta" not in wcl.to_dict()["method"] and wcl.method.tau_plus == 0.1
    with pytest.raises(AttributeError, match="method 'wcl' has no setting 'beta'"):
        _ = wcl.method.beta
    with pytest.raises(DebiasclError, match=r"setting 'method\.beta' = -1\.0 is out of range"):
        build_config(sets=["method.name=hcl", "method.beta=-1"])
    with pytest.raises(DebiasclError, match="expected a number"):  # a type is checked at once
        build_config(sets=["method.beta=abc"])


def test_an_unknown_method_key_names_the_key_the_method_and_its_keys():
    with pytest.raises(DebiasclError) as error:
        build_config(sets=["method.name=dcl", "method.margin=1"])
    message = str(error.value)
    assert "unknown setting 'method.margin'" in message
    assert "method 'dcl' accepts name, temperature, tau_plus" in message
    assert "other methods: beta" in message


def test_choices_are_the_registries():
    assert set(METHODS) == BUILT_IN_METHODS
    with pytest.raises(DebiasclError, match="expected one of resnet18, resnet50, mlp, small_cnn"):
        build_config(sets=["model.backbone=vgg"])
    assert {"cifar", "biased", "mlp"} == set(HEADS)
    assert "scarf" in AUGMENTATIONS and "resnet50" in BACKBONES


def test_wcl_weight_form_is_a_checked_method_setting(tmp_path):
    assert build_config().method.weight_form == "paper"
    for form in ("paper", "mirror", "none"):
        config = build_config(sets=[f"method.weight_form={form}"])
        assert config.method.weight_form == form
        config.save(tmp_path / "config.yaml")
        assert load_config(tmp_path / "config.yaml").method.weight_form == form
    assert build_config(sets=["weight_form=none"]).method.weight_form == "none"  # bare key
    with pytest.raises(DebiasclError) as error:
        build_config(sets=["method.weight_form=inverse"])
    assert str(error.value) == (
        "setting 'method.weight_form' = 'inverse': expected one of paper, mirror, none"
    )
