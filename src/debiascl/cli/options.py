"""Command-line options shared by several sub-commands."""

from __future__ import annotations

import argparse

SET_HELP = "any setting, e.g. --set method.tau_plus=0.1 (repeatable)"


def add_set_option(parser: argparse.ArgumentParser, help: str = SET_HELP) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.sets``."""
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def add_settings_options(parser: argparse.ArgumentParser) -> None:
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
    add_set_option(parser)
