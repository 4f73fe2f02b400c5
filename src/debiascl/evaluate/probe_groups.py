"""The groups that balance a group-robust linear probe: the kinds of
:data:`debiascl.registry.PROBE_GROUP_KINDS` (``--probe-groups``).

Built in: the true groups (class x bias attribute, an oracle), the classes alone, the groups a
bias discovery found (class x flag, no bias label used), and "val" (no groups: the plain probe
fitted on the val split). A new kind is one function registered with
:func:`register_probe_groups` (README, "Adding a probe group kind"); its ids follow the one
group-id encoding (:func:`debiascl.metrics.group_ids`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from debiascl.discovery import SplitDiscovery, read_discovery
from debiascl.errors import DebiasclError
from debiascl.evaluate.loaded_run import LoadedRun
from debiascl.metrics import group_ids
from debiascl.registry import PROBE_GROUP_KINDS

SplitGroups = dict[str, torch.Tensor]
"""Split ("train", "val", ...) -> (n,) int64 group id of each of its labelled samples."""


@dataclass(frozen=True)
class ProbeGroupInputs:
    """What a probe group kind reads.

    Attributes:
        run: the loaded run (its splits and directory).
        features: split -> :meth:`LoadedRun.features` of its labelled samples: features (n, F),
            y (n,), a (n,) (-1 where unknown), index (n,) into the split.
        discovered: the run's discovery (:func:`debiascl.discovery.read_discovery`), read for a
            kind with the ``discovery`` info when the caller has not.
    """

    run: LoadedRun | None
    features: dict[str, tuple[torch.Tensor, ...]]
    discovered: dict[str, SplitDiscovery] | None = None


GroupsBuilder = Callable[[ProbeGroupInputs], SplitGroups | None]
"""A probe group kind: the group ids of the train split (the probe's loss is balanced over
them) and of val where it has samples (its L2 strength is chosen by the worst val accuracy over
them), or None for an unbalanced probe."""


def register_probe_groups(
    name: str,
    summary: str = "",
    label: str = "",
    bias_labels: bool = False,
    discovery: bool = False,
    marker: str | None = None,
) -> Callable[[GroupsBuilder], GroupsBuilder]:
    """Decorator: register a probe group kind under ``name`` (``--probe-groups NAME``; results
    key ``probe_<name>``). A declared built-in takes its declaration's info.

    Args:
        name: the kind's name.
        summary: what balances the loss, completing "loss balanced over ..." in the protocol.
        label: its name in the tables (default: ``name`` groups).
        bias_labels: whether the groups use bias labels (the tables and model.json say so).
        discovery: whether it reads the run's bias discovery (``inputs.discovered``).
        marker: its matplotlib marker in the trade-off plot (None: a circle, as the plain probe).
    """

    def register(builder: GroupsBuilder) -> GroupsBuilder:
        if name in PROBE_GROUP_KINDS and not (summary or label):
            return PROBE_GROUP_KINDS.add(name, builder)
        info = {"summary": summary or f"{name} groups", "label": label or f"{name} groups"}
        info |= {"bias_labels": bias_labels, "discovery": discovery, "fitted_on": "train"}
        info["marker"] = marker
        return PROBE_GROUP_KINDS.add(name, builder, **info)

    return register


@register_probe_groups("true")
def true_groups(inputs: ProbeGroupInputs) -> SplitGroups:
    """Split -> (n,) ids of the true groups (class x bias attribute) of its labelled samples."""
    dataset = inputs.run.splits["train"]
    if dataset.num_attributes == 0 or not bool((inputs.features["train"][2] >= 0).any()):
        raise DebiasclError(
            f"probe groups 'true': data set '{dataset.name}' has no bias attribute in its train "
            "split; use the discovered groups instead"
        )
    return {
        split: group_ids(y, a, dataset.num_attributes)
        for split, (_, y, a, _) in inputs.features.items()
    }


@register_probe_groups("class")
def class_groups(inputs: ProbeGroupInputs) -> SplitGroups:
    """Split -> (n,) the classes of its labelled samples (the class-balanced ablation)."""
    return {
        split: group_ids(y, torch.zeros_like(y), 1) for split, (_, y, *_) in inputs.features.items()
    }


@register_probe_groups("discovered")
def discovered_groups(inputs: ProbeGroupInputs) -> SplitGroups:
    """Split -> (n,) ids of the discovered groups (class x flag) of the run's discovery.

    Raises:
        DebiasclError: a discovery whose samples are not the split's (stale).
    """
    run_dir = Path(inputs.run.run_dir)
    splits = read_discovery(run_dir)[0] if inputs.discovered is None else inputs.discovered
    groups = {}
    for split, (_, y, _, index) in inputs.features.items():
        if split == "test":
            continue
        part = splits.get(split)
        if part is None or not (torch.equal(part.index, index) and torch.equal(part.y, y)):
            raise DebiasclError(
                f"the bias discovery in '{run_dir}' does not match the run's {split} split; "
                f"run `debiascl discover {run_dir}` again"
            )
        groups[split] = part.groups
    return groups


@register_probe_groups("val")
def no_groups_fitted_on_val(inputs: ProbeGroupInputs) -> None:
    """No groups: the plain probe fitted on the val split (``fitted_on`` "val"), its L2
    strength chosen on train: the held-out ablation (LaBonte et al. 2023); its val scores are
    not held out."""
    if "val" not in inputs.features:
        name = "?" if inputs.run is None else inputs.run.config.data.name
        raise DebiasclError(
            f"probe groups 'val': data set '{name}' has no labelled val samples to fit the "
            "held-out probe on"
        )
    return None


def probe_groups_of(
    kind: str,
    run: LoadedRun | None,
    features: dict[str, tuple[torch.Tensor, ...]],
    discovered: dict[str, SplitDiscovery] | None = None,
) -> SplitGroups | None:
    """The groups that balance the group-robust probe ``kind``: split -> (n,) group ids, or None
    for a kind without groups ("val").

    Args:
        kind: a name of :data:`debiascl.registry.PROBE_GROUP_KINDS`.
        run: the loaded run (its directory holds the discovery).
        features: split -> :meth:`LoadedRun.features` of its labelled samples.
        discovered: the run's discovery when already read; None reads it for "discovered".

    Raises:
        DebiasclError: an unknown kind, or groups that cannot be formed.
    """
    return PROBE_GROUP_KINDS.lookup(kind)(ProbeGroupInputs(run, features, discovered))
