"""Stand-ins, builders and small inputs shared by several test modules.

Test modules import what they share from here (and the image files from ``image_files``), never
from one another.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor

import debiascl.compare.execute
from debiascl import checkpoint as ckpt
from debiascl.checkpoint import FORMAT, VERSION, load_checkpoint
from debiascl.config import Config, build_config
from debiascl.losses import dcl_loss, hcl_loss, info_nce_loss, triplet_loss, wcl_loss
from debiascl.methods import METHODS
from debiascl.records import file_digest
from debiascl.rundir import LOCK_NAME, checkpoint_path

BUILT_IN_METHODS = {"simclr", "dcl", "hcl", "triplet", "wcl", "cnc", "erm", "jtt", "gce", "gdro"}
"""Every method the package registers."""

DATASET = "biased-digits-binary"
"""The data set of the fake pipeline's results and the default of :func:`train_args`."""


def train_args(
    out: Path,
    *extra: str,
    dataset: str = DATASET,
    method: str = "simclr",
    epochs: int = 1,
    settings: Iterable[str] = (),
) -> list[str]:
    """Arguments of ``debiascl train`` on the CPU with a global batch of 256.

    Args:
        out: the run directory (``--out``).
        extra: further arguments, e.g. "--resume".
        dataset: ``--dataset``.
        method: ``--method``.
        epochs: ``--epochs``.
        settings: "key=value" strings, each passed as ``--set``.
    """
    return [
        "train",
        "--dataset",
        dataset,
        "--method",
        method,
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--batch-size",
        "256",
        "--device",
        "cpu",
        *[arg for setting in settings for arg in ("--set", setting)],
        *extra,
    ]


def fake_metrics(value: float) -> dict[str, Any]:
    """A group_metrics-like dict whose every accuracy is derived from ``value``."""
    return {
        "num_samples": 8,
        "accuracy": value,
        "per_class": {"y=0": value, "y=1": value},
        "absent_classes": [],
        "worst_class": value,
        "per_group": {"y=0,a=0": value},
        "group_sizes": {"y=0,a=0": 2},
        "absent_groups": [],
        "worst_group": value / 2,
        "worst_group_name": "y=0,a=0",
        "mean_group": value,
        "avg_acc_train_weighted": value,
        "aligned_accuracy": value,
        "aligned_size": 4,
        "conflicting_accuracy": value / 2,
        "conflicting_size": 4,
    }


class FakePipeline:
    """Stand-ins for train() and evaluate_splits() that write what the real ones write.

    ``values[(method, seed)]`` is the accuracy the fake evaluation reports for that run; in a
    grid, ``values[(method, point, seed, split)]`` (point: the point's name) comes first.
    """

    def __init__(self, values: dict[tuple, float] | None = None) -> None:
        self.values = values or {}
        self.train_calls: list[tuple[str, bool]] = []
        self.evaluate_calls: list[str] = []
        self.discover_calls: list[tuple[Path, Path | None]] = []

    def train(self, config: Any, run_dir: str | Path, resume: bool = False) -> Path:
        run_dir = Path(run_dir)
        self.train_calls.append((f"{config.method.name}/{config.train.seed}", resume))
        if not resume:
            used = run_dir.exists() and any(e.name != LOCK_NAME for e in run_dir.iterdir())
            assert not used, "train on a used folder"
        checkpoint_path(run_dir).parent.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / "config.yaml")
        checkpoint_path(run_dir).write_bytes(b"checkpoint")
        (run_dir / "train_done").write_text("4\n")
        return run_dir

    def load_run(self, run_dir: str | Path, device: str = "cpu", **_: Any) -> SimpleNamespace:
        """A loaded run: what execute_run hands on (its directory and device)."""
        return SimpleNamespace(run_dir=Path(run_dir), device=device)

    def discover(self, run: Any, loaded: SimpleNamespace, plots: bool) -> None:
        """SharedDiscoveries.discover: record (run directory, bias run)."""
        assert loaded.run_dir == run.run_dir
        self.discover_calls.append((run.run_dir, run.bias_run))
        assert (Path(run.bias_run or run.run_dir) / "train_done").is_file(), "bias run not trained"

    def evaluate_run(
        self,
        run_dir: str | Path,
        probe: str | None = None,
        probe_groups: tuple[str, ...] = (),
        split: str = "test",
        **_: Any,
    ) -> dict[str, Any]:
        run_dir = Path(run_dir)
        self.evaluate_calls.append(str(run_dir) if split == "test" else f"{run_dir} {split}")
        seed = int(run_dir.name.removeprefix("seed"))
        method, point = run_dir.parent.name, "default"
        if method not in METHODS and not method.startswith("discovery-"):  # a grid point
            method, point = run_dir.parent.parent.name, method
        method = method.removeprefix("discovery-")  # compare --signal's discovery runs
        supervised = METHODS[method].supervised
        main = "classifier" if supervised else "probe"
        value = self.values.get((method, point, seed, split), self.values.get((method, seed), 0.5))
        name = "results.json" if split == "test" else f"results_{split}.json"
        results = {
            "run_dir": str(run_dir),
            "checkpoint_sha256": file_digest(checkpoint_path(run_dir)),
            "dataset": DATASET,
            "method": method,
            "seed": seed,
            "split": split,
            "encoder": METHODS[method].product_encoder,
            "probe_protocol": probe,
            "supervised": supervised,
            "main": main,
            "probe": {"protocol": "linear probe", "metrics": fake_metrics(value)},
            "knn": {"protocol": "knn", "metrics": fake_metrics(0.1)},
            "results_file": str(run_dir / name),
        }
        if supervised:
            results["classifier"] = {"protocol": "own", "metrics": fake_metrics(value)}
        if split == "val" and "discovered" in probe_groups:
            results[main]["metrics"]["discovered_worst_group"] = value / 4
        for kind in probe_groups:
            results[f"probe_{kind}"] = {"protocol": kind, "metrics": fake_metrics(value + 0.1)}
        if "discovered" in probe_groups:
            results["discovery"] = {
                "train": {"bias_labels": True, "precision": 1.0, "recall": 0.5, "auroc": 0.9}
            }
        (run_dir / name).write_text(json.dumps(results))
        return results

    def evaluate_splits(
        self, run: SimpleNamespace, splits: tuple[str, ...] = ("test",), **kwargs: Any
    ) -> dict[str, dict[str, Any]]:
        return {split: self.evaluate_run(run.run_dir, split=split, **kwargs) for split in splits}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
        """Put the stand-ins in place of debiascl.compare's train, load_run, evaluate_splits and
        the discovery."""
        monkeypatch.setattr(debiascl.compare.execute, "train", self.train)
        monkeypatch.setattr(debiascl.compare.execute, "load_run", self.load_run)
        monkeypatch.setattr(debiascl.compare.execute, "evaluate_splits", self.evaluate_splits)
        monkeypatch.setattr(debiascl.compare.SharedDiscoveries, "discover", self.discover)
        return self


TINY_DIGITS_CLI = [
    "--dataset",
    "biased-digits-binary",
    "--epochs",
    "1",
    "--batch-size",
    "512",
    "--device",
    "cpu",
    "--set",
    "data.options.image_size=8",
    "--set",
    "train.knn_every=0",
]
"""CLI flags of a seconds-long CPU run on the built-in digits (train or compare)."""


def minimal_state(**extra: object) -> dict:
    """The smallest state dict a checkpoint accepts (every required key), updated by ``extra``."""
    state = {key: 0 for key in ckpt.REQUIRED_KEYS}
    state.update(format=FORMAT, version=VERSION, method="simclr", model={}, config={})
    state.update(optimizers={}, schedulers={}, rng=[])
    state.update(extra)
    return state


def tiny_config(method: str = "wcl", epochs: int = 1, batch_size: int = 128, *sets: str) -> Config:
    """biased-digits at 8 px on the CPU, no kNN monitor, no progress bar."""
    return build_config(
        preset="biased-digits",
        overrides={
            "method.name": method,
            "train.epochs": epochs,
            "train.batch_size": batch_size,
            "train.device": "cpu",
        },
        sets=["data.options.image_size=8", "train.knn_every=0", "train.progress=false", *sets],
    )


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of ``run_dir/metrics.jsonl``, one dict a line."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def final_model(run_dir: Path) -> dict[str, torch.Tensor]:
    """The model weights of the run's last checkpoint."""
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def random_projections(batch: int, dim: int, count: int = 2, seed: int = 0) -> list[Tensor]:
    """``count`` seeded float64 (batch, dim) leaf tensors that require gradients."""
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, dim, generator=gen, dtype=torch.float64).requires_grad_()
        for _ in range(count)
    ]


def all_losses(z1: Tensor, z2: Tensor, t: float) -> dict[str, Tensor]:
    """Every loss at temperature t; WCL takes E_b's projections as a fixed perturbation."""
    zb1, zb2 = z1.detach().flip(0), z2.detach().flip(0)
    return {
        "info_nce": info_nce_loss(z1, z2, t),
        "dcl": dcl_loss(z1, z2, t, 0.1),
        "hcl": hcl_loss(z1, z2, t, 0.1, 1.0),
        "triplet": triplet_loss(z1, z2, 0.1),
        "wcl": wcl_loss(z1, z2, zb1, zb2, t, 0.1),
    }


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_plugin(name: str) -> str:
    """README's one-file plugin ``name`` (its ```py block starting with ``# <name>``)."""
    return re.search(rf"```py\n(# {re.escape(name)}\n.*?)```", README.read_text(), re.DOTALL)[1]


def restore_registries(monkeypatch: pytest.MonkeyPatch, *registries: Any) -> None:
    """Names a test registers or declares in ``registries`` are forgotten after it (their
    built-ins are registered first, so the copies hold them)."""
    for registry in registries:
        registry.lookup(next(iter(registry)))
        for attribute in ("_declared", "_entries", "_info"):
            monkeypatch.setattr(registry, attribute, dict(getattr(registry, attribute)))


def install_plugin(
    name: str, folder: Path, registry: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Write README's plugin ``name`` into ``folder`` and yield its path; ``registry``'s entries
    and ``sys.modules`` are restored afterwards (a fixture's body)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(readme_plugin(name))
    monkeypatch.setattr(registry, "_entries", dict(registry.items()))
    yield path
    sys.modules.pop(path.stem, None)
