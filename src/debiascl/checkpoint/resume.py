"""The resume policy: what a resumed run must share with its checkpoint, and what comes back.

:class:`TrainingCounters` holds the counters of a run in training (where it stands: epoch,
position, steps; not the compare command's progress lines); :class:`TrainingState` turns a
trainer's objects (method, optimizers, schedulers, scaler, counters) into a checkpoint dict
(:mod:`debiascl.checkpoint.file_format`) and back. Resuming refuses settings that change the result
(:func:`check_resumable`) and weights that do not fit, and restores each rank's RNG state (or
reseeds when the number of processes changed), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from debiascl.checkpoint.file_format import (
    FORMAT,
    VERSION,
    check_compatible,
    damaged_checkpoint,
    load_checkpoint,
)
from debiascl.checkpoint.rng import restore_rng_state, seed_everything
from debiascl.config import Config, saved_method_section
from debiascl.errors import DebiasclError
from debiascl.models import ModelInfo
from debiascl.rundir import CONFIG_FILE, checkpoint_path, prepare_run_dir, reopen

LOGGER = logging.getLogger("debiascl")

RESUMABLE_SETTINGS = frozenset(
    {
        "train.epochs",
        "train.device",
        "train.channels_last",
        "train.malloc_tuning",
        "train.progress",
        "train.log_every",
        "train.checkpoint_every",
        "train.checkpoint_epochs",
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
class TrainingCounters:
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
        progress: the counters of :class:`TrainingCounters`.
    """

    method: torch.nn.Module
    optimizers: dict[str, Optimizer]
    schedulers: dict[str, LRScheduler]
    scaler: torch.amp.GradScaler
    model_info: ModelInfo
    progress: TrainingCounters = field(default_factory=TrainingCounters)

    def to_checkpoint(
        self, config: Config, rng: list[dict[str, Any]], metrics_offset: int, world_size: int
    ) -> dict[str, Any]:
        """The checkpoint dict (see :mod:`debiascl.checkpoint.file_format`).

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
        self.progress = TrainingCounters(
            **{key: state[key] for key in TrainingCounters.__dataclass_fields__ if key in state}
        )
