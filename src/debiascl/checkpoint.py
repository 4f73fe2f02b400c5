"""Training checkpoints: atomic writes, safe loading with clear errors, RNG state, reloading.

A checkpoint is one ``torch.save`` file holding a dict:

- ``format`` (:data:`FORMAT`) and ``version`` (:data:`VERSION`): identify our files;
- ``method``: the method name; ``config``: the resolved config as a plain dict;
- ``model``: the method's ``state_dict`` (every encoder);
- ``optimizers``, ``schedulers``: one state dict per parameter group name ("d", "b");
- ``scaler``: the fp16 GradScaler's state dict, or None;
- ``rng``: one entry per rank from :func:`capture_rng_state` (python, numpy, torch CPU and the
  rank's CUDA device);
- ``epoch`` (0-based epoch in progress), ``position`` (batches of that epoch already done),
  ``global_step`` (batches done in all, skipped ones included), ``skipped_steps``,
  ``consecutive_skips``; ``epoch_sums``, ``epoch_steps``, ``epoch_skipped``, ``epoch_seconds``
  (running totals of the epoch in progress, for its "epoch" log record);
- ``metrics_offset``: the size of metrics.jsonl when the checkpoint was written (a resumed run
  drops the lines written after it); ``world_size``: the number of DDP ranks that wrote it;
- ``model_info``: the data set's name, kind, input shape and class count
  (:class:`debiascl.models.ModelInfo`), so the model is rebuilt without opening the data
  (checkpoints written before this entry existed lack it: the train split is then opened);
- ``checksum``: :func:`state_digest` of everything else, added by :func:`save_checkpoint` and
  verified by :func:`load_checkpoint`, so damaged bytes (in a tensor or anywhere else) are a
  clear error instead of a silently wrong model. A checkpoint written before checksums existed
  has none and loads unverified.

Everything in it is a tensor, a number, a string or a container of those (numpy RNG state is
stored as a tensor), so it loads with ``torch.load(weights_only=True)``: no code runs on load.

:class:`TrainingState` turns a trainer's objects into such a dict and back; resuming checks
that the settings did not change (:func:`check_resumable`) and that the weights fit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pickle
import random
import zipfile
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from debiascl.atomic import write_atomic
from debiascl.config import Config, load_config, saved_method_section
from debiascl.data.loading import configured_dataset
from debiascl.errors import DebiasclError
from debiascl.methods import Method, build_method
from debiascl.models import DatasetInfo, ModelInfo
from debiascl.rundir import (
    CONFIG_FILE,
    checkpoint_path,
    config_path,
    prepare_run_dir,
    reopen,
)

LOGGER = logging.getLogger("debiascl")
FORMAT = "debiascl-checkpoint"
VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"
REQUIRED_KEYS = (
    "format",
    "version",
    "method",
    "config",
    "model",
    "optimizers",
    "schedulers",
    "rng",
    "epoch",
    "position",
    "global_step",
)
ENTRY_TYPES: dict[str, type | tuple[type, ...]] = {
    "method": str,
    "config": dict,
    "model": dict,
    "optimizers": dict,
    "schedulers": dict,
    "rng": list,
    "epoch": int,
    "position": int,
    "global_step": int,
    "skipped_steps": int,
    "consecutive_skips": int,
    "epoch_sums": dict,
    "epoch_steps": int,
    "epoch_skipped": int,
    "epoch_seconds": (int, float),
    "metrics_offset": int,
    "model_info": dict,
    "checksum": str,
}
"""The type of each entry (when present); any other is a damaged checkpoint."""


def _feed(digest: Any, value: Any) -> None:
    """Hash ``value`` (tensors by dtype, shape and bytes; containers in their order)."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, list | tuple):
        digest.update(f"{type(value).__name__[0]}{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"V{type(value).__name__}:{value!r};".encode())


def state_digest(state: dict[str, Any]) -> str:
    """The sha256 (hex) of a checkpoint's entries other than ``checksum``, in their order."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in state.items() if key != "checksum"})
    return digest.hexdigest()


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` and its ``checksum`` (:func:`state_digest`) to ``path`` atomically.

    A reader sees the old checkpoint or the new one, never a partial file
    (:func:`debiascl.atomic.write_atomic`); if the disk is full the old one stays and the error
    says so.
    """
    payload = {**state, "checksum": state_digest(state)}
    write_atomic(path, lambda file: torch.save(payload, file))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, on CPU.

    Raises:
        DebiasclError: the file is missing, truncated, damaged (its checksum does not match) or
            not a torch file, holds objects other than tensors and containers, or is not a
            debiascl checkpoint of this version.
    """
    path = Path(path)
    if not path.is_file():
        raise DebiasclError(f"checkpoint '{path}' does not exist")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as file:
            starts_like_zip = file.read(4) == ZIP_MAGIC
        problem = "is truncated" if starts_like_zip else "is not a torch checkpoint file"
        raise DebiasclError(
            f"checkpoint '{path}' {problem} (expected the zip format of torch.save); delete it "
            "to start again, or restore a good copy"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "unsupported global" not in str(error).lower():  # e.g. "Unsupported operand 255"
            raise damaged_checkpoint(path, _weights_only_detail(error)) from None
        raise DebiasclError(
            f"checkpoint '{path}' is not a debiascl checkpoint: it holds Python objects "
            "other than tensors and containers, which are not loaded for safety"
        ) from None
    except Exception as error:  # any other failure to deserialise means a damaged file
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise DebiasclError(
            f"checkpoint '{path}' is corrupt ({lines[0]}); delete it to start again, or "
            "restore a good copy"
        ) from None
    _check_format(state, path)
    if "checksum" in state and state["checksum"] != state_digest(state):
        raise damaged_checkpoint(
            path, ValueError("its checksum does not match its content (damaged bytes)")
        )
    return state


def _weights_only_detail(error: pickle.UnpicklingError) -> Exception:
    """The line of torch's long weights-only message that says what was wrong."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    found = [line for line in lines if line.lower().startswith("unsupported")]
    return pickle.UnpicklingError(found[0] if found else lines[0] if lines else "")


def _check_format(state: Any, path: Path) -> None:
    """Reject files that are torch files but not our checkpoints (or of another version)."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DebiasclError(
            f"checkpoint '{path}' is not a debiascl checkpoint (no '{FORMAT}' format tag); "
            "expected a file written by `debiascl train`"
        )
    if state.get("version") != VERSION:
        raise DebiasclError(
            f"checkpoint '{path}' has format version {state.get('version')!r}; this debiascl "
            f"reads version {VERSION}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise DebiasclError(f"checkpoint '{path}' lacks the entries {', '.join(missing)}")
    wrong = [
        f"{key} is a {type(state[key]).__name__}"
        for key, expected in ENTRY_TYPES.items()
        if key in state and (not isinstance(state[key], expected) or isinstance(state[key], bool))
    ]
    if not wrong and not all(isinstance(section, dict) for section in state["config"].values()):
        wrong.append("config is not a mapping of sections")
    if wrong:
        raise DebiasclError(f"checkpoint '{path}' is damaged: {'; '.join(wrong)}")


def damaged_checkpoint(path: str | Path, error: Exception) -> DebiasclError:
    """The user error for a checkpoint whose content does not fit the run restoring it.

    Args:
        path: the checkpoint file.
        error: what restoring raised (e.g. a KeyError from ``load_state_dict``); its first line
            is quoted.
    """
    detail = (str(error).strip().splitlines() or [""])[0] or type(error).__name__
    return DebiasclError(
        f"checkpoint '{path}' is damaged or was written with another configuration "
        f"({type(error).__name__}: {detail}); delete it to start again, or restore a good copy"
    )


EXTRA_STATE = "_extra_state"
"""The state-dict key suffix of a module's extra state (e.g. GroupDRO's group weights q), whose
shape is the module's own business (q is empty until training sees the groups)."""


def check_compatible(state: dict[str, Any], method: torch.nn.Module, path: str | Path) -> None:
    """Check that ``state`` holds weights for ``method``: same method, keys and shapes (extra
    states: same keys).

    Raises:
        DebiasclError: naming the method names, or the first few parameters whose presence or
            shape differ.
    """
    name = getattr(method, "name", None)
    if state["method"] != name:
        raise DebiasclError(
            f"checkpoint '{path}' was written by method '{state['method']}', but the run "
            f"uses method '{name}'"
        )
    ours = {key: tuple(value.shape) for key, value in method.state_dict().items()}
    theirs = {
        key: tuple(value.shape)
        for key, value in state["model"].items()
        if isinstance(value, torch.Tensor)
    }
    problems = [f"{key} is not a tensor" for key in state["model"] if key not in theirs]
    problems += [f"{key} missing from checkpoint" for key in ours if key not in state["model"]]
    problems += [f"{key} unexpected in checkpoint" for key in theirs if key not in ours]
    problems += [
        f"{key} has shape {theirs[key]} in checkpoint, {ours[key]} in the model"
        for key in ours
        if key in theirs and theirs[key] != ours[key] and not key.endswith(EXTRA_STATE)
    ]
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        raise DebiasclError(
            f"checkpoint '{path}' does not fit the model built from the config: {shown}"
        )


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The random states a training step draws from, as a dict a checkpoint can hold.

    python's, numpy's and torch's CPU generators and, when ``device`` is a CUDA device, that
    device's generator: the one this process trains on (other GPUs belong to other ranks).
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Inverse of :func:`capture_rng_state`; a saved CUDA generator state goes to ``device``.

    A state saved on the CPU restores no CUDA generator, and one saved on a GPU restores none
    when resuming on the CPU.
    """
    random.setstate(_as_tuples(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_tuples(value: Any) -> Any:
    """Lists back to tuples (python's random state must be nested tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(item) for item in value)
    return value


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- resuming

RESUMABLE_SETTINGS = frozenset(
    {
        "train.epochs",
        "train.device",
        "train.channels_last",
        "train.malloc_tuning",
        "train.progress",
        "train.log_every",
        "train.checkpoint_every",
        "train.knn_every",
        "train.knn_k",
        "data.root",
        "data.root_given",
        "data.download",
        "data.num_workers",
        "data.cache",
        "data.cache_dir",
    }
)
"""Settings that may differ between a run and its resumption (they do not change the result)."""


def _flatten(config_dict: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{section}.{key}": value
        for section, values in config_dict.items()
        for key, value in values.items()
    }


def check_resumable(saved: dict[str, Any], config: Config, path: Path) -> None:
    """Refuse to resume with settings that change the result (all but RESUMABLE_SETTINGS);
    the method's are compared as its resolved options (:func:`saved_method_section`)."""
    old = _flatten({**saved, "method": saved_method_section(saved.get("method", {}), str(path))})
    new = _flatten(config.to_dict())
    changed = [
        f"{key} ({old.get(key)!r} in the checkpoint, {new.get(key)!r} now)"
        for key in sorted(set(old) | set(new))
        if key not in RESUMABLE_SETTINGS and old.get(key) != new.get(key)
    ]
    if changed:
        raise DebiasclError(
            f"cannot resume from '{path}' with different settings: {'; '.join(changed)}. "
            f"Resume with the settings of the original run (see its {CONFIG_FILE})"
        )


def open_run_dir(run_dir: Path, resume: bool, keep: Collection[str] = ()) -> dict[str, Any] | None:
    """Check ``run_dir`` for training (:func:`debiascl.rundir.prepare_run_dir`); on resume
    load its checkpoint and drop ``train_done`` (training goes on), else return None."""
    prepare_run_dir(run_dir, resume, keep)
    if not resume:
        return None
    state = load_checkpoint(checkpoint_path(run_dir))
    reopen(run_dir)
    return state


@dataclass
class Progress:
    """Where training stands; saved in checkpoints (all plain numbers)."""

    epoch: int = 0
    position: int = 0
    global_step: int = 0
    skipped_steps: int = 0
    consecutive_skips: int = 0
    epoch_sums: dict[str, float] = field(default_factory=dict)
    epoch_steps: int = 0
    epoch_skipped: int = 0
    epoch_seconds: float = 0.0

    def count_step(self, loss: float, logs: dict[str, torch.Tensor]) -> None:
        """Add a finite step's loss and logs (scalars) to the epoch's sums."""
        self.consecutive_skips = 0
        self.epoch_steps += 1
        for key, value in {"loss": loss, **logs}.items():
            self.epoch_sums[key] = self.epoch_sums.get(key, 0.0) + float(value)

    def count_skip(self) -> None:
        """Count a step skipped for a non-finite loss."""
        self.skipped_steps += 1
        self.epoch_skipped += 1
        self.consecutive_skips += 1

    def start_epoch(self) -> None:
        """Reset the per-epoch counters."""
        self.position = 0
        self.epoch_sums = {}
        self.epoch_steps = 0
        self.epoch_skipped = 0
        self.epoch_seconds = 0.0


@dataclass
class TrainingState:
    """What a checkpoint saves of a run in training, besides the RNG and the log's size.

    Attributes:
        method: the method in training (its ``state_dict`` holds every encoder).
        optimizers, schedulers: one per parameter group name ("d", "b").
        scaler: the fp16 GradScaler (saved only when enabled).
        model_info: what rebuilds the model (:class:`debiascl.models.ModelInfo`).
        progress: the counters of :class:`Progress`.
    """

    method: torch.nn.Module
    optimizers: dict[str, Optimizer]
    schedulers: dict[str, LRScheduler]
    scaler: torch.amp.GradScaler
    model_info: ModelInfo
    progress: Progress = field(default_factory=Progress)

    def to_checkpoint(
        self, config: Config, rng: list[dict[str, Any]], metrics_offset: int, world_size: int
    ) -> dict[str, Any]:
        """The checkpoint dict (see the module docstring).

        Args:
            config: the run's configuration.
            rng: the RNG state of every rank, in rank order.
            metrics_offset: the size of metrics.jsonl now.
            world_size: the number of DDP ranks.
        """
        return {
            "format": FORMAT,
            "version": VERSION,
            "method": self.method.name,
            "config": config.to_dict(),
            "model": self.method.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": rng,
            "metrics_offset": metrics_offset,
            "world_size": world_size,
            "model_info": self.model_info.to_dict(),
            **asdict(self.progress),
        }

    def restore(
        self,
        state: dict[str, Any],
        config: Config,
        path: Path,
        rank: int,
        world_size: int,
        device: torch.device,
    ) -> int:
        """Restore everything from a loaded checkpoint; returns its metrics.jsonl offset.

        The RNG of ``rank`` is restored when ``world_size`` ranks wrote the checkpoint; else
        (another number of processes) the augmentations are reseeded, with a warning.

        Raises:
            DebiasclError: the checkpoint was written with other settings, or its content does
                not fit this run (a damaged file, or one from another configuration).
        """
        check_resumable(state["config"], config, path)
        check_compatible(state, self.method, path)
        try:
            self._load(state)
            if len(state["rng"]) == world_size:
                restore_rng_state(state["rng"][rank], device)
            else:
                LOGGER.warning(
                    "checkpoint written by %d processes, resumed with %d: augmentations are "
                    "reseeded",
                    len(state["rng"]),
                    world_size,
                )
                seed_everything(config.train.seed + rank + 7919 * self.progress.global_step)
            return state["metrics_offset"]
        except (KeyError, TypeError, AttributeError, ValueError, RuntimeError, IndexError) as e:
            raise damaged_checkpoint(path, e) from e

    def _load(self, state: dict[str, Any]) -> None:
        """Load the weights, optimizers, schedulers, scaler and progress of ``state``."""
        self.method.load_state_dict(state["model"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        if state["scaler"] is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(
            **{key: state[key] for key in Progress.__dataclass_fields__ if key in state}
        )


# ----------------------------------------------------------------------------- trained runs


def _model_info(state: dict[str, Any], config: Config, path: Path) -> DatasetInfo:
    """What rebuilds the model: the checkpoint's ``model_info``, or (a checkpoint written
    before that entry existed) the training split itself, opened without its cache."""
    if "model_info" not in state:
        data = dataclasses.replace(config.data, cache=False)
        return configured_dataset(data, "train", download=data.download)
    try:
        return ModelInfo.from_dict(state["model_info"])
    except (KeyError, TypeError, ValueError) as error:
        raise damaged_checkpoint(path, error) from None


def load_trained(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Config, Method]:
    """The config and trained method of a run directory, in eval mode on ``device``.

    Reads ``run_dir/config.yaml`` and ``run_dir/checkpoints/last.pt``; the method is rebuilt
    from the config and the checkpoint's ``model_info`` (the training split is opened for its
    input shape and class count only for checkpoints without it).

    Raises:
        DebiasclError: the run directory, its config or its checkpoint is missing or unusable.
    """
    run_dir = Path(run_dir)
    config_file = config_path(run_dir)
    if not config_file.is_file():
        raise DebiasclError(f"'{run_dir}' is not a run directory: it has no {CONFIG_FILE}")
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise DebiasclError(f"run directory '{run_dir}' has no checkpoint at '{path}'")
    config = load_config(config_file, run=True)
    state = load_checkpoint(path)
    method = build_method(config, _model_info(state, config, path))
    check_compatible(state, method, path)
    method.load_state_dict(state["model"])
    return config, method.to(device).eval()
