"""Checkpoints: atomic writes, clear errors for bad files, RNG state, exact resume after SIGKILL."""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import minimal_state, train_args

import debiascl.data.loading
import debiascl.training.loop
from debiascl.checkpoint import (
    FORMAT,
    VERSION,
    capture_rng_state,
    check_compatible,
    load_checkpoint,
    load_trained,
    restore_rng_state,
    save_checkpoint,
)
from debiascl.config import build_config
from debiascl.errors import DebiasclError
from debiascl.evaluate import evaluate_run
from debiascl.rundir import checkpoint_path
from debiascl.train import train


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    state = minimal_state(model={"w": torch.arange(6.0).view(2, 3)}, rng=[capture_rng_state()])
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left


def test_failed_save_keeps_the_old_file_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, minimal_state(global_step=1))
    real_save = torch.save

    def crash_mid_write(obj: object, file, *args, **kwargs) -> None:
        real_save(obj, file, *args, **kwargs)
        file.seek(file.tell() // 2)
        file.truncate()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(DebiasclError, match=f"cannot write '{path}': no space left on device"):
        save_checkpoint(path, minimal_state(global_step=2))
    monkeypatch.undo()
    assert load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_rng_state_round_trips_through_a_file(tmp_path: Path) -> None:
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    save_checkpoint(tmp_path / "c.pt", minimal_state(rng=[capture_rng_state()]))
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"][0])
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.rand(4), expected[1])
    assert [random.random() for _ in range(4)] == expected[2]


def test_truncated_and_non_torch_files_give_clear_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint(good, minimal_state(model={"w": torch.zeros(1000)}))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DebiasclError, match=r"truncated\.pt' is truncated"):
        load_checkpoint(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    with pytest.raises(DebiasclError, match=r"notes\.pt' is not a torch checkpoint file"):
        load_checkpoint(text)
    with pytest.raises(DebiasclError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_foreign_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(DebiasclError, match="not a debiascl checkpoint"):
        load_checkpoint(foreign)
    pickled = tmp_path / "object.pt"
    torch.save({"format": FORMAT, "thing": pickle.PickleError()}, pickled)
    with pytest.raises(DebiasclError, match="not a debiascl checkpoint: it holds Python objects"):
        load_checkpoint(pickled)
    future = tmp_path / "future.pt"
    torch.save(minimal_state(version=VERSION + 1), future)
    with pytest.raises(DebiasclError, match=f"format version {VERSION + 1}"):
        load_checkpoint(future)
    partial = minimal_state()
    del partial["optimizers"]
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(DebiasclError, match="lacks the entries optimizers"):
        load_checkpoint(tmp_path / "partial.pt")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"optimizers": 0}, "optimizers is a int"),
        ({"config": "a string"}, "config is a str"),
        ({"rng": {}}, "rng is a dict"),
        ({"epoch": 0.5, "global_step": True}, "epoch is a float; global_step is a bool"),
        ({"metrics_offset": None}, "metrics_offset is a NoneType"),
        ({"config": {"train": [1]}}, "config is not a mapping of sections"),
    ],
)
def test_entries_of_the_wrong_type_are_a_damaged_checkpoint(
    tmp_path: Path, entries: dict, message: str
) -> None:
    path = tmp_path / "damaged.pt"
    torch.save(minimal_state(**entries), path)
    with pytest.raises(DebiasclError, match=rf"damaged\.pt' is damaged: {re.escape(message)}$"):
        load_checkpoint(path)


def test_mismatched_method_or_shapes_are_named() -> None:
    class Tiny(torch.nn.Module):
        name = "wcl"

        def __init__(self, width: int) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, width)

    state = minimal_state(method="wcl", model=Tiny(4).state_dict())
    check_compatible(state, Tiny(4), "c.pt")
    with pytest.raises(
        DebiasclError, match=r"layer.weight has shape \(4, 3\) in checkpoint, \(5, 3\)"
    ):
        check_compatible(state, Tiny(5), "c.pt")
    with pytest.raises(
        DebiasclError, match="written by method 'simclr', but the run uses method 'wcl'"
    ):
        check_compatible(minimal_state(model=Tiny(4).state_dict()), Tiny(4), "c.pt")


def _cli(out: Path, *extra: str) -> list[str]:
    """``python -m debiascl train``: WCL on biased-digits for 2 epochs with RESUME_SETTINGS."""
    args = train_args(
        out, *extra, dataset="biased-digits", method="wcl", epochs=2, settings=RESUME_SETTINGS
    )
    return [sys.executable, "-m", "debiascl", *args]


TRAIN_SIZE = 1079  # biased-digits training split
RESUME_BATCH = 32
"""Small, so that an epoch has 33 steps: however late the kill after the first checkpoint (of
step 1), the run is still far from the end of epoch 1, and the last checkpoint is mid-epoch."""
STEPS_PER_EPOCH = TRAIN_SIZE // RESUME_BATCH
RESUME_SETTINGS = (
    f"train.batch_size={RESUME_BATCH}",  # overrides --batch-size 256 of train_args
    "data.options.image_size=8",
    "train.checkpoint_every=1",
    "train.knn_every=0",
    "train.log_every=1",
    "optim.milestones=[1]",  # the learning rates change after epoch 1: schedulers must resume
)


def _wait_for_mid_epoch_checkpoint(process: subprocess.Popen, path: Path) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_equals_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen(_cli(killed), env=env, stderr=subprocess.PIPE)
    checkpoint_file = killed / "checkpoints" / "last.pt"
    try:
        _wait_for_mid_epoch_checkpoint(process, checkpoint_file)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    interrupted = load_checkpoint(checkpoint_file)
    assert interrupted["epoch"] == 0 and 0 < interrupted["position"] < STEPS_PER_EPOCH
    assert not (killed / "train_done").exists()

    resumed = subprocess.run(_cli(killed, "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr

    config = build_config(
        preset="biased-digits",
        overrides={"method.name": "wcl", "train.epochs": 2, "train.device": "cpu"},
        sets=list(RESUME_SETTINGS),
    )
    assert config.train.batch_size == RESUME_BATCH
    reference = train(config, tmp_path / "reference")
    got = load_checkpoint(checkpoint_file)
    want = load_checkpoint(reference / "checkpoints" / "last.pt")
    assert got["global_step"] == want["global_step"] == 2 * STEPS_PER_EPOCH
    assert got["model"].keys() == want["model"].keys()
    for key in want["model"]:
        assert torch.equal(got["model"][key], want["model"][key]), key
    assert got["schedulers"] == want["schedulers"]
    # metrics.jsonl holds each step once (lines written after the checkpoint were dropped),
    # with the same values as the uninterrupted run's.
    assert _untimed_records(killed) == _untimed_records(reference)


def _untimed_records(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if k not in ("samples_per_s", "wall_time_s")} for r in records
    ]


def test_checkpoint_epochs_saves_every_nth_epoch_and_the_last_and_a_run_resumes_from_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def config(epochs: int, checkpoint_epochs: int = 2):
        return build_config(
            preset="biased-digits",
            overrides={"method.name": "simclr", "train.epochs": epochs, "train.batch_size": 256},
            sets=[
                "data.options.image_size=8",
                "train.knn_every=0",
                "train.device=cpu",
                "train.checkpoint_every=1000",  # no save within an epoch
                f"train.checkpoint_epochs={checkpoint_epochs}",
            ],
        )

    saved: list[int] = []
    real_save = debiascl.training.loop.save_checkpoint

    def recording_save(path: Path, state: dict) -> None:
        saved.append(state["epoch"])
        real_save(path, state)
        if state["epoch"] == 2 and not (tmp_path / "killed").exists():
            # what a run killed during epoch 3 leaves behind
            (tmp_path / "killed" / "checkpoints").mkdir(parents=True)
            shutil.copy(path, tmp_path / "killed" / "checkpoints" / "last.pt")
            shutil.copy(path.parent.parent / "config.yaml", tmp_path / "killed" / "config.yaml")

    monkeypatch.setattr(debiascl.training.loop, "save_checkpoint", recording_save)
    uninterrupted = train(config(5), tmp_path / "run")
    assert saved == [2, 4, 5]
    saved.clear()
    train(config(5), tmp_path / "killed", resume=True)
    assert saved == [4, 5]
    saved.clear()
    every_epoch = train(config(5, checkpoint_epochs=1), tmp_path / "every-epoch")
    assert saved == [1, 2, 3, 4, 5]  # the default; saving more often changes no number
    want = load_checkpoint(checkpoint_path(uninterrupted))
    for other in (tmp_path / "killed", every_epoch):
        got = load_checkpoint(checkpoint_path(other))
        assert got["global_step"] == want["global_step"]
        for key in want["model"]:
            assert torch.equal(got["model"][key], want["model"][key]), key


def test_load_trained_rebuilds_the_method(tmp_path: Path) -> None:
    with pytest.raises(DebiasclError, match=r"no config\.yaml"):
        load_trained(tmp_path)
    config = build_config(
        preset="biased-digits",
        overrides={"method.name": "simclr", "train.epochs": 1, "train.batch_size": 512},
        sets=["data.options.image_size=8", "train.knn_every=0", "train.device=cpu"],
    )
    run_dir = train(config, tmp_path / "run")
    loaded_config, method = load_trained(run_dir)
    assert loaded_config == config and not method.training
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(value, saved[key]) for key, value in method.state_dict().items())


def test_a_run_from_before_model_info_still_loads_evaluates_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = build_config(
        preset="biased-digits",
        overrides={"method.name": "simclr", "train.epochs": 1, "train.batch_size": 512},
        sets=["data.options.image_size=8", "train.knn_every=0", "train.device=cpu"],
    )
    run_dir = train(config, tmp_path / "run")
    path = checkpoint_path(run_dir)
    state = load_checkpoint(path)
    assert state["model_info"] == {
        "name": "biased-digits",
        "kind": "image",
        "input_shape": [3, 8, 8],
        "num_classes": 10,
    }
    # The checkpoint as written before the entry existed (same version, no model_info).
    save_checkpoint(path, {k: v for k, v in state.items() if k not in ("model_info", "checksum")})
    _, method = load_trained(run_dir)
    weights = method.state_dict()
    assert all(torch.equal(value, state["model"][key]) for key, value in weights.items())
    assert evaluate_run(run_dir)["probe"]["metrics"]["accuracy"] > 0.1
    config.train.epochs = 2
    train(config, run_dir, resume=True)
    assert load_checkpoint(path)["model_info"] == state["model_info"]

    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_trained opened the data set")

    monkeypatch.setattr(debiascl.data.loading, "build_dataset", no_data)
    loaded_config, method = load_trained(run_dir)
    assert loaded_config == config and not method.training
