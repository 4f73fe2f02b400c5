"""GroupDRO (Sagawa et al., ICLR 2020): ERM's model, loss sum_g q_g L_g (SPEC 10)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from debiascl.batch import Batch
from debiascl.config import Config, check_setting
from debiascl.distributed import all_reduce_sum, get_world_size, is_distributed
from debiascl.methods.base import Logs, MethodOptions, register_method
from debiascl.methods.erm import ERM, supervised_logs
from debiascl.models import DatasetInfo


def group_dro_update(
    per_example: torch.Tensor,
    groups: torch.Tensor,
    weights: torch.Tensor,
    sizes: torch.Tensor,
    eta: float,
    adjustment: float,
    world_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of GroupDRO's online group weights and its loss (SPEC 10; Sagawa et al. 2020).

    With L_g the mean loss of the examples of group g in the batch:
    q_g <- q_g * exp(eta * (L_g + C / sqrt(n_g))) for every group present, q <- q / sum(q), and
    the loss is sum_g q_g L_g with the updated q (as the authors' code). A group absent from the
    batch keeps its q_g before the normalisation (the authors' code also adds C / sqrt(n_g) to
    absent groups; the two agree for C = 0).

    Under DDP (``world_size`` > 1, a process group running) the batch is the global one: the
    groups' loss sums and counts are summed over the ranks, so every rank updates q alike, and
    each rank's loss is K sum_g q_g S_g^r / N_g (its part of the global sum, K = world_size),
    whose gradients, averaged over the ranks, are the single process's; its value is the
    global sum_g q_g L_g.

    Args:
        per_example: (N,) losses with gradient (this rank's).
        groups: (N,) int64 group id of each example, in [0, G).
        weights: (G,) the current q (non-negative, summing to 1).
        sizes: (G,) training samples per group, n_g (used by the adjustment C).
        eta: step size of the weights (> 0).
        adjustment: C >= 0, the generalisation adjustment.
        world_size: the number of DDP ranks the batch is spread over.

    Returns:
        ``(loss, new_weights)``: the scalar loss and the (G,) updated q (detached).
    """
    num_groups = weights.numel()
    counts = torch.bincount(groups, minlength=num_groups).to(per_example.dtype)
    sums = torch.zeros(num_groups, dtype=per_example.dtype, device=per_example.device)
    sums = sums.index_add(0, groups, per_example)
    total_counts, total_sums = counts, sums.detach()
    if world_size > 1:
        total_counts, total_sums = all_reduce_sum(counts), all_reduce_sum(sums)
    group_loss = total_sums / total_counts.clamp(min=1)
    present = total_counts > 0
    step = eta * (group_loss + adjustment / sizes.to(group_loss.dtype).sqrt())
    updated = weights.to(group_loss.dtype) * torch.where(present, step.exp(), 1.0)
    updated = updated / updated.sum()
    local = world_size * (updated * sums / total_counts.clamp(min=1)).sum()
    objective = (updated * group_loss).sum()
    return local - local.detach() + objective, updated


@register_method
class GroupDRO(ERM):
    """GroupDRO (Sagawa et al., ICLR 2020): ERM's model, loss sum_g q_g L_g (SPEC 10).

    Trains on the run's groups (``train.groups``: discovered or true), read from
    ``batch.group``; the group weights q start uniform and are carried across steps as the
    module's extra state, so they are saved in every checkpoint and restored on resume. Under
    DDP the group losses are those of the global batch (:func:`group_dro_update`).
    """

    name = "gdro"
    trains_on_groups = True
    reads_sample_weights = False  # its group weights q take their place

    @dataclass
    class Options(MethodOptions):
        """GroupDRO's settings: ``gdro_eta`` (step size of q, > 0) and ``gdro_adjustment``
        (C >= 0, adds C / sqrt(n_g) to each group's loss in the update of q)."""

        gdro_eta: float = 0.01
        gdro_adjustment: float = 0.0

        def check(self) -> None:
            super().check()
            check_setting(self.gdro_eta > 0, "method.gdro_eta", "> 0", self.gdro_eta)
            check_setting(
                self.gdro_adjustment >= 0,
                "method.gdro_adjustment",
                ">= 0",
                self.gdro_adjustment,
            )

    def __init__(
        self, config: Config, dataset: DatasetInfo, gather_distributed: bool = False
    ) -> None:
        super().__init__(config, dataset, gather_distributed)
        self.group_weights = torch.empty(0)
        """(G,) GroupDRO's q; empty until the first step sees the groups."""

    def get_extra_state(self) -> torch.Tensor:
        """q, saved with the weights (``_extra_state`` in the state dict)."""
        return self.group_weights

    def set_extra_state(self, state: torch.Tensor) -> None:
        """Restore q from a state dict."""
        self.group_weights = state.detach().clone()

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, Logs]:
        """sum_g q_g L_g over the batch's groups, after updating q (:func:`group_dro_update`)."""
        groups, sizes = batch.groups_of(self.name)
        per_example, logits, labels = self.per_example_loss(batch)
        weights = self.group_weights.to(per_example.device)
        if weights.numel() == 0:
            weights = torch.full((sizes.numel(),), 1.0 / sizes.numel(), device=per_example.device)
        loss, updated = group_dro_update(
            per_example,
            groups.to(per_example.device).repeat(len(batch.views)),
            weights,
            sizes.to(per_example.device),
            self.options.gdro_eta,
            self.options.gdro_adjustment,
            get_world_size() if self.gather_distributed and is_distributed() else 1,
        )
        # A non-finite loss (a step the trainer skips) leaves q as it was.
        self.group_weights = torch.where(updated.isfinite().all(), updated, weights)
        logs = supervised_logs(loss, logits, labels)
        return loss, logs | {"max_group_weight": self.group_weights.max()}
