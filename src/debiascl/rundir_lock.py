"""One process at a time per run directory: an OS file lock held for the life of a run.

``hold_run_dir(run_dir)`` creates ``run_dir`` if needed and takes an exclusive ``flock`` on
``run_dir/.lock``, writing the holder's pid and host name into it. The lock belongs to the open
file, so the operating system releases it whenever the process ends: a normal exit, an
exception, Ctrl-C or a SIGKILL. A second process asking for the same directory gets
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
import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from debiascl.errors import DebiasclError

LOCK_NAME = ".lock"
"""The lock file inside a run directory; a fresh run directory may already hold it."""

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
