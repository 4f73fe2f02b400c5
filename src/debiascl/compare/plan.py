"""Planning a comparison: every (method, grid point, seed) run's resolved configuration, where
it lives, what it is evaluated on and which discovery run gives its groups, all before any run
starts.

A run lives at ``OUT/runs/<method>/seed<k>`` (:func:`run_dir_for`), or in a grid at
``OUT/runs/<method>/<point>/seed<k>``; the runs that discover the bias for the others
(:func:`discovery_run_dir`) are planned too (:func:`bias_runs`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from debiascl.choices import DEFAULT_SIGNAL, check_comparison
from debiascl.config import Config, build_config, list_presets
from debiascl.errors import DebiasclError
from debiascl.grid import (
    GridAxis,
    GridPoint,
    check_axes,
    grid_size,
    method_grid,
    method_sets,
    point_name,
    point_sets,
)
from debiascl.methods import METHODS, bias_discovery_method
from debiascl.registry import needs_discovery

RUNS_DIR = "runs"


@dataclass(frozen=True)
class PlannedRun:
    """One (method, seed) run of a comparison, its resolved configuration and evaluation."""

    method: str
    seed: int
    config: Config
    run_dir: Path
    probe_groups: tuple[str, ...] = ()
    bias_run: Path | None = None
    """The run whose discovery balances this one's discovered-groups probe and scores its
    ``discovered_worst_group`` (None: its own E_b, or no discovered probe)."""
    groups_run: Path | None = None
    """The run whose discovery gives this one's training groups (``train.groups=discovered``
    without ``train.groups_from``; it is then ``train.groups_from``)."""
    point: GridPoint = ()
    """The grid point's settings (empty without an axis that applies to the method)."""
    splits: tuple[str, ...] = ("test",)
    """The splits it is evaluated on: test, and val in a grid (to select the point)."""


def run_dir_for(out_dir: str | Path, method: str, seed: int, point: GridPoint = ()) -> Path:
    """Where a run lives: ``OUT/runs/<method>/seed<seed>``, or in a grid
    ``OUT/runs/<method>/<point name>/seed<seed>`` (:func:`debiascl.grid.point_name`)."""
    method_dir = Path(out_dir) / RUNS_DIR / method
    return (method_dir / point_name(point) if point else method_dir) / f"seed{seed}"


def has_setting(method: str) -> Callable[[str], bool]:
    """Whether a method has a dotted setting: ``method.*`` keys are its ``Options`` fields;
    every method has the other sections' settings."""
    names = {field.name for field in fields(METHODS[method].Options)}
    return lambda key: not key.startswith("method.") or key.removeprefix("method.") in names


@dataclass(frozen=True)
class RunSettings:
    """The settings every run of a comparison shares, layered as in ``debiascl train``.

    The dataset's preset (or ``preset``), the YAML ``config_file``, the explicit fields
    (``epochs``, ``batch_size``, ``device``, ``data_dir`` = data.root, ``probe`` = eval.probe;
    None keeps the lower layer's value), then ``sets`` (``[METHOD,...:]key=value`` strings; with
    the prefix, for those methods only: :func:`debiascl.grid.method_sets`).
    ``probe_groups`` adds group-robust probes to every run's evaluation
    (:data:`debiascl.registry.PROBE_GROUP_KINDS`). ``signal`` (:data:`debiascl.choices.SIGNALS`)
    discovers the groups of the discovered probes and of ``train.groups=discovered``:
    :func:`discovery_run_dir` of the seed.
    """

    preset: str | None = None
    config_file: str | Path | None = None
    sets: Sequence[str] = ()
    epochs: int | None = None
    batch_size: int | None = None
    device: str | None = None
    data_dir: str | None = None
    probe: str | None = None
    probe_groups: tuple[str, ...] = ()
    signal: str = DEFAULT_SIGNAL


HELPER_SETS = (
    "train.groups=none",
    "train.groups_from=null",
    "train.group_sampling=none",
    "train.group_weighting=none",
)
"""A discovery run trains on no groups, whatever the comparison's sets say."""


def discovery_run_dir(out_dir: str | Path, signal: str, seed: int, point: GridPoint) -> Path:
    """The run that discovers the bias of a seed with ``signal``: the triplet run
    (``runs/triplet/seed<k>``, whose E_b the knn signal reads), or for erm and gce a short run of
    that method (``runs/discovery-<signal>/seed<k>``); within a grid, at the point's data
    options."""
    if signal == "knn":
        return run_dir_for(out_dir, bias_discovery_method(), seed, data_point(point))
    return run_dir_for(out_dir, f"discovery-{signal}", seed, data_point(point))


def own_discovery(method: str, signal: str) -> bool:
    """Whether runs of ``method`` discover with their own E_b (knn, a method with an E_b)."""
    return signal == "knn" and METHODS[method].bias_encoder is not None


def plan_runs(
    dataset: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    settings: RunSettings = RunSettings(),
    grid: Sequence[GridAxis] = (),
) -> list[PlannedRun]:
    """Resolve and validate the configuration of every run before any of them starts.

    The method, seed and dataset of each run are fixed by the comparison and may not be changed
    by ``settings.sets`` or the grid. With a ``grid`` every run is also evaluated on val.

    Returns:
        One :class:`PlannedRun` per method x grid point x seed, methods in the given order,
        points in grid order within, seeds within.
    """
    check_comparison(dataset, methods, seeds)
    grid = check_axes(grid, methods, has_setting)
    splits = ("test", "val") if grid else ("test",)
    if settings.preset is None and dataset in list_presets():
        settings = replace(settings, preset=dataset)
    return [
        _plan_run(dataset, method, seed, point, Path(out_dir), settings, splits)
        for method in methods
        for point in method_grid(method, grid, has_setting(method))
        for seed in seeds
    ]


def _plan_run(
    dataset: str,
    method: str,
    seed: int,
    point: GridPoint,
    out_dir: Path,
    settings: RunSettings,
    splits: tuple[str, ...],
) -> PlannedRun:
    """One run of :func:`plan_runs`, with its discovery run as its groups' or its bias run.

    Raises:
        DebiasclError: the runs of ``method`` would train on the groups they discover.
    """
    config = _run_config(dataset, method, seed, point, settings)
    run_dir = run_dir_for(out_dir, method, seed, point)
    discovery = discovery_run_dir(out_dir, settings.signal, seed, point)
    groups_run = None
    if config.train.groups == "discovered" and config.train.groups_from is None:
        if discovery == run_dir:
            raise DebiasclError(
                f"train.groups=discovered: the {method} runs discover the groups with "
                f"--signal {settings.signal}, so they cannot train on them; leave "
                f"{method} out or discover with another --signal"
            )
        groups_run = discovery
        config.train.groups_from = str(discovery.resolve())
    bias_run = None
    if needs_discovery(settings.probe_groups) and not own_discovery(method, settings.signal):
        bias_run = discovery
    probe_groups = tuple(settings.probe_groups)
    return PlannedRun(
        method, seed, config, run_dir, probe_groups, bias_run, groups_run, point, splits
    )


def _run_config(
    dataset: str, method: str, seed: int, point: GridPoint, settings: RunSettings
) -> Config:
    """The configuration of one run: ``settings`` layered as in ``debiascl train``, then the
    method's sets and the grid point's.

    Raises:
        DebiasclError: the sets or the grid change the run's dataset, method or seed.
    """
    config = build_config(
        preset=settings.preset,
        config_file=settings.config_file,
        overrides={
            "data.name": dataset,
            "data.root": settings.data_dir,
            "method.name": method,
            "train.seed": seed,
            "train.epochs": settings.epochs,
            "train.batch_size": settings.batch_size,
            "train.device": settings.device,
            "eval.probe": settings.probe,
        },
        sets=[*method_sets(settings.sets, method), *point_sets(point)],
    )
    fixed = {"data.name": dataset, "method.name": method, "train.seed": seed}
    actual = {
        "data.name": config.data.name,
        "method.name": config.method.name,
        "train.seed": config.train.seed,
    }
    changed = [key for key in fixed if fixed[key] != actual[key]]
    if changed:
        raise DebiasclError(
            f"sets and grid: may not change {', '.join(changed)} in a comparison: they "
            "are its dataset, methods and seeds"
        )
    return config


def data_point(point: GridPoint) -> GridPoint:
    """The data options of a grid point: a bias run discovers only on the same data."""
    return tuple((key, value) for key, value in point if key.startswith("data.options."))


def check_plan_size(
    methods: Sequence[str], num_seeds: int, grid: Sequence[GridAxis], max_runs: int
) -> None:
    """Refuse a comparison of more than ``max_runs`` runs before any of them is planned.

    Raises:
        DebiasclError: naming the number of runs and the flag that allows them.
    """
    known = [method for method in methods if method in METHODS]  # plan_runs names the others
    checked = check_axes(grid, known, has_setting)
    total = num_seeds * sum(grid_size(method, checked, has_setting(method)) for method in known)
    if total > max_runs:
        raise DebiasclError(
            f"max_runs: the comparison plans {total} runs (methods x grid points x seeds), more "
            f"than the limit of {max_runs}; check the seeds and grid, or allow them with "
            f"max_runs {total}"
        )


def bias_runs(
    dataset: str,
    runs: list[PlannedRun],
    out_dir: str | Path,
    settings: RunSettings,
) -> list[PlannedRun]:
    """The discovery runs (:func:`discovery_run_dir`) that the ``runs`` read their discovered
    groups from, each set to discover with its own E_b or classifier.

    A triplet run already in ``runs`` at ``runs/triplet/seed<k>`` (no grid axis) is reused for
    the knn signal; the others are planned (trained, evaluated and discovering, but not
    tabulated) with the comparison's settings, on no groups, and for erm and gce for
    ``train.groups_epochs`` epochs. Empty when no run needs one.
    """
    first_reader: dict[Path, PlannedRun] = {}  # discovery run -> the first run reading it
    for run in runs:
        for path in (run.groups_run, run.bias_run):
            if path is not None:
                first_reader.setdefault(path, run)
    planned = {run.run_dir: run for run in runs if run.run_dir in first_reader}
    method = bias_discovery_method() if settings.signal == "knn" else settings.signal
    for path, run in first_reader.items():
        if path in planned:
            continue
        # the data options of the run's grid point, as one-value axes: same folder name
        axes = [GridAxis(key, (value,)) for key, value in data_point(run.point)]
        epochs = (
            () if settings.signal == "knn" else (f"train.epochs={run.config.train.groups_epochs}",)
        )
        helper_settings = replace(
            settings, probe_groups=("discovered",), sets=(*settings.sets, *HELPER_SETS, *epochs)
        )
        (helper,) = plan_runs(dataset, [method], [run.seed], out_dir, helper_settings, axes)
        planned[path] = replace(helper, run_dir=path, bias_run=None)
    return [planned[path] for path in first_reader]


def first_round_seeds(
    runs: Sequence[PlannedRun],
    seeds: Sequence[int],
    select_seeds: Sequence[int] | None,
    grid: Sequence[GridAxis],
) -> dict[str, tuple[int, ...]]:
    """Method -> the seeds each of its points is trained on before the selection: every seed,
    or ``select_seeds`` for a method with several grid points.

    Raises:
        DebiasclError: select_seeds without a grid, empty, repeated or not among the seeds.
    """
    points: dict[str, set[str]] = {}
    for run in runs:
        points.setdefault(run.method, set()).add(point_name(run.point))
    if select_seeds is None:
        return {method: tuple(seeds) for method in points}
    if not grid:
        raise DebiasclError(
            "select_seeds: they choose each method's grid point before the other seeds are "
            "trained; give a grid too"
        )
    if not select_seeds or len(set(select_seeds)) != len(select_seeds):
        raise DebiasclError(
            f"select_seeds: give distinct seeds, e.g. 0-2, got {list(select_seeds)}"
        )
    strangers = [seed for seed in select_seeds if seed not in seeds]
    if strangers:
        raise DebiasclError(
            f"select_seeds: {strangers} are not among the seeds {list(seeds)}; the selection "
            "seeds are some of the seeds"
        )
    return {
        method: tuple(seeds) if len(names) == 1 else tuple(select_seeds)
        for method, names in points.items()
    }
