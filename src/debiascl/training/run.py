"""``train(config, run_dir)``: train ``config.method.name`` on ``config.data.name``.

It writes (names and states: :mod:`debiascl.rundir`):

- ``config.yaml``: the resolved configuration;
- ``checkpoints/last.pt``: every ``train.checkpoint_every`` steps and at the end of every
  ``train.checkpoint_epochs``-th epoch (1: each) and of the last
  (atomic, see :mod:`debiascl.checkpoint`);
- ``metrics.jsonl``: one JSON object per line, ``kind`` "step" (every ``train.log_every``
  steps), "epoch" (means over the epoch) or "knn" (the weighted kNN monitor), each with
  ``epoch`` (1-based) and ``step`` (batches done so far, counting skipped ones)
  (:mod:`debiascl.training.log`);
- ``tb/``: the same numbers as TensorBoard events;
- ``train_done``: written last, holding the final step;
- ``.lock``: held by the training process for the whole run (:func:`debiascl.rundir.hold_run_dir`).

A method trains with :class:`debiascl.training.loop.Trainer` (the loop; determinism and DDP are
described there), unless its class names a driver of several stages (``Method.driver``, e.g.
JTT's :func:`debiascl.jtt.train_jtt`), which ``train`` calls instead; a run on discovered groups
without ``train.groups_from`` discovers them first (:mod:`debiascl.discovery.stage`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol

from debiascl.config import Config
from debiascl.discovery.stage import needs_discovery_stage, train_with_discovery_stage
from debiascl.distributed import Runtime, run_on_main, setup_runtime
from debiascl.methods import METHODS
from debiascl.registry import named_object
from debiascl.rundir import hold_run_dir
from debiascl.training.loop import Trainer


class Driver(Protocol):
    """A multi-stage training driver: trains ``config`` into ``run_dir``, returns ``run_dir``."""

    def __call__(self, config: Config, run_dir: Path, runtime: Runtime, resume: bool) -> Path: ...


def method_driver(method: str) -> Driver | None:
    """The driver a method's class names (``"module:function"`` in ``Method.driver``), or None
    for single-stage methods, which :class:`~debiascl.training.loop.Trainer` trains directly."""
    target = METHODS[method].driver
    if target is None:
        return None
    return named_object(target)


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
    :func:`debiascl.rundir.hold_run_dir`): a second ``train`` into it fails at once.

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
            driver = method_driver(config.method.name)
            if driver is None and needs_discovery_stage(config):
                driver = train_with_discovery_stage
            if driver is not None:
                return driver(config, run_dir, runtime, resume)
            return Trainer(config, run_dir, runtime, resume).run()
    finally:
        runtime.close()
