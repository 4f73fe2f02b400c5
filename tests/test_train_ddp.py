"""DDP on CPU (gloo): one WCL step on 2 ranks equals 1 process on the global batch; torchrun."""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fakes import train_args

from debiascl.batch import Batch
from debiascl.checkpoint import load_checkpoint, seed_everything
from debiascl.config import build_config
from debiascl.distributed import prepare_distributed
from debiascl.methods import Method, build_method
from debiascl.training.build import build_optimizers
from debiascl.training.loop import StepRunner

GLOBAL_BATCH = 16
# The protocol build_method needs from a data set: the 8 px biased-digits images.
DIGITS_8PX = SimpleNamespace(
    name="biased-digits", kind="image", input_shape=(3, 8, 8), num_classes=10
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fixed_views() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(123)
    return tuple(torch.randn(GLOBAL_BATCH, 3, 8, 8, generator=generator) for _ in range(2))


def wcl_step(world_size: int, rank: int = 0) -> Method:
    """Build WCL (SGD, so the update is proportional to the gradient) and take one step."""
    config = build_config(
        preset="biased-digits",
        overrides={"method.name": "wcl"},
        sets=["optim.name=sgd", "optim.lr=0.5", "optim.lr_b=0.5", "optim.weight_decay=1e-4"],
    )
    seed_everything(0)
    method = build_method(config, DIGITS_8PX, gather_distributed=world_size > 1)
    if world_size > 1:
        method = prepare_distributed(method, torch.device("cpu"))
    optimizers = build_optimizers(method.param_groups(config.optim), config.optim)
    runner = StepRunner(method.train(), optimizers, "32", torch.device("cpu"), world_size)
    local = GLOBAL_BATCH // world_size
    views = tuple(v[rank * local : (rank + 1) * local] for v in fixed_views())
    batch = Batch(torch.arange(local), list(views), torch.zeros(local, dtype=torch.long))
    assert runner.step(batch) is not None
    return method


def snapshot(method: Method) -> dict[str, torch.Tensor]:
    """Parameters, buffers (BatchNorm statistics) and gradients after the step."""
    state = {key: value.clone() for key, value in method.state_dict().items()}
    state.update({f"grad:{k}": p.grad.clone() for k, p in method.named_parameters()})
    return state


def _rank_main(
    rank: int, world_size: int, port: int, out_dir: str, steps: Callable[[int, int], Method]
) -> None:
    """One rank: ``steps(world_size, rank)`` in a gloo group, its snapshot saved to out_dir."""
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        torch.save(snapshot(steps(world_size, rank)), Path(out_dir) / f"rank{rank}.pt")
        # Without the collect and the barrier, about 1 spawn in 20 aborted at interpreter exit
        # ("terminate called without an active exception", gloo); with them, none in 80.
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_one_wcl_step_on_two_ranks_equals_one_process_on_the_global_batch(tmp_path: Path) -> None:
    mp.spawn(_rank_main, args=(2, free_port(), str(tmp_path), wcl_step), nprocs=2, join=True)
    single_method = wcl_step(world_size=1)
    single = snapshot(single_method)
    initial = build_method(build_config(preset="biased-digits"), DIGITS_8PX)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]

    assert ranks[0].keys() == single.keys()
    assert any(k.startswith("encoder_b.") for k in single) and any(
        k.startswith("encoder_d.") for k in single
    )
    for key, expected in single.items():
        # float32 sums in another order: elementwise, up to 1e-5 of the tensor's largest entry
        # (with one thread, 1.8e-6 was seen on a gradient whose largest entry is 3.2)
        atol = 1e-6 + 1e-5 * expected.float().abs().max().item()
        for rank, got in enumerate(ranks):
            assert torch.allclose(got[key].float(), expected.float(), rtol=1e-4, atol=atol), (
                f"rank {rank}: {key} differs from one process on the global batch"
            )
    # Not vacuous: the step moved the weights of both encoders.
    moved = [k for k, v in initial.state_dict().items() if not torch.equal(v, single[k])]
    assert any(k.startswith("encoder_d.") for k in moved)
    assert any(k.startswith("encoder_b.") for k in moved)


def gdro_steps(world_size: int, rank: int = 0) -> Method:
    """GroupDRO (SGD, eta 0.5) takes two steps on this rank's slice of a fixed batch whose
    groups are spread unevenly over the ranks (rank 0 holds most of group 0)."""
    config = build_config(
        preset="biased-digits",
        overrides={"method.name": "gdro"},
        sets=["optim.name=sgd", "optim.lr=0.5", "train.groups=true", "method.gdro_eta=0.5"],
    )
    seed_everything(0)
    method = build_method(config, DIGITS_8PX, gather_distributed=world_size > 1)
    if world_size > 1:
        method = prepare_distributed(method, torch.device("cpu"))
    optimizers = build_optimizers(method.param_groups(config.optim), config.optim)
    runner = StepRunner(method.train(), optimizers, "32", torch.device("cpu"), world_size)
    y = torch.arange(GLOBAL_BATCH) % 10
    groups = torch.tensor([0] * 7 + [1] + [1] * 5 + [2] * 3)
    part = slice(rank * GLOBAL_BATCH // world_size, (rank + 1) * GLOBAL_BATCH // world_size)
    views = [v[part] for v in fixed_views()]
    batch = Batch(torch.arange(GLOBAL_BATCH)[part], views, y[part], None, groups[part])
    batch.group_sizes = torch.tensor([10, 5, 3])
    for _ in range(2):
        assert runner.step(batch) is not None
    return method


@pytest.mark.slow
def test_gdro_on_two_ranks_equals_one_process_on_the_global_batch(tmp_path: Path) -> None:
    mp.spawn(_rank_main, args=(2, free_port(), str(tmp_path), gdro_steps), nprocs=2, join=True)
    single = snapshot(gdro_steps(world_size=1))
    q = single["_extra_state"]
    assert q.shape == (3,) and not torch.allclose(q, torch.full((3,), 1 / 3))
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got.keys() == single.keys()
        for key, expected in single.items():
            assert torch.allclose(got[key].float(), expected.float(), rtol=1e-4, atol=1e-5), (
                f"rank {rank}: {key} differs from one process on the global batch"
            )


def _wcl_args(out: Path, epochs: int, *extra: str) -> list[str]:
    """``debiascl train`` arguments: WCL on biased-digits at 8 px, every step logged."""
    settings = ("data.options.image_size=8", "train.knn_every=0", "train.log_every=1")
    return train_args(
        out, *extra, dataset="biased-digits", method="wcl", epochs=epochs, settings=settings
    )


def _torchrun(out: Path, epochs: int, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "debiascl",
        *_wcl_args(out, epochs, *extra),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_torchrun_trains_with_two_ranks_and_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _torchrun(run_dir, 1)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (run_dir / "train_done").read_text().strip() == "4"
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    # The ranks' augmentations differ (seed + rank).
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])

    resumed = _torchrun(run_dir, 2, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (run_dir / "train_done").read_text().strip() == "8"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # Rank 0 alone writes the logs: each step once, both epochs.
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 9))
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    assert resumed.stdout.count("debiascl: trained wcl") == 1


def _two_nodes(train_args: list[str], nodes: list[Path], port: int) -> list[str]:
    """Run ``debiascl train`` as 2 nodes of 1 rank each, joined by torchrun's c10d rendezvous.

    Each node runs in its own folder and ``train_args`` names a relative run directory, so the
    nodes share no files: what rank 1's node needs it must get over the process group.

    Returns:
        The stderr of each node, in node order; fails the test when a node fails.
    """
    rendezvous = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    rendezvous += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "debiascl-test"]
    command = [sys.executable, "-m", "torch.distributed.run", *rendezvous, "-m", "debiascl"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    agents = [
        subprocess.Popen(
            [*command, *train_args],
            cwd=node,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in nodes
    ]
    outputs = [agent.communicate(timeout=300) for agent in agents]
    for node, agent, (_, stderr) in zip(nodes, agents, outputs, strict=True):
        assert agent.returncode == 0, f"{node.name}: {stderr[-3000:]}"
    return [stderr for _, stderr in outputs]


@pytest.mark.slow
def test_two_nodes_through_the_rendezvous_train_and_resume_without_shared_files(
    tmp_path: Path,
) -> None:
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    for node in nodes:
        node.mkdir()
    _two_nodes(_wcl_args(Path("run"), 1), nodes, free_port())
    run_dir = nodes[0] / "run"
    assert (run_dir / "train_done").read_text().strip() == "4"
    assert not (nodes[1] / "run").exists()  # logs and checkpoints come from rank 0 alone
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2

    # Rank 0 reads the checkpoint and hands it to rank 1, whose node has no copy.
    _two_nodes(_wcl_args(Path("run"), 2, "--resume"), nodes, free_port())
    assert (run_dir / "train_done").read_text().strip() == "8"
    assert not (nodes[1] / "run").exists()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 9))
