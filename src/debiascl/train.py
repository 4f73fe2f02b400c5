"""The training loop: devices, AMP, DDP, optimizers and schedules, checkpoints, exact resume, logs.

``train(config, run_dir)`` trains ``config.method.name`` on ``config.data.name`` and writes into
``run_dir``:

- ``config.yaml``: the resolved configuration;
- ``checkpoints/last.pt``: every ``train.checkpoint_every`` steps and at each epoch end
  (atomic, see :mod:`debiascl.checkpoint`);
- ``metrics.jsonl``: one JSON object per line, ``kind`` "step" (every ``train.log_every``
  steps), "epoch" (means over the epoch) or "knn" (the weighted kNN monitor), each with
  ``epoch`` (1-based) and ``step`` (batches done so far, counting skipped ones);
- ``tb/``: the same numbers as TensorBoard events;
- ``train_done``: written last, holding the final step;
- ``.lock``: held by the training process for the whole run (:mod:`debiascl.rundir_lock`).

Determinism. The data order of epoch e is a permutation drawn from a generator seeded by
(seed, e) only; augmentations draw from torch's global RNG, seeded once and saved in checkpoints;
the kNN monitor runs under a forked RNG, so it never changes the training trajectory. Hence on
CPU a run is reproducible bit for bit, and ``resume=True`` continues from the last checkpoint, in
the middle of an epoch, exactly as if the run had not stopped.

Distributed (``torchrun``): ``train.batch_size`` is the GLOBAL batch; each of the K ranks takes a
contiguous slice of batch_size / K samples of every global batch, the losses gather the
projections of all ranks with gradient, gradients are averaged over ranks after backward, and
BatchNorm statistics are computed over the global batch (torch's SyncBatchNorm on CUDA, a
gathering BatchNorm on CPU), so one step equals a single process on the global batch. Each rank
seeds its augmentations with ``seed + rank``. Logs and checkpoints come from rank 0.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sys
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim import SGD, Adam, Optimizer
from torch.optim.lr_scheduler import MultiStepLR
from torch.utils.data import DataLoader
from tqdm import tqdm

from debiascl.atomic import remove_path, remove_stale_temporaries, write_error
from debiascl.checkpoint import (
    FORMAT,
    VERSION,
    capture_rng_state,
    check_compatible,
    checkpoint_path,
    damaged_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from debiascl.config import Config, OptimConfig
from debiascl.data import BiasedDataset
from debiascl.data.loading import batch_loader, configured_dataset, resolve_workers
from debiascl.data.sampling import EpochBatchSampler, mix_seed
from debiascl.data.views import ViewPipeline, build_views
from debiascl.distributed import (
    Runtime,
    all_ranks_finite,
    average_gradients,
    gather_objects,
    prepare_distributed,
    run_on_main,
    setup_runtime,
)
from debiascl.errors import DebiasclError
from debiascl.features import knn_accuracy
from debiascl.methods import METHODS, Method, build_method
from debiascl.rundir_lock import LOCK_NAME, hold_run_dir

LOGGER = logging.getLogger("debiascl")
RESUMABLE_SETTINGS = frozenset(
    {
        "train.epochs",
        "train.device",
        "train.channels_last",
        "train.progress",
        "train.log_every",
        "train.checkpoint_every",
        "train.knn_every",
        "train.knn_k",
        "data.root",
        "data.download",
        "data.num_workers",
        "data.cache",
        "data.cache_dir",
    }
)
"""Settings that may differ between a run and its resumption (they do not change the result)."""
AUTOCAST_DTYPES = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# ----------------------------------------------------------------------------- seeding


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def use_channels_last(
    setting: bool | None, device: torch.device, data_kind: str, backbone: str
) -> bool:
    """Whether to train in the channels_last memory layout.

    Only images (4-D batches) have that layout. ``setting`` (``train.channels_last``) True or
    False forces it; None (auto) turns it on where it helps: CUDA training of a ResNet backbone,
    whose convolutions run faster on NHWC tensors (with tensor cores). It is off on the CPU and
    for the small CNN, whose tiny convolutions gain nothing from it.

    Args:
        setting: ``train.channels_last`` (True, False, or None for auto).
        device: the training device.
        data_kind: the data set's kind ("image" or "tabular").
        backbone: ``model.backbone``.
    """
    if data_kind != "image":
        return False
    if setting is not None:
        return setting
    return device.type == "cuda" and backbone.startswith("resnet")


# ----------------------------------------------------------------------------- optimization


def build_optimizers(groups: list[dict], optim: OptimConfig) -> dict[str, Optimizer]:
    """One optimizer per parameter group ("d", "b"), with the group's own learning rate."""
    optimizers: dict[str, Optimizer] = {}
    for group in groups:
        settings = {key: value for key, value in group.items() if key != "name"}
        if optim.name == "adam":
            optimizers[group["name"]] = Adam([settings], weight_decay=optim.weight_decay)
        else:
            optimizers[group["name"]] = SGD(
                [settings], momentum=optim.momentum, weight_decay=optim.weight_decay
            )
    return optimizers


class StepRunner:
    """One optimisation step: forward under autocast, non-finite check, backward, updates.

    Args:
        method: the method to train (already on ``device``).
        optimizers: one optimizer per parameter group.
        precision: "32", "bf16" or "fp16" (fp16 uses a GradScaler).
        device: the training device.
        world_size: number of DDP ranks (gradients are averaged over them).
    """

    def __init__(
        self,
        method: Method,
        optimizers: dict[str, Optimizer],
        precision: str,
        device: torch.device,
        world_size: int = 1,
    ) -> None:
        self.method = method
        self.optimizers = optimizers
        self.device = device
        self.world_size = world_size
        self.autocast_dtype = AUTOCAST_DTYPES[precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step(
        self, views: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor | None = None
    ) -> tuple[float, dict[str, torch.Tensor]] | None:
        """Train on one batch of views (B, ...) each; None when the loss was not finite.

        A non-finite loss (on any rank) skips the step: no backward, no parameter change.
        """
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        ):
            loss, logs = self.method.training_step(views, targets)
        if not all_ranks_finite(loss, self.world_size):
            return None
        self.scaler.scale(loss).backward()
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                average_gradients(group["params"], self.world_size)
            self.scaler.step(optimizer)
        self.scaler.update()
        return float(loss.detach()), logs


# ----------------------------------------------------------------------------- logging


class MetricsLog:
    """metrics.jsonl and TensorBoard events of rank 0 (a no-op on other ranks).

    Args:
        run_dir: the run directory.
        enabled: False on ranks other than 0.
        resume_offset: on resume, the size metrics.jsonl had at the checkpoint; later lines
            (written after it, before the run stopped) are dropped (see :func:`repair_log`),
            as are TensorBoard events after ``resume_step``.
        resume_step: global step of the checkpoint resumed from.
    """

    def __init__(
        self,
        run_dir: Path,
        enabled: bool,
        resume_offset: int | None = None,
        resume_step: int = 0,
    ) -> None:
        self.enabled = enabled
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / "metrics.jsonl"
        if resume_offset is not None:
            repair_log(self.path, resume_offset)
        self.file = self.path.open("a")
        purge = resume_step + 1 if resume_offset is not None else None
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=purge)

    def offset(self) -> int:
        """Bytes written to metrics.jsonl so far (stored in checkpoints)."""
        return self.file.tell() if self.enabled else 0

    def sync(self) -> None:
        """Put metrics.jsonl on the disk (fsync): done before each checkpoint records its size."""
        if self.enabled:
            try:
                self.file.flush()
                os.fsync(self.file.fileno())
            except OSError as error:
                raise write_error(self.path, error) from None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record; numbers (also nested one level, e.g. lr per group) go to TB."""
        if not self.enabled:
            return
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as error:
            raise write_error(self.path, error) from None
        for key, value in record.items():
            if isinstance(value, dict):
                for sub_key, sub_value in value.items():
                    self.writer.add_scalar(
                        f"{record['kind']}/{key}_{sub_key}", sub_value, record["step"]
                    )
            elif isinstance(value, int | float) and key not in ("epoch", "step"):
                self.writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])

    def close(self) -> None:
        """Flush and close the files."""
        if self.enabled:
            self.writer.close()
            try:
                self.file.close()
            except OSError as error:
                raise write_error(self.path, error) from None


def _last_line_end(file: Any, size: int, chunk: int = 1 << 16) -> int:
    """The offset just after the last newline among the first ``size`` bytes (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        file.seek(start)
        found = file.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def repair_log(path: Path, offset: int) -> None:
    """Cut metrics.jsonl back to the ``offset`` bytes a checkpoint recorded, on resume.

    Records written after the checkpoint are dropped (the resumed run writes them again). The
    file may also be SHORTER than ``offset``: the records written before the checkpoint did not
    all reach the disk (a crash of the machine), or the file was edited. Then its complete
    records are kept, a torn last line is dropped, and one warning says how much is missing; the
    file is never padded. Either way it ends with a complete line.
    """
    size = path.stat().st_size if path.exists() else 0
    if size == 0 and offset == 0:
        return
    with path.open("a+b") as file:
        end = _last_line_end(file, min(size, offset))
        file.truncate(end)
    if size < offset:
        LOGGER.warning(
            "'%s' holds %d bytes, fewer than the %d its checkpoint recorded (records lost before "
            "they reached the disk, or an edited file): kept its %d bytes of complete records",
            path,
            size,
            offset,
            end,
        )
    elif end < offset:
        LOGGER.warning(
            "'%s' ends in a torn record at the checkpoint's offset %d: kept the %d bytes of "
            "complete records before it",
            path,
            offset,
            end,
        )


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

    def start_epoch(self) -> None:
        """Reset the per-epoch counters."""
        self.position = 0
        self.epoch_sums = {}
        self.epoch_steps = 0
        self.epoch_skipped = 0
        self.epoch_seconds = 0.0


def _flatten(config_dict: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{section}.{key}": value
        for section, values in config_dict.items()
        for key, value in values.items()
    }


def check_resumable(saved: dict[str, Any], config: Config, path: Path) -> None:
    """Refuse to resume with settings that change the result (all but RESUMABLE_SETTINGS)."""
    old, new = _flatten(saved), _flatten(config.to_dict())
    changed = [
        f"{key} ({old.get(key)!r} in the checkpoint, {new.get(key)!r} now)"
        for key in sorted(set(old) | set(new))
        if key not in RESUMABLE_SETTINGS and old.get(key) != new.get(key)
    ]
    if changed:
        raise DebiasclError(
            f"cannot resume from '{path}' with different settings: {'; '.join(changed)}. "
            "Resume with the settings of the original run (see its config.yaml)"
        )


STOPPED_ATTEMPT_ENTRIES = frozenset({"config.yaml", "metrics.jsonl", "tb", "checkpoints"})
"""What a run writes before its first checkpoint; a directory holding only these (and its
config.yaml, but no checkpoint and no train_done) is an attempt that a plain re-run restarts."""


def _stopped_before_first_checkpoint(run_dir: Path, keep: Collection[str]) -> bool:
    """Whether ``run_dir`` holds only what a run that died before its first checkpoint wrote."""
    names = {entry.name for entry in run_dir.iterdir()} - set(keep) - {LOCK_NAME}
    return (
        (run_dir / "config.yaml").is_file()
        and names <= STOPPED_ATTEMPT_ENTRIES
        and not (run_dir / "train_done").exists()
        and not resumable(run_dir)
    )


def _clear_stopped_attempt(run_dir: Path) -> None:
    """Remove what a run that stopped before its first checkpoint left in ``run_dir``."""
    LOGGER.warning(
        "run directory '%s' holds a run that stopped before its first checkpoint "
        "(config.yaml, no checkpoint, no train_done): starting it again",
        run_dir,
    )
    for name in STOPPED_ATTEMPT_ENTRIES:
        remove_path(run_dir / name)


def prepare_run_dir(
    run_dir: Path, resume: bool, keep: Collection[str] = ()
) -> dict[str, Any] | None:
    """Check the run directory; on resume return the loaded checkpoint.

    Temporary files of a checkpoint write that never finished are removed. A fresh run needs an
    absent or empty directory (its ``.lock`` aside, see :mod:`debiascl.rundir_lock`); entries
    named in ``keep`` may already be there (JTT's stage-1 run and error set, made before its
    final model is trained). A directory left by a run that stopped before its first checkpoint
    is cleared and started again, with a warning saying so.
    """
    path = checkpoint_path(run_dir)
    remove_stale_temporaries(path)
    if resume:
        if not path.is_file():
            raise DebiasclError(
                f"resume=True: there is no checkpoint at '{path}' to resume from; "
                "start the run without resume=True"
            )
        state = load_checkpoint(path)
        (run_dir / "train_done").unlink(missing_ok=True)  # training is about to go on
        return state
    if run_dir.is_dir() and _stopped_before_first_checkpoint(run_dir, keep):
        _clear_stopped_attempt(run_dir)
    if run_dir.exists() and (
        not run_dir.is_dir()
        or any(entry.name not in {*keep, LOCK_NAME} for entry in run_dir.iterdir())
    ):
        raise DebiasclError(
            f"run directory '{run_dir}' already exists and is not empty; pass resume=True to "
            "continue its training, or choose another run_dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return None


def resumable(run_dir: str | Path) -> bool:
    """Whether ``train(config, run_dir, resume=True)`` can continue ``run_dir``.

    True when it holds a checkpoint, or (method jtt) a stage-1 run, which resuming reuses or
    continues even before the final model's first checkpoint.
    """
    from debiascl.jtt import STAGE1_DIR  # jtt builds on this module

    run_dir = Path(run_dir)
    return checkpoint_path(run_dir).is_file() or (run_dir / STAGE1_DIR).is_dir()


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """Owns everything a run needs; :meth:`run` trains to ``config.train.epochs``.

    Args:
        config: the run's configuration.
        run_dir: the run directory.
        runtime: rank, world size and device of this process.
        resume: continue from ``run_dir/checkpoints/last.pt``.
        repeats: optional (n_train,) int64 times each training sample appears per epoch
            (JTT's up-weighting; see :func:`debiascl.data.sampling.epoch_order`); default
            once each.
        keep: entries a fresh ``run_dir`` may already hold (see :func:`prepare_run_dir`).
    """

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        runtime: Runtime,
        resume: bool,
        repeats: torch.Tensor | None = None,
        keep: Collection[str] = (),
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.runtime = runtime
        self.repeats = repeats
        train_cfg = config.train
        if train_cfg.batch_size % runtime.world_size:
            raise DebiasclError(
                f"setting 'train.batch_size' = {train_cfg.batch_size} is the global batch and "
                f"must be divisible by the number of processes ({runtime.world_size})"
            )
        state = run_on_main(runtime, lambda: prepare_run_dir(run_dir, resume, keep))
        seed_everything(train_cfg.seed)
        self.train_set = self._dataset("train")
        self._check_labels()
        if repeats is not None and repeats.shape != (len(self.train_set),):
            raise ValueError(
                f"repeats: expected shape ({len(self.train_set)},), got {tuple(repeats.shape)}"
            )
        if self.epoch_size < train_cfg.batch_size:
            raise DebiasclError(
                f"dataset '{config.data.name}' gives {self.epoch_size} training samples per "
                f"epoch, fewer than train.batch_size = {train_cfg.batch_size}; lower it"
            )
        self.views: ViewPipeline = build_views(
            config.data.augmentation,
            self.train_set,
            config.data.image_size,
            config.data.noise_std,
            config.data.corruption_rate,
        ).to(runtime.device)
        self.method = self._build_method()
        groups = self.method.param_groups(config.optim)
        self.optimizers = build_optimizers(groups, config.optim)
        self.schedulers = {
            name: MultiStepLR(optimizer, config.optim.milestones, config.optim.gamma)
            for name, optimizer in self.optimizers.items()
        }
        self.runner = StepRunner(
            self.method, self.optimizers, train_cfg.precision, runtime.device, runtime.world_size
        )
        self.progress = Progress()
        resume_offset = None
        if state is None:
            seed_everything(train_cfg.seed + runtime.rank)
        else:
            resume_offset = self._load_state(state)
        self.metrics = MetricsLog(
            run_dir, runtime.is_main, resume_offset, self.progress.global_step
        )
        if runtime.is_main:
            config.save(run_dir / "config.yaml")
        self._val_set: BiasedDataset | None = None
        self._train_loader: DataLoader | None = None
        self._sampler: EpochBatchSampler | None = None

    def _check_labels(self) -> None:
        """A supervised method needs a class for every training sample."""
        unlabelled = int((self.train_set.targets < 0).sum())
        if unlabelled and METHODS[self.config.method.name].supervised:
            raise DebiasclError(
                f"method '{self.config.method.name}' is supervised but the train split of "
                f"'{self.config.data.name}' has {unlabelled} unlabelled samples (y = -1); turn "
                "them off in the data options (e.g. data.options.unlabeled=false)"
            )

    def _dataset(self, split: str) -> BiasedDataset:
        data = self.config.data
        return configured_dataset(data, split, data.download, self.runtime.world_size)

    def _build_method(self) -> Method:
        runtime = self.runtime
        method = build_method(
            self.config, self.train_set, gather_distributed=runtime.world_size > 1
        ).to(runtime.device)
        if self.channels_last:
            method = method.to(memory_format=torch.channels_last)
        if runtime.world_size > 1:
            method = prepare_distributed(method, runtime.device)
        return method.train()

    @property
    def epoch_size(self) -> int:
        """Samples drawn per epoch: the training split, with each sample repeated as asked."""
        return len(self.train_set) if self.repeats is None else int(self.repeats.sum())

    @property
    def channels_last(self) -> bool:
        """Whether inputs and weights use channels_last (see :func:`use_channels_last`)."""
        return use_channels_last(
            self.config.train.channels_last,
            self.runtime.device,
            self.train_set.kind,
            self.config.model.backbone,
        )

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        """Everything needed to continue exactly (see :mod:`debiascl.checkpoint`).

        Args:
            rng: the RNG state of every rank, in rank order.
        """
        scaler = self.runner.scaler
        return {
            "format": FORMAT,
            "version": VERSION,
            "method": self.method.name,
            "config": self.config.to_dict(),
            "model": self.method.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": rng,
            "metrics_offset": self.metrics.offset(),
            "world_size": self.runtime.world_size,
            **asdict(self.progress),
        }

    def _load_state(self, state: dict[str, Any]) -> int:
        """Restore everything from a loaded checkpoint; returns its metrics.jsonl offset.

        Raises:
            DebiasclError: the checkpoint was written with other settings, or its content does
                not fit this run (a damaged file, or one from another configuration).
        """
        path = checkpoint_path(self.run_dir)
        check_resumable(state["config"], self.config, path)
        check_compatible(state, self.method, path)
        try:
            return self._restore(state)
        except (KeyError, TypeError, AttributeError, ValueError, RuntimeError, IndexError) as e:
            raise damaged_checkpoint(path, e) from e

    def _restore(self, state: dict[str, Any]) -> int:
        """Load the weights, optimizers, schedulers, scaler, progress and RNG of ``state``.

        Returns the size metrics.jsonl had when ``state`` was written.
        """
        self.method.load_state_dict(state["model"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        if state["scaler"] is not None and self.runner.scaler.is_enabled():
            self.runner.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(
            **{key: state[key] for key in Progress.__dataclass_fields__ if key in state}
        )
        rank = self.runtime.rank
        if len(state["rng"]) == self.runtime.world_size:
            restore_rng_state(state["rng"][rank], self.runtime.device)
        else:
            LOGGER.warning(
                "checkpoint written by %d processes, resumed with %d: augmentations are reseeded",
                len(state["rng"]),
                self.runtime.world_size,
            )
            seed_everything(self.config.train.seed + rank + 7919 * self.progress.global_step)
        return state["metrics_offset"]

    def save(self) -> None:
        """Write checkpoints/last.pt from rank 0 (all ranks take part: RNG states are gathered).

        metrics.jsonl is put on the disk first, so the offset the checkpoint records is there.
        """
        rng = gather_objects(capture_rng_state(self.runtime.device), self.runtime.world_size)
        if self.runtime.is_main:
            self.metrics.sync()
            save_checkpoint(checkpoint_path(self.run_dir), self.state_dict(rng))

    # ------------------------------------------------------------------ the loop

    def run(self) -> Path:
        """Train until ``train.epochs``; returns the run directory.

        Raises:
            DebiasclError: every step this call ran had a non-finite loss (no train_done).
        """
        started_at = (self.progress.global_step, self.progress.skipped_steps)
        try:
            while self.progress.epoch < self.config.train.epochs:
                self._train_epoch()
                self._end_epoch()
            self._check_some_step_finite(*started_at)
            if self.runtime.is_main:
                (self.run_dir / "train_done").write_text(f"{self.progress.global_step}\n")
        finally:
            self.metrics.close()
        return self.run_dir

    def _loader(self) -> DataLoader:
        """The training loader, made once (its workers persist), set to this epoch's batches."""
        config, runtime = self.config, self.runtime
        if self._train_loader is None:
            self._sampler = EpochBatchSampler(
                len(self.train_set),
                config.train.batch_size,
                config.train.seed,
                self.progress.epoch,
                runtime.rank,
                runtime.world_size,
                repeats=self.repeats,
            )
            self._train_loader = batch_loader(
                self.train_set,
                self._sampler,
                resolve_workers(config.data.num_workers, self.train_set, runtime.world_size),
                runtime.device,
                # Its own generator: creating an iterator must not draw from the global RNG.
                generator=torch.Generator().manual_seed(mix_seed(config.train.seed, 1)),
            )
        self._sampler.epoch, self._sampler.start = self.progress.epoch, self.progress.position
        return self._train_loader

    def _make_views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            v1, v2 = self.views(x.to(self.runtime.device, non_blocking=True))
        if self.channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        return v1, v2

    def _train_epoch(self) -> None:
        config, progress = self.config, self.progress
        loader = self._loader()
        batches_per_epoch = self.epoch_size // config.train.batch_size
        bar = tqdm(
            total=batches_per_epoch,
            initial=progress.position,
            desc=f"epoch {progress.epoch + 1}/{config.train.epochs}",
            disable=not (config.train.progress and self.runtime.is_main and sys.stderr.isatty()),
            leave=False,
            dynamic_ncols=True,
        )
        started = last_log = time.perf_counter()
        steps_since_log = 0
        for _, x, y, _ in loader:
            targets = (
                y.to(self.runtime.device, non_blocking=True) if self.method.supervised else None
            )
            result = self.runner.step(self._make_views(x), targets)
            progress.position += 1
            progress.global_step += 1
            steps_since_log += 1
            self._account(result)
            bar.update(1)
            if progress.global_step % config.train.log_every == 0 and result is not None:
                now = time.perf_counter()
                rate = steps_since_log * config.train.batch_size / max(now - last_log, 1e-9)
                self._log_step(result, rate)
                bar.set_postfix(loss=f"{result[0]:.4f}", samples_s=f"{rate:.0f}", refresh=False)
                last_log, steps_since_log = now, 0
            if (
                progress.global_step % config.train.checkpoint_every == 0
                and progress.position < batches_per_epoch
            ):
                progress.epoch_seconds += time.perf_counter() - started
                started = time.perf_counter()
                self.save()
        progress.epoch_seconds += time.perf_counter() - started
        bar.close()

    def _check_some_step_finite(self, first_step: int, skipped_before: int) -> None:
        """Refuse to finish when every step since ``first_step`` was skipped as non-finite."""
        steps = self.progress.global_step - first_step
        if steps and self.progress.skipped_steps - skipped_before == steps:
            raise DebiasclError(
                f"training of '{self.run_dir}' ran {steps} steps and the loss was not finite in "
                "any of them, so the run is not marked finished (no train_done); check the "
                "data and the checkpoint, or try a lower learning rate (optim.lr / optim.lr_b)"
            )

    def _account(self, result: tuple[float, dict[str, torch.Tensor]] | None) -> None:
        """Update the counters after one step; stop after too many non-finite losses."""
        progress = self.progress
        if result is not None:
            progress.consecutive_skips = 0
            progress.epoch_steps += 1
            for key, value in {"loss": result[0], **result[1]}.items():
                progress.epoch_sums[key] = progress.epoch_sums.get(key, 0.0) + float(value)
            return
        progress.skipped_steps += 1
        progress.epoch_skipped += 1
        progress.consecutive_skips += 1
        limit = self.config.train.max_consecutive_skips
        if self.runtime.is_main:
            LOGGER.warning(
                "step %d (epoch %d): the loss is not finite; step skipped (%d in a row, limit %d)",
                progress.global_step,
                progress.epoch + 1,
                progress.consecutive_skips,
                limit,
            )
        if progress.consecutive_skips >= limit:
            raise DebiasclError(
                f"training stopped at step {progress.global_step} (epoch {progress.epoch + 1}): "
                f"the loss was not finite for {limit} consecutive steps "
                f"(train.max_consecutive_skips = {limit}); try a lower learning rate "
                "(optim.lr / optim.lr_b), train.precision=32, or a higher method.temperature"
            )

    def _learning_rates(self) -> dict[str, float]:
        return {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}

    def _log_step(self, result: tuple[float, dict[str, torch.Tensor]], rate: float) -> None:
        loss, logs = result
        self.metrics.write(
            {
                "kind": "step",
                "epoch": self.progress.epoch + 1,
                "step": self.progress.global_step,
                "lr": self._learning_rates(),
                "loss": loss,
                **{key: float(value) for key, value in logs.items()},
                "samples_per_s": rate,
            }
        )

    def _end_epoch(self) -> None:
        progress = self.progress
        epoch = progress.epoch + 1
        means = {
            key: total / max(progress.epoch_steps, 1) for key, total in progress.epoch_sums.items()
        }
        self.metrics.write(
            {
                "kind": "epoch",
                "epoch": epoch,
                "step": progress.global_step,
                "lr": self._learning_rates(),
                **means,
                "skipped_steps": progress.epoch_skipped,
                "wall_time_s": progress.epoch_seconds,
            }
        )
        for scheduler in self.schedulers.values():
            scheduler.step()
        knn_every = self.config.train.knn_every
        if knn_every and (epoch % knn_every == 0 or epoch == self.config.train.epochs):
            self._knn_monitor(epoch)
        progress.epoch += 1
        progress.start_epoch()
        self.save()

    def _knn_monitor(self, epoch: int) -> None:
        """Weighted kNN accuracy on the val split (rank 0), without touching the training RNG."""
        if not self.runtime.is_main:
            return
        if self._val_set is None:
            self._val_set = self._dataset("val")
            if len(self._val_set) == 0:
                LOGGER.warning("the val split is empty: the kNN monitor is off for this run")
        if len(self._val_set) == 0:
            return
        device = self.runtime.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            accuracy = knn_accuracy(
                self.method,
                self.train_set,
                self._val_set,
                self.views.prepare,
                k=self.config.train.knn_k,
                temperature=self.config.method.temperature,
                device=device,
                seed=self.config.train.seed,
            )
        self.metrics.write(
            {"kind": "knn", "epoch": epoch, "step": self.progress.global_step, "knn_acc": accuracy}
        )


def train(config: Config, run_dir: str | Path, resume: bool = False) -> Path:
    """Train ``config`` into ``run_dir`` (see the module docstring for what is written).

    Method "jtt" runs JTT's two stages (:func:`debiascl.jtt.train_jtt`): an ERM run in
    ``run_dir/stage1``, then the final model into ``run_dir`` itself.

    Args:
        config: a validated configuration.
        run_dir: the run directory; must be absent or empty unless ``resume`` (or left by a
            run that stopped before its first checkpoint, which is started again).
        resume: continue from ``run_dir/checkpoints/last.pt`` exactly where it stopped.

    Returns:
        The run directory.

    The run directory is locked for the whole call (by rank 0 under DDP,
    :func:`debiascl.rundir_lock.hold_run_dir`): a second ``train`` into it fails at once.

    Raises:
        DebiasclError: a user error (bad settings, missing data, non-empty or unwritable run
            directory, one in use by another process, nothing to resume, unusable checkpoint,
            too many non-finite losses, or only non-finite ones).
    """
    run_dir = Path(run_dir)
    runtime = setup_runtime(config.train.device)
    try:
        with contextlib.ExitStack() as lock:
            run_on_main(runtime, lambda: lock.enter_context(hold_run_dir(run_dir)))
            if config.method.name == "jtt":
                from debiascl.jtt import train_jtt  # jtt builds on this module

                return train_jtt(config, run_dir, runtime, resume)
            return Trainer(config, run_dir, runtime, resume).run()
    finally:
        runtime.close()
