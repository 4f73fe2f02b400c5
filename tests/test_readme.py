"""README's Python examples run as written, and what they state holds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()
USE_SECTION = TEXT.split("\n## Use the model\n", 1)[1].split("\n## ", 1)[0]
"""README's "Use the model" section, run as a whole by :func:`test_use_the_model_section`."""
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT.replace(USE_SECTION, ""), flags=re.DOTALL)


def test_readme_has_python_examples() -> None:
    assert BLOCKS, "README.md should show the losses in a Python example"
    assert any("relative_difficulty" in block for block in BLOCKS)  # checked below


def _check_wcl_example(names: dict[str, Any]) -> None:
    """The losses example's claims: w's range and zeros, and no gradient between the encoders."""
    w, batch = names["w"], names["view1"].shape[0]
    assert w.shape == (2 * batch, 2 * batch)
    rows = torch.arange(2 * batch)
    masked = torch.zeros_like(w, dtype=torch.bool)
    masked[rows, rows] = True  # self
    masked[rows, (rows + batch) % (2 * batch)] = True  # the positive
    assert torch.all(w[masked] == 0)
    assert torch.all((w[~masked] > 1) & (w[~masked] < 2))
    # E_b's gradient is exactly that of its own triplet loss: none came from E_d's loss.
    encoder_b = names["encoder_b"]
    loss_b = names["triplet_loss"](
        encoder_b(names["view1"]), encoder_b(names["view2"]), tau_plus=0.1
    )
    expected = torch.autograd.grad(loss_b, list(encoder_b.parameters()))
    for parameter, gradient in zip(encoder_b.parameters(), expected, strict=True):
        torch.testing.assert_close(parameter.grad, gradient)
    assert torch.isfinite(names["loss"]) and torch.isfinite(names["loss_d"])


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(block: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    names: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(block, str(README), "exec"), names)
    if "relative_difficulty" in block:
        _check_wcl_example(names)


def test_use_the_model_section(tmp_path: Path, monkeypatch) -> None:
    """The section's Python example, then its three commands on the run it made, as written."""
    from PIL import Image

    from debiascl.cli import main

    monkeypatch.chdir(tmp_path)
    (python,) = re.findall(r"```python\n(.*?)```", USE_SECTION, flags=re.DOTALL)
    names: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(python, str(README), "exec"), names)
    for number, size in enumerate([(8, 8), (30, 17)]):  # any size: resized as in training
        Path("images").mkdir(exist_ok=True)
        Image.new("RGB", size, (40 * number, 90, 200)).save(f"images/{number}.png")
    (commands,) = re.findall(r"```bash\n(.*?)```", USE_SECTION, flags=re.DOTALL)
    lines = [line.split() for line in commands.strip().splitlines()]
    assert [line[:2] for line in lines] == [
        ["debiascl", "export"],
        ["debiascl", "predict"],
        ["debiascl", "embed"],
    ]
    for line in lines:
        assert main(line[1:]) == 0, line
    rows = Path("predictions.csv").read_text().splitlines()
    assert rows[0].startswith("id,predicted,prob_") and len(rows) == 3
    assert np.load("features.npy").shape == (2, names["encoder"].feature_dim)
    assert Path("features.ids.csv").read_text().split() == ["id", "0.png", "1.png"]
