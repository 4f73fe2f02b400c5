"""Shared test helpers."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_image_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test caches decoded images in its own temporary folder, never in ~/.cache."""
    monkeypatch.setenv("DEBIASCL_CACHE_DIR", str(tmp_path_factory.mktemp("image-cache")))
