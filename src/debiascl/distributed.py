"""Everything DDP: process group, devices, collectives, gather with gradient, global BatchNorm.

This is the only module of debiascl that talks to ``torch.distributed`` (SPEC section 6). Every
helper also works when no process group is initialised: it then behaves as a single process
(rank 0 of 1).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from debiascl.errors import DebiasclError

T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)


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


# ----------------------------------------------------------------------------- the process


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its rank among ``world_size`` processes and its device."""

    rank: int
    world_size: int
    device: torch.device
    owns_process_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and the run directory."""
        return self.rank == 0

    def close(self) -> None:
        """Destroy the process group if :func:`setup_runtime` created it (else do nothing)."""
        if self.owns_process_group:
            dist.destroy_process_group()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``train.device`` as a torch device: "auto" is CUDA when available, else the CPU.

    Under DDP on CUDA every process uses ``cuda:LOCAL_RANK``.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DebiasclError(
            f"setting 'train.device' = {name!r} but no CUDA device is available; use cpu (or auto)"
        )
    if name == "cuda" or "LOCAL_RANK" in os.environ:
        return torch.device("cuda", local_rank)
    return torch.device(name)


def setup_runtime(device_name: str) -> Runtime:
    """Join the process group started by ``torchrun`` (env WORLD_SIZE > 1), if any.

    Uses NCCL on CUDA and Gloo on CPU. A process group that is already initialised (e.g. by a
    test harness) is used as is and left open.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if is_distributed():
        rank = dist.get_rank()
        device = resolve_device(device_name, int(os.environ.get("LOCAL_RANK", rank)))
        return Runtime(rank, dist.get_world_size(), device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name, local_rank)
    if world_size == 1:
        return Runtime(0, 1, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(dist.get_rank(), dist.get_world_size(), device, owns_process_group=True)


def run_on_main(runtime: Runtime, function: Callable[[], T]) -> T:
    """Run ``function`` on rank 0 and hand its result, or its DebiasclError, to every rank."""
    result: Any = None
    error: str | None = None
    if runtime.is_main:
        try:
            result = function()
        except DebiasclError as caught:
            error = str(caught)
    if runtime.world_size > 1:
        box = [result, error]
        dist.broadcast_object_list(box, src=0)
        result, error = box
    if error is not None:
        raise DebiasclError(error)
    return result


# ----------------------------------------------------------------------------- collectives


def all_ranks_finite(loss: Tensor, world_size: int) -> bool:
    """Whether the scalar ``loss`` is finite on every one of the ``world_size`` ranks."""
    finite = torch.isfinite(loss.detach()).float()
    if world_size > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite)


def all_reduce_sum(x: Tensor) -> Tensor:
    """The element-wise sum of ``x`` over every rank (a detached copy; ``x`` is unchanged)."""
    total = x.detach().clone()
    dist.all_reduce(total)
    return total


def average_gradients(parameters: list[nn.Parameter], world_size: int) -> None:
    """All-reduce the gradients of ``parameters`` (one flat buffer) and divide by world_size."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if world_size == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def gather_objects(value: T, world_size: int) -> list[T]:
    """Every rank's picklable ``value``, in rank order (``[value]`` for a single process)."""
    if world_size == 1:
        return [value]
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, value)
    return gathered


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


# ----------------------------------------------------------------------------- global BatchNorm


class GatheredBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of all DDP ranks on CPU (SyncBatchNorm is GPU-only).

    In training mode the input (b, C, ...) of every rank is gathered with gradient, normalised
    with the statistics of all world * b rows (running statistics updated from them, identically
    on every rank), and this rank's rows are returned. Same parameters and buffers as
    ``nn.BatchNorm{1,2,3}d``, so checkpoints are interchangeable.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        """(b, C, ...) -> (b, C, ...), normalised with global-batch statistics when training."""
        if not (self.training and is_distributed() and get_world_size() > 1):
            return super().forward(input)
        self.num_batches_tracked.add_(1)
        full = F.batch_norm(
            gather_with_grad(input),
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            True,
            self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked),
            self.eps,
        )
        start = get_rank() * input.shape[0]
        return full[start : start + input.shape[0]]


def _to_gathered_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` by a :class:`GatheredBatchNorm` (in place)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        converted = GatheredBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, True
        )
        converted.load_state_dict(module.state_dict())
        return converted.to(module.running_mean.device)
    for name, child in module.named_children():
        module.add_module(name, _to_gathered_batchnorm(child))
    return module


def prepare_distributed(module: M, device: torch.device) -> M:
    """Make ``module`` train as one process on the global batch: global BatchNorm, same weights.

    BatchNorm layers become SyncBatchNorm on CUDA and :class:`GatheredBatchNorm` on CPU. Every
    parameter and buffer is broadcast from rank 0, so all ranks start identical.
    """
    if device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    else:
        module = _to_gathered_batchnorm(module)
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)
    return module
