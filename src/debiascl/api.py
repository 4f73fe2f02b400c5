"""The public Python API: train, discover, evaluate, and load the trained model.

``import debiascl`` exposes these functions lazily (importing the package imports no torch):

>>> import debiascl
>>> run = debiascl.train({"data": {"name": "biased-digits-binary"}, "method": {"name": "wcl"},
...                       "train": {"epochs": 1}}, "runs/wcl")          # doctest: +SKIP
>>> results = debiascl.evaluate(run, probe_groups=["discovered"])     # doctest: +SKIP
>>> encoder = debiascl.load_encoder(run)  # raw inputs -> (B, F) features  # doctest: +SKIP

A ``path`` of :func:`load_encoder` and :func:`load_classifier` is a finished run directory or a
model folder written by ``debiascl export`` (:mod:`debiascl.model_folder`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from debiascl.config import Config, apply_mapping, build_config, list_presets, validate
from debiascl.discover import ensure_discovery
from debiascl.discovery import read_discovery
from debiascl.distributed import resolve_device
from debiascl.errors import DebiasclError
from debiascl.evaluate import evaluate_run
from debiascl.export import run_model
from debiascl.model_folder import (
    Classifier,
    FeatureExtractor,
    ModelSpec,
    is_model_folder,
    read_model_folder,
)
from debiascl.registry import needs_discovery
from debiascl.train import train as _train


def _spec(path: str | Path, encoder: str | None, probe_groups: str | None, head: bool) -> ModelSpec:
    """The model of a model folder (``encoder`` must match it, if given) or of a run."""
    if not is_model_folder(path):
        return run_model(path, encoder, probe_groups, head=head)
    spec = read_model_folder(path)
    held = spec.info["encoder"]
    if encoder is not None and encoder != held:
        raise DebiasclError(f"model folder '{path}' holds encoder '{held}', not '{encoder}'")
    if probe_groups is not None:
        raise DebiasclError(
            f"model folder '{path}' has its head fixed at export; probe_groups applies to runs"
        )
    return spec


def load_encoder(path: str | Path, encoder: str | None = None) -> FeatureExtractor:
    """The frozen encoder of a run or model folder, in eval mode on the CPU.

    Args:
        path: a finished run directory or a model folder.
        encoder: "d" (debiased) or "b" (biased); None: the run's product encoder (E_d of WCL),
            or the encoder a model folder holds.

    Returns:
        A :class:`~debiascl.model_folder.FeatureExtractor`: ``encoder(x)`` maps raw inputs
        (B, *input_shape) (images as float in [0, 1] or uint8, e.g. ``encoder.transform.
        decode(file)``; table rows encoded by ``encoder.transform.encode_rows``) to the
        representation h (B, F) that evaluation probes; ``encoder.backbone`` is the bare
        backbone (e.g. to fine-tune, on inputs normalised by ``encoder.transform``).
    """
    return FeatureExtractor(_spec(path, encoder, None, head=False))


def load_classifier(
    path: str | Path, encoder: str | None = None, probe_groups: str | None = None
) -> Classifier:
    """The classifier of a model folder, or of an evaluated run, in eval mode on the CPU.

    Args:
        path: a model folder, or a finished run directory that ``debiascl eval`` scored.
        encoder: see :func:`load_encoder`.
        probe_groups: for a run: "none" (the plain probe) or a probe group kind of
            :data:`debiascl.registry.PROBE_GROUP_KINDS` (that group-robust probe, fitted by
            ``eval --probe-groups``); None: the run's headline
            (a supervised method's own classifier, else the plain probe).

    Returns:
        A :class:`~debiascl.model_folder.Classifier`: raw inputs (B, *input_shape) -> logits
        (B, C); ``classifier.class_names`` names the columns.
    """
    return Classifier(_spec(path, encoder, probe_groups, head=True))


def discover(
    run_dir: str | Path,
    bias_run: str | Path | None = None,
    k: int | None = None,
    threshold: float | None = None,
    device: str = "auto",
    plots: bool = False,
) -> dict[str, Any]:
    """Discover the bias-conflicting training samples of a run without bias labels (SPEC 9).

    Writes ``discovered.csv`` and ``discovery.json`` into ``run_dir`` (kept when already there
    and no setting is given), as ``debiascl discover`` does.

    Args:
        run_dir: a finished run; its own E_b discovers unless ``bias_run`` names another run.
        bias_run, k, threshold: the discovery's settings (None: the defaults, k = 10, 0.5).
        device: "cpu", "cuda" or "auto".
        plots: also write the score histograms and flagged samples.

    Returns:
        The discovery summary (``discovery.json``): settings, flags and, where bias labels
        exist, precision / recall / AUROC.
    """
    ensure_discovery(run_dir, bias_run, k, threshold, resolve_device(device), plots=plots)
    return read_discovery(run_dir)[1]


def evaluate(
    run_dir: str | Path,
    encoder: str | None = None,
    probe: str | None = None,
    probe_groups: Sequence[str] = (),
    split: str = "test",
    device: str = "auto",
) -> dict[str, Any]:
    """Evaluate a finished run as ``debiascl eval`` does (without the plots).

    Args:
        run_dir: the run.
        encoder: "d" or "b" (None: the product encoder).
        probe: a probe protocol of :data:`debiascl.registry.PROBE_PROTOCOLS` (None: the run's
            ``eval.probe``).
        probe_groups: group-robust probes to add, kinds of
            :data:`debiascl.registry.PROBE_GROUP_KINDS` (one that reads the discovery, e.g.
            "discovered", discovers first when the run has none).
        split: "test" (results.json) or "val" (results_val.json).
        device: "cpu", "cuda" or "auto".

    Returns:
        The results dict written to the run's results file.
    """
    resolved = resolve_device(device)
    groups = tuple(probe_groups)
    if needs_discovery(groups):
        ensure_discovery(run_dir, device=resolved, plots=False)
    return evaluate_run(run_dir, encoder, resolved, probe, probe_groups=groups, split=split)


def _config(config: Config | Mapping[str, Any] | str | Path) -> Config:
    """A validated Config: as given, or the data set's preset (if any) under a nested mapping
    of sections, or a YAML file of them."""
    if isinstance(config, Config):
        validate(config)
        return config
    if isinstance(config, (str, Path)):
        return build_config(config_file=config)
    if not isinstance(config, Mapping):
        raise DebiasclError(
            f"config: expected a Config, a mapping of sections or a YAML file, got "
            f"{type(config).__name__}"
        )
    sections = dict(config)
    data, method_section = sections.get("data"), sections.get("method")
    dataset = data.get("name", Config().data.name) if isinstance(data, Mapping) else None
    method = method_section.get("name") if isinstance(method_section, Mapping) else None
    built = build_config(
        preset=dataset if dataset in list_presets() else None,  # as `debiascl train` does
        overrides={"data.name": dataset, "method.name": method},
    )
    apply_mapping(built, sections, "config")
    validate(built)
    return built


def train(
    config: Config | Mapping[str, Any] | str | Path,
    run_dir: str | Path,
    resume: bool = False,
) -> Path:
    """Train a method on a data set into ``run_dir``, as ``debiascl train`` does.

    Args:
        config: a :class:`~debiascl.config.Config`, a YAML file, or a nested mapping of
            sections (``{"data": {"name": ...}, "method": {"name": ...}, "train": {...}}``)
            applied over the data set's preset, like the command's ``--config``.
        run_dir: the run directory (absent or empty unless ``resume``).
        resume: continue ``run_dir`` from its last checkpoint.

    Returns:
        The run directory.
    """
    return _train(_config(config), run_dir, resume=resume)
