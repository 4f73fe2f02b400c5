"""Tests of hyper-parameter grids and the selection rule (debiascl.grid)."""

from __future__ import annotations

import math

import pytest

from debiascl.errors import DebiasclError
from debiascl.grid import GridAxis, method_grid, parse_grid, point_name, point_sets, select_point


def test_parse_grid_reads_values_as_yaml_and_an_optional_method() -> None:
    assert parse_grid("method.tau_plus=0.05, 0.1") == GridAxis("method.tau_plus", (0.05, 0.1))
    assert parse_grid("wcl:optim.lr=1e-3,0.01") == GridAxis("optim.lr", ("1e-3", 0.01), ("wcl",))
    assert parse_grid(" dcl, wcl :method.t=1").methods == ("dcl", "wcl")
    assert parse_grid("data.augmentation=simclr,none").values == ("simclr", "none")


@pytest.mark.parametrize(
    "text", ["method.tau_plus", "=0.1", "method.t=", "method.t=0.1,,0.2", ":method.t=1", "a,:t=1"]
)
def test_malformed_grid_is_a_clear_error(text: str) -> None:
    with pytest.raises(DebiasclError, match=r"grid: expected \[METHOD,...:\]KEY=V1,V2"):
        parse_grid(text)


def test_repeated_value_or_method_is_refused() -> None:
    with pytest.raises(DebiasclError, match="gives a value twice"):
        parse_grid("method.t=0.5,0.5")
    with pytest.raises(DebiasclError, match="names a method twice"):
        parse_grid("dcl,dcl:method.t=0.5")


def test_method_grid_is_the_product_of_the_axes_that_apply() -> None:
    axes = [
        parse_grid("method.tau_plus=0.05,0.1"),
        parse_grid("method.beta=0.5,1"),
        parse_grid("hcl:optim.lr=0.01,0.1"),
        parse_grid("simclr,dcl:data.augmentation=simclr,none"),
    ]
    both = {"optim.lr", "data.augmentation"}
    settings = {"simclr": both, "dcl": both | {"method.tau_plus"}}
    settings["hcl"] = settings["dcl"] | {"method.beta"}
    assert method_grid("simclr", axes, settings["simclr"].__contains__) == [
        (("data.augmentation", "simclr"),),
        (("data.augmentation", "none"),),
    ]
    assert method_grid("dcl", axes, settings["dcl"].__contains__) == [
        (("method.tau_plus", 0.05), ("data.augmentation", "simclr")),
        (("method.tau_plus", 0.05), ("data.augmentation", "none")),
        (("method.tau_plus", 0.1), ("data.augmentation", "simclr")),
        (("method.tau_plus", 0.1), ("data.augmentation", "none")),
    ]
    hcl = method_grid("hcl", axes, settings["hcl"].__contains__)
    assert len(hcl) == 8
    assert hcl[0] == (("method.tau_plus", 0.05), ("method.beta", 0.5), ("optim.lr", 0.01))
    assert hcl[-1] == (("method.tau_plus", 0.1), ("method.beta", 1), ("optim.lr", 0.1))
    assert len({point_name(point) for point in hcl}) == 8


def test_an_axis_for_one_method_must_name_a_setting_it_has() -> None:
    with pytest.raises(DebiasclError, match=r"method 'simclr' has no setting 'method\.beta'"):
        method_grid("simclr", [parse_grid("simclr:method.beta=1,2")], {"optim.lr"}.__contains__)
    twice = [parse_grid("optim.lr=0.1,0.2"), parse_grid("wcl:optim.lr=0.3,0.4")]
    with pytest.raises(DebiasclError, match="two axes"):
        method_grid("wcl", twice, {"optim.lr"}.__contains__)


def test_point_names_and_settings() -> None:
    point = (("method.tau_plus", 0.1), ("data.root", "a/b"))
    assert point_name(()) == "default"
    assert point_name(point) == "method.tau_plus=0.1,data.root=a_b"
    assert point_sets(point) == ["method.tau_plus=0.1", "data.root=a/b"]


def test_select_point_picks_the_best_mean_and_the_first_of_ties() -> None:
    scores = {"a": [0.5, 0.7], "b": [0.9, 0.2], "c": [0.6, 0.8], "d": [0.7, 0.7]}
    assert select_point(scores) == "c"  # means 0.6, 0.55, 0.7, 0.7: c comes first
    assert select_point({"a": [math.nan, 0.9], "b": [0.1]}) == "b"
    with pytest.raises(DebiasclError, match="no grid point"):
        select_point({"a": []})
