"""A method from outside the package is one file (README's recipe): loaded as a plugin, it
trains, evaluates and compares through the CLI like a built-in one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fakes import TINY_DIGITS_CLI as TINY
from fakes import install_plugin, readme_plugin

from debiascl.cli import main
from debiascl.config import Config
from debiascl.registry import METHODS

TOY_METHOD = readme_plugin("toy_method.py")
"""The README's one-file method (section "Adding a method: one file")."""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The toy method's file; the method registry and sys.modules are restored afterwards."""
    yield from install_plugin("toy_method.py", tmp_path / "plugin", METHODS, monkeypatch)


@pytest.mark.slow
def test_a_plugin_method_trains_evaluates_and_compares_through_the_cli(
    plugin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "toy-run"
    train = ["--plugin", str(plugin), "train", "--method", "toy", "--out", str(run), *TINY]
    assert main([*train, "--set", "method.toy_scale=0.5"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())["method"]
    assert (saved["name"], saved["toy_scale"]) == ("toy", 0.5)

    assert main(["eval", str(run), "--device", "cpu", "--no-plots", "--plugin", str(plugin)]) == 0
    assert json.loads((run / "results.json").read_text())["method"] == "toy"

    out = tmp_path / "cmp"
    compare = ["compare", "--methods", "toy,simclr", "--seeds", "0", "--out", str(out), *TINY]
    # two jobs: the runs go to worker processes, which load the plugin too
    assert main([*compare, "--no-plots", "--jobs", "2", "--plugin", str(plugin)]) == 0
    summary = (out / "summary.md").read_text()
    assert "| toy |" in summary and "| simclr |" in summary
    capsys.readouterr()

    assert main([*train[:2], "train", "--method", "toy", "--out", str(tmp_path / "bad"), *TINY,
                 "--set", "method.toy_scale=0"]) == 2  # fmt: skip
    assert "setting 'method.toy_scale' = 0.0 is out of range" in capsys.readouterr().err


def test_the_plugin_env_var_makes_the_method_a_choice(
    plugin: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(plugin.parent))
    monkeypatch.setenv("DEBIASCL_PLUGINS", "toy_method")
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "toy" in capsys.readouterr().out


def test_a_run_of_an_unloaded_plugin_method_is_a_one_line_error(
    plugin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = Config().to_dict()
    config["method"] = {"name": "toy", "temperature": 0.5, "toy_scale": 0.5}
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    (run / "train_done").write_text("")
    assert main(["eval", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("debiascl: error: ") and "'toy'" in err and "\n" not in err
    assert main(["--plugin", str(plugin.parent / "missing.py"), "eval", str(run)]) == 2
    assert "no such file" in capsys.readouterr().err


LEGACY_DATA = Path(__file__).resolve().parent / "fixtures" / "legacy_wcl_run" / "data.csv"
TABLE_RUN = [
    "--dataset", "csv", "--epochs", "1", "--batch-size", "32", "--device", "cpu",
    "--set", f"data.options.path={LEGACY_DATA}", "--set", "data.options.target=label",
    "--set", "data.options.bias=group", "--set", "data.augmentation=scarf",
    "--set", "model.backbone=mlp", "--set", "model.mlp_hidden_dims=[8]",
    "--set", "model.head_hidden_dim=8", "--set", "model.proj_dim=4",
    "--set", "train.knn_every=0",
]  # fmt: skip
"""A tiny run on a data set without a preset, so the methods' own defaults show."""


def test_the_plugin_methods_own_default_reaches_its_run_and_no_other(
    plugin: Path, tmp_path: Path
) -> None:
    def saved_method(run: Path) -> dict:
        return yaml.safe_load((run / "config.yaml").read_text())["method"]

    simclr = tmp_path / "simclr"
    assert main(["train", "--method", "simclr", "--out", str(simclr), *TABLE_RUN]) == 0
    toy = tmp_path / "toy"
    assert main(["--plugin", str(plugin), "train", "--method", "toy", "--out", str(toy),
                 *TABLE_RUN]) == 0  # fmt: skip
    assert saved_method(toy) == {"name": "toy", "temperature": 0.2, "toy_scale": 1.0}
    given = tmp_path / "given"
    assert main(["--plugin", str(plugin), "train", "--method", "toy", "--out", str(given),
                 *TABLE_RUN, "--set", "method.temperature=0.3"]) == 0  # fmt: skip
    assert saved_method(given)["temperature"] == 0.3
    # The plugin loaded changes neither the simclr run's file nor its resumption.
    assert saved_method(simclr) == {"name": "simclr", "temperature": 0.5}
    assert main(["--plugin", str(plugin), "train", "--method", "simclr", "--out", str(simclr),
                 *TABLE_RUN[:2], "--epochs", "2", *TABLE_RUN[4:], "--resume"]) == 0  # fmt: skip
    assert saved_method(simclr) == {"name": "simclr", "temperature": 0.5}
