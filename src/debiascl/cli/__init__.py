"""The `debiascl` command: one sub-command per module of this package.

Each sub-command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (a callable taking the parsed namespace and returning an exit status).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from debiascl import __version__
from debiascl.cli import compare, datasets, evaluate, train
from debiascl.errors import DebiasclError

SUBCOMMAND_MODULES = (train, evaluate, compare, datasets)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="debiascl",
        description="Debiased contrastive representation learning (WCL and baselines).",
    )
    parser.add_argument("--version", action="version", version=f"debiascl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one line and return status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DebiasclError as error:
        print(f"debiascl: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("debiascl: interrupted", file=sys.stderr)
        return 130
