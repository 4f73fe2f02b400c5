"""The groups that balance a group-robust linear probe (:data:`debiascl.choices.PROBE_GROUPS`):
the true groups (class x bias attribute, an oracle), the classes alone, or the groups a bias
discovery found (class x flag, no bias label used).
"""

from __future__ import annotations

from pathlib import Path

import torch

from debiascl.choices import PROBE_GROUPS
from debiascl.data.base import BiasedDataset
from debiascl.discovery import SplitDiscovery, group_ids, read_discovery
from debiascl.errors import DebiasclError
from debiascl.evaluate.loaded_run import LoadedRun


def _true_groups(
    features: dict[str, tuple[torch.Tensor, ...]], dataset: BiasedDataset
) -> dict[str, torch.Tensor]:
    """Split -> (n,) ids of the true groups (class x bias attribute) of its labelled samples."""
    if dataset.num_attributes == 0 or not bool((features["train"][2] >= 0).any()):
        raise DebiasclError(
            f"probe groups 'true': data set '{dataset.name}' has no bias attribute in its train "
            "split; use the discovered groups instead"
        )
    return {split: group_ids(y, a) for split, (_, y, a, _) in features.items()}


def _discovered_groups(
    run_dir: Path,
    splits: dict[str, SplitDiscovery],
    features: dict[str, tuple[torch.Tensor, ...]],
) -> dict[str, torch.Tensor]:
    """Split -> (n,) ids of the discovered groups (class x flag) of ``run_dir``'s discovery.

    Raises:
        DebiasclError: a discovery whose samples are not the split's (stale).
    """
    groups = {}
    for split, (_, y, _, index) in features.items():
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


def probe_groups_of(
    kind: str,
    run: LoadedRun,
    features: dict[str, tuple[torch.Tensor, ...]],
    discovered: dict[str, SplitDiscovery] | None = None,
) -> dict[str, torch.Tensor]:
    """The groups that balance a group-robust probe: split ("train", "val") -> (n,) group ids.

    Args:
        kind: a key of :data:`PROBE_GROUPS`.
        run: the loaded run (its directory holds the discovery).
        features: split -> :meth:`LoadedRun.features` of its labelled samples.
        discovered: the run's discovery (:func:`debiascl.discovery.read_discovery`), when
            already read; None reads it for "discovered".
    """
    if kind not in PROBE_GROUPS:
        raise DebiasclError(
            f"probe groups '{kind}': expected none or one of {', '.join(PROBE_GROUPS)}"
        )
    if kind == "true":
        return _true_groups(features, run.splits["train"])
    if kind == "class":
        return {split: group_ids(y, torch.zeros_like(y)) for split, (_, y, *_) in features.items()}
    if discovered is None:
        discovered = read_discovery(run.run_dir)[0]
    return _discovered_groups(run.run_dir, discovered, features)
