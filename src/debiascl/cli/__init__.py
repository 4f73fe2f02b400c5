"""The `debiascl` command: one sub-command per module of this package.

Each sub-command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (a callable taking the parsed namespace and returning an exit status).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn, TextIO

from debiascl import __version__
from debiascl.cli import compare, datasets, discover, evaluate, train
from debiascl.errors import DebiasclError, user_message

SUBCOMMAND_MODULES = (train, evaluate, discover, compare, datasets)
LOG_FORMAT = "debiascl: %(message)s"


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit status 2).

    ``add_subparsers`` makes its sub-parsers of the same class, so every sub-command inherits it.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message> (see <prog> --help)`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler writing to whatever ``sys.stderr`` is when a record is emitted."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


@contextlib.contextmanager
def cli_logging() -> Iterator[None]:
    """Show the INFO records of the ``debiascl`` logger on stderr while the CLI runs.

    Attaches one handler (none if one is attached already), at level INFO and with
    ``propagate=False`` so that no record is printed twice; restores the logger afterwards, so
    that importing or calling the library stays silent.
    """
    logger = logging.getLogger("debiascl")
    if any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        yield
        return
    handler, level, propagate = _StderrHandler(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = OneLineErrorParser(
        prog="debiascl",
        description="Debiased contrastive representation learning (WCL and baselines).",
    )
    parser.add_argument("--version", action="version", version=f"debiascl {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineErrorParser
    )
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
        with cli_logging():
            return int(args.func(args) or 0)
    except DebiasclError as error:
        print(f"debiascl: error: {user_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("debiascl: interrupted", file=sys.stderr)
        return 130
