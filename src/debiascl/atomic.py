"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

Checkpoints, results.json, JTT's error set and compare's done markers are all written here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` atomically with ``write(file)``.

    The bytes go to a temporary file in the same folder, which is flushed and fsynced, then
    renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows); finally the folder is
    fsynced so the rename itself survives a crash. On any error the temporary file is removed.

    Args:
        path: the file to (re)place; its folder is created if needed.
        write: writes the whole content into the binary file it is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


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
