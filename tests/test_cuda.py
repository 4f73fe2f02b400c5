"""The CUDA paths: losses on the GPU, mixed precision, channels_last, a one-rank NCCL torchrun.

Every test here needs a GPU and is skipped without one (CI has none); run them where a GPU is,
e.g. through ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from fakes import (
    all_losses,
    final_model,
    minimal_state,
    random_projections,
    read_metrics,
    tiny_config,
    train_args,
)

from debiascl.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from debiascl.config import load_config
from debiascl.distributed import _GatherWithGrad
from debiascl.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _every_loss_with_grads(z1: torch.Tensor, z2: torch.Tensor, t: float) -> dict[str, list]:
    """Each loss of :func:`all_losses` and its gradients with respect to z1 and z2, on CPU."""
    result = {}
    for name, loss in all_losses(z1, z2, t).items():
        grads = torch.autograd.grad(loss, (z1, z2))
        result[name] = [loss.detach().cpu(), *(g.cpu() for g in grads)]
    return result


@pytest.mark.parametrize("t", [0.05, 0.5])
def test_losses_and_gradients_on_cuda_equal_the_cpu_ones(t: float) -> None:
    cpu_inputs = random_projections(64, 32)
    cuda_inputs = [z.detach().cuda().requires_grad_() for z in cpu_inputs]
    on_cpu = _every_loss_with_grads(*cpu_inputs, t)
    on_cuda = _every_loss_with_grads(*cuda_inputs, t)
    for name, expected in on_cpu.items():
        for got, want in zip(on_cuda[name], expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_under_cuda_autocast_the_losses_are_float32_and_finite(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(32, 64).cuda()
    x1, x2 = torch.randn(2, 256, 32, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        z1, z2 = head(x1), head(x2)
        assert z1.dtype == dtype
        losses = all_losses(z1, z2, 0.05)
    reference = all_losses(z1.detach().double(), z2.detach().double(), 0.05)
    for name, loss in losses.items():
        assert loss.dtype == torch.float32, name
        torch.testing.assert_close(loss.double(), reference[name], rtol=1e-5, atol=1e-4, msg=name)
        head.zero_grad()
        loss.backward(retain_graph=True)
        assert all(torch.isfinite(p.grad).all() for p in head.parameters()), name


def _cuda_config(method: str, epochs: int, *sets: str):
    return tiny_config(method, epochs, 128, "train.device=cuda", "train.log_every=1", *sets)


@pytest.mark.parametrize("precision", ["32", "bf16", "fp16"])
def test_wcl_trains_on_cuda_in_each_precision_and_resumes(tmp_path: Path, precision: str) -> None:
    run_dir = train(_cuda_config("wcl", 1, f"train.precision={precision}"), tmp_path / "run")
    assert load_config(run_dir / "config.yaml").train.device == "cuda"
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    steps = len(read_metrics(run_dir)) - 1  # every step, then the epoch record
    assert state["global_step"] == steps > 0
    scaler = state["scaler"]  # a GradScaler only for fp16
    assert scaler is None if precision != "fp16" else scaler["scale"] > 0

    resumed = train(_cuda_config("wcl", 2, f"train.precision={precision}"), run_dir, resume=True)
    records = read_metrics(resumed)
    losses = [r["loss"] for r in records if r["kind"] == "step"]
    assert len(losses) == 2 * steps
    assert all(torch.isfinite(torch.tensor(loss)) for loss in losses)
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]


def test_the_training_gpus_generator_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    device = torch.device("cuda", 0)
    torch.cuda.manual_seed(3)
    save_checkpoint(tmp_path / "c.pt", minimal_state(rng=[capture_rng_state(device)]))
    expected = torch.rand(4, device=device)
    torch.cuda.manual_seed(99)
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"][0], device)
    assert torch.equal(torch.rand(4, device=device), expected)


def test_a_cuda_resnet_trains_in_channels_last(tmp_path: Path) -> None:
    config = _cuda_config("simclr", 1, "model.backbone=resnet18", "model.cifar_stem=true")
    weights = final_model(train(config, tmp_path / "run"))
    conv = weights["encoder_d.backbone.conv1.weight"]
    assert conv.dim() == 4 and conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()


def test_torchrun_with_one_rank_trains_on_the_cuda_device(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    settings = ("data.options.image_size=8", "train.knn_every=0")
    args = train_args(run_dir, dataset="biased-digits", method="wcl", settings=settings)
    args[args.index("--device") + 1] = "cuda"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "1", "-m", "debiascl", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["world_size"] == 1 and state["global_step"] > 0
    assert json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["kind"] == "epoch"


def test_gather_with_grad_over_an_nccl_group(tmp_path: Path) -> None:
    """The collectives of DDP training run on CUDA tensors through NCCL (one rank, one GPU)."""
    store = dist.FileStore(str(tmp_path / "store"), 1)
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", store=store, rank=0, world_size=1)
    try:
        x = torch.randn(8, 4, device="cuda", requires_grad=True)
        gathered = _GatherWithGrad.apply(x)
        torch.testing.assert_close(gathered, x)
        (gathered * torch.arange(4.0, device="cuda")).sum().backward()
        torch.testing.assert_close(x.grad, torch.arange(4.0, device="cuda").expand(8, 4))
    finally:
        dist.destroy_process_group()
