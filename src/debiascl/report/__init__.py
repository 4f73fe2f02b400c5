"""Reports of a run (SPEC section 7), by layer: :mod:`~debiascl.report.weights` (WCL's weight
analysis, pure tensors), :mod:`~debiascl.report.plots` (every figure),
:mod:`~debiascl.report.tables` (rows, Markdown/CSV/JSON, mean ± standard error), and here the
run-level writers.

:func:`write_report` makes every plot of a run into its directory:

- ``tsne.png``: t-SNE of test representations, coloured by class and, beside it, by bias value
  (legends with the class and attribute names);
- ``easy_hard_negatives.png`` (images) and ``easy_hard_negatives.md`` / ``.csv`` / ``.json``: for
  a few anchors, the negatives with the lowest w (easiest) and highest w (hardest), with class and
  attribute names and, for tables, the (standardised) feature values (wcl only);
- ``weight_histograms.png``: w by anchor kind (bias-aligned or bias-conflicting) x negative
  relation (same/different class, same/different bias) (wcl only);
- ``weight_groups.png``: w by anchor group x negative group, g = y * n_bias + a, one histogram
  per cell (the authors' weight analysis; wcl on data with a bias attribute and at most
  :data:`MAX_GRID_GROUPS` groups);
- ``weight_summary.md`` / ``.csv`` / ``.json``: pairs, mean and median w of every cell of both
  views;
- ``training_curves.png``: losses and kNN accuracy from ``metrics.jsonl``.

- :func:`write_discovery_report`: what a bias discovery found (``discovery_scores.png``,
  ``discovered_flagged.*``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from debiascl.data.base import BiasedDataset
from debiascl.evaluate import LoadedRun, load_run
from debiascl.records import read_metrics
from debiascl.report.labels import feature_text, named
from debiascl.report.plots import (
    curve_panels,
    plot_easy_hard_negatives,
    plot_sample_grid,
    plot_score_histogram,
    plot_training_curves,
    plot_tsne,
    plot_weight_cells,
)
from debiascl.report.tables import write_rows
from debiascl.report.weights import (
    easy_hard_rows,
    group_cells,
    pool_weights,
    relation_cells,
    weight_summary,
)
from debiascl.rundir import metrics_path

logger = logging.getLogger(__name__)

MAX_GRID_GROUPS = 6
"""The anchor group x negative group grid is drawn for at most this many groups."""

MAX_FLAGGED_SHOWN = 24
"""Flagged samples shown in the discovery grid and table (highest scores first)."""


def most_flagged(scores: torch.Tensor, flags: torch.Tensor, limit: int) -> torch.Tensor:
    """(m,) positions of at most ``limit`` flagged samples, highest score first (stable)."""
    positions = flags.nonzero().squeeze(1)
    order = torch.argsort(-scores[positions], stable=True)
    return positions[order][:limit]


def write_discovery_report(
    dataset: BiasedDataset,
    index: torch.Tensor,
    scores: torch.Tensor,
    flags: torch.Tensor,
    threshold: float,
    out_dir: str | Path,
    title: str,
) -> list[Path]:
    """What a bias discovery found in a split: score histograms and the flagged samples.

    Writes ``discovery_scores.png`` (scores by true group (y, a) where the bias is known, else by
    class) and the :data:`MAX_FLAGGED_SHOWN` highest-scored flagged samples as
    ``discovered_flagged.{md,csv,json}`` (with feature values for tables) and, for images,
    ``discovered_flagged.png``.

    Args:
        dataset: the split the discovery scored; index: (n,) its dataset indices.
        scores: (n,) conflict scores; flags: (n,) bool.
        threshold: the flag threshold.
        out_dir: where to write.
        title: names the run and bias encoder in the figures.

    Returns:
        The paths written.
    """
    out_dir = Path(out_dir)
    y, a = dataset.targets[index], dataset.attributes[index]
    names = [
        f"y={named(label, dataset.class_names)}"
        + (f", a={named(bias, dataset.attribute_names)}" if bias >= 0 else "")
        for label, bias in zip(y.tolist(), a.tolist(), strict=True)
    ]
    written = [
        plot_score_histogram(
            scores, names, threshold, out_dir / "discovery_scores.png", f"{title}: conflict scores"
        )
    ]
    shown = most_flagged(scores, flags, MAX_FLAGGED_SHOWN)
    if shown.numel() == 0:
        logger.info("no sample flagged: no grid or table of flagged samples")
        return written
    table = dataset.kind == "table"
    inputs = torch.stack([dataset.load(int(index[i])) for i in shown.tolist()])
    feature_names = getattr(dataset, "feature_names", None)
    rows = [
        {"index": int(index[i]), "group": names[i], "score": round(float(scores[i]), 4)}
        | ({"features": feature_text(inputs[row], feature_names)} if table else {})
        for row, i in enumerate(shown.tolist())
    ]
    written += write_rows(rows, out_dir / "discovered_flagged")
    if not table:
        captions = [f"{names[i]}\ns={float(scores[i]):.2f}" for i in shown.tolist()]
        written.append(
            plot_sample_grid(
                inputs,
                captions,
                out_dir / "discovered_flagged.png",
                f"{title}: the {len(captions)} highest-scored flagged samples (true labels shown)",
            )
        )
    return written


def write_report(
    run_dir: str | Path | LoadedRun,
    device: str | torch.device = "cpu",
    encoder: str | None = None,
    pool_size: int = 256,
    num_anchors: int = 3,
    k: int = 5,
) -> list[Path]:
    """Every plot of a finished run, written into its directory (see the module docstring).

    Args:
        run_dir: a finished run directory, or the run already loaded (:func:`load_run`, with
            its train and test splits at least; its test features are shared).
        device: where to run the encoders (a loaded run's device is its own).
        encoder: whose representations the t-SNE shows (None: the product encoder); the
            labelled test samples are shown.
        pool_size: test samples whose pairwise w the weight analyses use (wcl only).
        num_anchors: anchors of the easy/hard sanity check (bias-conflicting ones first).
        k: easiest and hardest negatives shown per anchor.

    Returns:
        The paths written.
    """
    run = (
        run_dir
        if isinstance(run_dir, LoadedRun)
        else load_run(run_dir, device, splits=("train", "test"))
    )
    config, method, test_set = run.config, run.method, run.splits["test"]
    key = run.encoder_key(encoder)
    features, y, a, _ = run.features("test", key)
    suffix = "" if key == method.product_encoder else f"_{key}"
    title = f"{method.name} on {config.data.name}: t-SNE of E_{key} test representations"
    written = [
        plot_tsne(
            features,
            y,
            a,
            run.run_dir / f"tsne{suffix}.png",
            max_samples=config.eval.tsne_samples,
            seed=config.train.seed,
            title=title,
            class_names=test_set.class_names,
            attribute_names=test_set.attribute_names,
        )
    ]
    log = metrics_path(run.run_dir)
    records = read_metrics(log) if log.is_file() else []
    if curve_panels(records):
        written.append(plot_training_curves(records, run.run_dir / "training_curves.png"))
    if {"d", "b"} <= set(method.encoders()):
        written += _weight_report(run, pool_size, num_anchors, k)
    else:
        logger.info("method '%s' has one encoder: no w analysis (wcl only)", method.name)
    return written


@torch.no_grad()
def _pool_projections(
    method: torch.nn.Module, inputs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """E_d and E_b projections (n, D) of prepared inputs, in eval mode, on CPU."""
    was_training = method.training
    method.eval()
    encoders = method.encoders()
    zd, zb = (encoders[key](inputs).float().cpu() for key in ("d", "b"))
    method.train(was_training)
    return zd, zb


def _weight_report(run: LoadedRun, pool_size: int, num_anchors: int, k: int) -> list[Path]:
    """The w sanity check and histograms on a random pool of test samples."""
    test_set = run.splits["test"]
    generator = torch.Generator().manual_seed(run.config.train.seed)
    positions = torch.randperm(len(test_set), generator=generator)[:pool_size].sort().values
    inputs = torch.stack([test_set.load(i) for i in positions.tolist()])  # images or table rows
    y, a = test_set.targets[positions], test_set.attributes[positions]
    zd, zb = _pool_projections(run.method, run.prepare(inputs.to(run.device)))
    options = run.config.method
    weights = pool_weights(zd, zb, options.temperature, options.weight_form)
    alignment = test_set.bias_alignment()  # by the training split's majorities
    if alignment is None:
        aligned, known = torch.ones_like(y, dtype=torch.bool), torch.zeros_like(y, dtype=torch.bool)
    else:
        aligned, known = (mask[positions] for mask in alignment)
    conflicting_first = torch.argsort((aligned | ~known).long(), stable=True)
    anchors = conflicting_first[: min(num_anchors, len(y))]
    table = test_set.kind == "table"
    rows = easy_hard_rows(
        weights,
        anchors,
        y,
        a,
        positions,
        min(k, len(y) - 1),
        test_set.class_names,
        test_set.attribute_names,
        features=inputs if table else None,
        feature_names=getattr(test_set, "feature_names", None),
    )
    written = write_rows(rows, run.run_dir / "easy_hard_negatives")
    if not table:
        written.append(
            plot_easy_hard_negatives(
                inputs,
                y,
                a,
                weights,
                anchors,
                run.run_dir / "easy_hard_negatives.png",
                min(k, len(y) - 1),
                test_set.class_names,
                test_set.attribute_names,
            )
        )
    views = []
    if known.any():
        views.append(relation_cells(weights, y, a, aligned, known))
        written.append(plot_weight_cells(views[-1], run.run_dir / "weight_histograms.png"))
    else:
        logger.info("no known bias alignment in the pool: no w histograms by relation")
    num_groups = test_set.num_classes * test_set.num_attributes
    if 0 < num_groups <= MAX_GRID_GROUPS and (a >= 0).any():
        views.append(
            group_cells(
                weights,
                y,
                a,
                test_set.num_classes,
                test_set.num_attributes,
                test_set.class_names,
                test_set.attribute_names,
            )
        )
        written.append(plot_weight_cells(views[-1], run.run_dir / "weight_groups.png"))
    if views:
        written += write_rows(weight_summary(views), run.run_dir / "weight_summary")
    return written
