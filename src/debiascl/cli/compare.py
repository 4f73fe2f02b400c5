"""`debiascl compare` and `debiascl demo`: train and evaluate several methods over seeds.

``compare`` trains every method x seed on one data set, evaluates each run and writes the
comparison tables and the average vs worst-group plot. ``demo`` is ``compare`` on the built-in
digits benchmark with CPU-sized settings (:data:`DEMO`), the README's first command.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from debiascl.choices import (
    DEFAULT_REFERENCE,
    DEFAULT_SIGNAL,
    MAX_RUNS,
    SELECT_RULES,
    SIGNALS,
    check_comparison,
)
from debiascl.cli.options import (
    add_device_option,
    add_jobs_option,
    add_probe_groups_option,
    add_settings_options,
)
from debiascl.errors import DebiasclError
from debiascl.grid import parse_grid
from debiascl.registry import (
    METHODS,
    PROBE_PROTOCOLS,
    other_methods,
    self_supervised_methods,
)

if TYPE_CHECKING:
    from debiascl.compare import CompareOptions

DEMO: dict[str, Any] = {
    "dataset": "biased-digits-binary",
    "methods": (*self_supervised_methods(), "gdro"),
    "seeds": (0, 1, 2),
    "epochs": 30,
    "batch_size": 128,
    "sets": (
        "data.options.image_size=8",
        "train.knn_every=10",
        "train.channels_last=true",
        "train.checkpoint_epochs=10",
        "gdro:train.groups=discovered",
    ),
    "probe_groups": ("discovered", "true"),
    "report": True,
    "plot_seeds": (0,),
}
"""The demo's settings, on top of the dataset's preset (configs/biased-digits-binary.yaml).

biased-digits-binary is the Waterbirds-like benchmark (2 classes x 2 backgrounds, 95% of the
training images bias-aligned), so the worst-group accuracy shows the bias clearly. The digits are
8 x 8 images, so they are kept at their native size (the preset upsamples them to 16 x 16, which
costs about eight times more per epoch on a CPU). Every run is also scored with a linear probe
balanced over the groups its bias encoder discovers (no bias label used) and one balanced over
the true groups (the oracle). The last row is a classifier trained, not only probed, without any
bias label: GroupDRO on the groups that each seed's triplet run discovers.

For speed (about 2 minutes on 2 CPU cores; README, "Performance"): on the CPU, one job per
usable CPU up to :data:`DEMO_MAX_JOBS` (on 2 cores: two single-threaded runs at a time), 30
epochs, the channels_last layout (the CNN's convolutions are about 1.3x faster in it on a
CPU), a checkpoint every 10 epochs instead of every epoch, and the per-run plots for seed 0.
"""

DEMO_MAX_JOBS = 4
"""The most jobs ``demo`` takes by default: its runs wait for their seed's triplet run, so few
are ready at once, and each worker process holds its own copy of torch (about 0.7 GB)."""

QUICK_DEMO: dict[str, Any] = {
    **DEMO,
    "seeds": (0,),
    "epochs": 1,
    "sets": ("data.options.image_size=8", "train.knn_every=0", "gdro:train.groups=discovered"),
    "report": False,
}
"""``demo --quick``: the same pipeline, one seed of one epoch, without the per-run plots (seconds;
used by the test suite)."""


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_seeds(text: str, option: str = "--seeds", limit: int = MAX_RUNS) -> list[int]:
    """``--seeds``: comma-separated seeds and inclusive ranges, e.g. ``0,2,5-7`` -> 0, 2, 5, 6, 7.

    ``option`` names the flag in the errors; more than ``limit`` seeds are refused before any
    list is made (``--max-runs`` raises the limit).

    Raises:
        DebiasclError: a part that is neither an integer nor a range ``A-B`` of integers, a
            range whose end is below its start, or more than ``limit`` seeds.
    """
    seeds: list[int] = []
    count = 0
    for part in _names(text):
        start, dash, end = part.partition("-")
        try:
            first = int(start)
            last = int(end) if dash else first
        except ValueError:
            raise DebiasclError(
                f"{option}: expected comma-separated integers or ranges such as 0,2,5-7, got "
                f"'{part}' in '{text}'"
            ) from None
        if last < first:
            raise DebiasclError(
                f"{option}: range '{part}' ends before it starts; write it as {last}-{first}"
            )
        count += last - first + 1
        if count > limit:
            raise DebiasclError(
                f"{option}: '{text}' gives more than {limit} seeds, each a run of every method; "
                "check the range, or allow more with --max-runs"
            )
        seeds.extend(range(first, last + 1))
    return seeds


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` and ``demo`` sub-commands."""
    compare = _add_compare(subparsers)
    _add_grid_options(compare)
    compare.set_defaults(func=run_compare)
    _add_demo(subparsers)


def _add_compare(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``compare`` sub-command with what it runs: data set, methods, seeds, settings, probes
    and the bias signal."""
    compare = subparsers.add_parser(
        "compare",
        help="train and evaluate several methods x seeds and tabulate them",
        description=(
            "Train every method x seed on one data set, evaluate each run (linear probe or the "
            "method's own classifier, group metrics, plots), and write results.csv, summary.md "
            "(mean ± standard error over seeds) and tradeoff.png (average vs worst-group)."
        ),
        epilog="example: debiascl compare --dataset biased-fmnist-binary "
        "--methods simclr,dcl,hcl,triplet,wcl --seeds 0,1,2 --out cmp-fmnist\n"
        "grid:    debiascl compare --dataset biased-fmnist-binary --methods simclr,dcl,wcl "
        "--seeds 0-4 --grid method.tau_plus=0.05,0.1 --grid wcl:optim.lr=1e-3,1e-2 "
        "--out grid-fmnist\n"
        "A rerun of the same command skips finished runs and resumes interrupted ones.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument("--dataset", required=True, metavar="NAME", help="data set")
    compare.add_argument(
        "--methods",
        default=",".join(self_supervised_methods()),
        metavar="M1,M2,...",
        help=f"comma-separated methods (default: {','.join(self_supervised_methods())}; also "
        f"{', '.join(other_methods())})",
    )
    compare.add_argument(
        "--seeds",
        default="0,1,2",
        metavar="S1,S2-S3,...",
        help="comma-separated seeds and inclusive ranges, e.g. 0-9 or 0,2,5-7 (default: 0,1,2)",
    )
    compare.add_argument("--out", required=True, metavar="DIR", help="comparison folder")
    add_settings_options(
        compare,
        "any setting, e.g. --set method.tau_plus=0.1; with METHOD,...: for those methods only, "
        "e.g. --set gdro:train.groups=discovered (repeatable)",
    )
    add_device_option(compare, training=True)
    add_jobs_option(compare, "1 (one run at a time, in this process)")
    compare.add_argument(
        "--probe", choices=tuple(PROBE_PROTOCOLS), help="linear probe protocol (default: fast)"
    )
    add_probe_groups_option(compare)
    compare.add_argument(
        "--signal",
        choices=SIGNALS,
        default=DEFAULT_SIGNAL,
        help="how each seed's bias is discovered, for the discovered-groups probe, "
        "--select discovered_worst_group and --set train.groups=discovered: knn (E_b of the "
        "seed's triplet run; WCL and triplet use their own), erm or gce (the classifier of a "
        "short run of that method, train.groups_epochs epochs, at runs/discovery-<signal>/); "
        f"default: {DEFAULT_SIGNAL}",
    )
    return compare


def _add_grid_options(compare: argparse.ArgumentParser) -> None:
    """``compare``'s grid of settings, the rule that picks a point, the reference method and
    the run limit."""
    compare.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="[METHOD,...:]KEY=V1,V2,...",
        help="try these values of a setting (repeatable; axes multiply): for every method that "
        "has it (method.* keys: the method's own settings) or, with METHOD,...:, for those methods "
        "only; each point x seed is evaluated on val and test, and each method is reported on "
        "test at the point --select picks on val",
    )
    compare.add_argument(
        "--select",
        choices=SELECT_RULES,
        default="auto",
        help="the val metric (mean over seeds) that picks each method's grid point: auto "
        "(worst_group where val has bias labels, else accuracy), worst_group, accuracy, "
        "worst_class or discovered_worst_group (worst accuracy over the groups discovered on "
        "val, no bias label used; needs --probe-groups discovered); default: auto",
    )
    compare.add_argument(
        "--select-seeds",
        metavar="S1,S2-S3,...",
        help="train every grid point on these seeds only (some of --seeds, e.g. 0-2), pick each "
        "method's point on their val results, then train the chosen point on the other seeds: "
        "P points cost P x |select seeds| + |seeds| - |select seeds| runs instead of P x |seeds| "
        "(default: every point on every seed)",
    )
    compare.add_argument(
        "--reference",
        default=DEFAULT_REFERENCE,
        metavar="METHOD",
        help="summary.md and paired.csv give each method's mean paired difference to this one "
        f"over seeds, with a 95%% Student-t interval (default: {DEFAULT_REFERENCE})",
    )
    compare.add_argument(
        "--no-plots", action="store_true", help="skip each run's t-SNE and weight plots"
    )
    compare.add_argument(
        "--plot-seeds",
        metavar="S1,S2-S3,...",
        help="draw the plots only for the runs of these seeds, e.g. 0 (default: every run)",
    )
    compare.add_argument(
        "--max-runs",
        type=int,
        default=MAX_RUNS,
        metavar="N",
        help="refuse to plan more than N runs (methods x grid points x seeds), checked before "
        f"anything is planned (default: {MAX_RUNS})",
    )


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    """The ``demo`` sub-command: ``compare`` with :data:`DEMO`'s settings."""
    demo = subparsers.add_parser(
        "demo",
        help=f"compare {', '.join(DEMO['methods'])} on the built-in digits benchmark (CPU)",
        description=(
            f"Train and evaluate {', '.join(DEMO['methods'])} on {DEMO['dataset']} with "
            f"{len(DEMO['seeds'])} seeds and {DEMO['epochs']} epochs, print the table and say "
            "where the report and plots are. About 2 minutes on 2 CPU cores."
        ),
    )
    demo.add_argument(
        "--out",
        metavar="DIR",
        help="comparison folder (default: ./debiascl-demo, ./debiascl-demo-quick with --quick)",
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="one seed of one epoch, no per-run plots: seconds, not minutes",
    )
    add_device_option(demo, training=True)
    add_jobs_option(demo, f"on the CPU one per usable CPU, at most {DEMO_MAX_JOBS}; on CUDA 1")
    demo.set_defaults(func=run_demo)


def _summarise(
    out_dir: Path, seconds: float, options: CompareOptions, probe_groups: bool, grid: bool = False
) -> None:
    """Print the comparison's table, its time and where its files are."""
    from debiascl.compare import (
        PAIRED_STEM,
        PLOT_NAME,
        PROBES_TABLE,
        RESULTS_STEM,
        RUNS_DIR,
        SUMMARY_STEM,
    )

    table = PROBES_TABLE if probe_groups else f"{SUMMARY_STEM}.md"
    print((out_dir / table).read_text())
    print(f"finished in {seconds:.0f} s")
    print(f"summary table:       {out_dir / f'{SUMMARY_STEM}.md'} (and .csv, .json)")
    print(f"every run's metrics: {out_dir / f'{RESULTS_STEM}.csv'} (and .md, .json)")
    if probe_groups:
        print(f"probes side by side: {out_dir / PROBES_TABLE}")
    if (out_dir / f"{PAIRED_STEM}.csv").is_file():
        print(f"paired differences:  {out_dir / f'{PAIRED_STEM}.csv'} (and .md, .json)")
    print(f"average vs worst-group plot: {out_dir / PLOT_NAME}")
    runs = out_dir / RUNS_DIR / "<method>" / ("<point>/seed<k>" if grid else "seed<k>")
    what = "results.json, metrics.jsonl, checkpoints"
    if options.report:
        plotted = options.plot_seeds
        which = "" if plotted is None else f" (seed {', '.join(map(str, plotted))})"
        what += f"; plots{which}: t-SNE, training curves, WCL's easy/hard negatives"
    print(f"each run: {runs} ({what})")


def run_compare(args: argparse.Namespace) -> int:
    """Run ``debiascl compare``; returns the exit status."""
    check_comparison(args.dataset, _names(args.methods), parse_seeds(args.seeds))
    from debiascl.compare import CompareOptions, RunSettings, compare

    started = time.perf_counter()
    options = CompareOptions(
        grid=[parse_grid(text) for text in args.grid],
        select=args.select,
        select_seeds=None
        if args.select_seeds is None
        else parse_seeds(args.select_seeds, "--select-seeds", args.max_runs),
        reference=args.reference,
        report=not args.no_plots,
        plot_seeds=None
        if args.plot_seeds is None
        else parse_seeds(args.plot_seeds, "--plot-seeds", args.max_runs),
        max_runs=args.max_runs,
        jobs=args.jobs or 1,
    )
    compare(
        args.dataset,
        [METHODS.canonical(name) for name in _names(args.methods)],
        parse_seeds(args.seeds, limit=args.max_runs),
        args.out,
        RunSettings(
            preset=args.preset,
            config_file=args.config,
            sets=args.sets,
            epochs=args.epochs,
            batch_size=args.batch_size,
            device=args.device,
            data_dir=args.data_dir,
            probe=args.probe,
            probe_groups=args.probe_groups,
            signal=args.signal,
        ),
        options,
    )
    _summarise(
        Path(args.out),
        time.perf_counter() - started,
        options,
        probe_groups=bool(args.probe_groups),
        grid=bool(args.grid),
    )
    return 0


def _demo_jobs(device: str | None) -> int:
    """The demo's default ``--jobs``: 1 on CUDA (its runs share the GPU), else one per usable
    CPU up to :data:`DEMO_MAX_JOBS`."""
    from debiascl.compare.workers import available_cpus
    from debiascl.distributed import resolve_device

    if resolve_device(device or "auto").type == "cuda":
        return 1
    return min(available_cpus(), DEMO_MAX_JOBS)


def run_demo(args: argparse.Namespace) -> int:
    """Run ``debiascl demo`` (``--quick``: the seconds-long version); returns the exit status."""
    from debiascl.compare import CompareOptions, RunSettings, compare

    settings = QUICK_DEMO if args.quick else DEMO
    out_dir = Path(args.out or ("debiascl-demo-quick" if args.quick else "debiascl-demo"))
    started = time.perf_counter()
    options = CompareOptions(
        report=settings["report"],
        plot_seeds=settings["plot_seeds"],
        jobs=args.jobs or _demo_jobs(args.device),
    )
    compare(
        settings["dataset"],
        settings["methods"],
        settings["seeds"],
        out_dir,
        RunSettings(
            sets=settings["sets"],
            epochs=settings["epochs"],
            batch_size=settings["batch_size"],
            device=args.device,
            probe_groups=settings["probe_groups"],
        ),
        options,
    )
    _summarise(
        out_dir,
        time.perf_counter() - started,
        options,
        probe_groups=bool(settings["probe_groups"]),
    )
    return 0
