"""The training loop: artefacts, learning, bitwise reproducibility, non-finite steps, data order."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fakes import final_model, read_metrics, tiny_config
from image_files import make_stl10

from debiascl.batch import Batch
from debiascl.checkpoint import check_resumable, load_checkpoint
from debiascl.config import build_config, load_config
from debiascl.data import build_dataset
from debiascl.data.sampling import (
    EpochBatchSampler,
    epoch_permutation,
    labelled_subset,
    sample_subset,
)
from debiascl.distributed import resolve_device
from debiascl.errors import DebiasclError
from debiascl.evaluate import load_run
from debiascl.features import knn_accuracy
from debiascl.methods import METHODS, build_method
from debiascl.rundir import prepare_run_dir
from debiascl.train import train
from debiascl.training.build import build_optimizers, use_channels_last
from debiascl.training.loop import StepRunner

TRAIN_SIZE = 1079  # biased-digits training split


@pytest.mark.slow
def test_wcl_run_writes_every_artefact_and_learns(tmp_path: Path) -> None:
    config = tiny_config("wcl", 2, 128, "train.log_every=3", "train.knn_every=2", "train.knn_k=50")
    run_dir = train(config, tmp_path / "run")
    steps_per_epoch = TRAIN_SIZE // 128
    total = 2 * steps_per_epoch

    assert (run_dir / "train_done").read_text().strip() == str(total)
    assert load_config(run_dir / "config.yaml") == config
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (state["epoch"], state["position"], state["global_step"]) == (2, 0, total)
    assert set(state["optimizers"]) == set(state["schedulers"]) == {"d", "b"}

    records = read_metrics(run_dir)
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["step"] for r in steps] == list(range(3, total + 1, 3))
    assert steps[0]["lr"] == {"d": config.optim.lr, "b": config.optim.lr_b}
    assert {"loss", "loss_d", "loss_b", "samples_per_s"} <= set(steps[0])
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [(r["epoch"], r["step"]) for r in epochs] == [(1, steps_per_epoch), (2, total)]
    assert all(r["skipped_steps"] == 0 and r["wall_time_s"] > 0 for r in epochs)
    # The end-to-end run learns: both encoders' losses fall from the first epoch to the second.
    assert epochs[0]["loss_d"] > epochs[1]["loss_d"]
    assert epochs[0]["loss_b"] > epochs[1]["loss_b"]
    (knn,) = [r for r in records if r["kind"] == "knn"]
    assert knn["epoch"] == 2 and 0.0 <= knn["knn_acc"] <= 1.0
    # The logged number is the kNN accuracy of the final model on val, recomputed from the run.
    run = load_run(run_dir)
    recomputed = knn_accuracy(
        run.method,
        run.splits["train"],
        run.splits["val"],
        run.prepare,
        k=50,
        temperature=config.method.temperature,
        device=torch.device("cpu"),
        seed=config.train.seed,
    )
    assert knn["knn_acc"] == pytest.approx(recomputed)


@pytest.mark.slow
def test_cpu_runs_are_bitwise_reproducible(tmp_path: Path) -> None:
    config = tiny_config("simclr", 1, 128)
    first = final_model(train(config, tmp_path / "a"))
    second = final_model(train(config, tmp_path / "b"))
    other_seed = final_model(train(tiny_config("simclr", 1, 128, "train.seed=1"), tmp_path / "c"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not all(torch.equal(first[key], other_seed[key]) for key in first)


def _nan_on_calls(monkeypatch: pytest.MonkeyPatch, bad_calls: set[int] | None) -> None:
    """Make SimCLR's loss NaN on the given (1-based) calls, or on every call when None."""
    original = METHODS["simclr"].training_step
    calls = {"n": 0}

    def training_step(self, batch):
        calls["n"] += 1
        loss, logs = original(self, batch)
        if bad_calls is None or calls["n"] in bad_calls:
            loss = loss * float("nan")
        return loss, logs

    monkeypatch.setattr(METHODS["simclr"], "training_step", training_step)


@pytest.mark.slow
def test_non_finite_steps_are_skipped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _nan_on_calls(monkeypatch, {2, 3})
    config = tiny_config("simclr", 1, 128, "train.max_consecutive_skips=3", "train.log_every=1")
    with caplog.at_level(logging.WARNING, logger="debiascl"):
        run_dir = train(config, tmp_path / "run")
    steps = TRAIN_SIZE // 128
    (epoch,) = [r for r in read_metrics(run_dir) if r["kind"] == "epoch"]
    assert epoch["skipped_steps"] == 2
    logged = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "step"]
    assert logged == [s for s in range(1, steps + 1) if s not in (2, 3)]
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["skipped_steps"] == 2 and state["consecutive_skips"] == 0
    # Skipped steps never reached the optimizer: Adam counted only the finite ones.
    assert int(state["optimizers"]["d"]["state"][0]["step"]) == steps - 2
    assert len([r for r in caplog.records if "not finite" in r.getMessage()]) == 2


def test_training_stops_after_too_many_consecutive_non_finite_losses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _nan_on_calls(monkeypatch, None)
    config = tiny_config("simclr", 1, 128, "train.max_consecutive_skips=3")
    with (
        caplog.at_level(logging.WARNING, logger="debiascl"),
        pytest.raises(DebiasclError, match=r"step 3 .*3 consecutive.*lower learning rate"),
    ):
        train(config, tmp_path / "run")
    assert len([r for r in caplog.records if "not finite" in r.getMessage()]) == 3


def test_data_order_is_a_function_of_seed_and_epoch_and_ranks_split_global_batches() -> None:
    assert torch.equal(epoch_permutation(100, 0, 3), epoch_permutation(100, 0, 3))
    assert not torch.equal(epoch_permutation(100, 0, 3), epoch_permutation(100, 0, 4))
    assert not torch.equal(epoch_permutation(100, 1, 3), epoch_permutation(100, 0, 3))

    single = list(EpochBatchSampler(100, 32, seed=5, epoch=2))
    assert len(single) == 3 and all(len(batch) == 32 for batch in single)  # last 4 dropped
    assert len({i for batch in single for i in batch}) == 96
    ranks = [list(EpochBatchSampler(100, 32, 5, 2, shard=(r, 2))) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks, strict=True)] == single
    resumed = EpochBatchSampler(100, 32, 5, 2, start=2)
    assert len(resumed) == 1 and list(resumed) == single[2:]


def test_run_directory_checks(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(DebiasclError, match="not empty; pass resume=True"):
        prepare_run_dir(tmp_path / "busy", resume=False)
    with pytest.raises(DebiasclError, match="no checkpoint"):
        prepare_run_dir(tmp_path / "fresh", resume=True)
    assert prepare_run_dir(tmp_path / "fresh", resume=False) is None
    assert (tmp_path / "fresh").is_dir()


def test_resuming_with_changed_settings_names_them(tmp_path: Path) -> None:
    saved = tiny_config().to_dict()
    check_resumable(saved, tiny_config(epochs=5), tmp_path)  # more epochs are fine
    check_resumable(saved, tiny_config("wcl", 1, 128, "train.channels_last=true"), tmp_path)
    with pytest.raises(DebiasclError, match=r"method.tau_plus \(0.1 in the checkpoint, 0.2 now\)"):
        check_resumable(saved, tiny_config("wcl", 1, 128, "method.tau_plus=0.2"), tmp_path)


def test_batch_smaller_than_data_and_missing_cuda_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(DebiasclError, match=r"fewer than train\.batch_size"):
        train(tiny_config("simclr", 1, 2048), tmp_path / "run")
    if not torch.cuda.is_available():
        with pytest.raises(DebiasclError, match="no CUDA device"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_step_on_channels_last_inputs(precision: str) -> None:
    config = tiny_config("wcl")
    digits = SimpleNamespace(
        name="biased-digits", kind="image", input_shape=(3, 8, 8), num_classes=10
    )
    method = build_method(config, digits).to(memory_format=torch.channels_last)
    optimizers = build_optimizers(method.param_groups(config.optim), config.optim)
    runner = StepRunner(method, optimizers, precision, torch.device("cpu"))
    assert runner.scaler.is_enabled() == (precision == "fp16")
    views = tuple(
        torch.randn(8, 3, 8, 8).contiguous(memory_format=torch.channels_last) for _ in "12"
    )
    before = {k: v.clone() for k, v in method.state_dict().items()}
    loss, logs = runner.step(Batch(torch.arange(8), list(views), torch.zeros(8, dtype=torch.long)))
    assert torch.isfinite(torch.tensor(loss)) and set(logs) == {"loss_d", "loss_b"}
    changed = [k for k, v in method.state_dict().items() if not torch.equal(v, before[k])]
    # bf16 updates every weight; fp16's GradScaler may skip its first, over-scaled step, but the
    # BatchNorm statistics always move.
    assert any("running_mean" in k for k in changed)
    if precision == "bf16":
        assert all(k in changed for k, _ in method.named_parameters())


def test_knn_subsets_keep_original_indices_and_labels() -> None:
    dataset = build_dataset("biased-digits", None, "train", image_size=8)
    subset = sample_subset(dataset, 50, seed=0)
    assert len(subset) == 50 and sample_subset(dataset, 5000, seed=0) is dataset
    index, x, y, a = subset[7]
    assert torch.equal(x, dataset[index][1]) and y == int(subset.targets[index])
    assert a == int(subset.attributes[index])
    assert [subset[i][0] for i in range(50)] == [
        sample_subset(dataset, 50, 0)[i][0] for i in range(50)
    ]


def test_labelled_subset_drops_unlabelled_samples_for_banks_and_probes() -> None:
    dataset = build_dataset("biased-digits", None, "train", image_size=8)
    assert labelled_subset(dataset) is dataset
    dataset.targets = dataset.targets.clone()
    dataset.targets[::3] = -1  # as STL-10's unlabeled images appended to train
    subset = labelled_subset(dataset)
    kept = [subset[i][0] for i in range(len(subset))]
    assert kept == [i for i in range(len(dataset)) if i % 3]
    assert all(subset[i][2] >= 0 for i in range(len(subset)))


def test_supervised_method_on_unlabelled_training_samples_is_a_user_error(
    tmp_path: Path,
) -> None:
    make_stl10(tmp_path / "data")
    config = build_config(
        overrides={
            "data.name": "stl10",
            "data.root": str(tmp_path / "data"),
            "method.name": "erm",
            "model.backbone": "small_cnn",
            "train.batch_size": 2,
            "train.device": "cpu",
        },
        sets=["data.options.unlabeled=true", "data.options.val_fraction=0.2"],
    )
    with pytest.raises(DebiasclError, match=r"3 unlabelled samples .*unlabeled=false"):
        train(config, tmp_path / "run")


CUDA, CPU = torch.device("cuda", 0), torch.device("cpu")


@pytest.mark.parametrize(
    ("setting", "device", "kind", "backbone", "expected"),
    [
        (None, CUDA, "image", "resnet18", True),  # auto: where it helps
        (None, CUDA, "image", "resnet50", True),
        (None, CPU, "image", "resnet18", False),
        (None, CUDA, "image", "small_cnn", False),
        (None, CUDA, "tabular", "mlp", False),
        (True, CPU, "image", "small_cnn", True),  # forced
        (False, CUDA, "image", "resnet50", False),
        (True, CUDA, "tabular", "mlp", False),  # tables have no channels
    ],
)
def test_channels_last_is_on_for_cuda_resnets_unless_forced(
    setting: bool | None, device: torch.device, kind: str, backbone: str, expected: bool
) -> None:
    assert use_channels_last(setting, device, kind, backbone) is expected


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch simclr run (two steps) to damage copies of."""
    return train(tiny_config("simclr", 1, 512), tmp_path_factory.mktemp("done") / "run")


def _drop_first_weight(state: dict) -> None:
    del state["model"][next(iter(state["model"]))]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda s: s.update(optimizers={}), r"damaged or was written with another configuration"),
        (lambda s: s["optimizers"]["d"].pop("param_groups"), r"\(KeyError: 'param_groups'\)"),
        (lambda s: s.update(rng=[{}]), r"\(KeyError: 'python'\)"),
        (lambda s: s.pop("metrics_offset"), r"\(KeyError: 'metrics_offset'\)"),
        (lambda s: s.update(config="a string"), "is damaged: config is a str"),
        (lambda s: s.update(config={"train": 3}), "config is not a mapping of sections"),
        (lambda s: s.update(schedulers=[]), "is damaged: schedulers is a list"),
        (_drop_first_weight, "does not fit the model built from the config: .* missing"),
        (lambda s: s["model"].update(extra=3), "does not fit .*: extra is not a tensor"),
    ],
)
def test_resuming_from_a_damaged_checkpoint_is_a_user_error(
    finished_run: Path, tmp_path: Path, damage: Callable[[dict], object], message: str
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    path = run_dir / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    damage(state)
    state.pop("checksum", None)  # as a checkpoint from before checksums: loaded unverified
    torch.save(state, path)
    with pytest.raises(DebiasclError, match=f"checkpoint '{re.escape(str(path))}'") as error:
        train(tiny_config("simclr", 2, 512), run_dir, resume=True)
    assert re.search(message, str(error.value)) and "\n" not in str(error.value)
