"""glibc's malloc thresholds for CPU training from images, set by the process itself.

With glibc's default settings, malloc hands each freed multi-megabyte buffer (a batch of views,
an activation) back to the kernel, and the next step pays page faults to get it again. Raising
the mmap threshold (buffers come from the heap, not from fresh mappings) and the trim threshold
(the heap keeps freed memory) removes that cost: what ``MALLOC_MMAP_THRESHOLD_=4294967296
MALLOC_TRIM_THRESHOLD_=68719476736`` do when exported before Python starts. glibc reads those
variables only at start-up, so a running process sets the same thresholds with ``mallopt``,
whose values are C ints: both at :data:`THRESHOLD` (2 GiB - 1), so buffers below 2 GiB come
from the heap and the heap keeps up to 2 GiB of freed memory. The process's peak memory is
unchanged; its resident size stays near that peak between steps.

``train.malloc_tuning`` (default true) turns it on for training on the CPU from images
(:func:`debiascl.training.build.build_training`); it is a no-op off glibc, and a process
started with either ``MALLOC_*`` variable keeps the user's setting.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable

M_TRIM_THRESHOLD = -1
"""glibc's ``mallopt`` parameter number of the trim threshold (malloc.h)."""
M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number of the mmap threshold (malloc.h)."""
THRESHOLD = 2**31 - 1
"""Both thresholds, in bytes: the largest value ``mallopt`` (an int) takes."""
ENV_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
"""The variables that set the same thresholds at start-up; a user who set one keeps it."""

Mallopt = Callable[[int, int], int]


def glibc_mallopt() -> Mallopt | None:
    """glibc's ``mallopt(param, value) -> 1 on success``, or None off Linux/glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def tune_malloc(mallopt: Mallopt | None = None) -> bool:
    """Set the mmap and trim thresholds to :data:`THRESHOLD` (see the module docstring).

    Args:
        mallopt: the function to call (None: :func:`glibc_mallopt`; a seam for tests).

    Returns:
        True when both thresholds were set; False off glibc, when a ``MALLOC_*`` variable of
        :data:`ENV_VARIABLES` is set (the user's choice stands), or when glibc refused.
    """
    if any(name in os.environ for name in ENV_VARIABLES):
        return False
    mallopt = glibc_mallopt() if mallopt is None else mallopt
    if mallopt is None:
        return False
    mapped = mallopt(M_MMAP_THRESHOLD, THRESHOLD) == 1
    return mallopt(M_TRIM_THRESHOLD, THRESHOLD) == 1 and mapped
