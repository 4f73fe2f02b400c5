"""``train.groups: discovered`` without ``train.groups_from``: the run discovers its own groups.

Two stages, as JTT's (:mod:`debiascl.jtt`, whose stage machinery this reuses):

1. a short classifier run, method ``train.groups_signal`` (gce: LfF's bias-amplified model, or
   erm: JTT's early-stopped stage 1) for ``train.groups_epochs`` epochs, into
   ``run_dir/stage1``; its classifier then discovers the groups there (``discovered.csv``, the
   ``erm`` / ``gce`` signal of :mod:`debiascl.discovery.run`), from the data and y only;
2. the run's own method into ``run_dir`` on those groups: its configuration is the run's with
   ``train.groups_from`` set to ``run_dir/stage1``, which ``run_dir/config.yaml`` records.

Resuming follows JTT's rules: a finished stage 1 is never retrained; stage 2 continues from its
checkpoint.
"""

from __future__ import annotations

import copy
from pathlib import Path

from debiascl.config import Config
from debiascl.distributed import Runtime
from debiascl.jtt import train_stage1, train_stage2
from debiascl.rundir import stage1_path


def needs_discovery_stage(config: Config) -> bool:
    """Whether ``config`` trains on discovered groups that the run must discover itself."""
    return config.train.groups == "discovered" and config.train.groups_from is None


def discovery_stage_config(config: Config) -> Config:
    """Stage 1: method ``train.groups_signal`` for ``train.groups_epochs`` epochs, no groups."""
    stage = copy.deepcopy(config)
    stage.method.name = config.train.groups_signal
    stage.train.epochs = config.train.groups_epochs
    stage.train.groups, stage.train.group_sampling, stage.train.group_weighting = ("none",) * 3
    return stage


def final_config(config: Config, run_dir: Path) -> Config:
    """Stage 2: the run's configuration with its groups read from ``run_dir/stage1``."""
    final = copy.deepcopy(config)
    final.train.groups_from = str(stage1_path(run_dir))
    return final


def train_with_discovery_stage(
    config: Config, run_dir: Path, runtime: Runtime, resume: bool = False
) -> Path:
    """Train stage 1 (discovery) then the run's method on the groups it found; returns ``run_dir``.

    Raises:
        DebiasclError: a user error (busy run directory, nothing to resume, settings that
            differ from the stopped run's).
    """
    final = final_config(config, run_dir)
    stage = discovery_stage_config(config)
    train_stage1(final, stage, run_dir, runtime, resume, "train.groups_epochs")
    return train_stage2(final, run_dir, runtime)
