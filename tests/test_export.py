"""export -> predict / embed / load_encoder / load_classifier reproduce what eval measured."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from image_files import write_csv
from PIL import Image

import debiascl
from debiascl.cli import main
from debiascl.config import build_config
from debiascl.data import build_dataset
from debiascl.data.sampling import labelled_subset
from debiascl.errors import DebiasclError
from debiascl.evaluate import fit_linear_probe, load_run
from debiascl.export import export_model
from debiascl.features import extract_features
from debiascl.metrics import group_metrics

SPLITS = {"train": 64, "val": 16, "test": 24}


def _image(y: int, a: int, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """(W, H) = size image: background colour from the bias a, a bright half from the class y."""
    width, height = size
    pixels = rng.integers(0, 60, size=(height, width, 3)).astype(np.uint8)
    pixels[..., 2 if a else 1] += 150
    half = slice(0, width // 2) if y == 0 else slice(width // 2, width)
    pixels[:, half, 0] = 230
    return Image.fromarray(pixels)


def make_image_folder(root: Path, seed: int = 0) -> Path:
    """A metadata-csv folder (filename, split, y, a): 90% of train aligned (a = y)."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, count in SPLITS.items():
        for i in range(count):
            y = i % 2
            a = y if (split == "train" and i % 10) else (i // 2) % 2
            name = f"{split}/{i:03d}.png"
            (root / split).mkdir(parents=True, exist_ok=True)
            _image(y, a, rng, (12, 10)).save(root / name)
            rows.append([name, split, y, a])
    write_csv(root / "metadata.csv", ["filename", "split", "y", "a"], rows)
    return root


def image_config(root: Path, method: str):
    return build_config(
        overrides={
            "data.name": "metadata-csv",
            "data.root": str(root),
            "method.name": method,
            "train.epochs": 1,
            "train.batch_size": 32,
            "train.device": "cpu",
        },
        sets=[
            "data.options.image_size=10",
            "data.image_size=8",
            "data.augmentation=crop_flip",
            "data.cache=false",
            "train.knn_every=0",
            "train.progress=false",
        ],
    )


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A finished WCL run on an image folder, discovered and evaluated with every probe."""
    root = make_image_folder(tmp_path_factory.mktemp("images"))
    run_dir = debiascl.train(image_config(root, "wcl"), root.parent / "run")
    debiascl.discover(run_dir, device="cpu")
    debiascl.evaluate(run_dir, probe_groups=["discovered", "true", "class"], device="cpu")
    return run_dir


def _data_root(run_dir: Path) -> str:
    return build_config(config_file=run_dir / "config.yaml").data.root


def _eval_path(run_dir: Path, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Test features and logits of probe ``kind`` computed the way evaluate_splits does."""
    from debiascl.discovery import balanced_weights
    from debiascl.evaluate import probe_groups_of

    run = load_run(run_dir)
    features = {
        split: extract_features(run.method, labelled_subset(data), run.prepare, "d", "cpu", 512)
        for split, data in run.splits.items()
    }
    weights, val_groups = None, None
    if kind != "plain":
        groups = probe_groups_of(kind, run, features)
        weights, val_groups = balanced_weights(groups["train"]), groups["val"]
    probe = fit_linear_probe(
        features["train"][0],
        features["train"][1],
        2,
        "fast",
        val_features=features["val"][0],
        val_y=features["val"][1],
        sample_weights=weights,
        val_groups=val_groups,
    )
    return features["test"][0], probe.logits(features["test"][0])


@pytest.mark.parametrize("kind", ["plain", "discovered", "class"])
def test_export_then_predict_gives_evals_predictions_and_metrics(image_run, tmp_path, kind):
    groups = "none" if kind == "plain" else kind
    model = tmp_path / "model"
    assert main(["export", str(image_run), "--probe-groups", groups, "--out", str(model)]) == 0
    out = tmp_path / "predictions.csv"
    data_root = _data_root(image_run)
    args = ["predict", str(model), data_root, "--split", "test", "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    test = build_dataset("metadata-csv", data_root, "test", image_size=10)
    assert [row["id"] for row in rows] == test.files
    predicted = torch.tensor([int(row["predicted"]) for row in rows])
    probabilities = torch.tensor([[float(row["prob_0"]), float(row["prob_1"])] for row in rows])
    _, logits = _eval_path(image_run, kind)
    assert torch.equal(predicted, logits.argmax(dim=1))
    torch.testing.assert_close(probabilities, torch.softmax(logits, 1), atol=1e-6, rtol=0)
    results = json.loads((image_run / "results.json").read_text())
    key = "probe" if kind == "plain" else f"probe_{kind}"
    counts = np.array(results["train_group_counts"])
    metrics = group_metrics(test.targets, predicted, test.attributes, 2, 2, counts)
    assert metrics == results[key]["metrics"]
    card = (model / "README.md").read_text()
    assert f"{100 * results[key]['metrics']['worst_group']:.2f}" in card
    assert "Bias labels used by the head**: no" in card


def test_load_encoder_gives_evals_features(image_run, tmp_path):
    features, _ = _eval_path(image_run, "plain")
    test = build_dataset("metadata-csv", _data_root(image_run), "test", image_size=10)
    x = torch.stack([test.load(i) for i in range(len(test))])
    for source in (image_run, export_model(image_run, tmp_path / "model")):
        encoder = debiascl.load_encoder(source)
        assert not encoder.training
        with torch.no_grad():
            assert torch.equal(encoder(x), features)
