"""The command line answers --help, listings and argument errors without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from debiascl.errors import DebiasclError
from debiascl.registry import AUGMENTATIONS, BACKBONES, DATASETS, HEADS, METHODS, Registry

HEAVY = ("torch", "torchvision", "sklearn", "matplotlib")
SRC = Path(__file__).resolve().parents[1] / "src"
PROBE = """
import contextlib, io, json, sys
from debiascl.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        status = main(sys.argv[1:])
    except SystemExit as stop:
        status = stop.code
print(json.dumps({"status": status, "out": out.getvalue(), "err": err.getvalue(),
                  "modules": sorted(sys.modules)}))
"""


def run_cli(*argv: str, env: dict[str, str] | None = None) -> dict:
    """Run ``debiascl ARGV`` in a fresh interpreter: its status, output and imported modules."""
    environ = {**os.environ, "PYTHONPATH": str(SRC)}
    environ.pop("DEBIASCL_PLUGINS", None)
    environ.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout)


def run_python(program: str) -> list[str]:
    """Run ``program`` in a fresh interpreter with this checkout's package; its output lines."""
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=True,
        timeout=120,
    )
    return done.stdout.splitlines()


def heavy_modules(result: dict) -> list[str]:
    return [name for name in result["modules"] if name.split(".")[0] in HEAVY]


@pytest.mark.parametrize(
    ("argv", "status", "expected"),
    [
        (("--help",), 0, "demo"),
        (("train", "--help"), 0, "methods: simclr, dcl, hcl, triplet, wcl, cnc, erm, jtt"),
        (("compare", "--help"), 0, "default: simclr,dcl,hcl,triplet,wcl; also cnc, erm, jtt"),
        (("datasets",), 0, "biased-digits-binary sklearn digits 0-4 vs 5-9"),
        (
            ("train", "--dataset", "nosuch", "--method", "wcl", "--out", "x"),
            2,
            "debiascl: error: unknown dataset 'nosuch'; available: adult,",
        ),
        (("train", "--dataset", "adult", "--method", "nosuch", "--out", "x"), 2, "unknown method"),
        (("train", "--dataset", "adult"), 2, "the following arguments are required"),
        (
            ("compare", "--dataset", "adult", "--methods", "wcl,nosuch", "--out", "x"),
            2,
            "debiascl: error: --methods: unknown method(s) nosuch; available: simclr,",
        ),
        (("datasets", "describe", "nosuch"), 2, "unknown dataset 'nosuch'; available: adult,"),
        (("eval", "no/such/run"), 2, "run directory 'no/such/run' does not exist"),
        (("discover", "no/such/run"), 2, "run directory 'no/such/run' does not exist"),
        (("--plugin", "no/such/plugin.py", "--help"), 2, "plugin 'no/such/plugin.py'"),
    ],
)
def test_help_listings_and_errors_import_no_heavy_module(
    argv: tuple[str, ...], status: int, expected: str
) -> None:
    result = run_cli(*argv)
    assert result["status"] == status
    assert expected in " ".join((result["out"] + result["err"]).split())
    if status == 2:  # one line, no traceback
        assert result["err"].count("\n") == 1 and "Traceback" not in result["err"]
    assert heavy_modules(result) == []


def test_a_plugin_file_still_becomes_a_choice(tmp_path: Path) -> None:
    plugin = tmp_path / "toy_light_plugin.py"
    plugin.write_text(
        "from debiascl.methods import SimCLR, register_method\n\n\n"
        "@register_method\nclass Toy(SimCLR):\n    name = 'toy'\n"
    )
    result = run_cli("--plugin", str(plugin), "train", "--help")
    listing = " ".join(result["out"].split())
    assert "methods: simclr, dcl, hcl, triplet, wcl, cnc, erm, jtt, gce, gdro, toy" in listing
    listed = run_cli("compare", "--help", env={"DEBIASCL_PLUGINS": str(plugin)})
    assert "simclr,dcl,hcl,triplet,wcl,toy" in " ".join(listed["out"].split())


def test_every_declared_name_is_registered_by_its_module_with_its_info() -> None:
    for registry in (METHODS, DATASETS, BACKBONES, HEADS, AUGMENTATIONS):
        for name in list(registry):
            registry[name]  # imports the declaring module; add() checks the declared info
            assert name in registry.registered()
    assert DATASETS.info("adult")["summary"] == DATASETS["adult"].__doc__.strip().splitlines()[0]
    assert [n for n in METHODS if METHODS.info(n)["supervised"]] == [
        n for n, cls in METHODS.items() if cls.supervised
    ]


def test_a_registry_loads_a_declared_name_on_lookup_and_checks_its_info() -> None:
    registry: Registry[object] = Registry("thing.name")
    registry.declare("json", "json", kind="light")
    assert list(registry) == ["json"] and "json" in registry and len(registry) == 1
    with pytest.raises(LookupError, match=r"importing json did not register it"):
        registry["json"]
    with pytest.raises(ValueError, match=r"declared in debiascl\.registry with"):
        registry.add("json", json, kind="other")
    assert registry.add("json", json, kind="light") is json and registry["json"] is json
    with pytest.raises(DebiasclError, match=r"'thing\.name' = 'yaml': expected one of json"):
        registry.info("yaml")


def test_the_package_and_its_losses_import_without_the_models() -> None:
    probe = (
        "import sys, torch, debiascl.losses, debiascl\n"
        "z = torch.randn(8, 4)\n"
        "assert float(debiascl.losses.info_nce_loss(z, z + 0.1, 0.5)) > 0\n"
        "assert debiascl.DebiasclError and debiascl.__version__\n"
        "heavy = ('torchvision', 'sklearn', 'matplotlib', 'debiascl.methods', 'debiascl.data')\n"
        "print(sorted(name for name in sys.modules if name.startswith(heavy)))\n"
        "print(debiascl.methods.METHODS['wcl'].__name__)\n"
    )
    assert run_python(probe) == ["[]", "WCL"]


def test_torchvision_is_imported_only_by_what_needs_it() -> None:
    """torchvision's import costs about as much as torch's: training, comparing, evaluating and
    predicting on the built-in data do not pay it; a ResNet or a CIFAR loader does."""
    probe = (
        "import sys\n"
        "import debiascl.api, debiascl.compare, debiascl.evaluate, debiascl.export\n"
        "import debiascl.predict, debiascl.train\n"
        "print('torchvision' in sys.modules)\n"
        "from debiascl.models import resnet\n"
        "print(resnet('resnet18')[1], 'torchvision' in sys.modules)\n"
    )
    assert run_python(probe) == ["False", "512 True"]
