"""DDP equivalence of the losses (SPEC section 6): 2 gloo processes on CPU == 1 process.

One spawn runs every check; each rank saves what it saw and the tests below compare.
"""

from __future__ import annotations

import copy
import gc
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from debiascl import distributed
from debiascl.losses import (
    dcl_loss,
    hcl_loss,
    info_nce_loss,
    relative_difficulty,
    triplet_loss,
    wcl_loss,
)

WORLD = 2
LOCAL_BATCH = 3
IN_DIM, OUT_DIM = 5, 4
LR = 0.5

Objective = Callable[[list[nn.Module], Tensor, Tensor, bool], Tensor]


def _project(model: nn.Module, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
    """One forward for both views (as a DDP model should be called): (B, IN) -> two (B, OUT)."""
    z1, z2 = model(torch.cat([x1, x2])).chunk(2)
    return z1, z2


def _single_encoder(loss: Callable[..., Tensor]) -> Objective:
    def objective(models: list[nn.Module], x1: Tensor, x2: Tensor, gather: bool) -> Tensor:
        return loss(*_project(models[0], x1, x2), gather_distributed=gather)

    return objective


def _wcl(models: list[nn.Module], x1: Tensor, x2: Tensor, gather: bool) -> Tensor:
    """WCL's objective with two encoders: triplet(E_b) + wcl(E_d) in one backward."""
    zd1, zd2 = _project(models[0], x1, x2)
    zb1, zb2 = _project(models[1], x1, x2)
    return triplet_loss(zb1, zb2, 0.1, gather_distributed=gather) + wcl_loss(
        zd1, zd2, zb1, zb2, temperature=0.2, tau_plus=0.1, gather_distributed=gather
    )


OBJECTIVES: dict[str, Objective] = {
    "info_nce": _single_encoder(lambda a, b, **kw: info_nce_loss(a, b, 0.2, **kw)),
    "dcl": _single_encoder(lambda a, b, **kw: dcl_loss(a, b, 0.2, 0.1, **kw)),
    "hcl": _single_encoder(lambda a, b, **kw: hcl_loss(a, b, 0.2, 0.1, 1.0, **kw)),
    "triplet": _single_encoder(lambda a, b, **kw: triplet_loss(a, b, 0.1, **kw)),
    "triplet_plain": _single_encoder(lambda a, b, **kw: triplet_loss(a, b, debias=False, **kw)),
    "wcl": _wcl,
}


def _sgd_step(models: list[nn.Module], loss: Tensor) -> list[Tensor]:
    """One plain SGD step on all models; returns their parameters afterwards."""
    params = [p for m in models for p in m.parameters()]
    optimizer = torch.optim.SGD(params, lr=LR)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return [p.detach().clone() for p in params]


def _run_objective(objective: Objective, x1: Tensor, x2: Tensor, rank: int) -> dict:
    torch.manual_seed(1)
    models = [nn.Linear(IN_DIM, OUT_DIM) for _ in range(2)]
    reference = copy.deepcopy(models)
    ref_loss = objective(reference, x1, x2, False)
    ref_params = _sgd_step(reference, ref_loss)

    local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    wrapped = [DistributedDataParallel(m) for m in models]
    loss = objective(wrapped, x1[local], x2[local], True)
    params = _sgd_step(wrapped, loss)
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    return {
        "loss": mean_loss / WORLD,
        "ref_loss": ref_loss.detach(),
        "params": params,
        "ref_params": ref_params,
    }


def _check_gather(rank: int) -> dict:
    """gather_with_grad on its own: forward concatenates, backward sums over ranks."""
    x = torch.full((2, 3), float(rank + 1), requires_grad=True)
    gathered = distributed.gather_with_grad(x)
    weights = torch.arange(12.0).reshape(4, 3) * (rank + 1)  # each rank weighs differently
    (gathered * weights).sum().backward()
    return {"gathered": gathered.detach(), "grad": x.grad.clone()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        torch.manual_seed(0)
        x1, x2 = torch.randn(2, WORLD * LOCAL_BATCH, IN_DIM).unbind(0)
        zd1, zd2, zb1, zb2 = torch.randn(4, WORLD * LOCAL_BATCH, OUT_DIM).unbind(0)
        local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        result = {
            "helpers": (
                distributed.is_distributed(),
                distributed.get_rank(),
                distributed.get_world_size(),
                distributed.is_main_process(),
            ),
            "gather": _check_gather(rank),
            "weights": relative_difficulty(
                zd1[local], zd2[local], zb1[local], zb2[local], 0.2, gather_distributed=True
            ),
            "ref_weights": relative_difficulty(zd1, zd2, zb1, zb2, 0.2),
            "objectives": {
                name: _run_objective(fn, x1, x2, rank) for name, fn in OBJECTIVES.items()
            },
        }
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
        # Without the collect and the barrier, about 1 spawn in 20 aborted at interpreter exit
        # ("terminate called without an active exception", gloo); with them, none in 80.
        del result
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_loss_and_step_equal_single_process(ranks, name):
    for rank, result in enumerate(ranks):
        got = result["objectives"][name]
        torch.testing.assert_close(got["loss"], got["ref_loss"], rtol=1e-5, atol=1e-6)
        assert len(got["params"]) == len(got["ref_params"])
        for p, ref in zip(got["params"], got["ref_params"], strict=True):
            torch.testing.assert_close(p, ref, rtol=1e-5, atol=1e-6, msg=f"rank {rank}")


def test_step_actually_moves_parameters(ranks):
    # Guards the test above: the reference step must change the model it compares.
    torch.manual_seed(1)
    initial = [
        p.detach() for m in (nn.Linear(IN_DIM, OUT_DIM) for _ in range(2)) for p in m.parameters()
    ]
    for name, got in ranks[0]["objectives"].items():
        moved = [not torch.allclose(p, q) for p, q in zip(got["ref_params"], initial, strict=True)]
        assert any(moved), name
    # In WCL both encoders learn (E_b from the triplet loss, E_d from the weighted loss).
    assert all(
        not torch.allclose(p, q)
        for p, q in zip(ranks[0]["objectives"]["wcl"]["ref_params"], initial, strict=True)
    )


def test_relative_difficulty_rows_are_the_local_anchors(ranks):
    batch = WORLD * LOCAL_BATCH
    for rank, result in enumerate(ranks):
        rows = torch.arange(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        expected = result["ref_weights"][torch.cat([rows, rows + batch])]
        assert result["weights"].shape == (2 * LOCAL_BATCH, 2 * batch)
        torch.testing.assert_close(result["weights"], expected, rtol=1e-5, atol=1e-6)


def test_helpers_and_gather_with_grad(ranks):
    weights = torch.arange(12.0).reshape(4, 3)
    summed = weights * sum(r + 1 for r in range(WORLD))  # backward sums every rank's gradient
    for rank, result in enumerate(ranks):
        assert result["helpers"] == (True, rank, WORLD, rank == 0)
        expected = torch.cat([torch.full((2, 3), float(r + 1)) for r in range(WORLD)])
        torch.testing.assert_close(result["gather"]["gathered"], expected)
        torch.testing.assert_close(result["gather"]["grad"], summed[2 * rank : 2 * rank + 2])


def test_helpers_without_process_group():
    assert not distributed.is_distributed()
    assert (distributed.get_rank(), distributed.get_world_size()) == (0, 1)
    assert distributed.is_main_process()
    x = torch.randn(3, 2)
    assert distributed.gather_with_grad(x) is x
