"""The linear probe on frozen features: its protocols, its fit and its saved files.

Probe protocols (:data:`debiascl.registry.PROBE_PROTOCOLS`; a new one is a function
registered with :func:`register_probe_protocol`):
    - ``fast`` (default): features standardised with the train split's mean and std, a linear
      classifier fitted full-batch by L-BFGS (cross-entropy + L2 penalty, zero init, so the fit is
      deterministic and converges to the convex optimum in a few hundred iterations; chosen over
      scikit-learn's LogisticRegression because it runs on the evaluation device and needs no
      convergence tuning). The L2 strength is selected on the val split's accuracy.
    - ``authors``: the authors' protocol (SPEC 7: 100 epochs, Adam, lr 1e-3; weight decay 1e-6
      as in DCL's ``linear.py``): a linear layer on the raw features, Adam (lr ``eval.probe_lr``)
      for ``eval.probe_epochs`` epochs of shuffled mini-batches of ``eval.probe_batch_size``.
      Unlike their script the features are extracted once, without augmentation.

Every probe an evaluation fits is saved in the run directory (:func:`save_probe`,
:func:`debiascl.rundir.probe_path`), so ``debiascl export`` ships exactly the probe that was
scored (:func:`probe_digest` proves it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from debiascl.atomic import write_atomic
from debiascl.config import Config
from debiascl.errors import DebiasclError
from debiascl.registry import PROBE_PROTOCOLS

FAST_WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2)
FAST_DEFAULT_WEIGHT_DECAY = 1e-4
FAST_MAX_ITER = 300
AUTHORS_WEIGHT_DECAY = 1e-6


@dataclass(frozen=True)
class ProbeSpec:
    """How a linear probe is fitted (the eval config's probe settings).

    Attributes:
        protocol: a name of :data:`debiascl.registry.PROBE_PROTOCOLS` ("fast", "authors").
        epochs, lr, batch_size: the "authors" protocol's settings.
        seed: seeds the "authors" initialisation and shuffling.
        device: where to fit.
    """

    protocol: str = "fast"
    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 256
    seed: int = 0
    device: str | torch.device = "cpu"

    @classmethod
    def from_config(
        cls, config: Config, protocol: str | None = None, device: str | torch.device = "cpu"
    ) -> ProbeSpec:
        """The probe of a run's ``config``: ``eval.probe`` (or ``protocol``), ``eval.probe_epochs``,
        ``eval.probe_lr``, ``eval.probe_batch_size`` and the run's ``train.seed``."""
        return cls(
            config.eval.probe if protocol is None else protocol,
            config.eval.probe_epochs,
            config.eval.probe_lr,
            config.eval.probe_batch_size,
            config.train.seed,
            device,
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
    spec: ProbeSpec,
    weights: torch.Tensor | None = None,
) -> nn.Linear:
    """The authors' probe: Adam on shuffled mini-batches of frozen features (weighted CE)."""
    generator = torch.Generator().manual_seed(spec.seed)
    linear = nn.Linear(features.shape[1], num_classes)
    bound = 1.0 / features.shape[1] ** 0.5
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound, generator=generator)
        linear.bias.uniform_(-bound, bound, generator=generator)
    linear = linear.to(features.device)
    optimizer = torch.optim.Adam(linear.parameters(), lr=spec.lr, weight_decay=AUTHORS_WEIGHT_DECAY)
    with torch.enable_grad():
        for _ in range(spec.epochs):
            order = torch.randperm(features.shape[0], generator=generator).to(features.device)
            for start in range(0, features.shape[0], spec.batch_size):
                batch = order[start : start + spec.batch_size]
                optimizer.zero_grad()
                batch_weights = None if weights is None else weights[batch]
                _weighted_cross_entropy(
                    linear(features[batch]), labels[batch], batch_weights
                ).backward()
                optimizer.step()
    return linear


@dataclass(frozen=True)
class ProbeData:
    """What a probe protocol fits on, on the fitting device.

    Attributes:
        features: (n, F) float frozen representations of the train split.
        labels: (n,) int64 classes.
        num_classes: C.
        weights: (n,) float per-sample loss weights, or None (unweighted).
        val_features, val_y: (n_val, F) and (n_val,) to choose a setting on, or None.
        val_groups: (n_val,) group ids: choose by the worst accuracy over them, or None.
    """

    features: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    weights: torch.Tensor | None = None
    val_features: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    val_groups: torch.Tensor | None = None


ProbeFit = Callable[[ProbeData, ProbeSpec], LinearProbe]
"""A probe protocol: fits a :class:`LinearProbe` (its ``protocol`` the spec's) on the data."""


def register_probe_protocol(name: str, summary: str = "") -> Callable[[ProbeFit], ProbeFit]:
    """Decorator: register a probe protocol's fit under ``name`` (``eval.probe``, ``--probe``);
    a declared built-in takes its declaration's summary."""

    def register(fit: ProbeFit) -> ProbeFit:
        return PROBE_PROTOCOLS.add(name, fit, **({"summary": summary} if summary else {}))

    return register


@register_probe_protocol("authors")
def fit_authors(data: ProbeData, spec: ProbeSpec) -> LinearProbe:
    """The authors' protocol: Adam on the raw features (no standardisation)."""
    linear = _fit_adam(data.features, data.labels, data.num_classes, spec, data.weights)
    device = data.features.device
    zero, one = torch.zeros(data.features.shape[1], device=device), torch.ones(1, device=device)
    return LinearProbe(linear, zero, one, spec.protocol, AUTHORS_WEIGHT_DECAY)


@register_probe_protocol("fast")
def fit_fast(data: ProbeData, spec: ProbeSpec) -> LinearProbe:
    """Standardised features, L-BFGS; the L2 strength among ``FAST_WEIGHT_DECAYS`` with the
    highest (worst-group) val accuracy, ties to the stronger penalty, or
    ``FAST_DEFAULT_WEIGHT_DECAY`` without val data."""
    mean = data.features.mean(dim=0)
    std = data.features.std(dim=0).clamp_min(1e-6)
    standardised = (data.features - mean) / std

    def fit(weight_decay: float) -> LinearProbe:
        linear = _fit_lbfgs(standardised, data.labels, data.num_classes, weight_decay, data.weights)
        return LinearProbe(linear, mean, std, spec.protocol, weight_decay)

    if data.val_features is None or data.val_y is None:
        return fit(FAST_DEFAULT_WEIGHT_DECAY)
    best: tuple[float, float, LinearProbe] | None = None
    for weight_decay in FAST_WEIGHT_DECAYS:
        probe = fit(weight_decay)
        correct = probe.predict(data.val_features) == data.val_y.cpu()
        accuracy = selection_accuracy(correct, data.val_groups)
        if best is None or (accuracy, weight_decay) >= best[:2]:
            best = (accuracy, weight_decay, probe)
    return best[2]


def fit_linear_probe(
    train_features: torch.Tensor,
    train_y: torch.Tensor,
    num_classes: int,
    spec: ProbeSpec = ProbeSpec(),
    val_features: torch.Tensor | None = None,
    val_y: torch.Tensor | None = None,
    sample_weights: torch.Tensor | None = None,
    val_groups: torch.Tensor | None = None,
) -> LinearProbe:
    """Fit a linear classifier on frozen features with the protocol ``spec.protocol`` (see the
    module docstring; :data:`debiascl.registry.PROBE_PROTOCOLS`).

    Args:
        train_features: (n, F) frozen representations of the train split.
        train_y: (n,) int64 classes.
        num_classes: C.
        spec: the protocol and its settings (:class:`ProbeSpec`).
        val_features, val_y: (n_val, F) and (n_val,) used by "fast" to pick the L2 strength
            among ``FAST_WEIGHT_DECAYS`` (highest val accuracy, ties to the stronger penalty);
            without them ``FAST_DEFAULT_WEIGHT_DECAY`` is used.
        sample_weights: (n,) per-sample loss weights (e.g. :func:`debiascl.discovery.
            balanced_weights` of the samples' groups, the group-robust probe); None: unweighted.
        val_groups: (n_val,) group id of each val sample; "fast" then picks the L2 strength by
            the worst accuracy over these groups instead of the plain val accuracy.

    Returns:
        The fitted :class:`LinearProbe`.

    Raises:
        DebiasclError: an unknown (or declared but unregistered) protocol.
    """
    fit = PROBE_PROTOCOLS.lookup(spec.protocol)
    device = spec.device
    weights = None if sample_weights is None else sample_weights.to(device).float()
    data = ProbeData(
        train_features.to(device).float(),
        train_y.to(device).long(),
        num_classes,
        weights,
        val_features,
        val_y,
        val_groups,
    )
    return fit(data, spec)


def selection_accuracy(correct: torch.Tensor, groups: torch.Tensor | None) -> float:
    """Plain accuracy of (m,) bool ``correct``, or its worst accuracy over ``groups`` (m,)."""
    if groups is None:
        return float(correct.float().mean())
    return min(float(correct[groups == g].float().mean()) for g in groups.unique().tolist())


def linear_probe(
    train_features: torch.Tensor,
    train_y: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    spec: ProbeSpec = ProbeSpec(),
    **options: torch.Tensor | None,
) -> torch.Tensor:
    """Fit a probe (:func:`fit_linear_probe`, same ``spec`` and keyword options) and predict
    the test features.

    Returns:
        (m,) int64 predicted classes of ``test_features`` (m, F).
    """
    probe = fit_linear_probe(train_features, train_y, num_classes, spec, **options)
    return probe.predict(test_features)
