"""A finished run loaded for evaluation, and its frozen features extracted once per split.

:func:`load_run` loads the run's configuration, trained method, data splits and deterministic
input transform; the probes, the bias discovery and the plots all read the run's features through
:meth:`LoadedRun.features`, which extracts each (split, encoder) once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from debiascl.checkpoint import load_trained
from debiascl.config import Config
from debiascl.data.base import BiasedDataset
from debiascl.data.loading import configured_dataset, configured_views
from debiascl.data.sampling import labelled_subset
from debiascl.errors import DebiasclError
from debiascl.features import extract_features
from debiascl.rundir import check_finished

FEATURE_BATCH_SIZE = 512
"""Samples per forward pass when a run's features (or a supervised method's predictions) are
computed for evaluation."""


@dataclass
class LoadedRun:
    """A finished run ready for evaluation: its config, trained method, data and input transform.

    Attributes:
        run_dir: the run directory.
        config: the run's saved configuration.
        method: the trained method (on ``device``).
        splits: split name -> data set.
        prepare: the deterministic evaluation transform (the view pipeline's ``prepare``),
            (B, *input_shape) -> (B, *view_shape).
        device: where the method lives.

    Whatever uses the loaded run (the probes, the discovery, the plots) gets its features from
    :meth:`features`, which extracts each (split, encoder) once.
    """

    run_dir: Path
    config: Config
    method: nn.Module
    splits: dict[str, BiasedDataset]
    prepare: Callable[[torch.Tensor], torch.Tensor]
    device: str | torch.device
    extracted: dict[tuple[str, str], tuple[torch.Tensor, ...]] = field(
        default_factory=dict, repr=False
    )
    """(split, encoder key) -> :meth:`features`' output, kept for the run's other users."""

    def features(
        self, split: str, key: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`extract_features` of ``split``'s labelled samples under encoder ``key``:
        features (n, F), y (n,), a (n,), dataset indices (n,); extracted on the first call only
        (batches of :data:`FEATURE_BATCH_SIZE`)."""
        if (split, key) not in self.extracted:
            self.extracted[split, key] = extract_features(
                self.method,
                labelled_subset(self.splits[split]),
                self.prepare,
                key,
                self.device,
                FEATURE_BATCH_SIZE,
            )
        return self.extracted[split, key]

    def encoder_key(self, encoder: str | None) -> str:
        """``encoder`` checked against the method's encoders (None: the product encoder)."""
        key = self.method.product_encoder if encoder is None else encoder
        if key not in self.method.encoders():
            raise DebiasclError(
                f"method '{self.method.name}' has no encoder '{key}'; it has "
                f"{', '.join(self.method.encoders())}"
            )
        return key


def load_run(
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    splits: tuple[str, ...] = ("train", "val", "test"),
) -> LoadedRun:
    """Load a finished run (:func:`debiascl.rundir.check_finished`), splits of its data, its views.

    Data sets are built as configured but never downloaded; ``splits`` must include "train"
    (the view pipeline is built from it, as in training).
    """
    run_dir = check_finished(run_dir)
    config, method = load_trained(run_dir, device)
    datasets = {split: configured_dataset(config.data, split, download=False) for split in splits}
    pipeline = configured_views(config.data, datasets["train"]).to(device)
    return LoadedRun(run_dir, config, method, datasets, pipeline.prepare, device)
