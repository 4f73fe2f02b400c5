"""``debiascl export``: a finished, evaluated run as a self-contained model folder.

The head is the very probe ``debiascl eval`` fitted and scored (evaluation saves each fitted
probe in ``RUN_DIR/probes/``, :func:`debiascl.evaluate.save_probe`), or the supervised method's
own classifier, so the folder's predictions are the evaluation's. The folder's layout is
:mod:`debiascl.model_folder`'s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from debiascl import __version__
from debiascl.checkpoint import load_trained
from debiascl.config import Config
from debiascl.data.base import BiasedDataset
from debiascl.data.loading import configured_dataset, configured_views
from debiascl.data.views import ImageViews
from debiascl.errors import DebiasclError
from debiascl.evaluate import SUMMARY_METRICS, probe_digest, read_probe
from debiascl.methods.base import Method
from debiascl.model_folder import (
    ENCODER_FILE,
    FORMAT,
    HEAD_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    PROGRAM_FILE,
    VERSION,
    Classifier,
    ModelSpec,
)
from debiascl.models import ModelInfo
from debiascl.registry import PROBE_GROUP_KINDS, needs_discovery
from debiascl.results import RunResults
from debiascl.rundir import (
    check_finished,
    config_path,
    discovery_paths,
    final_step,
    probe_path,
    results_filename,
)

LOGGER = logging.getLogger("debiascl")


def _preprocessing(dataset: Any, views: Any) -> dict[str, Any]:
    """preprocessing.json of a run: its train split's kind and shape, and the evaluation
    transform of its view pipeline (image size, mean, std) or its table encoding."""
    spec: dict[str, Any] = {"kind": dataset.kind, "input_shape": list(dataset.input_shape)}
    if isinstance(views, ImageViews):
        size = dataset.input_shape[1]
        return spec | {
            "decode": f"{'RGB' if dataset.input_shape[0] == 3 else 'L'}; shorter side resized "
            f"to {size} (bilinear), centre {size}x{size} crop; values / 255",
            "size": list(views.size),
            "resize": "bilinear, anti-aliased (to size)",
            "mean": [float(v) for v in dataset.mean],
            "std": [float(v) for v in dataset.std],
        }
    encoding = getattr(dataset, "encoding", None)
    if dataset.kind != "table" or not encoding:
        raise DebiasclError(
            f"data set '{dataset.name}' does not describe how its inputs are encoded, so its "
            "model cannot be exported"
        )
    return spec | {
        "columns": [column.to_dict() for column in encoding],
        "feature_names": list(dataset.feature_names),
    }


def _results(run_dir: Path, encoder: str, product: str) -> RunResults:
    """The test results of ``encoder``'s evaluation, or a one-line error asking for it."""
    path = run_dir / results_filename(encoder, product, "test")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DebiasclError(
            f"run '{run_dir}' has not been evaluated ({path.name} is missing); run "
            f"`debiascl eval {run_dir}{_encoder_flag(encoder, product)}` first"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DebiasclError(f"cannot read '{path}': {error}") from None
    if not isinstance(results, dict):
        raise DebiasclError(f"'{path}' holds a {type(results).__name__}, expected a JSON object")
    try:
        return RunResults.from_json(results)
    except DebiasclError as error:
        raise DebiasclError(f"'{path}': {error}") from None


def _encoder_flag(encoder: str, product: str) -> str:
    return "" if encoder == product else f" --encoder {encoder}"


def _headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The summary metrics (and the worst group's name) of one evaluation's metrics."""
    keep = (*SUMMARY_METRICS, "worst_group_name")
    return {name: metrics[name] for name in keep if metrics.get(name) is not None}


def _probe_head(
    run_dir: Path, encoder: str, product: str, kind: str, results: RunResults
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and model.json entry of the probe ``kind`` ("plain" or a group kind) that
    the run's evaluation fitted and scored; errors say which command makes it."""
    flag = _encoder_flag(encoder, product)
    groups = "" if kind == "plain" else f" --probe-groups {kind}"
    again = f"run `debiascl eval {run_dir}{flag}{groups}`"
    needs = kind != "plain" and PROBE_GROUP_KINDS.info(kind)["discovery"]
    if needs and not discovery_paths(run_dir)[0].is_file():
        raise DebiasclError(
            f"run '{run_dir}' has no bias discovery (discovered.csv), so it has no discovered-"
            f"group probe; run `debiascl discover {run_dir}`, then {again.removeprefix('run ')}"
        )
    path = probe_path(run_dir, encoder, kind)
    evaluation = results.get("probe" if kind == "plain" else f"probe_{kind}")
    if not path.is_file() or evaluation is None:
        raise DebiasclError(
            f"run '{run_dir}' has no evaluated {kind} probe of E_{encoder}; {again} first"
        )
    tensors, metadata = read_probe(path)
    if evaluation.details.get("head_sha256") != probe_digest(tensors):
        raise DebiasclError(
            f"the saved probe '{path}' is not the one {results_filename(encoder, product)} "
            f"scored (another evaluation replaced one of them); {again} again"
        )
    entry = {
        "kind": "probe",
        "probe_groups": None if kind == "plain" else kind,
        "protocol": evaluation.description,
        "probe_protocol": metadata["protocol"],
        "weight_decay": evaluation.details.get("weight_decay"),
        "uses_bias_labels": kind != "plain" and PROBE_GROUP_KINDS.info(kind)["bias_labels"],
        "metrics": _headline(evaluation.metrics),
    }
    return tensors, entry


def _classifier_head(method: Any, results: RunResults) -> tuple[dict[str, torch.Tensor], dict]:
    """A supervised method's own classifier (its encoder's linear head) as head tensors."""
    linear = method.encoders()[method.product_encoder].head
    tensors = {
        "weight": linear.weight.detach().cpu().contiguous(),
        "bias": linear.bias.detach().cpu().contiguous(),
        "mean": torch.zeros(linear.in_features),
        "std": torch.ones(1),
    }
    evaluation = results.get("classifier")
    description = None if evaluation is None else evaluation.description
    entry = {
        "kind": "classifier",
        "probe_groups": None,
        "protocol": description or "the supervised method's own classifier",
        "uses_bias_labels": False,
        "metrics": _headline({} if evaluation is None else evaluation.metrics),
    }
    return tensors, entry


def run_model(
    run_dir: str | Path,
    encoder: str | None = None,
    probe_groups: str | None = None,
    head: bool = True,
) -> ModelSpec:
    """A finished run's model as a :class:`ModelSpec` (what :func:`export_model` writes).

    Args:
        run_dir: a finished run directory.
        encoder: "d" or "b" (None: the method's product encoder).
        probe_groups: the head: "none" (the plain probe) or a key of
            :data:`debiascl.registry.PROBE_GROUP_KINDS` (that group-robust probe); None: the
            method's headline evaluation (own classifier for supervised methods, else the
            plain probe).
        head: False for the encoder alone (no evaluation needed).

    Raises:
        DebiasclError: an unfinished run, an unknown encoder or head, a head that the run's
            evaluation did not fit (naming the command that fits it), or stale files.
    """
    run_dir = check_finished(run_dir)
    heads = ("none", *PROBE_GROUP_KINDS)
    if probe_groups is not None and probe_groups not in heads:
        raise DebiasclError(f"probe groups '{probe_groups}': expected one of {', '.join(heads)}")
    config, method = load_trained(run_dir, "cpu")
    key = method.product_encoder if encoder is None else encoder
    if key not in method.encoders():
        raise DebiasclError(
            f"method '{method.name}' has no encoder '{key}'; it has {', '.join(method.encoders())}"
        )
    data = dataclasses.replace(config.data, cache=False)
    train_set = configured_dataset(data, "train", download=False)
    views = configured_views(data, train_set)
    backbone = method.encoders()[key].backbone
    info = _run_info(run_dir, config, method, key, train_set)
    tensors = None
    if head:
        product = method.product_encoder
        results = _results(run_dir, key, product)
        own = method.supervised and key == product and probe_groups is None
        if own:
            tensors, info["head"] = _classifier_head(method, results)
        else:
            kind = "plain" if probe_groups in (None, "none") else probe_groups
            tensors, info["head"] = _probe_head(run_dir, key, product, kind, results)
        info["head"]["split"] = results.split
        reads_discovery = probe_groups not in (None, "none") and needs_discovery((probe_groups,))
        info["discovery"] = results.discovery if reads_discovery else None
    state = {name: value.detach().cpu().clone() for name, value in backbone.state_dict().items()}
    return ModelSpec(info, _preprocessing(train_set, views), state, tensors)


def _run_info(
    run_dir: Path, config: Config, method: Method, key: str, train_set: BiasedDataset
) -> dict[str, Any]:
    """model.json's description of a run's encoder ``key`` (its head added by the caller)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "debiascl_version": __version__,
        "dataset": config.data.name,
        "data_options": dict(config.data.options),
        "method": method.name,
        "encoder": key,
        "seed": config.train.seed,
        "train_step": final_step(run_dir),
        "model": asdict(dataclasses.replace(config.model, pretrained=None)),
        "model_info": ModelInfo.of(train_set).to_dict(),
        "feature_dim": method.encoders()[key].feature_dim,
        "class_names": list(train_set.class_names),
        "head": None,
    }


# ----------------------------------------------------------------------------- writing


def _percent(value: Any) -> str:
    return f"{100 * value:.2f}" if isinstance(value, float) else str(value)


def model_card(spec: ModelSpec, config_text: str) -> str:
    """The folder's README.md: data, method, seed, head, headline metrics, use, config."""
    info, head = spec.info, spec.info["head"]
    lines = [
        f"# {info['method']} on {info['dataset']} (seed {info['seed']}), encoder "
        f"E_{info['encoder']}",
        "",
        f"Exported by debiascl {info['debiascl_version']} from a run trained for "
        f"{info['train_step']} steps.",
        "",
        f"- **Data set**: `{info['dataset']}` (options {info['data_options'] or 'default'}), "
        f"{spec.preprocessing['kind']} inputs of shape {tuple(spec.preprocessing['input_shape'])}, "
        f"classes: {', '.join(info['class_names'])}",
        f"- **Method**: `{info['method']}`; representation: the backbone output of E_"
        f"{info['encoder']} ({info['model']['backbone']}, {info['feature_dim']} features)",
        f"- **Seed**: {info['seed']}",
    ]
    lines += _head_lines(head, info.get("discovery"))
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "debiascl predict THIS_FOLDER INPUT --out predictions.csv",
        "debiascl embed THIS_FOLDER INPUT --out features.npy",
        "```",
        "",
        "```python",
        "import debiascl",
        'classifier = debiascl.load_classifier("THIS_FOLDER")  # raw inputs -> logits',
        'encoder = debiascl.load_encoder("THIS_FOLDER")  # raw inputs -> representations',
        "```",
        "",
        f"Without debiascl: `torch.export.load('{PROGRAM_FILE}').module()` maps a float32 batch "
        "(B, *input_shape) of decoded inputs (see preprocessing.json) to logits.",
        "",
        "## Configuration",
        "",
        "```yaml",
        config_text.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _head_lines(head: dict[str, Any] | None, discovery: Any) -> list[str]:
    """The model card's head, its headline metrics and (with bias labels) the discovery's
    quality."""
    if head is None:
        return ["- **Head**: none (the encoder alone)"]
    labels = "yes (oracle)" if head["uses_bias_labels"] else "no"
    lines = [
        f"- **Head**: {head['protocol']}",
        f"- **Bias labels used by the head**: {labels}",
        "",
        f"Headline metrics on the {head['split']} split (percent):",
        "",
        "| metric | value |",
        "| --- | --- |",
        *(f"| {name} | {_percent(value)} |" for name, value in head["metrics"].items()),
    ]
    quality = (discovery or {}).get("train", {}) if isinstance(discovery or {}, dict) else {}
    if quality.get("bias_labels"):
        lines += [
            "",
            "Bias discovery (train split, graded with the bias labels it did not use): "
            + ", ".join(
                f"{name} {_percent(quality.get(name))}" for name in ("precision", "recall", "auroc")
            ),
        ]
    return lines


def _save_program(classifier: Classifier, input_shape: tuple[int, ...], path: Path) -> bool:
    """A ``torch.export`` program of the classifier with a dynamic batch size; False (and a
    warning) when torch cannot export this model."""
    example = torch.rand(2, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    try:
        program = torch.export.export(classifier, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))
    except Exception as error:  # torch.export raises many types for unsupported models
        LOGGER.warning(
            "no %s: torch.export failed (%s: %s)", path.name, type(error).__name__, error
        )
        return False
    return True


def _share(folder: Path) -> None:
    """Give ``folder`` (made private by mkdtemp) and its files the usual umask permissions."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def write_model_folder(spec: ModelSpec, out_dir: Path, config_text: str, program: bool) -> Path:
    """Write ``spec`` as a model folder at ``out_dir`` (built beside it, then renamed in).

    Raises:
        DebiasclError: ``out_dir`` exists and is not an empty folder, or cannot be written.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DebiasclError(
            f"'{out_dir}' exists and is not an empty folder; choose another --out or remove it"
        )
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as error:
        raise DebiasclError(f"cannot write '{out_dir}': {error.strerror or error}") from None
    try:
        (staging / MODEL_FILE).write_text(json.dumps(spec.info, indent=2) + "\n")
        (staging / PREPROCESSING_FILE).write_text(json.dumps(spec.preprocessing, indent=2) + "\n")
        save_file(spec.backbone, str(staging / ENCODER_FILE))
        if spec.head is not None:
            save_file(spec.head, str(staging / HEAD_FILE))
            if program:
                _save_program(
                    Classifier(spec),
                    tuple(spec.preprocessing["input_shape"]),
                    staging / PROGRAM_FILE,
                )
        (staging / "config.yaml").write_text(config_text)
        (staging / "README.md").write_text(model_card(spec, config_text))
        _share(staging)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except OSError as error:
        raise DebiasclError(f"cannot write '{out_dir}': {error.strerror or error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def export_model(
    run_dir: str | Path,
    out_dir: str | Path,
    encoder: str | None = None,
    probe_groups: str | None = None,
    program: bool = True,
) -> Path:
    """Export a finished, evaluated run as a model folder (see :mod:`debiascl.model_folder`).

    Args:
        run_dir: the run.
        out_dir: the folder to create (absent or empty).
        encoder, probe_groups: which encoder and head (:func:`run_model`).
        program: also write ``model.pt2``, a ``torch.export`` program of the classifier.

    Returns:
        ``out_dir``.
    """
    spec = run_model(run_dir, encoder, probe_groups)
    config_text = config_path(run_dir).read_text(encoding="utf-8")
    return write_model_folder(spec, Path(out_dir), config_text, program)
