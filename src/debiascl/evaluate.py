"""Linear evaluation of a trained run: linear probe, weighted kNN and group metrics (SPEC 7).

Representations h = f(x) of the chosen encoder are extracted ONCE per split (no augmentation,
eval mode) and frozen; the linear probe and the kNN classifier are trained on the train split's
features and scored on the test split (or, with ``split="val"``, on the val split, e.g. for
model selection or to report on val as the WCL paper does) with
:func:`debiascl.metrics.group_metrics`. Supervised methods (``method.supervised``) are
additionally scored on their own classifier's predictions, which is their main result. Every
number in ``results.json`` carries a protocol label, so a linear evaluation is never confused
with the trainer's online kNN monitor. Every probe an evaluation fits is saved in the run
directory (:func:`debiascl.rundir.probe_path`, :func:`save_probe`), so ``debiascl export`` ships
exactly the probe that was scored.

Probe protocols:
    - ``fast`` (default): features standardised with the train split's mean and std, a linear
      classifier fitted full-batch by L-BFGS (cross-entropy + L2 penalty, zero init, so the fit is
      deterministic and converges to the convex optimum in a few hundred iterations; chosen over
      scikit-learn's LogisticRegression because it runs on the evaluation device and needs no
      convergence tuning). The L2 strength is selected on the val split's accuracy.
    - ``authors``: the authors' protocol (SPEC 7: 100 epochs, Adam, lr 1e-3; weight decay 1e-6
      as in DCL's ``linear.py``): a linear layer on the raw features, Adam (lr ``eval.probe_lr``)
      for ``eval.probe_epochs`` epochs of shuffled mini-batches of ``eval.probe_batch_size``.
      Unlike their script the features are extracted once, without augmentation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from debiascl.atomic import write_atomic, write_json
from debiascl.callable_module import make_callable
from debiascl.checkpoint import load_trained
from debiascl.choices import PROBE_GROUPS
from debiascl.config import Config
from debiascl.data.base import BiasedDataset
from debiascl.data.loading import configured_dataset, configured_views
from debiascl.data.sampling import labelled_subset
from debiascl.discovery import SplitDiscovery, balanced_weights, group_ids, read_discovery
from debiascl.errors import DebiasclError
from debiascl.features import extract_features, knn_predict, predict_classes
from debiascl.metrics import group_counts, group_metrics
from debiascl.records import file_digest
from debiascl.rundir import (
    EVAL_SPLITS,
    check_finished,
    checkpoint_path,
    final_step,
    probe_path,
    results_filename,
)

PROBE_PROTOCOLS = ("fast", "authors")
FAST_WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2)
FAST_DEFAULT_WEIGHT_DECAY = 1e-4
FAST_MAX_ITER = 300
AUTHORS_WEIGHT_DECAY = 1e-6
FEATURE_BATCH_SIZE = 512
"""Samples per forward pass when a run's features (or a supervised method's predictions) are
computed for evaluation."""
SUMMARY_METRICS = (
    "accuracy",
    "worst_class",
    "mean_group",
    "worst_group",
    "avg_acc_train_weighted",
    "aligned_accuracy",
    "conflicting_accuracy",
)


@dataclass
class LinearProbe:
    """A fitted linear classifier on frozen features.

    Attributes:
        linear: the (F -> C) layer.
        mean, std: (F,) standardisation applied before ``linear`` (0 and 1 for "authors").
        protocol: "fast" or "authors".
        weight_decay: the L2 strength used (selected on val for "fast").
    """

    linear: nn.Linear
    mean: torch.Tensor
    std: torch.Tensor
    protocol: str
    weight_decay: float

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(m, F) features -> (m, C) class logits, on the probe's device."""
        device = self.linear.weight.device
        return self.linear((features.to(device).float() - self.mean) / self.std)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """(m, F) features -> (m,) int64 predicted classes (on CPU)."""
        return self.logits(features).argmax(dim=1).cpu()

    def state(self) -> dict[str, torch.Tensor]:
        """The probe's tensors on the CPU: weight (C, F), bias (C,), mean (F,), std (F,) or (1,)."""
        tensors = {"weight": self.linear.weight, "bias": self.linear.bias}
        tensors |= {"mean": self.mean, "std": self.std}
        return {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}


def probe_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of a probe's tensors (names, dtypes, shapes and bytes, in name order): results
    files record it, so the probe a model folder ships is provably the one that was scored."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_probe(path: Path, probe: LinearProbe, metadata: dict[str, str]) -> None:
    """Write ``probe``'s tensors (:meth:`LinearProbe.state`) and ``metadata`` (its protocol,
    weight decay and anything given) to ``path`` as safetensors, atomically."""
    info = {"protocol": probe.protocol, "weight_decay": repr(probe.weight_decay), **metadata}
    payload = safetensors_bytes(probe.state(), metadata=info)
    write_atomic(path, lambda file: file.write(payload))


def read_probe(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata :func:`save_probe` wrote to ``path``.

    Raises:
        DebiasclError: the file is missing, damaged or lacks a tensor.
    """
    try:
        with safe_open(str(path), framework="pt") as file:
            tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
            metadata = dict(file.metadata() or {})
    except FileNotFoundError:
        raise DebiasclError(f"probe file '{path}' does not exist") from None
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise DebiasclError(f"probe file '{path}' is damaged ({error})") from None
    missing = [name for name in ("weight", "bias", "mean", "std") if name not in tensors]
    if missing or "protocol" not in metadata:
        raise DebiasclError(
            f"probe file '{path}' lacks {', '.join(missing) or 'its protocol'}; evaluate the run "
            "again to rewrite it"
        )
    return tensors, metadata


def _weighted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """Mean cross-entropy, or mean of ``weights`` (B,) * per-sample cross-entropy."""
    if weights is None:
        return F.cross_entropy(logits, labels)
    return (weights * F.cross_entropy(logits, labels, reduction="none")).mean()


def _fit_lbfgs(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    weights: torch.Tensor | None = None,
) -> nn.Linear:
    """Full-batch L-BFGS on (weighted) cross-entropy + weight_decay/2 * ||W||^2, from zero."""
    linear = nn.Linear(features.shape[1], num_classes).to(features.device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(
        linear.parameters(),
        lr=1.0,
        max_iter=FAST_MAX_ITER,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _weighted_cross_entropy(linear(features), labels, weights)
        loss = loss + 0.5 * weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return linear


def _fit_adam(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    weights: torch.Tensor | None = None,
) -> nn.Linear:
    """The authors' probe: Adam on shuffled mini-batches of frozen features (weighted CE)."""
    generator = torch.Generator().manual_seed(seed)
    linear = nn.Linear(features.shape[1], num_classes)
    bound = 1.0 / features.shape[1] ** 0.5
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound, generator=generator)
        linear.bias.uniform_(-bound, bound, generator=generator)
    linear = linear.to(features.device)
    optimizer = torch.optim.Adam(linear.parameters(), lr=lr, weight_decay=AUTHORS_WEIGHT_DECAY)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(features.shape[0], generator=generator).to(features.device)
            for start in range(0, features.shape[0], batch_size):
                batch = order[start : start + batch_size]
                optimizer.zero_grad()
                batch_weights = None if weights is None else weights[batch]
                _weighted_cross_entropy(
                    linear(features[batch]), labels[batch], batch_weights
                ).backward()
                optimizer.step()
    return linear


def fit_linear_probe(
    train_features: torch.Tensor,
    train_y: torch.Tensor,
    num_classes: int,
    protocol: str = "fast",
    val_features: torch.Tensor | None = None,
    val_y: torch.Tensor | None = None,
    epochs: int = 100,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
    sample_weights: torch.Tensor | None = None,
    val_groups: torch.Tensor | None = None,
) -> LinearProbe:
    """Fit a linear classifier on frozen features (see the module docstring for the protocols).

    Args:
        train_features: (n, F) frozen representations of the train split.
        train_y: (n,) int64 classes.
        num_classes: C.
        protocol: "fast" or "authors".
        val_features, val_y: (n_val, F) and (n_val,) used by "fast" to pick the L2 strength
            among ``FAST_WEIGHT_DECAYS`` (highest val accuracy, ties to the stronger penalty);
            without them ``FAST_DEFAULT_WEIGHT_DECAY`` is used.
        epochs, lr, batch_size: the "authors" protocol's settings.
        seed: seeds the "authors" initialisation and shuffling.
        device: where to fit.
        sample_weights: (n,) per-sample loss weights (e.g. :func:`debiascl.discovery.
            balanced_weights` of the samples' groups, the group-robust probe); None: unweighted.
        val_groups: (n_val,) group id of each val sample; "fast" then picks the L2 strength by
            the worst accuracy over these groups instead of the plain val accuracy.

    Returns:
        The fitted :class:`LinearProbe`.
    """
    if protocol not in PROBE_PROTOCOLS:
        raise DebiasclError(
            f"probe protocol '{protocol}': expected one of {', '.join(PROBE_PROTOCOLS)}"
        )
    features = train_features.to(device).float()
    labels = train_y.to(device).long()
    weights = None if sample_weights is None else sample_weights.to(device).float()
    if protocol == "authors":
        linear = _fit_adam(features, labels, num_classes, epochs, lr, batch_size, seed, weights)
        zero, one = torch.zeros(features.shape[1], device=device), torch.ones(1, device=device)
        return LinearProbe(linear, zero, one, protocol, AUTHORS_WEIGHT_DECAY)
    mean = features.mean(dim=0)
    std = features.std(dim=0).clamp_min(1e-6)
    standardised = (features - mean) / std
    if val_features is None or val_y is None:
        linear = _fit_lbfgs(standardised, labels, num_classes, FAST_DEFAULT_WEIGHT_DECAY, weights)
        return LinearProbe(linear, mean, std, protocol, FAST_DEFAULT_WEIGHT_DECAY)
    best: tuple[float, float, LinearProbe] | None = None
    for weight_decay in FAST_WEIGHT_DECAYS:
        probe = LinearProbe(
            _fit_lbfgs(standardised, labels, num_classes, weight_decay, weights),
            mean,
            std,
            protocol,
            weight_decay,
        )
        accuracy = _selection_accuracy(probe.predict(val_features) == val_y.cpu(), val_groups)
        if best is None or (accuracy, weight_decay) >= best[:2]:
            best = (accuracy, weight_decay, probe)
    return best[2]


def _selection_accuracy(correct: torch.Tensor, groups: torch.Tensor | None) -> float:
    """Plain accuracy of (m,) bool ``correct``, or its worst accuracy over ``groups`` (m,)."""
    if groups is None:
        return float(correct.float().mean())
    return min(float(correct[groups == g].float().mean()) for g in groups.unique().tolist())


def linear_probe(
    train_features: torch.Tensor,
    train_y: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    protocol: str = "fast",
    **options: Any,
) -> torch.Tensor:
    """Fit a probe (:func:`fit_linear_probe`, same options) and predict the test features.

    Returns:
        (m,) int64 predicted classes of ``test_features`` (m, F).
    """
    probe = fit_linear_probe(train_features, train_y, num_classes, protocol, **options)
    return probe.predict(test_features)


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


def _true_groups(
    features: dict[str, tuple[torch.Tensor, ...]], dataset: BiasedDataset
) -> dict[str, torch.Tensor]:
    """Split -> (n,) ids of the true groups (class x bias attribute) of its labelled samples."""
    if dataset.num_attributes == 0 or not bool((features["train"][2] >= 0).any()):
        raise DebiasclError(
            f"probe groups 'true': data set '{dataset.name}' has no bias attribute in its train "
            "split; use the discovered groups instead"
        )
    return {split: group_ids(y, a) for split, (_, y, a, _) in features.items()}


def _discovered_groups(
    run_dir: Path,
    splits: dict[str, SplitDiscovery],
    features: dict[str, tuple[torch.Tensor, ...]],
) -> dict[str, torch.Tensor]:
    """Split -> (n,) ids of the discovered groups (class x flag) of ``run_dir``'s discovery.

    Raises:
        DebiasclError: a discovery whose samples are not the split's (stale).
    """
    groups = {}
    for split, (_, y, _, index) in features.items():
        if split == "test":
            continue
        part = splits.get(split)
        if part is None or not (torch.equal(part.index, index) and torch.equal(part.y, y)):
            raise DebiasclError(
                f"the bias discovery in '{run_dir}' does not match the run's {split} split; "
                f"run `debiascl discover {run_dir}` again"
            )
        groups[split] = part.groups
    return groups


def probe_groups_of(
    kind: str,
    run: LoadedRun,
    features: dict[str, tuple[torch.Tensor, ...]],
    discovered: dict[str, SplitDiscovery] | None = None,
) -> dict[str, torch.Tensor]:
    """The groups that balance a group-robust probe: split ("train", "val") -> (n,) group ids.

    Args:
        kind: a key of :data:`PROBE_GROUPS`.
        run: the loaded run (its directory holds the discovery).
        features: split -> :func:`extract_features` output of the labelled samples.
        discovered: the run's discovery (:func:`debiascl.discovery.read_discovery`), when
            already read; None reads it for "discovered".
    """
    if kind not in PROBE_GROUPS:
        raise DebiasclError(
            f"probe groups '{kind}': expected none or one of {', '.join(PROBE_GROUPS)}"
        )
    if kind == "true":
        return _true_groups(features, run.splits["train"])
    if kind == "class":
        return {split: group_ids(y, torch.zeros_like(y)) for split, (_, y, *_) in features.items()}
    if discovered is None:
        discovered = read_discovery(run.run_dir)[0]
    return _discovered_groups(run.run_dir, discovered, features)


def _split_metrics(
    dataset: BiasedDataset,
    y: torch.Tensor,
    a: torch.Tensor,
    train_counts: np.ndarray | None,
    selection_groups: torch.Tensor | None,
    predictions: torch.Tensor,
) -> dict[str, Any]:
    """:func:`group_metrics` of ``predictions`` (n,) against a split's labels y, a (n,), plus
    ``discovered_worst_group`` over ``selection_groups`` (n,) when given."""
    metrics = group_metrics(
        y, predictions, a, dataset.num_classes, dataset.num_attributes, train_counts
    )
    if selection_groups is not None:
        correct = predictions.cpu() == y.cpu()
        metrics["discovered_worst_group"] = _selection_accuracy(correct, selection_groups)
    return metrics


def training_groups(config: Config, method: nn.Module) -> str:
    """The groups (``train.groups``) a run's training read: none unless it sampled or weighted
    by them or the method trains on groups (the setting alone changes nothing)."""
    train = config.train
    used = (
        train.group_sampling != "none" or train.group_weighting != "none" or method.trains_on_groups
    )
    return train.groups if used else "none"


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
        probe_groups: group-robust probes to add (keys of :data:`PROBE_GROUPS`): each weights
            the probe's training loss so that every group weighs the same
            (:func:`debiascl.discovery.balanced_weights`) and, for "fast", picks the L2 strength
            by the worst val accuracy over the same kind of groups. "discovered" needs a
            discovery in the run directory (:func:`debiascl.discover.discover_run`).

    Returns:
        split -> its results dict (also written to :func:`debiascl.rundir.results_filename`:
        ``results.json`` on test, ``results_val.json`` on val, ``results_<encoder>[_val].json``
        for a non-product encoder): run labels, ``checkpoint_sha256`` (the checkpoint it was
        computed from, :func:`debiascl.records.file_digest`), ``split``, ``encoder``,
        ``probe_protocol`` ("fast" or "authors"), ``probe`` and ``knn`` (and ``classifier``
        for supervised methods, and ``probe_<kind>`` for each of ``probe_groups``) each with
        a ``protocol`` label and the :func:`group_metrics` dict, ``main`` naming the headline
        evaluation and, with the discovered groups, ``discovery`` (the discovery's settings and
        quality).
    """
    for split in splits:
        if split not in EVAL_SPLITS:
            raise DebiasclError(f"split '{split}': expected one of {', '.join(EVAL_SPLITS)}")
    run = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir, device)
    config, method, device = run.config, run.method, run.device
    key = run.encoder_key(encoder)
    protocol = config.eval.probe if probe is None else probe
    features = {
        split: run.features(split, key)
        for split, dataset in run.splits.items()
        if split != "val" or len(dataset) > 0  # val only chooses the probe's L2 strength
    }
    for split in splits:
        if split not in features or len(features[split][1]) == 0:
            raise DebiasclError(
                f"data set '{config.data.name}' has no labelled {split} samples to evaluate on"
            )
    train_h, train_y, train_a, _ = features["train"]
    train_set = run.splits["train"]
    counts = (
        group_counts(train_y, train_a, train_set.num_classes, train_set.num_attributes)
        if train_set.num_attributes > 0
        else None
    )
    discovery = read_discovery(run.run_dir) if "discovered" in probe_groups else None

    def fit(
        weights: torch.Tensor | None = None,
        val_groups: torch.Tensor | None = None,
        fitted_on: str = "train",
    ) -> LinearProbe:
        chosen_on = "val" if fitted_on == "train" else "train"
        return fit_linear_probe(
            features[fitted_on][0],
            features[fitted_on][1],
            train_set.num_classes,
            protocol,
            val_features=features[chosen_on][0] if chosen_on in features else None,
            val_y=features[chosen_on][1] if chosen_on in features else None,
            epochs=config.eval.probe_epochs,
            lr=config.eval.probe_lr,
            batch_size=config.eval.probe_batch_size,
            seed=config.train.seed,
            device=device,
            sample_weights=weights,
            val_groups=val_groups,
        )

    fitted = fit()
    groups_of = {
        kind: probe_groups_of(kind, run, features, None if discovery is None else discovery[0])
        for kind in probe_groups
        if kind != "val"
    }
    balanced = {
        kind: fit(balanced_weights(groups["train"]), groups.get("val"))
        for kind, groups in groups_of.items()
    }
    if "val" in probe_groups:
        if "val" not in features:
            raise DebiasclError(
                f"probe groups 'val': data set '{config.data.name}' has no labelled val samples "
                "to fit the held-out probe on"
            )
        balanced["val"] = fit(fitted_on="val")
    k, temperature = config.eval.knn_k, config.method.temperature
    train_step = final_step(run.run_dir)
    checkpoint_sha256 = file_digest(checkpoint_path(run.run_dir))
    num_samples = {name: len(dataset) for name, dataset in run.splits.items()}
    evaluated = {}
    for split in splits:
        scored = run.splits[split]
        scored_h, scored_y, scored_a, _ = features[split]
        selection_groups = (
            groups_of["discovered"]["val"] if split == "val" and discovery is not None else None
        )

        score = partial(_split_metrics, scored, scored_y, scored_a, counts, selection_groups)

        results: dict[str, Any] = {
            "run_dir": str(run.run_dir),
            "dataset": config.data.name,
            "method": method.name,
            "supervised": bool(method.supervised),
            "training_groups": training_groups(config, method),
            "bias_labels_in_training": training_groups(config, method) == "true",
            "encoder": key,
            "seed": config.train.seed,
            "split": split,
            "train_step": train_step,
            "checkpoint_sha256": checkpoint_sha256,
            "num_samples": num_samples,
            "class_names": list(scored.class_names),
            "attribute_names": list(scored.attribute_names),
            "train_group_counts": None if counts is None else counts.tolist(),
            "probe_protocol": protocol,
            "probe": {
                "protocol": f"linear probe ({protocol}) on frozen E_{key} features",
                "weight_decay": fitted.weight_decay,
                "head_sha256": probe_digest(fitted.state()),
                "metrics": score(fitted.predict(scored_h)),
            },
            "knn": {
                "protocol": f"weighted kNN (k={k}, t={temperature}) on frozen E_{key} features",
                "metrics": score(
                    knn_predict(train_h, train_y, scored_h, scored.num_classes, k, temperature)
                ),
            },
            "main": "probe",
        }
        for kind, probe_of_kind in balanced.items():
            results[f"probe_{kind}"] = {
                "protocol": f"linear probe ({protocol}) on frozen E_{key} features, loss "
                f"balanced over {PROBE_GROUPS[kind]}",
                "uses_bias_labels": kind == "true",
                "num_groups": int(groups_of[kind]["train"].unique().numel())
                if kind in groups_of
                else None,
                "weight_decay": probe_of_kind.weight_decay,
                "head_sha256": probe_digest(probe_of_kind.state()),
                "metrics": score(probe_of_kind.predict(scored_h)),
            }
            if kind == "discovered":
                results["discovery"] = discovery[1]
        if method.supervised:
            predictions = predict_classes(method, scored, run.prepare, device, FEATURE_BATCH_SIZE)
            results["classifier"] = {
                "protocol": f"the supervised method's own classifier ({method.name})",
                "metrics": score(predictions),
            }
            results["main"] = "classifier"
        path = run.run_dir / results_filename(key, method.product_encoder, split)
        results["results_file"] = str(path)
        write_json(path, results)
        evaluated[split] = results
    for kind, fitted_probe in {"plain": fitted, **balanced}.items():  # what export ships
        save_probe(
            probe_path(run.run_dir, key, kind),
            fitted_probe,
            {"encoder": key, "kind": kind, "method": method.name, "train_step": str(train_step)},
        )
    return evaluated


def evaluation_keys(results: dict[str, Any]) -> list[str]:
    """The evaluations a results dict holds, in table order: main, classifier, probe,
    each group-robust probe, knn."""
    order = ["main", "classifier", "probe", *(f"probe_{kind}" for kind in PROBE_GROUPS), "knn"]
    return [key for key in order if key == "main" or key in results]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:6.2f}"


def format_results(results: dict[str, Any]) -> str:
    """A readable text table of the summary metrics (percent) of each evaluation in ``results``."""
    columns = [key for key in evaluation_keys(results) if key != "main"]
    header = (
        f"{results['method']} on {results['dataset']} {results.get('split', 'test')} split "
        f"(seed {results['seed']}, "
        f"encoder E_{results['encoder']}); main result: {results['main']}"
    )
    lines = [header]
    lines += [f"  {key:<16} = {results[key]['protocol']}" for key in columns]
    lines.append(f"{'metric (%)':<24}" + "".join(f"{key:>18}" for key in columns))
    for metric in SUMMARY_METRICS:
        values = [results[key]["metrics"].get(metric) for key in columns]
        if all(value is None for value in values):
            continue
        lines.append(f"{metric:<24}" + "".join(f"{_percent(v):>18}" for v in values))
    main = results[results["main"]]["metrics"]
    if "worst_group_name" in main:
        lines.append(f"worst group ({results['main']}): {main['worst_group_name']}")
    quality = results.get("discovery", {}).get("train", {})
    if quality.get("bias_labels"):
        lines.append(
            "discovery (train, graded with the bias labels it did not use): "
            + ", ".join(
                f"{name} {_percent(quality[name]).strip()}"
                for name in ("precision", "recall", "auroc")
            )
        )
    if main.get("absent_groups"):
        split = results.get("split", "test")
        lines.append(f"absent groups (no {split} sample): {', '.join(main['absent_groups'])}")
    return "\n".join(lines)


make_callable(__name__)  # calling debiascl.evaluate calls debiascl.api.evaluate
