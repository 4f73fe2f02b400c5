"""The checkpoint file format: atomic writes, checksums, safe loading and validation.

A checkpoint is one ``torch.save`` file holding a dict:

- ``format`` (:data:`FORMAT`) and ``version`` (:data:`VERSION`): identify our files;
- ``method``: the method name; ``config``: the resolved config as a plain dict;
- ``model``: the method's ``state_dict`` (every encoder);
- ``optimizers``, ``schedulers``: one state dict per parameter group name ("d", "b");
- ``scaler``: the fp16 GradScaler's state dict, or None;
- ``rng``: one entry per rank from :func:`debiascl.checkpoint.rng.capture_rng_state` (python,
  numpy, torch CPU and the rank's CUDA device);
- ``epoch`` (0-based epoch in progress), ``position`` (batches of that epoch already done),
  ``global_step`` (batches done in all, skipped ones included), ``skipped_steps``,
  ``consecutive_skips``; ``epoch_sums``, ``epoch_steps``, ``epoch_skipped``, ``epoch_seconds``
  (running totals of the epoch in progress, for its "epoch" log record);
- ``metrics_offset``: the size of metrics.jsonl when the checkpoint was written (a resumed run
  drops the lines written after it); ``world_size``: the number of DDP ranks that wrote it;
- ``model_info``: the data set's name, kind, input shape and class count
  (:class:`debiascl.models.ModelInfo`), so the model is rebuilt without opening the data
  (checkpoints written before this entry existed lack it: the train split is then opened);
- ``checksum``: :func:`state_digest` of everything else, added by :func:`save_checkpoint` and
  verified by :func:`load_checkpoint`, so damaged bytes (in a tensor or anywhere else) are a
  clear error instead of a silently wrong model. A checkpoint written before checksums existed
  has none and loads unverified.

Everything in it is a tensor, a number, a string or a container of those (numpy RNG state is
stored as a tensor), so it loads with ``torch.load(weights_only=True)``: no code runs on load.

What a resumed run must match and how its counters and RNG come back is
:mod:`debiascl.checkpoint.resume`'s business; rebuilding a trained model from a run directory is
:mod:`debiascl.checkpoint.rebuild`'s.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from debiascl.atomic import write_atomic
from debiascl.errors import DebiasclError

FORMAT = "debiascl-checkpoint"
VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"
REQUIRED_KEYS = (
    "format",
    "version",
    "method",
    "config",
    "model",
    "optimizers",
    "schedulers",
    "rng",
    "epoch",
    "position",
    "global_step",
)
ENTRY_TYPES: dict[str, type | tuple[type, ...]] = {
    "method": str,
    "config": dict,
    "model": dict,
    "optimizers": dict,
    "schedulers": dict,
    "rng": list,
    "epoch": int,
    "position": int,
    "global_step": int,
    "skipped_steps": int,
    "consecutive_skips": int,
    "epoch_sums": dict,
    "epoch_steps": int,
    "epoch_skipped": int,
    "epoch_seconds": (int, float),
    "metrics_offset": int,
    "model_info": dict,
    "checksum": str,
}
"""The type of each entry (when present); any other is a damaged checkpoint."""


def _feed(digest: Any, value: Any) -> None:
    """Hash ``value`` (tensors by dtype, shape and bytes; containers in their order)."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, list | tuple):
        digest.update(f"{type(value).__name__[0]}{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"V{type(value).__name__}:{value!r};".encode())


def state_digest(state: dict[str, Any]) -> str:
    """The sha256 (hex) of a checkpoint's entries other than ``checksum``, in their order."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in state.items() if key != "checksum"})
    return digest.hexdigest()


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` and its ``checksum`` (:func:`state_digest`) to ``path`` atomically.

    A reader sees the old checkpoint or the new one, never a partial file
    (:func:`debiascl.atomic.write_atomic`); if the disk is full the old one stays and the error
    says so.
    """
    payload = {**state, "checksum": state_digest(state)}
    write_atomic(path, lambda file: torch.save(payload, file))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, on CPU.

    Raises:
        DebiasclError: the file is missing, truncated, damaged (its checksum does not match) or
            not a torch file, holds objects other than tensors and containers, or is not a
            debiascl checkpoint of this version.
    """
    path = Path(path)
    if not path.is_file():
        raise DebiasclError(f"checkpoint '{path}' does not exist")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as file:
            starts_like_zip = file.read(4) == ZIP_MAGIC
        problem = "is truncated" if starts_like_zip else "is not a torch checkpoint file"
        raise DebiasclError(
            f"checkpoint '{path}' {problem} (expected the zip format of torch.save); delete it "
            "to start again, or restore a good copy"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "unsupported global" not in str(error).lower():  # e.g. "Unsupported operand 255"
            raise damaged_checkpoint(path, _weights_only_detail(error)) from None
        raise DebiasclError(
            f"checkpoint '{path}' is not a debiascl checkpoint: it holds Python objects "
            "other than tensors and containers, which are not loaded for safety"
        ) from None
    except Exception as error:  # any other failure to deserialise means a damaged file
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise DebiasclError(
            f"checkpoint '{path}' is corrupt ({lines[0]}); delete it to start again, or "
            "restore a good copy"
        ) from None
    _check_format(state, path)
    if "checksum" in state and state["checksum"] != state_digest(state):
        raise damaged_checkpoint(
            path, ValueError("its checksum does not match its content (damaged bytes)")
        )
    return state


def _weights_only_detail(error: pickle.UnpicklingError) -> Exception:
    """The line of torch's long weights-only message that says what was wrong."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    found = [line for line in lines if line.lower().startswith("unsupported")]
    return pickle.UnpicklingError(found[0] if found else lines[0] if lines else "")


def _check_format(state: Any, path: Path) -> None:
    """Reject files that are torch files but not our checkpoints (or of another version)."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DebiasclError(
            f"checkpoint '{path}' is not a debiascl checkpoint (no '{FORMAT}' format tag); "
            "expected a file written by `debiascl train`"
        )
    if state.get("version") != VERSION:
        raise DebiasclError(
            f"checkpoint '{path}' has format version {state.get('version')!r}; this debiascl "
            f"reads version {VERSION}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise DebiasclError(f"checkpoint '{path}' lacks the entries {', '.join(missing)}")
    wrong = [
        f"{key} is a {type(state[key]).__name__}"
        for key, expected in ENTRY_TYPES.items()
        if key in state and (not isinstance(state[key], expected) or isinstance(state[key], bool))
    ]
    if not wrong and not all(isinstance(section, dict) for section in state["config"].values()):
        wrong.append("config is not a mapping of sections")
    if wrong:
        raise DebiasclError(f"checkpoint '{path}' is damaged: {'; '.join(wrong)}")


def damaged_checkpoint(path: str | Path, error: Exception) -> DebiasclError:
    """The user error for a checkpoint whose content does not fit the run restoring it.

    Args:
        path: the checkpoint file.
        error: what restoring raised (e.g. a KeyError from ``load_state_dict``); its first line
            is quoted.
    """
    detail = (str(error).strip().splitlines() or [""])[0] or type(error).__name__
    return DebiasclError(
        f"checkpoint '{path}' is damaged or was written with another configuration "
        f"({type(error).__name__}: {detail}); delete it to start again, or restore a good copy"
    )


EXTRA_STATE = "_extra_state"
"""The state-dict key suffix of a module's extra state (e.g. GroupDRO's group weights q), whose
shape is the module's own business (q is empty until training sees the groups)."""


def check_compatible(state: dict[str, Any], method: torch.nn.Module, path: str | Path) -> None:
    """Check that ``state`` holds weights for ``method``: same method, keys and shapes (extra
    states: same keys).

    Raises:
        DebiasclError: naming the method names, or the first few parameters whose presence or
            shape differ.
    """
    name = getattr(method, "name", None)
    if state["method"] != name:
        raise DebiasclError(
            f"checkpoint '{path}' was written by method '{state['method']}', but the run "
            f"uses method '{name}'"
        )
    ours = {key: tuple(value.shape) for key, value in method.state_dict().items()}
    theirs = {
        key: tuple(value.shape)
        for key, value in state["model"].items()
        if isinstance(value, torch.Tensor)
    }
    problems = [f"{key} is not a tensor" for key in state["model"] if key not in theirs]
    problems += [f"{key} missing from checkpoint" for key in ours if key not in state["model"]]
    problems += [f"{key} unexpected in checkpoint" for key in theirs if key not in ours]
    problems += [
        f"{key} has shape {theirs[key]} in checkpoint, {ours[key]} in the model"
        for key in ours
        if key in theirs and theirs[key] != ours[key] and not key.endswith(EXTRA_STATE)
    ]
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        raise DebiasclError(
            f"checkpoint '{path}' does not fit the model built from the config: {shown}"
        )
