"""`debiascl datasets`: list the data sets, or print the split sizes and group counts of one.

Examples::

    debiascl datasets
    debiascl datasets describe biased-digits --set rho=0.9
    debiascl datasets describe adult --root data/adult --set bias=race
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from debiascl.cli.options import add_set_option
from debiascl.config import parse_set_value
from debiascl.errors import DebiasclError
from debiascl.registry import DATASETS, check_dataset, list_datasets

if TYPE_CHECKING:
    from debiascl.data import BiasedDataset


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``datasets`` sub-command (and its ``describe`` action)."""
    parser = subparsers.add_parser(
        "datasets",
        help="list the data sets, or describe one (sizes, aligned/conflicting, group counts)",
        description="Without arguments: list the registered data sets.",
    )
    parser.set_defaults(func=run_list)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    describe_parser = actions.add_parser(
        "describe", help="print each split's size, aligned/conflicting and per-group counts"
    )
    describe_parser.add_argument("name", help="a data set name (see `debiascl datasets`)")
    describe_parser.add_argument(
        "--root",
        "--data-dir",
        dest="root",
        default=None,
        help="folder holding the data set (data.root; --data-dir as in train and compare)",
    )
    describe_parser.add_argument(
        "--download", action="store_true", help="fetch the files when the source allows it"
    )
    add_set_option(
        describe_parser,
        help="a data-set option (repeatable), e.g. rho=0.9 or bias=race; values are YAML",
    )
    describe_parser.set_defaults(func=run_describe)


def run_list(args: argparse.Namespace) -> int:
    """Print one line per data set: its name and the first line of its builder's docstring."""
    names = list_datasets()
    width = max(len(name) for name in names) if names else 0
    for name in names:
        print(f"{name:<{width}}  {DATASETS.info(name)['summary']}".rstrip())
    return 0


def parse_options(sets: Sequence[str]) -> dict[str, object]:
    """``["rho=0.9", "bias=race"]`` -> ``{"rho": 0.9, "bias": "race"}``.

    Values are read as ``debiascl train --set data.options.KEY=VALUE`` reads them
    (:func:`debiascl.config.parse_set_value`), so describe and train build the same data set.
    """
    options: dict[str, object] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DebiasclError(f"--set {item!r}: expected KEY=VALUE, e.g. rho=0.9")
        options[key.strip()] = parse_set_value(value)
    return options


def run_describe(args: argparse.Namespace) -> int:
    """Build every split of one data set and print its counts (an empty split has size 0)."""
    check_dataset(args.name)  # before the data modules are imported
    from debiascl.data import SPLITS, build_dataset

    options = parse_options(args.sets)
    descriptions = [
        describe(build_dataset(args.name, args.root, split, download=args.download, **options))
        for split in SPLITS
    ]
    print(format_description(args.name, options, descriptions))
    return 0


def describe(dataset: BiasedDataset) -> dict[str, object]:
    """Counts of one split of any data set: size, aligned / conflicting, per-group counts.

    Aligned and conflicting follow :attr:`BiasedDataset.bias_aligned` (the one definition).

    Returns:
        {"name", "split", "size", "class_names", "attribute_names",
        "aligned" and "conflicting" (None when alignment is undefined for the split),
        "unknown_attribute" (samples with a = -1), "class_counts" (C,),
        "group_counts" (C lists of A counts: row y, column a)}.
    """
    import torch

    targets, aligned, conflicting = dataset.targets, dataset.bias_aligned, dataset.bias_conflicting
    return {
        "name": dataset.name,
        "split": dataset.split,
        "size": len(dataset),
        "class_names": list(dataset.class_names),
        "attribute_names": list(dataset.attribute_names),
        "aligned": None if aligned is None else int(aligned.sum()),
        "conflicting": None if conflicting is None else int(conflicting.sum()),
        "unknown_attribute": int((dataset.attributes < 0).sum()),
        "class_counts": torch.bincount(
            targets[targets >= 0], minlength=dataset.num_classes
        ).tolist(),
        "group_counts": dataset.group_counts.tolist(),
    }


def format_description(
    name: str, options: dict[str, object], descriptions: Sequence[dict[str, object]]
) -> str:
    """The text printed by ``describe``: a size table, then a group table per split."""
    settings = ", ".join(f"{key}={value}" for key, value in options.items())
    lines = [f"{name}" + (f" ({settings})" if settings else "")]
    lines.append(f"{'split':<6} {'size':>8} {'aligned':>8} {'conflicting':>11} {'unknown a':>9}")
    for info in descriptions:
        aligned = "-" if info["aligned"] is None else info["aligned"]
        conflicting = "-" if info["conflicting"] is None else info["conflicting"]
        lines.append(
            f"{info['split']:<6} {info['size']:>8} {aligned:>8} {conflicting:>11} "
            f"{info['unknown_attribute']:>9}"
        )
    for info in descriptions:
        lines.append("")
        lines.extend(_group_table(info))
    return "\n".join(lines)


def _group_table(info: dict[str, object]) -> list[str]:
    """Rows: classes; columns: bias values (or the class count when there is no attribute)."""
    classes = [str(c) for c in info["class_names"]]
    attributes = [str(a) for a in info["attribute_names"]]
    header = attributes if attributes else ["count"]
    counts = info["group_counts"] if attributes else [[c] for c in info["class_counts"]]
    first = max([len("class"), *map(len, classes)])
    widths = [max(len(h), 5) for h in header]
    title = "per-group counts (rows: class y, columns: bias a)" if attributes else "class counts"
    lines = [f"{info['split']}: {title}"]
    lines.append(
        f"{'class':<{first}} " + " ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True))
    )
    for label, row in zip(classes, counts, strict=True):
        lines.append(
            f"{label:<{first}} " + " ".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True))
        )
    return lines
