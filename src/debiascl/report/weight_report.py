"""WCL's weight report of a trained run (its analysis hook, ``WCL.analyses``): the pairwise w
of a pool of test samples, from E_d's and E_b's projections (SPEC 3.2), as the easy/hard
negatives of a few anchors and histograms by relation and by group (the tensors:
:mod:`debiascl.report.weights`; the figures: :mod:`debiascl.report.plots`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from debiascl.evaluate import LoadedRun
from debiascl.report.labels import Names
from debiascl.report.plots import plot_easy_hard_negatives, plot_weight_cells
from debiascl.report.tables import write_rows
from debiascl.report.weights import (
    easy_hard_rows,
    group_cells,
    pool_weights,
    relation_cells,
    weight_summary,
)

logger = logging.getLogger(__name__)

MAX_GRID_GROUPS = 6
"""The anchor group x negative group grid is drawn for at most this many groups."""


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


@dataclass(frozen=True)
class WeightPool:
    """A random pool of n test samples and their pairwise w.

    ``inputs`` (n, *input_shape) as stored (images or table rows), ``positions`` (n,) their
    indices in the test split, ``y`` / ``a`` (n,), ``weights`` (n, n), ``aligned`` / ``known``
    (n,) bool: bias-aligned by the training split's majorities / the alignment is known.
    """

    inputs: torch.Tensor
    positions: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor
    weights: torch.Tensor
    aligned: torch.Tensor
    known: torch.Tensor


def weight_pool(run: LoadedRun, pool_size: int) -> WeightPool:
    """``pool_size`` test samples drawn with the run's seed, and their w under the run's
    ``method.weight_form``."""
    test_set = run.splits["test"]
    generator = torch.Generator().manual_seed(run.config.train.seed)
    positions = torch.randperm(len(test_set), generator=generator)[:pool_size].sort().values
    inputs = torch.stack([test_set.load(i) for i in positions.tolist()])  # images or table rows
    y, a = test_set.targets[positions], test_set.attributes[positions]
    zd, zb = _pool_projections(run.method, run.prepare(inputs.to(run.device)))
    options = run.method.options
    weights = pool_weights(zd, zb, options.temperature, options.weight_form)
    alignment = test_set.bias_alignment()  # by the training split's majorities
    if alignment is None:
        aligned, known = torch.ones_like(y, dtype=torch.bool), torch.zeros_like(y, dtype=torch.bool)
    else:
        aligned, known = (mask[positions] for mask in alignment)
    return WeightPool(inputs, positions, y, a, weights, aligned, known)


def write_weight_report(
    run: LoadedRun, pool_size: int = 256, num_anchors: int = 3, k: int = 5
) -> list[Path]:
    """WCL's analysis of its weights w on a random pool of test samples, into the run's folder.

    Args:
        run: a loaded WCL run (:func:`~debiascl.evaluate.load_run`, with train and test).
        pool_size: test samples whose pairwise w (pool_size, pool_size) are analysed.
        num_anchors: anchors of the easy/hard sanity check (bias-conflicting ones first).
        k: easiest and hardest negatives shown per anchor.

    Returns:
        The paths written (see :mod:`debiascl.report`: easy_hard_negatives.*,
        weight_histograms.png, weight_groups.png, weight_summary.*).
    """
    pool = weight_pool(run, pool_size)
    return _write_easy_hard(run, pool, num_anchors, k) + _write_weight_cells(run, pool)


def _write_easy_hard(run: LoadedRun, pool: WeightPool, num_anchors: int, k: int) -> list[Path]:
    """The easiest and hardest negatives of a few anchors (bias-conflicting ones first)."""
    test_set, y, a = run.splits["test"], pool.y, pool.a
    conflicting_first = torch.argsort((pool.aligned | ~pool.known).long(), stable=True)
    anchors = conflicting_first[: min(num_anchors, len(y))]
    table = test_set.kind == "table"
    rows = easy_hard_rows(
        pool.weights,
        anchors,
        y,
        a,
        pool.positions,
        min(k, len(y) - 1),
        Names.of(test_set),
        features=pool.inputs if table else None,
    )
    written = write_rows(rows, run.run_dir / "easy_hard_negatives")
    if not table:
        written.append(
            plot_easy_hard_negatives(
                pool.inputs,
                y,
                a,
                pool.weights,
                anchors,
                run.run_dir / "easy_hard_negatives.png",
                min(k, len(y) - 1),
                Names.of(test_set),
            )
        )
    return written


def _write_weight_cells(run: LoadedRun, pool: WeightPool) -> list[Path]:
    """w by anchor kind x negative relation, and by anchor group x negative group."""
    test_set, y, a = run.splits["test"], pool.y, pool.a
    views, written = [], []
    if pool.known.any():
        views.append(relation_cells(pool.weights, y, a, pool.aligned, pool.known))
        written.append(plot_weight_cells(views[-1], run.run_dir / "weight_histograms.png"))
    else:
        logger.info("no known bias alignment in the pool: no w histograms by relation")
    num_groups = test_set.num_classes * test_set.num_attributes
    if 0 < num_groups <= MAX_GRID_GROUPS and (a >= 0).any():
        views.append(
            group_cells(
                pool.weights,
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
