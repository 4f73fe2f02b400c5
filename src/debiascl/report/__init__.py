"""Reports of a run (SPEC section 7), by layer: :mod:`~debiascl.report.weights` (WCL's weight
analysis, pure tensors; :mod:`~debiascl.report.weight_report` writes it for a run),
:mod:`~debiascl.report.plots` (every figure), :mod:`~debiascl.report.tables` (rows,
Markdown/CSV/JSON, mean ± standard error), and here the run-level writers.

:func:`write_report` makes every plot of a run into its directory:

- ``tsne.png``: t-SNE of test representations, coloured by class and, beside it, by bias value
  (legends with the class and attribute names);
- ``training_curves.png``: losses and kNN accuracy from ``metrics.jsonl``;
- the files of the method's own analyses (``Method.analyses``): for wcl, the analysis of its
  weights w (:mod:`debiascl.report.weight_report`):

  - ``easy_hard_negatives.png`` (images) and ``easy_hard_negatives.md`` / ``.csv`` /
    ``.json``: for a few anchors, the negatives with the lowest w (easiest) and highest w
    (hardest), with class and attribute names and, for tables, the (standardised) feature
    values;
  - ``weight_histograms.png``: w by anchor kind (bias-aligned or bias-conflicting) x negative
    relation (same/different class, same/different bias);
  - ``weight_groups.png``: w by anchor group x negative group, g = y * n_bias + a, one
    histogram per cell (the authors' weight analysis; on data with a bias attribute and at
    most ``MAX_GRID_GROUPS`` groups);
  - ``weight_summary.md`` / ``.csv`` / ``.json``: pairs, mean and median w of every cell of
    both views.

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
from debiascl.registry import named_object
from debiascl.report.labels import Names, feature_text, named
from debiascl.report.plots import (
    curve_panels,
    plot_sample_grid,
    plot_score_histogram,
    plot_training_curves,
    plot_tsne,
)
from debiascl.report.tables import write_rows
from debiascl.rundir import metrics_path

logger = logging.getLogger(__name__)

MAX_FLAGGED_SHOWN = 24
"""Flagged samples shown in the discovery grid and table (highest scores first)."""


def most_flagged(scores: torch.Tensor, flags: torch.Tensor, limit: int) -> torch.Tensor:
    """(m,) positions of at most ``limit`` flagged samples, highest score first (stable)."""
    positions = flags.nonzero().squeeze(1)
    order = torch.argsort(-scores[positions], stable=True)
    return positions[order][:limit]


def _group_names(dataset: BiasedDataset, index: torch.Tensor) -> list[str]:
    """The true group of each of the (n,) dataset indices ``index``: "y=<class>, a=<bias>"
    (the class alone where the bias is unknown)."""
    y, a = dataset.targets[index], dataset.attributes[index]
    return [
        f"y={named(label, dataset.class_names)}"
        + (f", a={named(bias, dataset.attribute_names)}" if bias >= 0 else "")
        for label, bias in zip(y.tolist(), a.tolist(), strict=True)
    ]


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
    names = _group_names(dataset, index)
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
            names=Names.of(test_set),
        )
    ]
    log = metrics_path(run.run_dir)
    records = read_metrics(log) if log.is_file() else []
    if curve_panels(records):
        written.append(plot_training_curves(records, run.run_dir / "training_curves.png"))
    for analysis in method.analyses:  # the method's own (WCL: the analysis of its w)
        written += named_object(analysis)(run, pool_size=pool_size, num_anchors=num_anchors, k=k)
    return written
