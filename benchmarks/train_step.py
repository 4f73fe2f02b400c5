"""Time per training step (forward + backward + optimizer step) of each method vs simclr.

Every method gets the same backbone, batch, image size and device, and the methods are timed
in interleaved rounds in one process (so background load hits them alike); the table reports
the median and the minimum over rounds of the mean step time, each with its ratio to
simclr (on a shared machine the minimum is the less noisy estimate). Target (issue 4 section
8): wcl <= 2.05x simclr, since WCL runs two encoders (2.0x is the floor).

Examples (CPU, one to two minutes each on 2 cores; on a machine shared with other jobs, one
thread and CPU time give stable ratios):

    export MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736
    python benchmarks/train_step.py --device cpu --backbone small_cnn --batch-size 128 \
        --image-size 32 --steps 1 --rounds 9 --threads 1 --clock cpu
    python benchmarks/train_step.py --device cpu --backbone resnet18 --batch-size 16 \
        --image-size 16 --steps 1 --rounds 7 --threads 1 --clock cpu
    python benchmarks/train_step.py --device cuda --backbone resnet18 --batch-size 256

On Linux CPUs, the two ``MALLOC_*`` variables keep glibc's malloc from handing freed activation
buffers back to the kernel after every step. Without them WCL, whose two encoders hold twice
the activations, pays page faults (system time) that single-encoder methods mostly escape, and
its ratio drifts from 2.0x to 2.1-2.4x from run to run. The header line shows the settings in
force.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from types import SimpleNamespace

import torch

from debiascl.batch import Batch
from debiascl.config import Config
from debiascl.methods import METHODS, Method, build_method


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--backbone", default="small_cnn", choices=["small_cnn", "resnet18"])
    parser.add_argument("--batch-size", type=int, default=128, help="samples (2 views each)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per method")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated names")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (device cpu only; with --threads 1 "
        "it is insensitive to other processes competing for the cores)",
    )
    return parser.parse_args()


def make_method(
    name: str, backbone: str, image_size: int, device: torch.device
) -> tuple[Method, list[torch.optim.Optimizer]]:
    """A method on random-init encoders with one Adam optimizer per encoder (as the trainer)."""
    config = Config()
    config.method.name = name
    config.model.backbone = backbone
    config.model.cifar_stem = backbone == "resnet18"
    data = SimpleNamespace(
        name="random", kind="image", input_shape=(3, image_size, image_size), num_classes=10
    )
    method = build_method(config, data).to(device).train()
    optimizers = [torch.optim.Adam([group]) for group in method.param_groups(config.optim)]
    return method, optimizers


def train_steps(
    method: Method,
    optimizers: list[torch.optim.Optimizer],
    batch: Batch,
    steps: int,
) -> None:
    for _ in range(steps):
        loss, _ = method.training_step(batch)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        raise SystemExit("--clock cpu measures CPU time: use it with --device cpu")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    names = args.methods.split(",")
    if "simclr" not in names:
        names.insert(0, "simclr")
    torch.manual_seed(0)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    views = [torch.rand(shape, device=device), torch.rand(shape, device=device)]
    targets = torch.randint(0, 10, (args.batch_size,), device=device)
    index = torch.arange(args.batch_size, device=device)
    groups = {"group": targets % 2, "group_sizes": torch.ones(2, device=device)}  # gdro's
    batch = Batch(index, views, targets, **groups)
    runs = {name: make_method(name, args.backbone, args.image_size, device) for name in names}
    for method, optimizers in runs.values():
        train_steps(method, optimizers, batch, args.warmup)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name, (method, optimizers) in runs.items():
            synchronize(device)
            start = clock()
            train_steps(method, optimizers, batch, args.steps)
            synchronize(device)
            times[name].append((clock() - start) / args.steps)
    medians = {name: statistics.median(values) for name, values in times.items()}
    fastest = {name: min(values) for name, values in times.items()}
    malloc = ",".join(
        f"{key}={value}" for key, value in os.environ.items() if key.startswith("MALLOC_")
    )
    print(
        f"device={device} backbone={args.backbone} batch={args.batch_size} "
        f"image={args.image_size}px steps={args.steps}x{args.rounds} rounds "
        f"torch={torch.__version__} threads={torch.get_num_threads()} clock={args.clock} "
        f"malloc={malloc or 'default'}"
    )
    print("| method | encoders | params | ms/step median | x simclr | ms/step min | x simclr |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (method, _) in runs.items():
        params = sum(p.numel() for p in method.parameters())
        print(
            f"| {name} | {'+'.join(method.encoders())} | {params / 1e6:.2f}M "
            f"| {medians[name] * 1e3:.1f} | {medians[name] / medians['simclr']:.2f} "
            f"| {fastest[name] * 1e3:.1f} | {fastest[name] / fastest['simclr']:.2f} |"
        )


if __name__ == "__main__":
    main()
