"""`debiascl eval RUN_DIR`: linear evaluation, group metrics and plots of a finished run.

Extracts the frozen representations of E_d (or E_b with ``--encoder b``, the paper's biased
baseline), fits a linear probe and a weighted kNN classifier, scores them on the test split
(and a supervised method's own classifier), writes results.json and the plots into RUN_DIR.
``--split val`` scores the val split instead and writes results_val.json (the probes still train
on train and pick their L2 strength on val).
"""

from __future__ import annotations

import argparse

from debiascl.cli.options import (
    add_device_option,
    add_discovery_options,
    add_probe_groups_option,
    check_finished_runs,
)
from debiascl.registry import PROBE_PROTOCOLS, needs_discovery
from debiascl.rundir import EVAL_SPLITS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` sub-command."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a trained run (linear probe, kNN, group metrics, plots)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="examples:\n  debiascl eval runs/wcl --probe authors\n"
        "  debiascl eval runs/wcl --probe-groups discovered,true\n"
        "  debiascl eval runs/simclr --probe-groups discovered --bias-run runs/triplet\n"
        "  debiascl eval runs/wcl --split val   (writes results_val.json)\n"
        "--probe-groups discovered reuses RUN_DIR's discovery (debiascl discover) or, without\n"
        "one or with --bias-run/--k/--threshold, discovers first.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished training run")
    parser.add_argument(
        "--encoder",
        choices=("d", "b"),
        help="whose representations: d (debiased) or b (biased); default: the method's product",
    )
    add_device_option(parser)
    parser.add_argument(
        "--probe",
        choices=tuple(PROBE_PROTOCOLS),
        help="linear probe protocol (default: the run's eval.probe)",
    )
    parser.add_argument(
        "--split",
        choices=EVAL_SPLITS,
        default="test",
        help="the split scored (default: test; val writes a separate results_val.json)",
    )
    add_probe_groups_option(parser)
    add_discovery_options(parser)
    parser.add_argument("--no-plots", action="store_true", help="skip t-SNE and the other plots")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the plots; returns the exit status."""
    check_finished_runs(args.run_dir, args.bias_run)
    from debiascl.discovery.run import ensure_discovery
    from debiascl.distributed import resolve_device
    from debiascl.evaluate import evaluate_splits, load_run
    from debiascl.report import write_report
    from debiascl.report.text import format_results
    from debiascl.results import RunResults

    device = resolve_device(args.device)
    if needs_discovery(args.probe_groups):
        ensure_discovery(
            args.run_dir, args.bias_run, args.k, args.threshold, device, plots=not args.no_plots
        )
    run = load_run(args.run_dir, device)  # loaded once: the plots reuse its test features
    results = evaluate_splits(
        run, (args.split,), encoder=args.encoder, probe=args.probe, probe_groups=args.probe_groups
    )[args.split]
    print(format_results(RunResults.from_json(results)))
    print(f"\nresults: {results['results_file']}")
    if args.no_plots:
        return 0
    written = write_report(run, encoder=args.encoder)
    if not run.method.analyses:
        print(f"no w analysis: method '{results['method']}' declares no analysis of its own (wcl)")
    print("plots and tables:")
    for path in written:
        print(f"  {path}")
    return 0
