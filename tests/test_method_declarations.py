"""What a method declares (debiascl.methods.base): its bias encoder and learning rates, its
classifier when supervised, its own analyses and option defaults; and that the declarations
are checked when it registers."""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import SimpleNamespace

import pytest
import torch

from debiascl.config import Config, build_config
from debiascl.methods import ERM, METHODS, Method, MethodOptions, SimCLR, register_method
from debiascl.methods.wcl import WCL
from debiascl.registry import named_object

TABLE = SimpleNamespace(name="toy", kind="table", input_shape=(6,), num_classes=3)


@pytest.fixture
def registry_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Methods registered by a test are forgotten after it."""
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS.items()))


def test_the_bias_encoder_is_declared_and_trains_at_lr_b() -> None:
    assert {name: cls.bias_encoder for name, cls in METHODS.items() if cls.bias_encoder} == {
        "triplet": "b",
        "wcl": "b",
    }
    config = Config()
    config.model.backbone, config.model.mlp_hidden_dims = "mlp", [4]
    config.optim.lr, config.optim.lr_b = 1e-3, 5e-2
    config.method.name = "wcl"
    wcl = WCL(config, TABLE)
    assert [(g["name"], g["lr"]) for g in wcl.param_groups(config.optim)] == [
        ("d", 1e-3),
        ("b", 5e-2),
    ]


def test_a_second_encoder_that_is_not_the_bias_encoder_trains_at_lr(registry_restored) -> None:
    @register_method
    class TwoViews(SimCLR):  # two product-like encoders, neither learns the bias
        name = "two_plain"
        encoder_keys = ("d", "e")

    config = Config()
    config.model.backbone, config.model.mlp_hidden_dims = "mlp", [4]
    config.optim.lr, config.optim.lr_b = 1e-3, 5e-2
    config.method.name = "two_plain"
    groups = TwoViews(config, TABLE).param_groups(config.optim)
    assert [(g["name"], g["lr"]) for g in groups] == [("d", 1e-3), ("e", 1e-3)]


def test_a_supervised_method_without_predict_is_refused(registry_restored) -> None:
    with pytest.raises(TypeError, match="'no_classifier' is supervised but defines no predict"):

        @register_method
        class NoClassifier(SimCLR):
            name = "no_classifier"
            supervised = True

    assert "no_classifier" not in METHODS
    assert all(cls.predict is not Method.predict for _, cls in METHODS.items() if cls.supervised)
    with pytest.raises(NotImplementedError, match="'simclr' has no classifier"):
        Method.predict(SimpleNamespace(name="simclr"), torch.zeros(1, 6))


def test_encoder_declarations_must_name_an_encoder(registry_restored) -> None:
    with pytest.raises(TypeError, match="bias_encoder 'b' is not one of its encoder_keys"):

        @register_method
        class Stray(SimCLR):
            name = "stray"
            bias_encoder = "b"


def test_only_wcl_declares_an_analysis_and_it_resolves() -> None:
    declared = {name: cls.analyses for name, cls in METHODS.items() if cls.analyses}
    assert declared == {"wcl": ("debiascl.report.weight_report:write_weight_report",)}
    assert callable(named_object(declared["wcl"][0]))
    with pytest.raises(LookupError, match="expected module:name"):
        named_object("debiascl.registry:no_such_thing")


def test_a_method_may_give_a_shared_setting_its_own_default(registry_restored) -> None:
    before = build_config(sets=["method.name=hcl"]).to_dict()

    @register_method
    class Warm(SimCLR):
        name = "warm"

        @dataclass
        class Options(MethodOptions):
            temperature: float = 0.2

    assert build_config(sets=["method.name=warm"]).method.temperature == 0.2
    assert build_config(sets=["method.name=simclr"]).method.temperature == 0.5
    given = build_config(sets=["method.name=warm", "method.temperature=0.3"])
    assert given.method.temperature == 0.3
    # Another method's run writes the same config.yaml whether or not the plugin is loaded.
    assert build_config(sets=["method.name=hcl"]).to_dict() == before
    assert before["method"] == {"name": "hcl"} | {
        option.name: option.default for option in fields(METHODS["hcl"].Options)
    }


def test_erm_keeps_its_classifier() -> None:
    config = Config()
    config.model.backbone, config.model.mlp_hidden_dims = "mlp", [4]
    config.method.name = "erm"
    assert ERM(config, TABLE).predict(torch.zeros(2, 6)).shape == (2, 3)
