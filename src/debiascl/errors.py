"""The one exception type for user errors (bad data, bad settings, bad files)."""

from __future__ import annotations

WORKER_TRACEBACK_MARK = "Original Traceback"
"""Part of the message torch gives an exception re-raised from a DataLoader worker."""


class DebiasclError(Exception):
    """A user error: the message names the file or setting and what was expected.

    The CLI prints it on one line and exits with status 2, without a traceback.
    """


def user_message(error: DebiasclError) -> str:
    """The one-line message of ``error``, also when a DataLoader worker raised it.

    torch re-raises an exception from a worker process as the same type with the message
    ``"Caught DebiasclError in DataLoader worker process 0.\\nOriginal Traceback ..."``, whose
    last line is ``"debiascl.errors.DebiasclError: <message>"``; this returns ``<message>``.
    Other messages are returned unchanged.
    """
    message = str(error)
    if WORKER_TRACEBACK_MARK not in message:
        return message
    marker = f"{DebiasclError.__module__}.{DebiasclError.__qualname__}: "
    _, found, original = message.rpartition(marker)
    return original.strip() if found else message
