"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

Checkpoints, results.json, JTT's error set and compare's done markers are all written here.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from debiascl.errors import DebiasclError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` atomically with ``write(file)``.

    The bytes go to a temporary file in the same folder, which is flushed and fsynced, then
    renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows); finally the folder is
    fsynced so the rename itself survives a crash. On any error the temporary file is removed
    and ``path`` keeps its previous content.

    Args:
        path: the file to (re)place; its folder is created if needed.
        write: writes the whole content into the binary file it is given.

    Raises:
        DebiasclError: the file system refused the write (:func:`write_error`: a full disk, a
            read-only file system, no permission).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    except OSError as error:
        raise write_error(path, error) from None
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException as error:
        Path(temp_name).unlink(missing_ok=True)
        cause = _os_error(error)
        if cause is None:
            raise
        raise write_error(path, cause) from None
    _fsync_dir(path.parent)


def _os_error(error: BaseException) -> OSError | None:
    """``error`` or the OSError it was raised from (torch.save wraps a failed write in a
    RuntimeError whose context is the OSError); None when there is none."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def write_error(path: str | Path, error: OSError) -> DebiasclError:
    """The user error for a failed write of ``path``: "no space left on device" for a full
    disk (or quota), else the system's reason; the previous content of ``path`` is kept."""
    reason = "no space left on device" if error.errno in DISK_FULL else error.strerror
    return DebiasclError(
        f"cannot write '{path}': {reason or type(error).__name__}; its previous content, if "
        "any, is kept. Free some space (or fix the permissions) and run the command again"
    )


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`write_atomic`)."""
    write_atomic(path, lambda file: file.write(text.encode("utf-8")))


def write_json(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically (:func:`write_atomic`)."""
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(path: str | Path) -> None:
    """Remove the temporary files that :func:`write_atomic` left for ``path`` when killed.

    Only call it while no other process can be writing ``path`` (e.g. under the run lock).
    """
    path = Path(path)
    if path.parent.is_dir():
        for temp in path.parent.glob(f".{path.name}.*.tmp"):
            temp.unlink(missing_ok=True)


def remove_path(path: Path) -> None:
    """Delete ``path``: a folder with everything in it, or a file or link; nothing if absent."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
