"""Shared test helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest


def _wcl_train_args(out: Path, epochs: int, settings: Iterable[str], *extra: str) -> list[str]:
    """Arguments of ``debiascl train``: WCL on biased-digits, global batch 256, on the CPU.

    Args:
        out: the run directory (``--out``).
        epochs: ``--epochs``.
        settings: "key=value" strings, each passed as ``--set``.
        extra: further arguments, e.g. "--resume".
    """
    return [
        "train",
        "--dataset",
        "biased-digits",
        "--method",
        "wcl",
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--batch-size",
        "256",
        "--device",
        "cpu",
        *[arg for setting in settings for arg in ("--set", setting)],
        *extra,
    ]


@pytest.fixture(autouse=True)
def _private_image_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test caches decoded images in its own temporary folder, never in ~/.cache."""
    monkeypatch.setenv("DEBIASCL_CACHE_DIR", str(tmp_path_factory.mktemp("image-cache")))


@pytest.fixture
def wcl_train_args() -> Callable[..., list[str]]:
    """``(out, epochs, settings, *extra) -> list[str]``: see :func:`_wcl_train_args`."""
    return _wcl_train_args
