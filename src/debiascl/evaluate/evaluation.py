"""The evaluation of a finished run: its probes fitted once, scored on each split, written.

:func:`evaluate_splits` fits the plain linear probe and each group-robust probe on the train
split's frozen features (:mod:`debiascl.evaluate.probes`), scores them, the weighted kNN and a
supervised method's own classifier on each split with :func:`debiascl.metrics.group_metrics`,
and writes one results file per split (:func:`debiascl.rundir.results_filename`) and the fitted
probes (:func:`debiascl.rundir.probe_path`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from debiascl.atomic import write_json
from debiascl.config import groups_read
from debiascl.discovery import SplitDiscovery, balanced_weights, read_discovery
from debiascl.errors import DebiasclError
from debiascl.evaluate.loaded_run import FEATURE_BATCH_SIZE, LoadedRun, load_run
from debiascl.evaluate.probe_groups import probe_groups_of
from debiascl.evaluate.probes import (
    LinearProbe,
    ProbeSpec,
    fit_linear_probe,
    probe_digest,
    save_probe,
    selection_accuracy,
)
from debiascl.features import knn_predict, predict_classes
from debiascl.metrics import group_counts, group_metrics
from debiascl.records import file_digest
from debiascl.registry import PROBE_GROUP_KINDS, needs_discovery
from debiascl.results import Evaluation, RunResults
from debiascl.rundir import EVAL_SPLITS, checkpoint_path, final_step, probe_path, results_filename

SUMMARY_METRICS = (
    "accuracy",
    "worst_class",
    "mean_group",
    "worst_group",
    "avg_acc_train_weighted",
    "aligned_accuracy",
    "conflicting_accuracy",
)
Features = dict[str, tuple[torch.Tensor, ...]]
"""Split -> :meth:`LoadedRun.features` of its labelled samples: features (n, F), y, a, index."""
Discovery = tuple[dict[str, SplitDiscovery], dict[str, Any]]
"""A run's discovery as :func:`debiascl.discovery.read_discovery` returns it."""


def evaluate_run(
    run_dir: str | Path,
    encoder: str | None = None,
    device: str | torch.device = "cpu",
    probe: str | None = None,
    probe_groups: Sequence[str] = (),
    split: str = "test",
) -> dict[str, Any]:
    """Evaluate a finished run on ``split`` and write its results file into it.

    :func:`evaluate_splits` for one split: the arguments are the same, ``split`` one of
    ``splits``; returns that split's results dict.
    """
    return evaluate_splits(run_dir, (split,), encoder, device, probe, probe_groups)[split]


def evaluate_splits(
    run_dir: str | Path | LoadedRun,
    splits: Sequence[str] = ("test",),
    encoder: str | None = None,
    device: str | torch.device = "cpu",
    probe: str | None = None,
    probe_groups: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Evaluate a finished run on each of ``splits`` and write their results files into it.

    The run is loaded, its features extracted and its probes fitted once for all the splits.

    Args:
        run_dir: a run directory written by :func:`debiascl.train.train`, or the run already
            loaded by :func:`load_run` with every split (its features are shared; ``device``
            is then the run's).
        splits: the splits scored, each "test" or "val". The probes train on train and pick
            their L2 strength on val either way. On val with the discovered groups, every
            evaluation's metrics also hold ``discovered_worst_group``: its worst accuracy over
            the discovered groups of val (a selection score that uses no bias label).
        encoder: "d" or "b" (None: the method's product encoder, E_d for wcl).
        device: where to run the network and fit the probe.
        probe: "fast" or "authors" (None: ``config.eval.probe``).
        probe_groups: group-robust probes to add (names of
            :data:`debiascl.registry.PROBE_GROUP_KINDS`): each weights
            the probe's training loss so that every group weighs the same
            (:func:`debiascl.discovery.balanced_weights`) and, for "fast", picks the L2 strength
            by the worst val accuracy over the same kind of groups. "discovered" needs a
            discovery in the run directory (:func:`debiascl.discover.discover_run`).

    Returns:
        split -> its results dict (:meth:`debiascl.results.RunResults.to_json`, also written to
        :func:`debiascl.rundir.results_filename`: ``results.json`` on test,
        ``results_val.json`` on val, ``results_<encoder>[_val].json`` for a non-product
        encoder): run labels, ``checkpoint_sha256`` (the checkpoint it was computed from,
        :func:`debiascl.records.file_digest`), ``split``, ``encoder``, ``probe_protocol``
        ("fast" or "authors"), ``probe`` and ``knn`` (and ``classifier`` for supervised
        methods, and ``probe_<kind>`` for each of ``probe_groups``) each with a ``protocol``
        label and the :func:`group_metrics` dict, ``main`` naming the headline evaluation and,
        with the discovered groups, ``discovery`` (the discovery's settings and quality).
    """
    _check_splits(splits)
    run = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir, device)
    key = run.encoder_key(encoder)
    features = _labelled_features(run, key, splits)
    discovery = read_discovery(run.run_dir) if needs_discovery(probe_groups) else None
    spec = ProbeSpec.from_config(run.config, probe, run.device)
    probes = fit_probes(run, features, spec, probe_groups, discovery)
    scorer = _Scorer(
        run, key, spec.protocol, features, probes, discovery, _train_counts(run, features)
    )
    train_step = final_step(run.run_dir)
    evaluated = {}
    for split, labels in _results_labels(scorer, splits, train_step).items():
        path = run.run_dir / results_filename(key, run.method.product_encoder, split)
        results = scorer.results(split, labels, str(path)).to_json()
        write_json(path, results)
        evaluated[split] = results
    _save_probes(run, key, probes, train_step)
    return evaluated


def _check_splits(splits: Sequence[str]) -> None:
    """Refuse a split that is not evaluated (:data:`debiascl.rundir.EVAL_SPLITS`)."""
    for split in splits:
        if split not in EVAL_SPLITS:
            raise DebiasclError(f"split '{split}': expected one of {', '.join(EVAL_SPLITS)}")


def _labelled_features(run: LoadedRun, key: str, splits: Sequence[str]) -> Features:
    """The features of every split the evaluation reads (val only where it has samples: it
    chooses the probe's L2 strength).

    Raises:
        DebiasclError: one of ``splits`` has no labelled sample to score.
    """
    features = {
        split: run.features(split, key)
        for split, dataset in run.splits.items()
        if split != "val" or len(dataset) > 0
    }
    for split in splits:
        if split not in features or len(features[split][1]) == 0:
            raise DebiasclError(
                f"data set '{run.config.data.name}' has no labelled {split} samples to evaluate on"
            )
    return features


@dataclass(frozen=True)
class FittedProbes:
    """The linear probes an evaluation fits on a run's frozen features.

    Attributes:
        plain: fitted on train, unweighted.
        balanced: probe group kind -> the probe whose loss is balanced over those groups
            ("val": the plain probe fitted on val instead).
        groups: probe group kind (but those without groups, "val") -> split -> (n,) the group
            ids that balance it.
    """

    plain: LinearProbe
    balanced: dict[str, LinearProbe]
    groups: dict[str, dict[str, torch.Tensor]]


def fit_probes(
    run: LoadedRun,
    features: Features,
    spec: ProbeSpec,
    probe_groups: Sequence[str],
    discovery: Discovery | None,
) -> FittedProbes:
    """Fit the plain probe and one probe per kind of ``probe_groups`` (see
    :func:`evaluate_splits`) on ``features``: unweighted on the kind's ``fitted_on`` split
    without groups, else balanced over its train groups; ``discovery``: the run's, read for a
    kind that needs it.

    Raises:
        DebiasclError: an unknown kind, or groups that cannot be formed ("val" without
            labelled val samples).
    """
    num_classes = run.splits["train"].num_classes

    def fit(
        weights: torch.Tensor | None = None,
        val_groups: torch.Tensor | None = None,
        fitted_on: str = "train",
    ) -> LinearProbe:
        chosen_on = features.get("val" if fitted_on == "train" else "train")
        h, y = features[fitted_on][:2]
        val_h, val_y = (None, None) if chosen_on is None else chosen_on[:2]
        return fit_linear_probe(h, y, num_classes, spec, val_h, val_y, weights, val_groups)

    plain = fit()
    discovered = None if discovery is None else discovery[0]
    of_kind = {kind: probe_groups_of(kind, run, features, discovered) for kind in probe_groups}
    groups = {kind: ids for kind, ids in of_kind.items() if ids is not None}
    balanced = {
        kind: fit(balanced_weights(groups[kind]["train"]), groups[kind].get("val"))
        if kind in groups
        else fit(fitted_on=PROBE_GROUP_KINDS.info(kind)["fitted_on"])
        for kind in probe_groups
    }
    return FittedProbes(plain, balanced, groups)


@dataclass(frozen=True)
class _Scorer:
    """Scores one run's fitted probes, kNN and classifier on a split (encoder ``key``)."""

    run: LoadedRun
    key: str
    protocol: str
    features: Features
    probes: FittedProbes
    discovery: Discovery | None
    counts: np.ndarray | None
    """(C, A) group counts of the labelled train samples (:func:`_train_counts`)."""

    def metrics(self, split: str, predictions: torch.Tensor) -> dict[str, Any]:
        """:func:`group_metrics` of ``predictions`` (n,) on ``split``'s labelled samples, plus
        ``discovered_worst_group`` on val with the discovered groups."""
        dataset, (_, y, a, _) = self.run.splits[split], self.features[split]
        metrics = group_metrics(
            y, predictions, a, dataset.num_classes, dataset.num_attributes, self.counts
        )
        if split == "val" and "discovered" in self.probes.groups:
            correct = predictions.cpu() == y.cpu()
            metrics["discovered_worst_group"] = selection_accuracy(
                correct, self.probes.groups["discovered"]["val"]
            )
        return metrics

    def results(self, split: str, labels: dict[str, Any], path: str) -> RunResults:
        """``split``'s results (``labels``: the run's, :func:`_results_labels`; ``path``: the
        file they are written to): probe, knn, each balanced probe (and the discovery, read for
        a kind that needs it), the classifier of a supervised method, which is then the
        headline."""
        method = self.run.method
        evaluations = [self._probe(self.probes.plain, split, None), self._knn(split)]
        evaluations += [
            self._probe(probe, split, kind) for kind, probe in self.probes.balanced.items()
        ]
        discovery = None if self.discovery is None else self.discovery[1]
        main = "probe"
        if method.supervised:
            prepare, device, dataset = self.run.prepare, self.run.device, self.run.splits[split]
            predictions = predict_classes(method, dataset, prepare, device, FEATURE_BATCH_SIZE)
            description = f"the supervised method's own classifier ({method.name})"
            evaluations.append(self._evaluation("classifier", split, predictions, description))
            main = "classifier"
        return RunResults(labels, tuple(evaluations), main, discovery, path)

    def _evaluation(
        self,
        kind: str,
        split: str,
        predictions: torch.Tensor,
        description: str,
        groups: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Evaluation:
        """The record of ``predictions`` (n,) on ``split`` scored by ``kind``."""
        return Evaluation(
            kind=kind,
            metrics=self.metrics(split, predictions),
            groups=groups,
            protocol=self.protocol if kind == "probe" else None,
            split=split,
            encoder=self.key,
            description=description,
            details=details or {},
        )

    def _knn(self, split: str) -> Evaluation:
        """The weighted kNN's evaluation on ``split`` (neighbours: the train features)."""
        k, temperature = self.run.config.eval.knn_k, self.run.config.method.temperature
        train_h, train_y, *_ = self.features["train"]
        num_classes = self.run.splits[split].num_classes
        predictions = knn_predict(
            train_h, train_y, self.features[split][0], num_classes, k, temperature
        )
        description = f"weighted kNN (k={k}, t={temperature}) on frozen E_{self.key} features"
        return self._evaluation("knn", split, predictions, description)

    def _probe(self, probe: LinearProbe, split: str, kind: str | None) -> Evaluation:
        """The evaluation of the plain probe (``kind`` None) or of a balanced one."""
        description = f"linear probe ({self.protocol}) on frozen E_{self.key} features"
        details: dict[str, Any] = {}
        if kind is not None:
            groups = self.probes.groups.get(kind)
            info = PROBE_GROUP_KINDS.info(kind)
            description = f"{description}, loss balanced over {info['summary']}"
            details["uses_bias_labels"] = info["bias_labels"]
            details["num_groups"] = (
                None if groups is None else int(groups["train"].unique().numel())
            )
        details["weight_decay"] = probe.weight_decay
        details["head_sha256"] = probe_digest(probe.state())
        predictions = probe.predict(self.features[split][0])
        return self._evaluation("probe", split, predictions, description, kind, details)


def _train_counts(run: LoadedRun, features: Features) -> np.ndarray | None:
    """(C, A) group counts of the run's labelled train samples (None without bias attributes)."""
    train_set = run.splits["train"]
    if train_set.num_attributes == 0:
        return None
    _, y, a, _ = features["train"]
    return group_counts(y, a, train_set.num_classes, train_set.num_attributes)


def _results_labels(
    scorer: _Scorer, splits: Sequence[str], train_step: int | None
) -> dict[str, dict[str, Any]]:
    """Split -> the run's labels that open its results file (method, seed, split, checkpoint
    digest, sample counts, names, train group counts, probe protocol)."""
    run, counts = scorer.run, scorer.counts
    config, method = run.config, run.method
    groups = groups_read(config.train, method.trains_on_groups)
    checkpoint_sha256 = file_digest(checkpoint_path(run.run_dir))
    return {
        split: {
            "run_dir": str(run.run_dir.resolve()),
            "dataset": config.data.name,
            "method": method.name,
            "supervised": bool(method.supervised),
            "training_groups": groups,
            "bias_labels_in_training": groups == "true",
            "encoder": scorer.key,
            "seed": config.train.seed,
            "split": split,
            "train_step": train_step,
            "checkpoint_sha256": checkpoint_sha256,
            "num_samples": {name: len(dataset) for name, dataset in run.splits.items()},
            "class_names": list(run.splits[split].class_names),
            "attribute_names": list(run.splits[split].attribute_names),
            "train_group_counts": None if counts is None else counts.tolist(),
            "probe_protocol": scorer.protocol,
        }
        for split in splits
    }


def _save_probes(run: LoadedRun, key: str, probes: FittedProbes, train_step: int | None) -> None:
    """Save every fitted probe into the run directory (what ``debiascl export`` ships)."""
    for kind, probe in {"plain": probes.plain, **probes.balanced}.items():
        metadata = {"encoder": key, "kind": kind, "method": run.method.name}
        metadata["train_step"] = str(train_step)
        save_probe(probe_path(run.run_dir, key, kind), probe, metadata)
