"""The training batch every method's ``training_step`` receives (DESIGN: method interface).

The trainer builds one :class:`Batch` per step for every method, built-in or plugin, and never
asks which fields a method reads: a self-supervised method reads ``views`` only, a supervised
one ``y`` as well, a group method (GroupDRO) ``group`` and ``group_sizes``, a method that weights
its loss per sample ``weight``. What the trainer
does NOT give training stays None: ``a`` (the bias attribute) is there only for the oracle
(``train.groups: true``), ``group`` only when ``train.groups`` is not ``none``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from debiascl.errors import DebiasclError


@dataclass
class Batch:
    """One training batch of B samples.

    Attributes:
        index: (B,) int64 dataset index of each sample (per-sample bookkeeping).
        views: V >= 1 augmented views, each (B, *input_shape); row i of every view is sample i.
        y: (B,) int64 class labels (-1 where a sample is unlabelled); self-supervised methods
            ignore them.
        a: (B,) int64 bias attributes, given to training only for the oracle
            (``train.groups: true``); None otherwise.
        group: (B,) int64 group id of each sample in [0, G) (``train.groups``: discovered
            (class, flag) or true (class, attribute) groups, numbered 0..G-1 in the order of
            their :func:`debiascl.metrics.group_ids`); None without groups.
        group_sizes: (G,) int64 training samples of each group; None without groups.
        weight: (B,) float32 loss weight of each sample, n / (G * n_g) of its group
            (``train.group_weighting: balanced``; mean 1 over the training set); None otherwise.
            Only methods with ``reads_sample_weights`` get it.
    """

    index: torch.Tensor
    views: Sequence[torch.Tensor]
    y: torch.Tensor
    a: torch.Tensor | None = None
    group: torch.Tensor | None = None
    group_sizes: torch.Tensor | None = None
    weight: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def two_views(self, method: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The two views a contrastive loss compares, or a DebiasclError naming ``method``."""
        if len(self.views) != 2:
            raise DebiasclError(
                f"method '{method}' compares two views per sample, but the batch has "
                f"{len(self.views)}"
            )
        return self.views[0], self.views[1]

    def groups_of(self, method: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(group, group_sizes)``, or a DebiasclError saying that ``method`` needs groups."""
        if self.group is None or self.group_sizes is None:
            raise DebiasclError(
                f"method '{method}' trains on groups: set train.groups to discovered (with "
                "train.groups_from) or true"
            )
        return self.group, self.group_sizes
