"""Training on groups (SPEC 10): the batch, balanced sampling, GroupDRO, the group settings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from fakes import tiny_config, train_args
from image_files import make_stl10

from debiascl.batch import Batch
from debiascl.checkpoint import load_checkpoint
from debiascl.cli import main
from debiascl.config import build_config
from debiascl.data import build_dataset
from debiascl.data.sampling import (
    EpochBatchSampler,
    balanced_draws,
    balanced_probabilities,
    epoch_order,
)
from debiascl.discovery import read_discovery
from debiascl.errors import DebiasclError
from debiascl.groups import true_groups
from debiascl.methods import METHODS, group_dro_update
from debiascl.metrics import dense_group_ids
from debiascl.train import train
from debiascl.trainer import StepRunner

DIGITS_8PX = {"image_size": 8}


# ----------------------------------------------------------------------------- balanced sampling


def test_balanced_probabilities_are_one_over_g_times_the_group_size() -> None:
    groups = torch.tensor([4, 4, 4, 7, 9, 9])  # any integers; sizes 3, 1, 2
    expected = torch.tensor([1 / 9, 1 / 9, 1 / 9, 1 / 3, 1 / 6, 1 / 6], dtype=torch.float64)
    probabilities = balanced_probabilities(groups)
    torch.testing.assert_close(probabilities, expected)
    assert math.isclose(float(probabilities.sum()), 1.0)


def test_balanced_draws_give_every_group_the_same_share() -> None:
    """Groups of 900, 90 and 10 samples: over 400 seeded epochs (400,000 draws) each group is
    drawn a third of the time (chi-square with 2 degrees of freedom below its 0.1% quantile,
    13.8), and inside a group every sample equally often (the 10-sample group's samples)."""
    groups = torch.cat([torch.zeros(900), torch.ones(90), torch.full((10,), 2)]).long()
    probabilities = balanced_probabilities(groups)
    draws = torch.cat([balanced_draws(probabilities, seed=3, epoch=e) for e in range(400)])
    assert draws.numel() == 400 * 1000
    per_group = torch.bincount(groups[draws], minlength=3).double()
    expected = draws.numel() / 3
    chi_square = float(((per_group - expected) ** 2 / expected).sum())
    assert chi_square < 13.8, per_group
    rare = torch.bincount(draws[groups[draws] == 2] - 990, minlength=10).double()
    rare_chi_square = float(((rare - rare.mean()) ** 2 / rare.mean()).sum())
    assert rare_chi_square < 27.9  # 9 degrees of freedom, 0.1% quantile
    # Plain shuffling would have drawn the 10 rare samples 1% of the time, not a third.


def test_balanced_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch() -> None:
    probabilities = balanced_probabilities(torch.tensor([0] * 90 + [1] * 10))
    first = epoch_order(100, 5, 2, probabilities=probabilities)
    assert torch.equal(first, epoch_order(100, 5, 2, probabilities=probabilities))
    assert not torch.equal(first, epoch_order(100, 5, 3, probabilities=probabilities))
    assert not torch.equal(first, epoch_order(100, 6, 2, probabilities=probabilities))
    whole = list(EpochBatchSampler(100, 32, 5, 2, probabilities=probabilities))
    assert [i for batch in whole for i in batch] == first[:96].tolist()
    resumed = EpochBatchSampler(100, 32, 5, 2, start=2, probabilities=probabilities)
    assert list(resumed) == whole[2:]
    with pytest.raises(ValueError, match="not both"):
        epoch_order(100, 5, 2, torch.ones(100, dtype=torch.long), probabilities)


# ----------------------------------------------------------------------------- GroupDRO


def test_group_dro_weights_follow_a_hand_computation_for_two_steps() -> None:
    eta, adjustment = 0.5, 1.0
    sizes = torch.tensor([4, 1, 9])
    q0 = torch.full((3,), 1 / 3, dtype=torch.float64)
    # Step 1: groups 0 and 2 present (mean losses 2 and 3), group 1 absent keeps its q.
    losses = torch.tensor([1.0, 3.0, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
    loss, q1 = group_dro_update(losses, torch.tensor([0, 0, 2, 2]), q0, sizes, eta, adjustment)
    raw = [math.exp(0.5 * (2 + 1 / 2)), 1.0, math.exp(0.5 * (3 + 1 / 3))]
    want_q1 = [value / sum(raw) for value in raw]
    torch.testing.assert_close(q1, torch.tensor(want_q1, dtype=torch.float64))
    assert math.isclose(loss.item(), want_q1[0] * 2 + want_q1[2] * 3, rel_tol=1e-12)
    loss.backward()  # d loss / d loss_i = q_g / (examples of g in the batch); q is detached
    want_grad = [want_q1[0] / 2] * 2 + [want_q1[2] / 2] * 2
    torch.testing.assert_close(losses.grad, torch.tensor(want_grad, dtype=torch.float64))
    # Step 2: only group 1 (mean loss 3).
    losses = torch.tensor([5.0, 1.0], dtype=torch.float64)
    loss, q2 = group_dro_update(losses, torch.tensor([1, 1]), q1, sizes, eta, adjustment)
    raw = [want_q1[0], want_q1[1] * math.exp(0.5 * (3 + 1)), want_q1[2]]
    want_q2 = [value / sum(raw) for value in raw]
    torch.testing.assert_close(q2, torch.tensor(want_q2, dtype=torch.float64))
    assert math.isclose(float(loss), want_q2[1] * 3, rel_tol=1e-12)


def _gdro_method() -> torch.nn.Module:
    config = build_config(overrides={"method.name": "gdro"}, sets=["train.groups=true"])
    config.model.backbone, config.model.mlp_hidden_dims = "mlp", [8]
    config.method.gdro_eta = 0.3
    table = SimpleNamespace(name="toy", kind="table", input_shape=(4,), num_classes=2)
    torch.manual_seed(0)
    return METHODS["gdro"](config, table)


def test_gdro_carries_q_across_steps_and_in_its_state_dict() -> None:
    method = _gdro_method()
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 0, 1])
    batch = Batch(torch.arange(6), [x, x + 0.1], y, None, torch.tensor([0, 1, 2, 2, 1, 0]))
    batch.group_sizes = torch.tensor([10, 5, 2])
    assert method.state_dict()["_extra_state"].numel() == 0  # no q before the groups are seen
    method.training_step(batch)
    first = method.group_weights.clone()
    per_example, _, _ = method.per_example_loss(batch)
    _, expected = group_dro_update(
        per_example, batch.group.repeat(2), first, batch.group_sizes, 0.3, 0.0
    )
    method.training_step(batch)
    torch.testing.assert_close(method.group_weights, expected)
    assert not torch.allclose(first, torch.full((3,), 1 / 3))
    restored = _gdro_method()
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.group_weights, method.group_weights)


# ----------------------------------------------------------------------------- settings, data


def test_group_settings_are_checked_with_one_line_each() -> None:
    cases = {
        "'train.groups_epochs' = 0 is out of range": ["train.groups_epochs=0"],
        "expected one of gce, erm": ["train.groups_signal=knn"],
        "read only with train.groups=discovered": ["train.groups_from=runs/x"],
        "'train.group_sampling' = 'balanced' needs groups": ["train.group_sampling=balanced"],
        "'train.group_weighting' = 'balanced' needs groups": ["train.group_weighting=balanced"],
        "expected one of none, discovered, true": ["train.groups=oracle"],
    }
    for message, sets in cases.items():
        with pytest.raises(DebiasclError, match=message) as error:
            build_config(sets=sets)
        assert "\n" not in str(error.value)
    with pytest.raises(DebiasclError, match="method 'gdro' trains on groups"):
        build_config(overrides={"method.name": "gdro"})
    for method in ("triplet", "gdro"):  # E_b stays the unweighted bias amplifier; q instead
        with pytest.raises(DebiasclError, match=f"method '{method}' does not weight its loss"):
            build_config(
                overrides={"method.name": method},
                sets=["train.groups=true", "train.group_weighting=balanced"],
            )
    assert build_config(sets=["train.groups=discovered"]).train.groups_signal == "gce"
    with pytest.raises(DebiasclError, match="method 'jtt', which trains in stages of its own"):
        build_config(overrides={"method.name": "jtt"}, sets=["train.groups=discovered"])
    with pytest.raises(DebiasclError, match="does not combine with method 'jtt'"):
        build_config(
            overrides={"method.name": "jtt"},
            sets=["train.groups=true", "train.group_sampling=balanced"],
        )


def test_true_groups_need_a_bias_attribute_for_every_training_sample() -> None:
    digits = build_dataset("biased-digits-binary", None, "train", **DIGITS_8PX)
    torch.testing.assert_close(true_groups(digits), 2 * digits.targets + digits.attributes)
    no_bias = SimpleNamespace(
        name="plain", num_attributes=0, attributes=torch.full((5,), -1), targets=torch.zeros(5)
    )
    with pytest.raises(DebiasclError, match="'plain' has no bias attribute; use"):
        true_groups(no_bias)
    partly = SimpleNamespace(
        name="partly", num_attributes=2, attributes=torch.tensor([0, 1, -1]), targets=torch.zeros(3)
    )
    with pytest.raises(DebiasclError, match="no bias attribute for 1 of its 3 training samples"):
        true_groups(partly)


# ----------------------------------------------------------------------------- the trainer


def _record_batches(monkeypatch: pytest.MonkeyPatch) -> list[Batch]:
    """Make the trainer's steps record their batches (and still train)."""
    seen: list[Batch] = []
    original = StepRunner.step

    def step(self, batch):
        seen.append(batch)
        return original(self, batch)

    monkeypatch.setattr(StepRunner, "step", step)
    return seen


@pytest.mark.slow
def test_the_batch_carries_each_samples_group_and_a_only_for_the_oracle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_batches(monkeypatch)
    digits = build_dataset("biased-digits", None, "train", **DIGITS_8PX)
    oracle = dense_group_ids(digits.groups)
    balanced = ("train.groups=true", "train.group_sampling=balanced")
    train(tiny_config("gdro", 1, 128, *balanced), tmp_path / "gdro")
    assert len(seen) == len(digits) // 128
    for batch in seen:
        assert torch.equal(batch.y, digits.targets[batch.index])
        assert torch.equal(batch.a, digits.attributes[batch.index])
        assert torch.equal(batch.group, oracle[batch.index])
        assert torch.equal(batch.group_sizes, torch.bincount(oracle))
    drawn = torch.cat([batch.index for batch in seen])
    assert drawn.unique().numel() < drawn.numel()  # drawn with replacement, not a permutation
    seen.clear()
    train(tiny_config("simclr", 1, 128), tmp_path / "simclr")
    assert seen and all(b.a is None and b.group is None and b.weight is None for b in seen)
    assert torch.equal(torch.cat([b.index for b in seen]).sort().values[:5], torch.arange(5))
    seen.clear()
    weighted = ("train.groups=true", "train.group_weighting=balanced")
    train(tiny_config("simclr", 1, 128, *weighted), tmp_path / "simclr-weighted")
    sizes = torch.bincount(oracle).float()
    expected = len(digits) / (len(sizes) * sizes[oracle])  # n / (G n_g)
    for batch in seen:
        assert torch.equal(batch.a, digits.attributes[batch.index])  # the oracle asked for
        torch.testing.assert_close(batch.weight, expected[batch.index])


class _Stop(Exception):
    """Raised by the patched step: the run 'dies' right after a mid-epoch checkpoint."""


@pytest.mark.slow
def test_resume_mid_epoch_with_balanced_sampling_and_gdro_is_bit_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sets = ("train.groups=true", "train.group_sampling=balanced", "train.checkpoint_every=5")
    config = tiny_config("gdro", 2, 64, *sets, "method.gdro_eta=0.5")
    reference = load_checkpoint(train(config, tmp_path / "reference") / "checkpoints/last.pt")

    original, calls = StepRunner.step, {"n": 0}

    def dying_step(self, batch):
        calls["n"] += 1
        if calls["n"] == 23:  # epoch 2 (16 steps each), 2 steps after its checkpoint at step 20
            raise _Stop
        return original(self, batch)

    monkeypatch.setattr(StepRunner, "step", dying_step)
    with pytest.raises(_Stop):
        train(config, tmp_path / "killed")
    stopped = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert (stopped["epoch"], stopped["position"]) == (1, 4)
    monkeypatch.setattr(StepRunner, "step", original)
    resumed = load_checkpoint(
        train(config, tmp_path / "killed", resume=True) / "checkpoints" / "last.pt"
    )
    assert resumed["global_step"] == reference["global_step"] == 2 * (1079 // 64)
    assert resumed["model"].keys() == reference["model"].keys()
    for key, value in reference["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    digits = build_dataset("biased-digits", None, "train", **DIGITS_8PX)
    num_groups = int(dense_group_ids(digits.groups).max()) + 1
    q = reference["model"]["_extra_state"]  # GroupDRO's q, restored and carried on
    assert q.shape == (num_groups,) and not torch.allclose(q, torch.full_like(q, 1 / num_groups))


# ----------------------------------------------------------------------------- through the CLI

BINARY = ("data.options.image_size=8", "train.knn_every=0", "train.batch_size=256")


def _train_cli(out: Path, method: str, *settings: str, dataset: str = "biased-digits-binary"):
    return main(train_args(out, dataset=dataset, method=method, settings=(*BINARY, *settings)))


@pytest.mark.slow
def test_gdro_on_discovered_groups_of_another_run_and_the_one_line_refusals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wcl = tmp_path / "wcl"
    assert _train_cli(wcl, "wcl") == 0
    assert not (wcl / "discovered.csv").exists()
    discovered = ("train.groups=discovered", f"train.groups_from={wcl}")
    assert _train_cli(tmp_path / "gdro", "gdro", *discovered) == 0
    # The wcl run's E_b discovered the groups first (written into that run), from y only.
    flags = read_discovery(wcl)[0]["train"]
    assert json.loads((wcl / "discovery.json").read_text())["uses_bias_labels"] is False
    q = load_checkpoint(tmp_path / "gdro" / "checkpoints" / "last.pt")["model"]["_extra_state"]
    assert q.numel() == int(flags.groups.max()) + 1
    assert main(["eval", str(tmp_path / "gdro"), "--device", "cpu", "--no-plots"]) == 0
    results = json.loads((tmp_path / "gdro" / "results.json").read_text())
    assert (results["training_groups"], results["bias_labels_in_training"]) == ("discovered", False)
    capsys.readouterr()

    other_data = (*discovered, "data.options.rho=0.99")
    assert _train_cli(tmp_path / "other", "gdro", *other_data) == 2
    err = capsys.readouterr().err.strip()
    assert "train.groups_from run" in err and "must use the same data set" in err
    assert "\n" not in err

    make_stl10(tmp_path / "stl")
    stl = (f"data.root={tmp_path / 'stl'}", "train.batch_size=2", "data.options.unlabeled=false")
    code = main(train_args(tmp_path / "stl-run", dataset="stl10", method="gdro",
                           settings=("train.knn_every=0", "train.groups=true", *stl)))  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "data set 'stl10' has no bias attribute" in err and "\n" not in err


@pytest.mark.slow
def test_discovered_without_groups_from_discovers_in_a_stage_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sets = ("train.groups=discovered", "train.groups_epochs=1", "train.checkpoint_every=5")
    config = tiny_config("gdro", 2, 64, *sets)
    reference = train(config, tmp_path / "reference")
    stage = reference / "stage1"
    summary = json.loads((stage / "discovery.json").read_text())
    assert (summary["signal"], summary["bias_method"]) == ("gce", "gce")
    assert summary["uses_bias_labels"] is False
    saved = yaml.safe_load((reference / "config.yaml").read_text())["train"]
    assert (saved["groups"], saved["groups_from"]) == ("discovered", str(stage))
    assert yaml.safe_load((stage / "config.yaml").read_text())["train"]["epochs"] == 1
    groups = read_discovery(stage)[0]["train"].groups
    q = load_checkpoint(reference / "checkpoints" / "last.pt")["model"]["_extra_state"]
    assert q.numel() == groups.unique().numel()  # one q per discovered group present

    original, calls = StepRunner.step, {"n": 0}
    stage1_steps = 1079 // 64

    def dying_step(self, batch):
        calls["n"] += 1
        if calls["n"] == stage1_steps + 23:  # stage 2, epoch 2, 2 steps after a checkpoint
            raise _Stop
        return original(self, batch)

    monkeypatch.setattr(StepRunner, "step", dying_step)
    with pytest.raises(_Stop):
        train(config, tmp_path / "killed")
    monkeypatch.setattr(StepRunner, "step", original)
    done_at = (tmp_path / "killed" / "stage1" / "train_done").stat().st_mtime_ns
    train(config, tmp_path / "killed", resume=True)
    assert (tmp_path / "killed" / "stage1" / "train_done").stat().st_mtime_ns == done_at
    got = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["model"]
    want = load_checkpoint(reference / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(got[key], value) for key, value in want.items())
