"""The groups a run trains on (``train.groups``, SPEC 10): discovered, true, or none.

- ``discovered``: the (class, flag) groups of the bias discovery of the finished run
  ``train.groups_from`` (its ``discovered.csv``; when it has none, its E_b discovers them first
  through :func:`debiascl.discover.ensure_discovery`, which writes them there). Only the data
  and y made them: no bias label reaches training.
- ``true``: the (class, bias attribute) groups, the oracle; refused on data without a bias
  attribute for every training sample.

Both are the groups of the one encoding (:func:`debiascl.metrics.group_ids`: 2y + flag, or
y * A + a), the groups the group-robust probes balance, numbered 0..G-1 in that order
(:func:`debiascl.metrics.dense_group_ids`) so that a method keeps one value per group.
"""

from __future__ import annotations

from pathlib import Path

import torch

from debiascl.config import Config
from debiascl.data.base import BiasedDataset
from debiascl.discover import check_same_data, ensure_discovery
from debiascl.discovery import read_discovery
from debiascl.errors import DebiasclError
from debiascl.metrics import dense_group_ids
from debiascl.rundir import check_finished


def true_groups(train_set: BiasedDataset) -> torch.Tensor:
    """(n,) int64 ids of the (class, bias attribute) groups of the training split (the oracle).

    Raises:
        DebiasclError: the data set has no bias attribute, or some training sample lacks one.
    """
    unknown = int((train_set.attributes < 0).sum())
    if train_set.num_attributes == 0 or unknown:
        total = int(train_set.targets.numel())
        detail = (
            "no bias attribute"
            if train_set.num_attributes == 0
            else f"no bias attribute for {unknown} of its {total} training samples"
        )
        raise DebiasclError(
            f"setting 'train.groups' = 'true': data set '{train_set.name}' has {detail}; use "
            "train.groups=discovered with train.groups_from"
        )
    return dense_group_ids(train_set.groups)


def discovered_groups(
    config: Config, train_set: BiasedDataset, device: torch.device
) -> torch.Tensor:
    """(n,) int64 ids of the discovered (class, flag) groups of ``train.groups_from``.

    Raises:
        DebiasclError: the groups_from run is unfinished, trained on other data, has no
            discovery and no E_b to make one, or its discovery does not cover this training
            split sample for sample.
    """
    source = check_finished(Path(str(config.train.groups_from)))
    check_same_data(config.data, "this run", source, role="train.groups_from run")
    ensure_discovery(source, device=device, plots=False)
    splits, _ = read_discovery(source)
    train = splits.get("train")
    covered = torch.arange(len(train_set))
    if (
        train is None
        or not torch.equal(train.index, covered)
        or not torch.equal(train.y, train_set.targets)
    ):
        raise DebiasclError(
            f"the bias discovery of train.groups_from run '{source}' does not match this run's "
            f"train split ({len(train_set)} samples, each with a class); run `debiascl discover "
            f"{source}` again"
        )
    return dense_group_ids(train.groups)


def training_groups(
    config: Config, train_set: BiasedDataset, device: torch.device
) -> torch.Tensor | None:
    """(n,) int64 group id in [0, G) of every training sample, or None (``train.groups: none``).

    Args:
        config: a validated configuration (reads ``train.groups`` and ``train.groups_from``).
        train_set: the training split.
        device: where a discovery that has to be made runs its encoder.
    """
    if config.train.groups == "none":
        return None
    if config.train.groups == "true":
        return true_groups(train_set)
    return discovered_groups(config, train_set, device)
