"""The training log: ``metrics.jsonl`` (one JSON record per line) and its TensorBoard events.

Records have ``kind`` "step" (every ``train.log_every`` steps), "epoch" (means over the epoch)
or "knn" (the weighted kNN monitor), each with ``epoch`` (1-based) and ``step`` (batches done so
far, counting skipped ones). A checkpoint records the log's size; a resumed run cuts the log back
to it (:func:`repair_log`), so the log holds each record once.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from debiascl.atomic import write_error
from debiascl.checkpoint import TrainingCounters
from debiascl.rundir import metrics_path, tensorboard_path

LOGGER = logging.getLogger("debiascl")


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

        self.path = metrics_path(run_dir)
        if resume_offset is not None:
            repair_log(self.path, resume_offset)
        self.file = self.path.open("a")
        purge = resume_step + 1 if resume_offset is not None else None
        self.writer = SummaryWriter(str(tensorboard_path(run_dir)), purge_step=purge)

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

    def log_step(
        self,
        progress: TrainingCounters,
        lr: dict[str, float],
        loss: float,
        logs: dict[str, Any],
        rate: float,
    ) -> None:
        """A "step" record: learning rate per group, loss, the method's logs, samples/s."""
        self.write(
            {
                "kind": "step",
                "epoch": progress.epoch + 1,
                "step": progress.global_step,
                "lr": lr,
                "loss": loss,
                **{key: float(value) for key, value in logs.items()},
                "samples_per_s": rate,
            }
        )

    def log_epoch(self, progress: TrainingCounters, lr: dict[str, float]) -> None:
        """An "epoch" record: the means of the epoch's finite steps, skips and wall time."""
        means = {
            key: total / max(progress.epoch_steps, 1) for key, total in progress.epoch_sums.items()
        }
        self.write(
            {
                "kind": "epoch",
                "epoch": progress.epoch + 1,
                "step": progress.global_step,
                "lr": lr,
                **means,
                "skipped_steps": progress.epoch_skipped,
                "wall_time_s": progress.epoch_seconds,
            }
        )

    def log_knn(self, epoch: int, step: int, accuracy: float) -> None:
        """A "knn" record: the kNN monitor's val accuracy after ``epoch`` (1-based)."""
        self.write({"kind": "knn", "epoch": epoch, "step": step, "knn_acc": accuracy})

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
