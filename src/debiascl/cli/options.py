"""Command-line options shared by several sub-commands."""

from __future__ import annotations

import argparse

from debiascl.choices import DEFAULT_K, DEFAULT_THRESHOLD
from debiascl.registry import PROBE_GROUP_KINDS
from debiascl.rundir import check_finished

SET_HELP = "any setting, e.g. --set method.tau_plus=0.1 (repeatable)"


def add_set_option(parser: argparse.ArgumentParser, help: str = SET_HELP) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.sets``."""
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def add_settings_options(parser: argparse.ArgumentParser, set_help: str = SET_HELP) -> None:
    """The layers of settings a run is built from (see :func:`debiascl.config.build_config`).

    Adds ``--data-dir``, ``--preset``, ``--config``, ``--epochs``, ``--batch-size`` and ``--set``.
    """
    parser.add_argument("--data-dir", metavar="DIR", help="folder holding the data set")
    parser.add_argument(
        "--preset", metavar="NAME", help="bundled preset (default: the dataset's, if any)"
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of settings")
    parser.add_argument("--epochs", type=int, metavar="N", help="number of epochs")
    parser.add_argument("--batch-size", type=int, metavar="B", help="global batch size")
    add_set_option(parser, set_help)


def add_discovery_options(parser: argparse.ArgumentParser) -> None:
    """``--bias-run``, ``--k`` and ``--threshold`` of the bias discovery (SPEC 9)."""
    parser.add_argument(
        "--bias-run",
        metavar="DIR",
        help="finished run whose encoder discovers the bias (default: the run's own E_b)",
    )
    parser.add_argument(
        "--k", type=int, metavar="N", help=f"neighbours per sample (default: {DEFAULT_K})"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help=f"flag samples whose conflict score exceeds T (default: {DEFAULT_THRESHOLD})",
    )


def probe_groups_metavar() -> str:
    """``none|discovered|true|class|val``: the probe group kinds (a plugin's too)."""
    return "|".join(("none", *PROBE_GROUP_KINDS))


def add_probe_groups_option(parser: argparse.ArgumentParser) -> None:
    """``--probe-groups none|discovered|true[,...]``, parsed into a tuple of names; the help
    lists each kind of :data:`debiascl.registry.PROBE_GROUP_KINDS` with its summary."""
    kinds = "; ".join(
        f"{kind}: {PROBE_GROUP_KINDS.info(kind)['summary']}" for kind in PROBE_GROUP_KINDS
    )
    parser.add_argument(
        "--probe-groups",
        type=probe_groups,
        default=(),
        metavar=probe_groups_metavar(),
        help="also fit group-robust probes whose loss balances these groups (comma-separated; "
        f"default: none): {kinds}",
    )


def probe_groups(text: str) -> tuple[str, ...]:
    """``"none"`` -> (); ``"discovered,true"`` -> ("discovered", "true"), checked."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if names in ((), ("none",)):
        return ()
    unknown = [name for name in names if name not in PROBE_GROUP_KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {', '.join(unknown)}; expected none or a comma-separated choice of "
            f"{', '.join(PROBE_GROUP_KINDS)}"
        )
    return names


def add_device_option(parser: argparse.ArgumentParser, training: bool = False) -> None:
    """``--device cpu|cuda|auto``: for evaluation, default auto (cuda if present); for commands
    that also train (``training``), default None, i.e. the settings' ``train.device``."""
    parser.add_argument(
        "--device",
        default=None if training else "auto",
        metavar="cpu|cuda|auto",
        help="training and evaluation device (default: the settings' train.device, auto)"
        if training
        else "default: auto (cuda if present)",
    )


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1, else a usage error saying so."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got '{text}'")
    return int(text)


def add_jobs_option(parser: argparse.ArgumentParser, default: str) -> None:
    """``--jobs N``: runs executed at a time, each in a worker process with its share of the
    CPUs (``default`` says what None means)."""
    parser.add_argument(
        "--jobs",
        type=positive_int,
        metavar="N",
        help="train and evaluate N runs at a time in worker processes, each with usable CPUs / N "
        "threads unless OMP_NUM_THREADS is set (a run is bit-exact for a given thread count, so "
        f"results can differ in their last bits from --jobs 1's); default: {default}",
    )


def check_finished_runs(*run_dirs: str | None) -> None:
    """Check the given run directories before a command imports torch (a path error is quick).

    Raises:
        DebiasclError: one of them is not a finished run (see :func:`check_finished`).
    """
    for run_dir in run_dirs:
        if run_dir is not None:
            check_finished(run_dir)
