"""JTT: the error set, the up-weighting sampler, resume across both stages; erm/jtt end to end."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from debiascl.checkpoint import load_checkpoint, load_trained
from debiascl.cli import main
from debiascl.config import Config, build_config, load_config
from debiascl.data import BiasedDataset, build_dataset
from debiascl.data.sampling import EpochBatchSampler
from debiascl.data.views import build_views
from debiascl.errors import DebiasclError
from debiascl.jtt import bias_conflicting, composition, upweight_repeats
from debiascl.rundir import ERROR_SET_FILE, STAGE1_DIR, checkpoint_path, resumable
from debiascl.train import train
from debiascl.training.loop import Trainer

BATCH = 128
T = 2  # stage-1 epochs
UPWEIGHT = 5


def tiny_jtt(*sets: str) -> Config:
    """JTT on biased-digits-binary at 8 px on the CPU: 2 + 1 short epochs, no kNN monitor."""
    return build_config(
        preset="biased-digits-binary",
        overrides={
            "method.name": "jtt",
            "train.epochs": 1,
            "train.batch_size": BATCH,
            "train.device": "cpu",
        },
        sets=[
            "data.options.image_size=8",
            "train.knn_every=0",
            "train.progress=false",
            f"method.jtt_epochs={T}",
            f"method.jtt_upweight={UPWEIGHT}",
            *sets,
        ],
    )


@pytest.fixture(scope="module")
def jtt_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted tiny JTT run (shared: it is the reference for the resume tests)."""
    return train(tiny_jtt(), tmp_path_factory.mktemp("jtt") / "run")


def read_error_set(run_dir: Path) -> dict:
    return json.loads((run_dir / ERROR_SET_FILE).read_text())


def step_records(run_dir: Path) -> list[tuple]:
    """The deterministic part of metrics.jsonl (no timings)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["kind"], r["epoch"], r["step"], r.get("loss")) for r in map(json.loads, lines)]


# ----------------------------------------------------------------------------- the error set


def test_error_set_is_exactly_what_the_stage1_model_misclassifies(jtt_run: Path) -> None:
    record = read_error_set(jtt_run)
    stage1 = jtt_run / STAGE1_DIR
    state = load_checkpoint(checkpoint_path(stage1))
    assert (state["method"], state["epoch"]) == ("erm", T)

    # Recompute from the saved stage-1 checkpoint: one eval-mode forward of the un-augmented set.
    config, method = load_trained(stage1)
    dataset = build_dataset(config.data.name, None, "train", **config.data.options)
    prepare = build_views(config.data.augmentation, dataset).prepare
    images = torch.stack([dataset[i][1] for i in range(len(dataset))])
    with torch.no_grad():
        predicted = method.predict(prepare(images)).argmax(dim=1)
    wrong = torch.nonzero(predicted != dataset.targets).flatten().tolist()
    assert record["indices"] == wrong
    assert 0 < len(wrong) < len(dataset) // 2  # a real, partial error set
    assert record["size"] == len(wrong) and record["train_size"] == len(dataset)
    assert record["epoch_size"] == len(dataset) + (UPWEIGHT - 1) * len(wrong)


def test_error_set_composition_counts_groups_and_bias_conflicting_samples(jtt_run: Path) -> None:
    record = read_error_set(jtt_run)
    config = load_config(jtt_run / "config.yaml")
    dataset = build_dataset(config.data.name, None, "train", **config.data.options)
    indices = torch.tensor(record["indices"])
    found = record["composition"]
    conflicting = dataset.bias_conflicting
    assert torch.equal(conflicting, dataset.attributes != dataset.targets)  # rho 0.95: a == y
    assert found["conflicting_in_train"] == int(conflicting.sum()) > 0
    assert found["conflicting_caught"] == int(conflicting[indices].sum())
    assert found["conflicting_recall"] == pytest.approx(
        found["conflicting_caught"] / found["conflicting_in_train"]
    )
    by_group = {(g["y"], g["a"]): (g["in_error_set"], g["in_train"]) for g in found["groups"]}
    for y in range(2):
        for a in range(2):
            members = (dataset.targets == y) & (dataset.attributes == a)
            assert by_group[y, a] == (int(members[indices].sum()), int(members.sum()))


class StandIn(BiasedDataset):
    """A minimal training split with bias labels (and optionally the training counts)."""

    def __init__(self, targets: list[int], attributes: list[int], train_counts=None) -> None:
        self.name, self.kind = "stand-in", "table"
        self.split = "train" if train_counts is None else "val"
        self.targets, self.attributes = torch.tensor(targets), torch.tensor(attributes)
        self.num_classes, self.num_attributes = 2, 2
        self.class_names, self.attribute_names = ["c0", "c1"], ["a0", "a1"]
        if train_counts is not None:
            self.train_group_counts = torch.tensor(train_counts)


def test_bias_conflicting_is_the_majority_attribute_of_each_class_in_training() -> None:
    targets, attributes = [0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, -1]
    majority = bias_conflicting(StandIn(targets, attributes))
    assert majority.tolist() == [False, False, True, False, False, True, False]
    # Another split follows the training split's majorities (here the reverse of its own).
    reverse = StandIn(targets, attributes, train_counts=[[1, 2], [2, 1]])
    assert bias_conflicting(reverse).tolist() == [True, True, False, True, True, False, False]
    found = composition(StandIn(targets, attributes), torch.tensor([2, 4, 6]))
    assert (found["conflicting_caught"], found["conflicting_in_train"]) == (1, 2)
    counts = [(g["in_error_set"], g["in_train"]) for g in found["groups"]]
    assert counts == [(0, 2), (1, 1), (0, 1), (1, 2)]  # sample 6 has no known attribute
    no_bias = StandIn(targets, attributes)
    no_bias.num_attributes = 0
    assert bias_conflicting(no_bias) is None and composition(no_bias, torch.tensor([0])) is None


# ----------------------------------------------------------------------------- the sampler


def sampled(sampler: EpochBatchSampler) -> Counter:
    return Counter(index for batch in sampler for index in batch)


def test_sampler_draws_each_error_sample_upweight_times_per_epoch() -> None:
    n, errors = 100, [3, 17, 42, 60, 99, 0, 55, 71, 8, 90]
    repeats = upweight_repeats(n, errors, UPWEIGHT)
    epoch_size = n + (UPWEIGHT - 1) * len(errors)  # 140 = 7 batches of 20: nothing dropped
    for epoch in range(3):
        counts = sampled(EpochBatchSampler(n, 20, seed=7, epoch=epoch, repeats=repeats))
        assert sum(counts.values()) == epoch_size
        assert all(counts[i] == (UPWEIGHT if i in errors else 1) for i in range(n))
    # The order is a pure function of (seed, epoch): rebuilt samplers agree, epochs differ.
    first = list(EpochBatchSampler(n, 20, seed=7, epoch=1, repeats=repeats))
    assert first == list(EpochBatchSampler(n, 20, seed=7, epoch=1, repeats=repeats))
    assert first != list(EpochBatchSampler(n, 20, seed=7, epoch=2, repeats=repeats))
    # Resuming at batch 3 yields the rest of the same epoch.
    assert first[3:] == list(EpochBatchSampler(n, 20, seed=7, epoch=1, start=3, repeats=repeats))


def test_sampler_upweights_statistically_when_the_last_batch_is_dropped() -> None:
    n, errors = 100, list(range(0, 100, 10))
    repeats = upweight_repeats(n, errors, UPWEIGHT)
    total: Counter = Counter()
    epochs = 200
    for epoch in range(epochs):  # 140 samples, batch 32: 12 dropped at random each epoch
        total += sampled(EpochBatchSampler(n, 32, seed=3, epoch=epoch, repeats=repeats))
    error_rate = sum(total[i] for i in errors) / (len(errors) * epochs)
    other_rate = sum(total[i] for i in range(n) if i not in errors) / ((n - len(errors)) * epochs)
    kept = 128 / 140
    assert error_rate == pytest.approx(UPWEIGHT * kept, rel=0.03)
    assert other_rate == pytest.approx(kept, rel=0.03)
    assert error_rate / other_rate == pytest.approx(UPWEIGHT, rel=0.05)


def test_final_model_trains_on_the_upweighted_epochs(jtt_run: Path) -> None:
    record = read_error_set(jtt_run)
    steps = record["epoch_size"] // BATCH
    assert steps > record["train_size"] // BATCH  # longer than a plain epoch
    assert (jtt_run / "train_done").read_text().strip() == str(steps)
    state = load_checkpoint(checkpoint_path(jtt_run))
    assert (state["method"], state["global_step"]) == ("jtt", steps)
    assert load_config(jtt_run / "config.yaml") == tiny_jtt()
    stage1_steps = T * (record["train_size"] // BATCH)
    assert (jtt_run / STAGE1_DIR / "train_done").read_text().strip() == str(stage1_steps)
    config, method = load_trained(jtt_run)
    assert (method.name, method.supervised, config.method.name) == ("jtt", True, "jtt")


# ----------------------------------------------------------------------------- resume


def _kill_at(monkeypatch: pytest.MonkeyPatch, stage: int, step: int) -> None:
    """Make the trainer of JTT stage ``stage`` (1 or 2) die right after its step ``step``."""
    account = Trainer._account

    def dying(self: Trainer, result) -> None:
        account(self, result)
        if (self.parts.repeats is not None) == (stage == 2) and self.progress.global_step == step:
            raise RuntimeError("killed")

    monkeypatch.setattr(Trainer, "_account", dying)


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "step"),
    [(2, 1), (2, 3), (1, 11)],
    ids=["stage2-before-checkpoint", "stage2-after-checkpoint", "stage1"],
)
def test_resume_across_stages_matches_the_uninterrupted_run(
    jtt_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: int, step: int
) -> None:
    config = tiny_jtt("train.checkpoint_every=2")
    run_dir = tmp_path / "run"
    _kill_at(monkeypatch, stage, step)
    with pytest.raises(RuntimeError, match="killed"):
        train(config, run_dir)
    monkeypatch.undo()
    assert resumable(run_dir) and not (run_dir / "train_done").exists()
    assert (run_dir / "config.yaml").is_file()
    stage1_before = _mtimes(run_dir / STAGE1_DIR)
    error_set_before = (run_dir / ERROR_SET_FILE).stat().st_mtime_ns if stage == 2 else None

    train(config, run_dir, resume=True)

    if stage == 2:  # stage 1 and its error set were reused, not redone
        assert _mtimes(run_dir / STAGE1_DIR) == stage1_before
        assert (run_dir / ERROR_SET_FILE).stat().st_mtime_ns == error_set_before
    assert read_error_set(run_dir) == read_error_set(jtt_run)
    for folder in (run_dir, run_dir / STAGE1_DIR):
        reference = jtt_run / folder.relative_to(run_dir)
        ours, theirs = (
            load_checkpoint(checkpoint_path(folder)),
            load_checkpoint(checkpoint_path(reference)),
        )
        assert ours["global_step"] == theirs["global_step"]
        for key, value in theirs["model"].items():
            assert torch.equal(ours["model"][key], value), (folder.name, key)
        assert step_records(folder) == step_records(reference)
    assert (run_dir / "train_done").read_text() == (jtt_run / "train_done").read_text()


def test_resume_refuses_a_changed_stage1_and_a_missing_run(jtt_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "copy"
    shutil.copytree(jtt_run, run_dir)
    with pytest.raises(DebiasclError, match="jtt_epochs"):
        train(tiny_jtt(f"method.jtt_epochs={T + 1}"), run_dir, resume=True)
    with pytest.raises(DebiasclError, match="no stage-1 run"):
        train(tiny_jtt(), tmp_path / "empty", resume=True)
    assert not resumable(tmp_path / "empty")
    with pytest.raises(DebiasclError, match="already exists and is not empty"):
        train(tiny_jtt(), run_dir)


def test_fractional_upweight_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(DebiasclError, match=r"method\.jtt_upweight"):
        train(tiny_jtt("method.jtt_upweight=2.5"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("method", ["erm", "jtt"])
def test_debiascl_train_runs_erm_and_jtt_end_to_end(tmp_path: Path, method: str) -> None:
    out = tmp_path / method
    args = ["train", "--dataset", "biased-digits-binary", "--method", method, "--out", str(out)]
    args += ["--epochs", "1", "--batch-size", str(BATCH), "--device", "cpu"]
    settings = ("data.options.image_size=8", "train.knn_every=0", "method.jtt_epochs=1")
    for setting in (*settings, "method.jtt_upweight=2"):
        args += ["--set", setting]
    assert main(args) == 0
    assert (out / "train_done").is_file()
    assert load_checkpoint(checkpoint_path(out))["method"] == method
    assert ((out / STAGE1_DIR / "train_done").is_file()) == (method == "jtt")
    assert ((out / ERROR_SET_FILE).is_file()) == (method == "jtt")

    evaluate = pytest.importorskip("debiascl.evaluate")
    results = evaluate.evaluate_run(out)
    assert (results["method"], results["supervised"], results["main"]) == (
        method,
        True,
        "classifier",
    )
    accuracy = results["classifier"]["metrics"]["accuracy"]
    assert 0.5 < accuracy <= 1.0  # the classifier learned the (biased) task
