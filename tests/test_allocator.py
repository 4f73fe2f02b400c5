"""The allocator setting: glibc's malloc thresholds set for CPU training from images."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from debiascl import allocator
from debiascl.allocator import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, THRESHOLD, tune_malloc
from debiascl.config import build_config
from debiascl.distributed import Runtime
from debiascl.training import build as training_build
from debiascl.training.build import use_malloc_tuning

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
SRC = Path(__file__).resolve().parents[1] / "src"
MAPPED = """
import ctypes, sys
from debiascl.allocator import tune_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
applied = tune_malloc() if sys.argv[1] == "on" else False
before = libc.mallinfo2().hblkhd
buffer = libc.malloc(64 << 20)
print(applied, libc.mallinfo2().hblkhd - before)
"""


def mapped_bytes(mode: str, **env: str) -> tuple[bool, int]:
    """(applied, bytes newly mmapped by a 64 MiB malloc) in a fresh process."""
    environ = {
        key: value for key, value in os.environ.items() if key not in allocator.ENV_VARIABLES
    }
    environ.update(PYTHONPATH=str(SRC), **env)
    done = subprocess.run(
        [sys.executable, "-c", MAPPED, mode],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
        timeout=60,
    )
    applied, mapped = done.stdout.split()
    return applied == "True", int(mapped)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt and mallinfo2")
def test_tuning_makes_large_buffers_come_from_the_heap() -> None:
    assert mapped_bytes("off") >= (False, 64 << 20)  # glibc's default: a fresh mapping
    assert mapped_bytes("on") == (True, 0)  # from the heap, reusable without page faults
    # a user's MALLOC_* variable stands: the process is left as the user started it
    assert mapped_bytes("on", MALLOC_TRIM_THRESHOLD_="131072")[0] is False


def test_tune_malloc_sets_both_thresholds_through_mallopt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in allocator.ENV_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    calls: list[tuple[int, int]] = []
    assert tune_malloc(lambda param, value: calls.append((param, value)) or 1) is True
    assert calls == [(M_MMAP_THRESHOLD, THRESHOLD), (M_TRIM_THRESHOLD, THRESHOLD)]
    assert tune_malloc(lambda param, value: 0) is False  # glibc refused
    monkeypatch.setattr(allocator, "glibc_mallopt", lambda: None)  # not glibc: a no-op
    assert tune_malloc() is False


@pytest.mark.parametrize(
    ("setting", "device", "kind", "expected"),
    [
        (True, "cpu", "image", True),
        (False, "cpu", "image", False),  # train.malloc_tuning=false
        (True, "cpu", "table", False),
        (True, "cuda", "image", False),
    ],
)
def test_the_setting_applies_to_cpu_training_from_images(
    setting: bool, device: str, kind: str, expected: bool
) -> None:
    assert use_malloc_tuning(setting, torch.device(device), kind) is expected


@pytest.mark.parametrize("setting", [True, False])
def test_building_a_cpu_image_run_tunes_malloc_unless_turned_off(
    monkeypatch: pytest.MonkeyPatch, setting: bool
) -> None:
    calls: list[None] = []
    monkeypatch.setattr(training_build, "tune_malloc", lambda: calls.append(None) or True)
    config = build_config(
        overrides={"data.name": "biased-digits-binary", "method.name": "simclr"},
        sets=["train.batch_size=8", "data.num_workers=0", f"train.malloc_tuning={setting}"],
    )
    training_build.build_training(config, Runtime(0, 1, torch.device("cpu")))
    assert len(calls) == int(setting)
