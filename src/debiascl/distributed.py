"""Process-group helpers and an all-gather that carries gradients (SPEC section 6).

This is the only module of debiascl that talks to ``torch.distributed``. Every helper also works
when no process group is initialised: it then behaves as a single process (rank 0 of 1).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is available and initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank in the default group; 0 without a process group."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """The number of processes in the default group; 1 without a process group."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Whether this process is rank 0 (the one that writes logs and checkpoints)."""
    return get_rank() == 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums the gradient over ranks, then keeps our slice.

    Every rank's loss depends on every rank's rows, so the gradient that belongs to this rank's
    rows is the sum of the gradients all ranks computed for them.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.batch = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch
        return grad[start : start + ctx.batch]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate every rank's ``x`` along dim 0, keeping the autograd graph.

    Rank r's rows land at ``[r * b, (r + 1) * b)``. In backward, the gradient of the gathered
    tensor is summed over all ranks and each rank receives the slice of its own rows, so that
    when every rank's loss is averaged by DDP the parameter gradient equals the one of a single
    process on the global batch. Without an initialised process group this returns ``x``.

    Args:
        x: (b, D) this rank's rows; every rank must pass the same shape.

    Returns:
        (world_size * b, D) the rows of all ranks, in rank order.
    """
    if not is_distributed() or get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)
