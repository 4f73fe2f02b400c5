"""The training loop: one optimisation step (:class:`StepRunner`) and the epochs around it.

Every method gets the same :class:`~debiascl.batch.Batch` each step (index, views, y; the bias
attribute a only for the oracle ``train.groups: true``; the groups when the run has them); the
loop never asks what a method reads.

Determinism. The data order of epoch e (a permutation, or with ``train.group_sampling:
balanced`` n draws with replacement) comes from a generator seeded by (seed, e) only;
augmentations draw from torch's global RNG, seeded once and saved in checkpoints; the kNN
monitor runs under a forked RNG, so it never changes the training trajectory. Hence on CPU a
run is reproducible bit for bit with the same number of threads (another thread count sums in
another order and ends elsewhere within the seeds' noise), and ``resume=True`` continues from
the last checkpoint, in the middle of an epoch, exactly as if the run had not stopped.

Distributed (``torchrun``): ``train.batch_size`` is the GLOBAL batch; each of the K ranks takes a
contiguous slice of batch_size / K samples of every global batch, the losses gather the
projections of all ranks with gradient, gradients are averaged over ranks after backward, and
BatchNorm statistics are computed over the global batch (torch's SyncBatchNorm on CUDA, a
gathering BatchNorm on CPU), so one step equals a single process on the global batch. Each rank
seeds its augmentations with ``seed + rank``. Logs and checkpoints come from rank 0.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Collection
from pathlib import Path

import torch
from torch.optim import Optimizer
from tqdm import tqdm

from debiascl.batch import Batch
from debiascl.checkpoint import (
    TrainingCounters,
    TrainingState,
    capture_rng_state,
    open_run_dir,
    save_checkpoint,
    seed_everything,
)
from debiascl.config import Config
from debiascl.distributed import (
    Runtime,
    all_ranks_finite,
    average_gradients,
    gather_objects,
    run_on_main,
)
from debiascl.errors import DebiasclError
from debiascl.features import KnnMonitor
from debiascl.methods import Method
from debiascl.models import ModelInfo
from debiascl.rundir import checkpoint_path, config_path, mark_finished
from debiascl.training.build import build_training
from debiascl.training.log import MetricsLog

LOGGER = logging.getLogger("debiascl")
AUTOCAST_DTYPES = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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

    def step(self, batch: Batch) -> tuple[float, dict[str, torch.Tensor]] | None:
        """Train on one batch (:class:`~debiascl.batch.Batch`); None when the loss was not finite.

        A non-finite loss (on any rank) skips the step: no backward, no parameter change.
        """
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        ):
            loss, logs = self.method.training_step(batch)
        if not all_ranks_finite(loss, self.world_size):
            return None
        self.scaler.scale(loss).backward()
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                average_gradients(group["params"], self.world_size)
            self.scaler.step(optimizer)
        self.scaler.update()
        return float(loss.detach()), logs


class Trainer:
    """Trains one run directory to ``config.train.epochs`` (:meth:`run`).

    Args:
        config: the run's configuration.
        run_dir: the run directory.
        runtime: rank, world size and device of this process.
        resume: continue from ``run_dir/checkpoints/last.pt``.
        repeats: optional (n_train,) int64 times each training sample appears per epoch
            (JTT's up-weighting; see :func:`debiascl.data.sampling.epoch_order`); default
            once each.
        keep: entries a fresh ``run_dir`` may already hold (see
            :func:`debiascl.rundir.prepare_run_dir`).
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
        self.config, self.run_dir, self.runtime = config, run_dir, runtime
        if config.train.batch_size % runtime.world_size:
            raise DebiasclError(
                f"setting 'train.batch_size' = {config.train.batch_size} is the global batch and "
                f"must be divisible by the number of processes ({runtime.world_size})"
            )
        saved = run_on_main(runtime, lambda: open_run_dir(run_dir, resume, keep))
        self.parts = parts = build_training(config, runtime, repeats)
        self.method = parts.method
        precision, device, world = config.train.precision, runtime.device, runtime.world_size
        self.runner = StepRunner(parts.method, parts.optimizers, precision, device, world)
        scaler, info = self.runner.scaler, ModelInfo.of(parts.train_set)
        self.state = TrainingState(parts.method, parts.optimizers, parts.schedulers, scaler, info)
        offset = None
        if saved is None:
            seed_everything(config.train.seed + runtime.rank)
        else:
            path = checkpoint_path(run_dir)
            offset = self.state.restore(saved, config, path, runtime.rank, world, device)
        self.metrics = MetricsLog(run_dir, runtime.is_main, offset, self.progress.global_step)
        if runtime.is_main:
            config.save(config_path(run_dir))
        self.knn = KnnMonitor(config, parts.train_set, parts.views.prepare, device, world)

    @property
    def progress(self) -> TrainingCounters:
        """Where training stands (restored from the checkpoint on resume)."""
        return self.state.progress

    def save(self) -> None:
        """Write checkpoints/last.pt from rank 0 (all ranks take part: RNG states are gathered).

        metrics.jsonl is put on the disk first, so the offset the checkpoint records is there.
        """
        world = self.runtime.world_size
        rng = gather_objects(capture_rng_state(self.runtime.device), world)
        if self.runtime.is_main:
            self.metrics.sync()
            state = self.state.to_checkpoint(self.config, rng, self.metrics.offset(), world)
            save_checkpoint(checkpoint_path(self.run_dir), state)

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
                mark_finished(self.run_dir, self.progress.global_step)
        finally:
            self.metrics.close()
        return self.run_dir

    def _make_views(self, x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            views = list(self.parts.views(x.to(self.runtime.device, non_blocking=True)))
        if self.parts.channels_last:
            views = [view.contiguous(memory_format=torch.channels_last) for view in views]
        return views

    def _make_batch(
        self, index: torch.Tensor, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor
    ) -> Batch:
        """The step's :class:`Batch`: a only for the oracle (``train.groups: true``), the group
        of each sample only when the run trains on groups, its loss weight only with
        ``train.group_weighting``."""
        device, parts = self.runtime.device, self.parts
        oracle = self.config.train.groups == "true"
        return Batch(
            index=index.to(device, non_blocking=True),
            views=self._make_views(x),
            y=y.to(device, non_blocking=True),
            a=a.to(device, non_blocking=True) if oracle else None,
            group=None if parts.groups is None else parts.groups[index].to(device),
            group_sizes=None if parts.group_sizes is None else parts.group_sizes.to(device),
            weight=None if parts.sample_weights is None else parts.sample_weights[index].to(device),
        )

    def _train_epoch(self) -> None:
        train, progress = self.config.train, self.progress
        self.parts.sampler.epoch, self.parts.sampler.start = progress.epoch, progress.position
        batches_per_epoch = self.parts.epoch_size // train.batch_size
        bar = tqdm(
            total=batches_per_epoch,
            initial=progress.position,
            desc=f"epoch {progress.epoch + 1}/{train.epochs}",
            disable=not (train.progress and self.runtime.is_main and sys.stderr.isatty()),
            leave=False,
            dynamic_ncols=True,
        )
        started = last_log = time.perf_counter()
        steps_since_log = 0
        for index, x, y, a in self.parts.loader:
            result = self.runner.step(self._make_batch(index, x, y, a))
            progress.position += 1
            progress.global_step += 1
            steps_since_log += 1
            self._account(result)
            bar.update(1)
            if progress.global_step % train.log_every == 0 and result is not None:
                now = time.perf_counter()
                rate = steps_since_log * train.batch_size / max(now - last_log, 1e-9)
                self.metrics.log_step(progress, self._learning_rates(), *result, rate)
                bar.set_postfix(loss=f"{result[0]:.4f}", samples_s=f"{rate:.0f}", refresh=False)
                last_log, steps_since_log = now, 0
            if (
                progress.global_step % train.checkpoint_every == 0
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
        progress, limit = self.progress, self.config.train.max_consecutive_skips
        if result is not None:
            progress.count_step(*result)
            return
        progress.count_skip()
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
        return {name: opt.param_groups[0]["lr"] for name, opt in self.parts.optimizers.items()}

    def _end_epoch(self) -> None:
        progress, train = self.progress, self.config.train
        epoch = progress.epoch + 1
        self.metrics.log_epoch(progress, self._learning_rates())
        for scheduler in self.parts.schedulers.values():
            scheduler.step()
        if train.knn_every and (epoch % train.knn_every == 0 or epoch == train.epochs):
            accuracy = self.knn.accuracy(self.method) if self.runtime.is_main else None
            if accuracy is not None:
                self.metrics.log_knn(epoch, progress.global_step, accuracy)
        progress.epoch += 1
        progress.start_epoch()
        if epoch % train.checkpoint_epochs == 0 or epoch == train.epochs:
            self.save()
