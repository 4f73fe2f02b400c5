"""The `debiascl` command: one sub-command per module of this package.

Each sub-command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (a callable taking the parsed namespace and returning an exit status).

This package is the one place where functions import debiascl modules: each ``run_*`` imports
the modules it runs (torch and the heavy libraries with them) when it runs, so that
``debiascl --help``, the listings and argument errors import no torch (README, "What debiascl
guarantees"; ``tests/test_cli_light.py``). Nothing imports this package, and the import-cycle
check counts these imports too (``tests/test_code_shape.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn, TextIO

from debiascl import __version__
from debiascl.cli import compare, datasets, discover, evaluate, model, train
from debiascl.errors import DebiasclError, user_message
from debiascl.plugins import ENTRY_POINT_GROUP, PLUGINS_ENV, load_plugins

SUBCOMMAND_MODULES = (train, evaluate, discover, compare, datasets, model)
LOG_FORMAT = "debiascl: %(message)s"
PREFIX_FLAGS = {
    "methods": "--methods",
    "seeds": "--seeds",
    "sets": "--set",
    "max_runs": "--max-runs",
}
"""A library error that starts with ``<argument>: `` is about the argument, given by this flag."""
WORD_FLAGS = {
    "resume=True": "--resume",
    "run_dir": "--out",
    "out_dir": "--out",
    "max_runs": "--max-runs",
}
"""The library's names of arguments inside its errors, and the flags that give them."""
_WORDS = re.compile("|".join(rf"(?<![\w-]){re.escape(word)}(?![\w=])" for word in WORD_FLAGS))


def flag_message(message: str) -> str:
    """A library error in the command line's words: its argument names become their flags.

    Library errors name settings and arguments (``resume=True: ...``, ``methods: ...``,
    ``choose another out_dir``); quoted text (paths, values) is left as it is.
    """
    name, colon, rest = message.partition(": ")
    if colon and name in PREFIX_FLAGS:
        message = f"{PREFIX_FLAGS[name]}: {rest}"
    parts = message.split("'")
    parts[::2] = [_WORDS.sub(lambda match: WORD_FLAGS[match[0]], part) for part in parts[::2]]
    return "'".join(parts)


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
    parser.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE|FILE.py",
        help="import a module that registers methods or data sets (repeatable; also "
        f"${PLUGINS_ENV} and the '{ENTRY_POINT_GROUP}' entry points); may follow the command",
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineErrorParser
    )
    for module in SUBCOMMAND_MODULES:
        module.register(subparsers)
    return parser


def _plugin_parser() -> argparse.ArgumentParser:
    """Reads only ``--plugin`` (anywhere in the command line), before the full parser exists."""
    parser = OneLineErrorParser(prog="debiascl", add_help=False, allow_abbrev=False)
    parser.add_argument("--plugin", action="append", default=[])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one line and return status 2.

    The plugins (``--plugin``, ``DEBIASCL_PLUGINS``, entry points) are imported first, so that
    the methods they register are choices of every sub-command.
    """
    plugins, argv = _plugin_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        load_plugins(plugins.plugin)
    except DebiasclError as error:
        print(f"debiascl: error: {flag_message(user_message(error))}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        with cli_logging():
            return int(args.func(args) or 0)
    except DebiasclError as error:
        print(f"debiascl: error: {flag_message(user_message(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("debiascl: interrupted", file=sys.stderr)
        return 130
