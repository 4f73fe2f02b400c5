"""`debiascl train`: train one method on one data set into a run directory.

Layers of settings, each overriding the last: the dataset's preset (or ``--preset``), a YAML
``--config`` file, the explicit flags below, then ``--set key=value``. Under ``torchrun`` the same
command trains on every rank (``--batch-size`` is the global batch).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from debiascl.cli.options import add_settings_options
from debiascl.config import build_config, list_presets
from debiascl.errors import DebiasclError
from debiascl.registry import METHODS, check_dataset, list_datasets


def _epilog() -> str:
    return (
        f"datasets: {', '.join(list_datasets())}\n"
        f"methods:  {', '.join(METHODS)}\n"
        f"presets:  {', '.join(list_presets())}\n\n"
        "example: debiascl train --dataset biased-digits --method wcl --out runs/wcl\n"
        "distributed: torchrun --nproc-per-node 2 -m debiascl train ... "
        "(--batch-size is the global batch)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train",
        help="train a method on a data set",
        description=(
            "Train one method on one data set into RUN_DIR (config.yaml, checkpoints/last.pt,\n"
            "metrics.jsonl, tb/, train_done). Settings are layered: the preset, --config,\n"
            "the flags, then --set."
        ),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, metavar="NAME", help="data set (see below)")
    parser.add_argument("--method", required=True, metavar="NAME", help="method (see below)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    add_settings_options(parser)
    parser.add_argument("--device", metavar="cpu|cuda|auto", help="training device")
    parser.add_argument("--precision", metavar="32|bf16|fp16", help="autocast precision")
    parser.add_argument("--seed", type=int, metavar="N", help="random seed")
    parser.add_argument(
        "--resume", action="store_true", help="continue RUN_DIR from its last checkpoint"
    )
    parser.set_defaults(func=run)


def _check_names(dataset: str, method: str) -> None:
    check_dataset(dataset)
    if method not in METHODS:
        raise DebiasclError(f"unknown method '{method}'; available: {', '.join(METHODS)}")


def run(args: argparse.Namespace) -> int:
    """Build the config from the arguments and train; returns the exit status."""
    _check_names(args.dataset, args.method)
    preset = args.preset or (args.dataset if args.dataset in list_presets() else None)
    config = build_config(
        preset=preset,
        config_file=args.config,
        overrides={
            "data.name": args.dataset,
            "method.name": args.method,
            "data.root": args.data_dir,
            "train.epochs": args.epochs,
            "train.batch_size": args.batch_size,
            "train.device": args.device,
            "train.precision": args.precision,
            "train.seed": args.seed,
        },
        sets=args.sets,
    )
    from debiascl.training.run import train

    run_dir = train(config, Path(args.out), resume=args.resume)
    if os.environ.get("RANK", "0") == "0":
        print(f"debiascl: trained {args.method} on {args.dataset}: {run_dir}")
    return 0
