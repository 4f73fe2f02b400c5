"""Rebuilding a trained method from a run directory's config and last checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from debiascl.checkpoint.file_format import check_compatible, damaged_checkpoint, load_checkpoint
from debiascl.config import Config, load_config
from debiascl.data.loading import configured_dataset
from debiascl.errors import DebiasclError
from debiascl.methods import Method, build_method
from debiascl.models import DatasetInfo, ModelInfo
from debiascl.rundir import CONFIG_FILE, checkpoint_path, config_path


def _model_info(state: dict[str, Any], config: Config, path: Path) -> DatasetInfo:
    """What rebuilds the model: the checkpoint's ``model_info``, or (a checkpoint written
    before that entry existed) the training split itself, opened without its cache."""
    if "model_info" not in state:
        data = dataclasses.replace(config.data, cache=False)
        return configured_dataset(data, "train", download=data.download)
    try:
        return ModelInfo.from_dict(state["model_info"])
    except (KeyError, TypeError, ValueError) as error:
        raise damaged_checkpoint(path, error) from None


def load_trained(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Config, Method]:
    """The config and trained method of a run directory, in eval mode on ``device``.

    Reads ``run_dir/config.yaml`` and ``run_dir/checkpoints/last.pt``; the method is rebuilt
    from the config and the checkpoint's ``model_info`` (the training split is opened for its
    input shape and class count only for checkpoints without it).

    Raises:
        DebiasclError: the run directory, its config or its checkpoint is missing or unusable.
    """
    run_dir = Path(run_dir)
    config_file = config_path(run_dir)
    if not config_file.is_file():
        raise DebiasclError(f"'{run_dir}' is not a run directory: it has no {CONFIG_FILE}")
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise DebiasclError(f"run directory '{run_dir}' has no checkpoint at '{path}'")
    config = load_config(config_file, run=True)
    state = load_checkpoint(path)
    method = build_method(config, _model_info(state, config, path))
    check_compatible(state, method, path)
    method.load_state_dict(state["model"])
    return config, method.to(device).eval()
