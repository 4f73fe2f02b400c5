"""Forward+backward time and peak memory of each loss, as ratios to info_nce_loss (issue 2, 6).

Usage:
    python benchmarks/losses.py --device cpu --repeats 5
    python benchmarks/losses.py --device cuda --batch-sizes 256 1024 4096

Time is the best (minimum) of ``repeats`` forward+backward passes after one warm-up round, the
losses taking turns within each round. On CUDA it is wall time (synchronised); on CPU it is the
process's CPU time (``time.process_time``, summed over torch's threads), which other programs
on a shared machine do not inflate.
Peak memory is the peak of the bytes allocated during one forward+backward pass beyond what was
allocated before it (inputs excluded, the input gradients included):
- on CUDA, ``torch.cuda.max_memory_allocated`` (the caching allocator's own count);
- on CPU, a TorchDispatchMode that adds up the storage of every tensor an operator creates and
  subtracts it when the storage is freed. It counts tensor storage only (not the allocator's
  overhead or operator-internal scratch buffers), so it is a close lower bound.
"""

from __future__ import annotations

import argparse
import time
import weakref
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from debiascl.losses import dcl_loss, hcl_loss, info_nce_loss, triplet_loss, wcl_loss

LossCall = Callable[[list[Tensor]], Tensor]

LOSSES: dict[str, LossCall] = {
    "info_nce_loss": lambda z: info_nce_loss(z[0], z[1], 0.5),
    "dcl_loss": lambda z: dcl_loss(z[0], z[1], 0.5, 0.1),
    "hcl_loss": lambda z: hcl_loss(z[0], z[1], 0.5, 0.1, 1.0),
    "triplet_loss": lambda z: triplet_loss(z[0], z[1], 0.1),
    "wcl_loss": lambda z: wcl_loss(z[0], z[1], z[2], z[3], 0.5, 0.1),
}


class _StoragePeak(TorchDispatchMode):
    """Tracks the live bytes of tensor storages created by operators while the mode is active."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if not isinstance(tensor, Tensor):
                continue
            storage = tensor.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in self._seen:
                continue
            self._seen.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._release, key, nbytes)
        return out


def _inputs(batch: int, dim: int, device: torch.device) -> list[Tensor]:
    """zd1, zd2 (with grad) and zb1, zb2 (without), each (batch, dim)."""
    z = [torch.randn(batch, dim, device=device) for _ in range(4)]
    return [z[0].requires_grad_(), z[1].requires_grad_(), z[2], z[3]]


def _step(loss: LossCall, z: list[Tensor]) -> None:
    for x in z[:2]:
        x.grad = None
    loss(z).backward()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(losses: dict[str, LossCall], z: list[Tensor], repeats: int) -> dict[str, float]:
    """Best milliseconds of one forward+backward pass of each loss, the losses taking turns."""
    device = z[0].device
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    times: dict[str, list[float]] = {name: [] for name in losses}
    for repeat in range(repeats + 1):
        for name, loss in losses.items():
            _sync(device)
            start = clock()
            _step(loss, z)
            _sync(device)
            if repeat > 0:  # the first round is the warm-up
                times[name].append(clock() - start)
    return {name: 1e3 * min(t) for name, t in times.items()}


def peak_mib(loss: LossCall, z: list[Tensor]) -> float:
    """Peak MiB allocated by one forward+backward pass (see the module docstring)."""
    for x in z[:2]:
        x.grad = None
    device = z[0].device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        _step(loss, z)
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    tracker = _StoragePeak()
    with tracker:
        _step(loss, z)
    return tracker.peak / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per measurement")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--dim", type=int, default=128, help="projection dimension D")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    print(f"device={device} D={args.dim} repeats={args.repeats} torch={torch.__version__}")
    print(f"threads={torch.get_num_threads()}")
    columns = ["loss".ljust(14), "B".rjust(5), "time ms", "time x", "peak MiB", "memory x"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("-" * (len(c) + 2) for c in columns) + "|")
    for batch in args.batch_sizes:
        z = _inputs(batch, args.dim, device)
        times = time_ms(LOSSES, z, args.repeats)
        peaks = {name: peak_mib(fn, z) for name, fn in LOSSES.items()}
        for name in LOSSES:
            cells = [
                name.ljust(14),
                f"{batch:>5}",
                f"{times[name]:>7.1f}",
                f"{times[name] / times['info_nce_loss']:>6.2f}",
                f"{peaks[name]:>8.1f}",
                f"{peaks[name] / peaks['info_nce_loss']:>8.2f}",
            ]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
