"""JTT, "Just Train Twice" (Liu et al., ICML 2021): two ERM runs, the second up-weighting errors.

Stage 1 trains ERM for ``method.jtt_epochs`` (T) epochs into ``run_dir/stage1`` (an ordinary
ERM run directory: own config, checkpoints, logs, ``train_done``). Its classifier then predicts
the un-augmented training split (the view pipeline's ``prepare``, eval mode); the samples it
gets wrong form the error set, saved in ``run_dir/error_set.json`` with, when the data set has
bias labels, the set's composition by group (y, a) and how many of the training split's
bias-conflicting samples it caught (JTT's own diagnostic).

Stage 2 trains a fresh model (method "jtt": ERM's model and step, new initialisation) for
``train.epochs`` epochs into ``run_dir`` itself, so ``run_dir/checkpoints/last.pt`` and
``train_done`` are the final model's and evaluation treats the run like any other.

Up-weighting is by resampling, as in the authors' code: each epoch draws every error-set sample
``method.jtt_upweight`` (lambda_up) times and every other sample once, shuffled together, so an
epoch holds n + (lambda_up - 1) * |error set| samples; the data order stays a pure function of
(seed, epoch) (see :func:`debiascl.data.sampling.epoch_order`). This is the paper's
objective lambda_up * sum_error CE + sum_other CE. (The authors' script concatenates the
training set with lambda_up further copies of the error set, i.e. lambda_up + 1 draws per error
sample; the paper's hyper-parameters were tuned with that script.)

The stage machinery (:func:`train_stage1`, :func:`train_stage2`) also serves the runs that
discover their own groups first (:mod:`debiascl.discovery.stage`).

``run_dir/config.yaml`` (the JTT config) is written when the run starts. Resume
(``resume=True``; possible as soon as ``run_dir/stage1`` exists, see
:func:`debiascl.rundir.resumable`): a finished stage 1 (``stage1/train_done``) is never retrained
and a saved error set is reused; otherwise stage 1 continues from its own checkpoint (or starts
over when it had none). Stage 2 continues from ``run_dir/checkpoints/last.pt`` when it has one,
else starts afresh.
"""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from debiascl import metrics
from debiascl.atomic import write_json
from debiascl.checkpoint import check_resumable, load_trained
from debiascl.config import Config, load_yaml
from debiascl.data import BiasedDataset
from debiascl.data.loading import configured_dataset, configured_views
from debiascl.distributed import Runtime, run_on_main
from debiascl.errors import DebiasclError
from debiascl.features import predict_classes
from debiascl.records import read_json
from debiascl.rundir import (
    CONFIG_FILE,
    ERROR_SET_FILE,
    STAGE1_DIR,
    checkpoint_path,
    clear_stage2_leftovers,
    config_path,
    error_set_path,
    final_step,
    prepare_run_dir,
    stage1_path,
    train_done_path,
)
from debiascl.training.loop import Trainer

LOGGER = logging.getLogger("debiascl")


# ----------------------------------------------------------------------------- settings


def stage1_config(config: Config) -> Config:
    """The stage-1 run: ERM with the JTT run's settings for ``method.jtt_epochs`` epochs."""
    stage1 = copy.deepcopy(config)
    stage1.method.name = "erm"
    stage1.train.epochs = config.method.jtt_epochs
    return stage1


# ----------------------------------------------------------------------------- the error set


def bias_conflicting(dataset: BiasedDataset) -> torch.Tensor | None:
    """(n,) bool: the training samples whose bias attribute is not their class's usual one.

    :attr:`BiasedDataset.bias_conflicting` (the one definition of alignment); samples with an
    unknown attribute (-1) never count. None when the data set has no bias attribute.
    """
    return dataset.bias_conflicting


def group_counts(dataset: BiasedDataset, indices: torch.Tensor) -> torch.Tensor:
    """(num_classes, num_attributes) int64: samples of ``indices`` (k,) per group (y, a).

    :func:`debiascl.metrics.group_counts` of the chosen samples; a = -1 is not counted.
    """
    counts = metrics.group_counts(
        dataset.targets[indices],
        dataset.attributes[indices],
        dataset.num_classes,
        dataset.num_attributes,
    )
    return torch.from_numpy(counts)


def composition(dataset: BiasedDataset, indices: torch.Tensor) -> dict[str, Any] | None:
    """The error set by group (y, a) and its catch of bias-conflicting samples (JTT's check).

    Args:
        dataset: the training split.
        indices: (k,) int64 indices of the error set.

    Returns:
        None without bias labels; else {"groups": one entry per (y, a) with ``in_error_set``
        and ``in_train`` counts, "conflicting_in_train", "conflicting_caught",
        "conflicting_recall" (caught / in train) and "conflicting_share" (caught / k)}.
    """
    conflicting = bias_conflicting(dataset)
    if conflicting is None:
        return None
    in_train = dataset.group_counts
    in_error = group_counts(dataset, indices)
    caught, total = int(conflicting[indices].sum()), int(conflicting.sum())
    return {
        "groups": [
            {
                "y": y,
                "a": a,
                "class": dataset.class_names[y],
                "attribute": dataset.attribute_names[a],
                "in_error_set": int(in_error[y, a]),
                "in_train": int(in_train[y, a]),
            }
            for y in range(dataset.num_classes)
            for a in range(dataset.num_attributes)
        ],
        "conflicting_in_train": total,
        "conflicting_caught": caught,
        "conflicting_recall": caught / total if total else None,
        "conflicting_share": caught / len(indices) if len(indices) else None,
    }


def compute_error_set(config: Config, stage1_dir: Path, device: torch.device) -> dict[str, Any]:
    """The training samples the finished stage-1 model misclassifies, as a JSON-ready record.

    Returns:
        {"jtt_epochs", "jtt_upweight", "stage1_step", "train_size", "size" (k),
        "epoch_size" (samples per stage-2 epoch), "indices" (k sorted ints), "composition"}.
    """
    _, method = load_trained(stage1_dir, device)
    dataset = configured_dataset(config.data, "train", config.data.download)
    views = configured_views(config.data, dataset).to(device)
    predictions = predict_classes(method, dataset, views.prepare, device)
    indices = torch.nonzero(predictions != dataset.targets).flatten()
    factor = config.method.jtt_upweight
    return {
        "jtt_epochs": config.method.jtt_epochs,
        "jtt_upweight": factor,
        "stage1_step": final_step(stage1_dir) or 0,
        "train_size": len(dataset),
        "size": len(indices),
        "epoch_size": len(dataset) + (factor - 1) * len(indices),
        "indices": indices.tolist(),
        "composition": composition(dataset, indices),
    }


def log_error_set(record: dict[str, Any]) -> None:
    """One log line for the error set, and one for its catch of bias-conflicting samples."""
    LOGGER.info(
        "JTT error set: %d of %d training samples misclassified after %d epochs",
        record["size"],
        record["train_size"],
        record["jtt_epochs"],
    )
    if record["size"] == 0:
        LOGGER.warning(
            "JTT error set is empty: stage 2 is plain ERM; lower method.jtt_epochs so that "
            "stage 1 does not fit every training sample"
        )
    found = record["composition"]
    if found is not None:
        groups = ", ".join(
            f"(y={g['y']}, a={g['a']}) {g['in_error_set']}/{g['in_train']}" for g in found["groups"]
        )
        LOGGER.info(
            "JTT error set caught %d of %d bias-conflicting training samples; by group: %s",
            found["conflicting_caught"],
            found["conflicting_in_train"],
            groups,
        )


def upweight_repeats(num_samples: int, indices: list[int], factor: int) -> torch.Tensor:
    """(num_samples,) int64 draws per epoch: ``factor`` for the error set, 1 for the rest."""
    repeats = torch.ones(num_samples, dtype=torch.long)
    repeats[torch.as_tensor(indices, dtype=torch.long)] = factor
    return repeats


# ----------------------------------------------------------------------------- the two stages


def _check_finished_stage1(expected: Config, stage1_dir: Path, epochs_setting: str) -> None:
    """Refuse to reuse a finished stage 1 trained with other settings than ``expected``."""
    saved = load_yaml(config_path(stage1_dir))
    check_resumable(saved, expected, config_path(stage1_dir))
    trained = saved.get("train", {}).get("epochs")
    if trained != expected.train.epochs:
        raise DebiasclError(
            f"cannot resume: stage 1 in '{stage1_dir}' trained {trained} epochs but "
            f"setting '{epochs_setting}' = {expected.train.epochs}; resume with the original "
            "value or start a new run"
        )


def _prepare(run_dir: Path, resume: bool, derived: Path | None) -> bool:
    """Check ``run_dir``, clear half-started pieces (and ``derived``, what stage 1's result
    made, when stage 1 is not finished); True when stage 1 is already finished."""
    stage1_dir = stage1_path(run_dir)
    if not resume:
        prepare_run_dir(run_dir, resume=False)
        return False
    if not stage1_dir.is_dir():
        raise DebiasclError(
            f"resume=True: '{run_dir}' holds no stage-1 run ('{stage1_dir}') to resume "
            "from; start the run without resume=True"
        )
    if train_done_path(stage1_dir).is_file():
        return True
    if derived is not None:
        derived.unlink(missing_ok=True)
    if not checkpoint_path(stage1_dir).is_file():
        shutil.rmtree(stage1_dir)  # stopped before its first checkpoint: start stage 1 over
    return False


def error_set_problem(record: Any) -> str | None:
    """What is wrong with the shape of an ``error_set.json``'s content, or None."""
    if not isinstance(record, dict):
        return f"it holds a JSON {type(record).__name__}, not a mapping"
    for key in ("jtt_epochs", "jtt_upweight", "train_size", "size", "epoch_size"):
        if not isinstance(record.get(key), int) or isinstance(record.get(key), bool):
            return f"'{key}' is {record.get(key)!r}, expected an integer"
    indices = record.get("indices")
    if not isinstance(indices, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < record["train_size"]
        for i in indices
    ):
        return f"'indices' is not a list of sample indices below {record['train_size']}"
    if len(indices) != record["size"]:
        return f"'size' is {record['size']} but it lists {len(indices)} indices"
    if record.get("composition") is not None and not isinstance(record["composition"], dict):
        return "'composition' is not a mapping"
    return None


def train_stage1(
    config: Config,
    stage1: Config,
    run_dir: Path,
    runtime: Runtime,
    resume: bool,
    epochs_setting: str,
    derived: Path | None = None,
) -> None:
    """Stage 1 of a two-stage run: ``stage1`` trained into ``run_dir/stage1`` (resumable).

    Writes ``config`` (the run's own) as ``run_dir/config.yaml`` when the run starts; a finished
    stage 1 is never retrained (its settings are checked), an unfinished one continues from its
    checkpoint or starts over.

    Args:
        config: the run's configuration.
        stage1: stage 1's configuration.
        run_dir: the run directory (locked by the caller).
        runtime: rank, world size and device.
        resume: continue a stopped run.
        epochs_setting: the setting that gives stage 1's epochs (named in errors).
        derived: a file made from stage 1's result, removed when stage 1 is redone.
    """
    stage1_dir = stage1_path(run_dir)
    stage1_done = run_on_main(runtime, lambda: _prepare(run_dir, resume, derived))
    if runtime.is_main and not resume:
        config.save(config_path(run_dir))  # marks the folder as this run's from the start
    if stage1_done:
        run_on_main(runtime, lambda: _check_finished_stage1(stage1, stage1_dir, epochs_setting))
        LOGGER.info("stage 1 finished earlier (%s): not retrained", stage1_dir)
        return
    LOGGER.info(
        "stage 1: %s for %d epochs into %s", stage1.method.name, stage1.train.epochs, stage1_dir
    )
    stage1_resume = checkpoint_path(stage1_dir).is_file()
    Trainer(stage1, stage1_dir, runtime, stage1_resume).run()


def train_stage2(
    config: Config,
    run_dir: Path,
    runtime: Runtime,
    repeats: torch.Tensor | None = None,
    keep: tuple[str, ...] = (STAGE1_DIR, CONFIG_FILE),
) -> Path:
    """Stage 2: the final model into ``run_dir`` itself, continuing its checkpoint if any."""
    stage2_resume = checkpoint_path(run_dir).is_file()
    if not stage2_resume and runtime.is_main:
        clear_stage2_leftovers(run_dir)
    return Trainer(config, run_dir, runtime, stage2_resume, repeats=repeats, keep=keep).run()


def _error_set(config: Config, run_dir: Path, device: torch.device) -> dict[str, Any]:
    """The saved error set of ``run_dir``, or a freshly computed (and saved) one; a saved one
    of the wrong shape (:func:`error_set_problem`) is computed again with a log line."""
    path = error_set_path(run_dir)
    problem = None
    if path.is_file():
        try:
            record = read_json(path, "JTT error set", "it is computed again from stage 1")
            problem = error_set_problem(record)
        except DebiasclError as error:
            problem = str(error)
        if problem is not None:
            LOGGER.warning("JTT error set '%s' is unusable (%s); computing it again", path, problem)
    if path.is_file() and problem is None:
        if record.get("jtt_epochs") != config.method.jtt_epochs:
            raise DebiasclError(
                f"cannot resume: '{path}' was made after {record.get('jtt_epochs')} stage-1 "
                f"epochs but setting 'method.jtt_epochs' = {config.method.jtt_epochs}"
            )
        return record
    record = compute_error_set(config, stage1_path(run_dir), device)
    write_json(path, record)
    log_error_set(record)
    return record


def train_jtt(config: Config, run_dir: Path, runtime: Runtime, resume: bool = False) -> Path:
    """Run JTT's two stages into ``run_dir`` (see the module docstring); returns ``run_dir``.

    Args:
        config: a validated configuration with ``method.name == "jtt"``.
        run_dir: the run directory; absent or empty unless ``resume``.
        runtime: this process's rank, world size and device (from ``train``).
        resume: continue a stopped JTT run (a finished stage 1 is not retrained).

    Raises:
        DebiasclError: a user error (busy run directory,
            nothing to resume, settings that differ from the stopped run's).
    """
    factor = config.method.jtt_upweight
    train_stage1(
        config,
        stage1_config(config),
        run_dir,
        runtime,
        resume,
        "method.jtt_epochs",
        error_set_path(run_dir),
    )
    record = run_on_main(runtime, lambda: _error_set(config, run_dir, runtime.device))
    repeats = upweight_repeats(record["train_size"], record["indices"], factor)
    LOGGER.info(
        "JTT stage 2: a fresh model for %d epochs of %d samples (%d error samples x %d)",
        config.train.epochs,
        int(repeats.sum()),
        record["size"],
        factor,
    )
    keep = (STAGE1_DIR, ERROR_SET_FILE, CONFIG_FILE)
    return train_stage2(config, run_dir, runtime, repeats, keep)
