"""Shared test helpers, and the suite-wide check that no CLI output holds a Python traceback.

A user error is one line (README, "What debiascl guarantees"), so a traceback in what a test
captured from the CLI fails that test, wherever the output went: stderr/stdout read through
``capsys`` / ``capfd``, output nobody read (pytest's own capture, checked after the test), and
the ``stderr`` / ``stdout`` that ``subprocess.run`` or ``Popen.communicate`` captured. A test that
means to show one (``DEBIASCL_DEBUG=1``) is marked ``@pytest.mark.allow_traceback``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

TRACEBACK = "Traceback (most recent call last)"


def traceback_in(*outputs: str | bytes | None) -> bool:
    """Whether any of the captured ``outputs`` holds a Python traceback."""
    return any(
        TRACEBACK in (text.decode(errors="replace") if isinstance(text, bytes) else text)
        for text in outputs
        if text
    )


def _fail_on_traceback(where: str, *outputs: str | bytes | None) -> None:
    if traceback_in(*outputs):
        shown = "\n".join(str(text) for text in outputs if text)
        pytest.fail(f"a Python traceback in {where} (user errors are one line):\n{shown}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_traceback: the test means to show a Python traceback")


@pytest.fixture(autouse=True)
def _private_image_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test caches decoded images in its own temporary folder, never in ~/.cache."""
    monkeypatch.setenv("DEBIASCL_CACHE_DIR", str(tmp_path_factory.mktemp("image-cache")))


@pytest.fixture(autouse=True)
def _forget_loaded_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plugins a test loads are not handed to the worker processes of later tests."""
    import debiascl.plugins

    monkeypatch.setattr(debiascl.plugins, "_LOADED", [])


def _checked(read: Callable[..., Any], where: str) -> Callable[..., Any]:
    """``read`` (readouterr, subprocess.run, communicate), failing when its output holds a
    traceback."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = read(*args, **kwargs)
        if isinstance(result, tuple):  # readouterr's (out, err), communicate's (out, err)
            _fail_on_traceback(where, *result)
        else:  # CompletedProcess
            _fail_on_traceback(where, result.stdout, result.stderr)
        return result

    return wrapper


@pytest.fixture(autouse=True)
def _no_traceback_in_outputs(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Fail a test whose capsys/capfd reads or subprocess outputs hold a traceback."""
    if request.node.get_closest_marker("allow_traceback") is not None:
        yield
        return
    for name in ("capsys", "capfd", "capsysbinary", "capfdbinary"):
        if name in request.fixturenames:
            capture = request.getfixturevalue(name)
            monkeypatch.setattr(capture, "readouterr", _checked(capture.readouterr, name))
    monkeypatch.setattr(subprocess, "run", _checked(subprocess.run, "subprocess.run"))
    communicate = subprocess.Popen.communicate
    monkeypatch.setattr(
        subprocess.Popen,
        "communicate",
        lambda self, *a, **k: _checked(lambda: communicate(self, *a, **k), "a subprocess")(),
    )
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Fail a passing test when the output it left unread (pytest's capture) holds a traceback."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.when == "call"
        and report.passed
        and item.get_closest_marker("allow_traceback") is None
        and traceback_in(report.capstderr, report.capstdout)
    ):
        report.outcome = "failed"
        report.longrepr = (
            "a Python traceback in the test's captured output (user errors are one line):\n"
            + report.capstderr
        )
