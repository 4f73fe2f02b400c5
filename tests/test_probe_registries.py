"""The registries of probe protocols, probe group kinds and metrics: a registered name is used by
its own function, the CLI's and the config's choices are the registry's names, an unknown or
declared-but-unregistered name is one DebiasclError; and the one group-id encoding agrees
across the data sets, the discovery, the probes and the weights report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fakes import install_plugin, restore_registries

from debiascl.cli.options import probe_groups
from debiascl.config import build_config
from debiascl.data import build_dataset
from debiascl.discovery import SplitDiscovery
from debiascl.errors import DebiasclError
from debiascl.evaluate import (
    LinearProbe,
    ProbeData,
    ProbeSpec,
    fit_linear_probe,
    probe_groups_of,
    register_probe_groups,
    register_probe_protocol,
)
from debiascl.metrics import group_counts, group_ids, group_metrics
from debiascl.plugins import load_plugin
from debiascl.registry import METRICS, PROBE_GROUP_KINDS, PROBE_PROTOCOLS, needs_discovery
from debiascl.report.weights import group_cells

DIGITS = {"image_size": 8}


@pytest.fixture(autouse=True)
def registries_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names registered or declared by a test are forgotten after it."""
    restore_registries(monkeypatch, PROBE_PROTOCOLS, PROBE_GROUP_KINDS, METRICS)


def _separable(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    y = torch.arange(n) % 2
    return torch.randn(n, 4, generator=generator) + 3 * y[:, None], y


def test_a_registered_probe_protocol_fits_and_is_a_choice_of_eval_probe() -> None:
    seen: list[ProbeData] = []

    @register_probe_protocol("means", summary="nearest class mean (a toy)")
    def nearest_mean(data: ProbeData, spec: ProbeSpec) -> LinearProbe:
        seen.append(data)
        means = torch.stack([data.features[data.labels == c].mean(0) for c in range(2)])
        linear = torch.nn.Linear(data.features.shape[1], data.num_classes)
        with torch.no_grad():
            linear.weight.copy_(means)
            linear.bias.copy_(-0.5 * means.pow(2).sum(1))
        ones = torch.ones(1)
        return LinearProbe(linear, torch.zeros(data.features.shape[1]), ones, spec.protocol, 0.0)

    x, y = _separable()
    probe = fit_linear_probe(x, y, 2, ProbeSpec("means"), sample_weights=torch.ones(60))
    assert probe.protocol == "means" and torch.equal(probe.predict(x), y)
    assert seen[0].weights is not None and seen[0].val_features is None
    assert build_config(sets=["eval.probe=means"]).eval.probe == "means"
    with pytest.raises(
        DebiasclError, match=r"'eval.probe' = 'svm': expected one of fast, authors, means"
    ):
        build_config(sets=["eval.probe=svm"])


def test_the_built_in_protocols_are_unchanged_by_the_registry() -> None:
    x, y = _separable()
    fast = fit_linear_probe(x, y, 2, ProbeSpec("fast"), x, y)
    authors = fit_linear_probe(x, y, 2, ProbeSpec("authors", epochs=2))
    assert fast.weight_decay in (1e-5, 1e-4, 1e-3, 1e-2) and fast.protocol == "fast"
    assert authors.weight_decay == 1e-6 and torch.equal(authors.mean, torch.zeros(4))
    assert PROBE_PROTOCOLS.info("fast")["summary"].startswith("standardised features")


def test_declared_but_unregistered_names_are_one_user_error() -> None:
    PROBE_PROTOCOLS.declare("ghost", "json")  # json registers nothing
    PROBE_GROUP_KINDS.declare(
        "ghost_groups",
        "json",
        marker=None,
        summary="x",
        label="y",
        bias_labels=False,
        discovery=False,
        fitted_on="train",
    )
    x, y = _separable()
    with pytest.raises(DebiasclError, match=r"'ghost' is declared .* did not register it"):
        fit_linear_probe(x, y, 2, ProbeSpec("ghost"))
    with pytest.raises(DebiasclError, match=r"'ghost_groups' is declared .* did not register"):
        probe_groups_of("ghost_groups", None, {})
    with pytest.raises(
        DebiasclError,
        match=r"'probe_groups' = 'nosuch': expected one of "
        r"discovered, true, class, val",
    ):
        probe_groups_of("nosuch", None, {})


def test_a_registered_probe_group_kind_is_a_choice_with_its_info() -> None:
    @register_probe_groups("halves", summary="first vs second half", discovery=True)
    def halves(inputs):
        return {split: (index >= 2).long() for split, (*_, index) in inputs.features.items()}

    assert probe_groups("true,halves") == ("true", "halves")
    assert probe_groups("none") == ()
    info = PROBE_GROUP_KINDS.info("halves")
    assert info == {
        "summary": "first vs second half",
        "label": "halves groups",
        "bias_labels": False,
        "discovery": True,
        "fitted_on": "train",
        "marker": None,
    }
    assert needs_discovery(["class", "halves"]) and not needs_discovery(["class", "val"])
    assert PROBE_GROUP_KINDS.info("val")["fitted_on"] == "val"
    assert PROBE_GROUP_KINDS.info("true")["bias_labels"]
    features = {"train": (torch.zeros(4, 1), torch.zeros(4), torch.zeros(4), torch.arange(4))}
    assert probe_groups_of("halves", None, features)["train"].tolist() == [0, 0, 1, 1]


@pytest.fixture
def toy_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """README's toy metric (section "Adding a probe group kind, a probe protocol or a metric")."""
    yield from install_plugin("toy_metric.py", tmp_path / "plugin", METRICS, monkeypatch)


def test_a_registered_metric_is_added_after_the_built_in_ones(toy_metric: Path) -> None:
    y_true, y_pred, a = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0], [0, 1, 0, 1, 0, -1]
    before = group_metrics(y_true, y_pred, a, 2, 2, [[3, 1], [1, 3]])
    load_plugin(str(toy_metric))
    after = group_metrics(y_true, y_pred, a, 2, 2, [[3, 1], [1, 3]])
    assert list(after) == [*before, "balanced_accuracy"]
    assert after == before | {"balanced_accuracy": pytest.approx((2 / 3 + 1 / 3) / 2)}
    assert group_metrics([0, 1], [0, 1], [-1, -1], 2, 0)["balanced_accuracy"] == 1.0


def test_group_metrics_keeps_its_entries_and_their_order() -> None:
    metrics = group_metrics(
        [0, 0, 1, 1, 1], [0, 1, 1, 1, 0], [0, 1, 1, 0, -1], 2, 2, np.array([4, 1, 1, 4])
    )
    assert list(metrics) == [
        "num_samples",
        "accuracy",
        "per_class",
        "absent_classes",
        "worst_class",
        "per_group",
        "group_sizes",
        "absent_groups",
        "worst_group",
        "worst_group_name",
        "mean_group",
        "avg_acc_train_weighted",
        "absent_alignment",
        "aligned_accuracy",
        "aligned_size",
        "conflicting_accuracy",
        "conflicting_size",
    ]
    assert metrics["avg_acc_train_weighted"] == pytest.approx((4 * 1 + 1 * 0 + 1 * 1 + 4 * 1) / 10)
    plain = group_metrics([0, 1], [0, 0], [0, 1], 2, 0)
    assert list(plain) == ["num_samples", "accuracy", "per_class", "absent_classes", "worst_class"]


def test_the_group_id_encodings_agree() -> None:
    """The data set's groups, the metrics' counts, the true and the discovered probe groups
    (with a discovery that flags exactly the bias) and the weights report's cells are all
    g = y * A + a."""
    train = build_dataset("biased-digits-binary", None, "train", **DIGITS)
    y, a = train.targets, train.attributes
    assert torch.equal(train.groups, group_ids(y, a, 2)) and torch.equal(train.groups, 2 * y + a)
    counts = group_counts(y, a, 2, 2)
    assert counts.ravel().tolist() == torch.bincount(train.groups, minlength=4).tolist()
    index = torch.arange(len(train))
    features = {"train": (torch.zeros(len(train), 1), y, a, index)}
    perfect = SplitDiscovery(index, y, a, a.float(), a.bool())  # flags exactly a = 1
    assert torch.equal(perfect.groups, train.groups)
    discovered = probe_groups_of("discovered", _Run(train), features, {"train": perfect})
    assert torch.equal(discovered["train"], train.groups)
    assert torch.equal(probe_groups_of("true", _Run(train), features)["train"], train.groups)
    pool = torch.cat([torch.nonzero(train.groups == g)[:5, 0] for g in (3, 0, 2, 1)])
    groups = train.groups[pool]
    weights = (100 * groups[:, None] + groups[None, :]).float()  # w says its pair's groups
    cells = group_cells(weights, y[pool], a[pool], 2, 2)
    for row, (label, per_column) in enumerate(zip(cells.rows, cells.values, strict=True)):
        assert label.startswith(f"g{row}: y={row // 2}, a={row % 2}")
        for column, values in enumerate(per_column):
            assert values.size > 0 and set(values.tolist()) == {100.0 * row + column}


class _Run:
    """The little of a LoadedRun the true and discovered groups read: its train split and its
    directory (named in errors)."""

    def __init__(self, train: object) -> None:
        self.splits, self.run_dir = {"train": train}, Path("run")


def test_true_probe_groups_put_samples_without_a_bias_attribute_in_one_group() -> None:
    train = SimpleNamespace(name="partial", num_attributes=2)
    y, a = torch.tensor([0, 0, 1, 1, 0, 1]), torch.tensor([0, 1, 1, -1, -1, 0])
    features = {"train": (torch.zeros(6, 1), y, a, torch.arange(6))}
    groups = probe_groups_of("true", _Run(train), features)["train"]
    assert groups.tolist() == [0, 1, 3, -1, -1, 2]
