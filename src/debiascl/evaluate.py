"""Linear evaluation of a trained run: linear probe, weighted kNN and group metrics (SPEC 7).

Representations h = f(x) of the chosen encoder are extracted ONCE per split (no augmentation,
eval mode) and frozen; the linear probe and the kNN classifier are trained on the train split's
features and scored on the test split with :func:`debiascl.metrics.group_metrics`. Supervised
methods (``method.supervised``) are additionally scored on their own classifier's predictions,
which is their main result. Every number in ``results.json`` carries a protocol label, so a
linear evaluation is never confused with the trainer's online kNN monitor.

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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from debiascl.atomic import write_json
from debiascl.checkpoint import load_trained
from debiascl.config import Config
from debiascl.data.base import BiasedDataset
from debiascl.data.loading import configured_dataset
from debiascl.data.sampling import labelled_subset
from debiascl.data.views import build_views
from debiascl.errors import DebiasclError
from debiascl.features import extract_features, knn_predict, predict_classes
from debiascl.metrics import group_counts, group_metrics

PROBE_PROTOCOLS = ("fast", "authors")
FAST_WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2)
FAST_DEFAULT_WEIGHT_DECAY = 1e-4
FAST_MAX_ITER = 300
AUTHORS_WEIGHT_DECAY = 1e-6
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
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """(m, F) features -> (m,) int64 predicted classes (on CPU)."""
        device = self.linear.weight.device
        inputs = (features.to(device).float() - self.mean) / self.std
        return self.linear(inputs).argmax(dim=1).cpu()


def _fit_lbfgs(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float
) -> nn.Linear:
    """Full-batch L-BFGS on cross-entropy + weight_decay/2 * ||W||^2, from zero weights."""
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
        loss = F.cross_entropy(linear(features), labels)
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
) -> nn.Linear:
    """The authors' probe: Adam on shuffled mini-batches of frozen features."""
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
                F.cross_entropy(linear(features[batch]), labels[batch]).backward()
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

    Returns:
        The fitted :class:`LinearProbe`.
    """
    if protocol not in PROBE_PROTOCOLS:
        raise DebiasclError(
            f"probe protocol '{protocol}': expected one of {', '.join(PROBE_PROTOCOLS)}"
        )
    features = train_features.to(device).float()
    labels = train_y.to(device).long()
    if protocol == "authors":
        linear = _fit_adam(features, labels, num_classes, epochs, lr, batch_size, seed)
        zero, one = torch.zeros(features.shape[1], device=device), torch.ones(1, device=device)
        return LinearProbe(linear, zero, one, protocol, AUTHORS_WEIGHT_DECAY)
    mean = features.mean(dim=0)
    std = features.std(dim=0).clamp_min(1e-6)
    standardised = (features - mean) / std
    if val_features is None or val_y is None:
        linear = _fit_lbfgs(standardised, labels, num_classes, FAST_DEFAULT_WEIGHT_DECAY)
        return LinearProbe(linear, mean, std, protocol, FAST_DEFAULT_WEIGHT_DECAY)
    best: tuple[float, float, LinearProbe] | None = None
    for weight_decay in FAST_WEIGHT_DECAYS:
        probe = LinearProbe(
            _fit_lbfgs(standardised, labels, num_classes, weight_decay),
            mean,
            std,
            protocol,
            weight_decay,
        )
        accuracy = float((probe.predict(val_features) == val_y.cpu()).float().mean())
        if best is None or (accuracy, weight_decay) >= best[:2]:
            best = (accuracy, weight_decay, probe)
    return best[2]


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


def check_run_dir(run_dir: str | Path) -> Path:
    """The run directory of a finished training, or a DebiasclError saying what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DebiasclError(f"run directory '{run_dir}' does not exist")
    if not (run_dir / "config.yaml").is_file():
        raise DebiasclError(f"'{run_dir}' is not a run directory: it has no config.yaml")
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        raise DebiasclError(f"run '{run_dir}' has no checkpoint (checkpoints/last.pt)")
    if not (run_dir / "train_done").is_file():
        raise DebiasclError(
            f"training of run '{run_dir}' has not finished (no train_done marker); "
            "finish it with `debiascl train ... --resume` first"
        )
    return run_dir


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
    """

    run_dir: Path
    config: Config
    method: nn.Module
    splits: dict[str, BiasedDataset]
    prepare: Callable[[torch.Tensor], torch.Tensor]
    device: str | torch.device

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
    """Load a finished run (:func:`check_run_dir`), the given splits of its data and its views.

    Data sets are built as configured but never downloaded; ``splits`` must include "train"
    (the view pipeline is built from it, as in training).
    """
    run_dir = check_run_dir(run_dir)
    config, method = load_trained(run_dir, device)
    data = config.data
    datasets = {split: configured_dataset(data, split, download=False) for split in splits}
    pipeline = build_views(
        data.augmentation,
        datasets["train"],
        image_size=data.image_size,
        noise_std=data.noise_std,
        corruption_rate=data.corruption_rate,
    ).to(device)
    return LoadedRun(run_dir, config, method, datasets, pipeline.prepare, device)


def results_filename(encoder: str, product_encoder: str) -> str:
    """``results.json`` for the method's product encoder, ``results_<encoder>.json`` otherwise."""
    return "results.json" if encoder == product_encoder else f"results_{encoder}.json"


def evaluate_run(
    run_dir: str | Path,
    encoder: str | None = None,
    device: str | torch.device = "cpu",
    probe: str | None = None,
    batch_size: int = 512,
) -> dict[str, Any]:
    """Evaluate a finished run and write ``results.json`` into it.

    Args:
        run_dir: a run directory written by :func:`debiascl.train.train`.
        encoder: "d" or "b" (None: the method's product encoder, E_d for wcl).
        device: where to run the network and fit the probe.
        probe: "fast" or "authors" (None: ``config.eval.probe``).
        batch_size: samples per forward pass during feature extraction.

    Returns:
        The results dict (also written to ``results.json``, or ``results_<encoder>.json`` for a
        non-product encoder): run labels, ``encoder``, ``probe_protocol`` ("fast" or
        "authors"), ``probe`` and ``knn`` (and ``classifier`` for supervised
        methods) each with a ``protocol`` label and the :func:`group_metrics` dict, and ``main``
        naming the headline evaluation.
    """
    run = load_run(run_dir, device)
    config, method, test = run.config, run.method, run.splits["test"]
    key = run.encoder_key(encoder)
    protocol = config.eval.probe if probe is None else probe
    features = {
        split: extract_features(
            method, labelled_subset(dataset), run.prepare, key, device, batch_size
        )
        for split, dataset in run.splits.items()
        if split != "val" or len(dataset) > 0  # val only chooses the probe's L2 strength
    }
    train_h, train_y, train_a, _ = features["train"]
    test_h, test_y, test_a, _ = features["test"]
    counts = (
        group_counts(train_y, train_a, test.num_classes, test.num_attributes)
        if test.num_attributes > 0
        else None
    )

    def score(predictions: torch.Tensor) -> dict[str, Any]:
        return group_metrics(
            test_y, predictions, test_a, test.num_classes, test.num_attributes, counts
        )

    fitted = fit_linear_probe(
        train_h,
        train_y,
        test.num_classes,
        protocol,
        val_features=features["val"][0] if "val" in features else None,
        val_y=features["val"][1] if "val" in features else None,
        epochs=config.eval.probe_epochs,
        lr=config.eval.probe_lr,
        batch_size=config.eval.probe_batch_size,
        seed=config.train.seed,
        device=device,
    )
    k, temperature = config.eval.knn_k, config.method.temperature
    results: dict[str, Any] = {
        "run_dir": str(run.run_dir),
        "dataset": config.data.name,
        "method": method.name,
        "supervised": bool(method.supervised),
        "encoder": key,
        "seed": config.train.seed,
        "train_step": _final_step(run.run_dir),
        "num_samples": {split: len(dataset) for split, dataset in run.splits.items()},
        "class_names": list(test.class_names),
        "attribute_names": list(test.attribute_names),
        "train_group_counts": None if counts is None else counts.tolist(),
        "probe_protocol": protocol,
        "probe": {
            "protocol": f"linear probe ({protocol}) on frozen E_{key} features",
            "weight_decay": fitted.weight_decay,
            "metrics": score(fitted.predict(test_h)),
        },
        "knn": {
            "protocol": f"weighted kNN (k={k}, t={temperature}) on frozen E_{key} features",
            "metrics": score(
                knn_predict(train_h, train_y, test_h, test.num_classes, k, temperature)
            ),
        },
        "main": "probe",
    }
    if method.supervised:
        predictions = predict_classes(method, test, run.prepare, device, batch_size)
        results["classifier"] = {
            "protocol": f"the supervised method's own classifier ({method.name})",
            "metrics": score(predictions),
        }
        results["main"] = "classifier"
    path = run.run_dir / results_filename(key, method.product_encoder)
    results["results_file"] = str(path)
    write_json(path, results)
    return results


def _final_step(run_dir: Path) -> int | None:
    """The final step recorded in the ``train_done`` marker (None when it holds no integer)."""
    text = (run_dir / "train_done").read_text().strip()
    return int(text) if text.isdigit() else None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:6.2f}"


def format_results(results: dict[str, Any]) -> str:
    """A readable text table of the summary metrics (percent) of each evaluation in ``results``."""
    columns = [key for key in ("classifier", "probe", "knn") if key in results]
    header = (
        f"{results['method']} on {results['dataset']} (seed {results['seed']}, "
        f"encoder E_{results['encoder']}); main result: {results['main']}"
    )
    lines = [header]
    lines += [f"  {key:<10} = {results[key]['protocol']}" for key in columns]
    lines.append(f"{'metric (%)':<24}" + "".join(f"{key:>12}" for key in columns))
    for metric in SUMMARY_METRICS:
        values = [results[key]["metrics"].get(metric) for key in columns]
        if all(value is None for value in values):
            continue
        lines.append(f"{metric:<24}" + "".join(f"{_percent(v):>12}" for v in values))
    main = results[results["main"]]["metrics"]
    if "worst_group_name" in main:
        lines.append(f"worst group ({results['main']}): {main['worst_group_name']}")
    if main.get("absent_groups"):
        lines.append(f"absent groups (no test sample): {', '.join(main['absent_groups'])}")
    return "\n".join(lines)
