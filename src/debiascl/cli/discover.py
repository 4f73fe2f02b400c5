"""`debiascl discover RUN_DIR`: find the bias-conflicting training samples without bias labels.

Scores every training sample with a bias signal (knn: the share of its k nearest neighbours,
cosine, leave-one-out, in a bias encoder's representation whose class differs from its own; erm
/ gce: 1 - p_y under an early-stopped ERM or a GCE classifier), flags those above the threshold,
and writes discovered.csv, discovery.json and the plots into RUN_DIR (SPEC 9).
"""

from __future__ import annotations

import argparse
import json

from debiascl.choices import DEFAULT_K, DEFAULT_THRESHOLD, SIGNALS
from debiascl.cli.options import add_device_option, add_discovery_options, check_finished_runs
from debiascl.rundir import discovery_paths


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``discover`` sub-command."""
    parser = subparsers.add_parser(
        "discover",
        help="find bias-conflicting training samples with a bias encoder (no bias labels)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="examples:\n  debiascl discover runs/wcl\n"
        "  debiascl discover runs/simclr --bias-run runs/triplet\n"
        "  debiascl discover runs/simclr --signal erm --bias-run runs/erm-1-epoch\n"
        "then: debiascl eval RUN_DIR --probe-groups discovered",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished training run")
    add_discovery_options(parser)
    parser.add_argument(
        "--signal",
        choices=SIGNALS,
        help="knn: neighbours in the bias run's E_b; erm / gce: the bias run's classifier "
        "(an erm or gce run); default: the bias run's own kind",
    )
    parser.add_argument(
        "--encoder",
        choices=("d", "b"),
        help="the bias run's encoder to use (default: b, its E_b)",
    )
    add_device_option(parser)
    parser.add_argument("--no-plots", action="store_true", help="skip the histogram and grid")
    parser.set_defaults(func=run)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def run(args: argparse.Namespace) -> int:
    """Discover, print what was found; returns the exit status."""
    check_finished_runs(args.run_dir, args.bias_run)
    from debiascl.discovery.run import discover_run
    from debiascl.distributed import resolve_device

    summary = discover_run(
        args.run_dir,
        bias_run=args.bias_run,
        encoder=args.encoder,
        k=DEFAULT_K if args.k is None else args.k,
        threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold,
        device=resolve_device(args.device),
        plots=not args.no_plots,
        signal=args.signal,
    )
    train = summary["train"]
    flagged = sum(summary["flagged_by_class"].values())
    reader = (
        f"E_{summary['encoder']} of {summary['bias_run']} (k={summary['k']}, "
        if summary["signal"] == "knn"
        else f"the {summary['signal']} classifier of {summary['bias_run']} ("
    )
    print(
        f"{reader}threshold {summary['threshold']}): {flagged} of {train['num_samples']} "
        "training samples flagged"
    )
    print(f"flagged per class: {json.dumps(summary['flagged_by_class'])}")
    if train.get("bias_labels"):
        print(
            "graded with the true bias labels (not used to discover): "
            f"precision {_percent(train['precision'])}, recall {_percent(train['recall'])}, "
            f"AUROC {_percent(train['auroc'])} over {train['conflicting']} bias-conflicting "
            "samples"
        )
    else:
        print("the data set has no bias labels: no precision/recall to report")
    print("written: {}, {}".format(*discovery_paths(args.run_dir)))
    return 0
