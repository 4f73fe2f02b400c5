"""The run directory: every name in it, its lock, and the checks on its state.

A run directory (``debiascl train --out RUN_DIR``) holds:

- ``config.yaml``: the resolved configuration, written when the run starts;
- ``checkpoints/last.pt``: the training state (:mod:`debiascl.checkpoint`);
- ``metrics.jsonl`` and ``tb/``: the training log and its TensorBoard events
  (:mod:`debiascl.training.log`);
- ``train_done``: written last by training, holding the final step;
- ``stage1/`` and ``error_set.json``: JTT's stage-1 ERM run and error set (:mod:`debiascl.jtt`);
- ``results.json`` / ``results_<encoder>.json``: evaluations on test, ``results_val.json`` /
  ``results_<encoder>_val.json`` on val (:mod:`debiascl.evaluate`);
- ``discovered.csv`` and ``discovery.json``: a bias discovery (:mod:`debiascl.discover`);
- ``probes/<encoder>_<kind>.safetensors``: the linear probes the last evaluation fitted (kind
  ``plain`` or a group-robust kind), which ``debiascl export`` ships (:mod:`debiascl.evaluate`);
- ``done``: ``compare``'s marker of a trained and evaluated run, naming its results file;
- ``.lock``: the lock a process holds while it trains into (or compares) the run.

Its states (:func:`run_state`): fresh (nothing to continue), running (another process holds
its lock), resumable (a checkpoint, or JTT's stage 1, to continue) and finished (``train_done``).

The lock. ``hold_run_dir(run_dir)`` creates ``run_dir`` if needed and takes an exclusive
``flock`` on ``run_dir/.lock``, writing the holder's pid and host name into it. The lock belongs
to the open file, so the operating system releases it whenever the process ends: a normal exit,
an exception, Ctrl-C or a SIGKILL. A second process asking for the same directory gets
:class:`RunDirBusy`, a user error naming the holder, at once (it does not wait).

The lock is re-entrant within a process (``compare`` holds a run directory while it trains and
evaluates it, and ``train`` inside asks for it again). Under DDP only rank 0 takes it (see
:func:`debiascl.train.train`). The ``.lock`` file itself stays in the directory after the run: it
is only a handle; what matters is whether someone holds its lock. ``flock`` is advisory and
local: processes on different machines sharing a network file system may not see each other's
locks (NFS emulates them on some servers only).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import json
import logging
import os
import socket
from collections.abc import Collection, Iterator
from pathlib import Path

from debiascl.atomic import remove_path, remove_stale_temporaries
from debiascl.errors import DebiasclError

LOGGER = logging.getLogger("debiascl")

CONFIG_FILE = "config.yaml"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_FILE = "last.pt"
METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
TRAIN_DONE = "train_done"
LOCK_NAME = ".lock"
"""The lock file inside a run directory; a fresh run directory may already hold it."""
STAGE1_DIR = "stage1"
ERROR_SET_FILE = "error_set.json"
DONE_MARKER = "done"
SCORES_FILE = "discovered.csv"
DISCOVERY_FILE = "discovery.json"
PROBES_DIR = "probes"
STOPPED_ATTEMPT_ENTRIES = frozenset({CONFIG_FILE, METRICS_FILE, TB_DIR, CHECKPOINTS_DIR})
"""What a run writes before its first checkpoint; a directory holding only these (and its
config.yaml, but no checkpoint and no train_done) is an attempt that a plain re-run restarts."""
STAGE2_LEFTOVERS = (METRICS_FILE, TB_DIR, CHECKPOINTS_DIR, TRAIN_DONE)
"""What a JTT stage 2 stopped before its first checkpoint leaves behind (removed before it
restarts)."""


# ----------------------------------------------------------------------------- paths


def config_path(run_dir: str | Path) -> Path:
    """The run's resolved configuration: ``run_dir/config.yaml``."""
    return Path(run_dir) / CONFIG_FILE


def checkpoint_path(run_dir: str | Path) -> Path:
    """Where a run keeps its checkpoint: ``run_dir/checkpoints/last.pt``."""
    return Path(run_dir) / CHECKPOINTS_DIR / CHECKPOINT_FILE


def metrics_path(run_dir: str | Path) -> Path:
    """The training log, one JSON record per line: ``run_dir/metrics.jsonl``."""
    return Path(run_dir) / METRICS_FILE


def tensorboard_path(run_dir: str | Path) -> Path:
    """The TensorBoard event folder: ``run_dir/tb``."""
    return Path(run_dir) / TB_DIR


def train_done_path(run_dir: str | Path) -> Path:
    """The marker of a finished training, holding its final step: ``run_dir/train_done``."""
    return Path(run_dir) / TRAIN_DONE


def stage1_path(run_dir: str | Path) -> Path:
    """JTT's stage-1 ERM run directory: ``run_dir/stage1``."""
    return Path(run_dir) / STAGE1_DIR


def error_set_path(run_dir: str | Path) -> Path:
    """JTT's error set: ``run_dir/error_set.json``."""
    return Path(run_dir) / ERROR_SET_FILE


def done_marker_path(run_dir: str | Path) -> Path:
    """``compare``'s marker of a finished and evaluated run, naming its results file."""
    return Path(run_dir) / DONE_MARKER


EVAL_SPLITS = ("test", "val")
"""The splits an evaluation scores (test: the reported numbers; val: model selection)."""


def results_filename(encoder: str, product_encoder: str, split: str = "test") -> str:
    """The results file of an evaluation of ``encoder`` on ``split``.

    ``results.json`` for the method's product encoder on test, ``results_<encoder>.json`` for
    another encoder; a val evaluation adds ``_val``: ``results_val.json``,
    ``results_<encoder>_val.json``.
    """
    if split not in EVAL_SPLITS:
        raise DebiasclError(f"split '{split}': expected one of {', '.join(EVAL_SPLITS)}")
    stem = "results" if encoder == product_encoder else f"results_{encoder}"
    return f"{stem}.json" if split == "test" else f"{stem}_{split}.json"


def probe_path(run_dir: str | Path, encoder: str, kind: str) -> Path:
    """A fitted linear probe of ``encoder``'s features, kind "plain" or a group-robust probe's
    groups (e.g. "discovered"): ``run_dir/probes/<encoder>_<kind>.safetensors``."""
    return Path(run_dir) / PROBES_DIR / f"{encoder}_{kind}.safetensors"


def discovery_paths(run_dir: str | Path) -> tuple[Path, Path]:
    """The bias discovery's scores and summary: ``discovered.csv`` and ``discovery.json``."""
    return Path(run_dir) / SCORES_FILE, Path(run_dir) / DISCOVERY_FILE


# ----------------------------------------------------------------------------- the lock

_HELD: dict[Path, tuple[int, int]] = {}
"""Run directories this process holds: resolved path -> (file descriptor, nesting depth)."""


class RunDirBusy(DebiasclError):
    """Another process holds the run directory.

    Attributes:
        holder: "pid N on host H" as the holder recorded it (or a note that it did not yet).
    """

    def __init__(self, run_dir: Path, holder: str) -> None:
        super().__init__(
            f"run directory '{run_dir}' is in use by another debiascl process ({holder}); "
            "wait for it to finish, or choose another run_dir"
        )
        self.holder = holder


def _unwritable(run_dir: Path, error: OSError) -> DebiasclError:
    reason = error.strerror or type(error).__name__
    if error.errno == errno.ENOSPC:
        reason = "no space left on device"
    return DebiasclError(
        f"run directory '{run_dir}' cannot be created or written ({reason}); choose another run_dir"
    )


def _open_lock_file(run_dir: Path) -> int:
    """Create ``run_dir`` if needed and open its lock file; user errors for unusable paths."""
    if run_dir.exists() and not run_dir.is_dir():
        raise DebiasclError(
            f"run directory '{run_dir}' is a file, not a directory; choose another run_dir"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        return os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise _unwritable(run_dir, error) from None


def _holder(fd: int) -> str:
    """Who holds the lock, as recorded in the lock file."""
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"pid {int(record['pid'])} on host {record['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its pid and host are not recorded yet"


def _record_holder(fd: int) -> None:
    """Write this process's pid and host into the (locked) lock file."""
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, record.encode("utf-8"), 0)


def _acquire(run_dir: Path) -> int:
    """Lock ``run_dir`` for this process; returns the lock file's descriptor."""
    fd = _open_lock_file(run_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RunDirBusy(run_dir, holder) from None
    except OSError as error:
        os.close(fd)
        raise _unwritable(run_dir, error) from None
    try:
        _record_holder(fd)
    except OSError as error:
        os.close(fd)
        raise _unwritable(run_dir, error) from None
    return fd


@contextlib.contextmanager
def hold_run_dir(run_dir: str | Path) -> Iterator[None]:
    """Hold the lock of ``run_dir`` (created if absent) for the duration of the block.

    Raises:
        RunDirBusy: another process holds it.
        DebiasclError: ``run_dir`` is a file, or cannot be created or written (read-only file
            system, no permission, a path under a regular file, a full disk).
    """
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    if key in _HELD:
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
    else:
        _HELD[key] = (_acquire(run_dir), 1)
    try:
        yield
    finally:
        fd, depth = _HELD.pop(key)
        if depth > 1:
            _HELD[key] = (fd, depth - 1)
        else:
            os.close(fd)  # releases the lock


def held_elsewhere(run_dir: str | Path) -> bool:
    """Whether another process holds the lock of ``run_dir`` now (this process's holds aside)."""
    run_dir = Path(run_dir)
    lock = run_dir / LOCK_NAME
    if run_dir.resolve() in _HELD or not lock.is_file():
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the probe's lock, if it got it
    return False


# ----------------------------------------------------------------------------- states


class RunState(enum.Enum):
    """Where a run directory stands (see :func:`run_state`)."""

    FRESH = "fresh"
    RUNNING = "running"
    RESUMABLE = "resumable"
    FINISHED = "finished"


def resumable(run_dir: str | Path) -> bool:
    """Whether ``train(config, run_dir, resume=True)`` can continue ``run_dir``.

    True when it holds a checkpoint, or (method jtt) a stage-1 run, which resuming reuses or
    continues even before the final model's first checkpoint.
    """
    return checkpoint_path(run_dir).is_file() or stage1_path(run_dir).is_dir()


def run_state(run_dir: str | Path) -> RunState:
    """The state of ``run_dir``: RUNNING when another process holds its lock, else FINISHED
    (``train_done``), RESUMABLE (:func:`resumable`) or FRESH (nothing to continue)."""
    if held_elsewhere(run_dir):
        return RunState.RUNNING
    if train_done_path(run_dir).is_file():
        return RunState.FINISHED
    if resumable(run_dir):
        return RunState.RESUMABLE
    return RunState.FRESH


def mark_finished(run_dir: Path, step: int) -> None:
    """Write ``train_done`` holding the final ``step``: the run is finished."""
    train_done_path(run_dir).write_text(f"{step}\n")


def reopen(run_dir: Path) -> None:
    """Drop ``train_done``: training of ``run_dir`` is about to go on."""
    train_done_path(run_dir).unlink(missing_ok=True)


def final_step(run_dir: Path) -> int | None:
    """The final step recorded in the ``train_done`` marker (None when it holds no integer)."""
    text = train_done_path(run_dir).read_text().strip()
    return int(text) if text.isdigit() else None


def check_finished(run_dir: str | Path) -> Path:
    """The run directory of a finished training, or a DebiasclError saying what is missing."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise DebiasclError(f"'{run_dir}' is a file, not a run directory")
    if not run_dir.is_dir():
        raise DebiasclError(f"run directory '{run_dir}' does not exist")
    if not config_path(run_dir).is_file():
        raise DebiasclError(f"'{run_dir}' is not a run directory: it has no {CONFIG_FILE}")
    if not checkpoint_path(run_dir).is_file():
        raise DebiasclError(
            f"run '{run_dir}' has no checkpoint ({CHECKPOINTS_DIR}/{CHECKPOINT_FILE})"
        )
    if not train_done_path(run_dir).is_file():
        raise DebiasclError(
            f"training of run '{run_dir}' has not finished (no {TRAIN_DONE} marker); "
            "finish it first (train it again with resume=True)"
        )
    return run_dir


# ----------------------------------------------------------------------------- preparing


def _stopped_before_first_checkpoint(run_dir: Path, keep: Collection[str]) -> bool:
    """Whether ``run_dir`` holds only what a run that died before its first checkpoint wrote."""
    names = {entry.name for entry in run_dir.iterdir()} - set(keep) - {LOCK_NAME}
    return (
        config_path(run_dir).is_file()
        and names <= STOPPED_ATTEMPT_ENTRIES
        and not train_done_path(run_dir).exists()
        and not resumable(run_dir)
    )


def _clear_stopped_attempt(run_dir: Path) -> None:
    """Remove what a run that stopped before its first checkpoint left in ``run_dir``."""
    LOGGER.warning(
        "run directory '%s' holds a run that stopped before its first checkpoint "
        "(config.yaml, no checkpoint, no train_done): starting it again",
        run_dir,
    )
    for name in STOPPED_ATTEMPT_ENTRIES:
        remove_path(run_dir / name)


def clear_stage2_leftovers(run_dir: Path) -> None:
    """Before a fresh JTT stage 2: drop what an attempt that never reached a checkpoint wrote."""
    for name in STAGE2_LEFTOVERS:
        remove_path(run_dir / name)


def prepare_run_dir(run_dir: Path, resume: bool, keep: Collection[str] = ()) -> None:
    """Check the run directory before training into it.

    Temporary files of a checkpoint write that never finished are removed. On resume the
    checkpoint must exist (the caller loads it). A fresh run needs an absent or empty directory
    (its ``.lock`` aside); entries named in ``keep`` may already be there (JTT's stage-1 run and
    error set, made before its final model is trained). A directory left by a run that stopped
    before its first checkpoint is cleared and started again, with a warning saying so.
    """
    path = checkpoint_path(run_dir)
    remove_stale_temporaries(path)
    if resume:
        if not path.is_file():
            raise DebiasclError(
                f"resume=True: there is no checkpoint at '{path}' to resume from; "
                "start the run without resume=True"
            )
        return
    if run_dir.is_dir() and _stopped_before_first_checkpoint(run_dir, keep):
        _clear_stopped_attempt(run_dir)
    if run_dir.exists() and (
        not run_dir.is_dir()
        or any(entry.name not in {*keep, LOCK_NAME} for entry in run_dir.iterdir())
    ):
        raise DebiasclError(
            f"run directory '{run_dir}' already exists and is not empty; pass resume=True to "
            "continue its training, or choose another run_dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
