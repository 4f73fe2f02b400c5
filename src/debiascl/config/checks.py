"""The checks of a whole configuration: choices, ranges and the group settings (SPEC 10)."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from debiascl.config.sections import MAX_IMAGE_SIZE, MAX_SEED, Config, TrainConfig
from debiascl.errors import DebiasclError
from debiascl.registry import AUGMENTATIONS, BACKBONES, HEADS, METHODS, PROBE_PROTOCOLS

CHOICES: dict[str, Collection[str]] = {
    "data.augmentation": AUGMENTATIONS,
    "model.backbone": BACKBONES,
    "model.head": HEADS,
    "method.name": METHODS,
    "optim.name": ("adam", "sgd"),
    "train.precision": ("32", "bf16", "fp16"),
    "train.groups": ("none", "discovered", "true"),
    "train.group_sampling": ("none", "balanced"),
    "train.group_weighting": ("none", "balanced"),
    "train.groups_signal": ("gce", "erm"),
    "eval.probe": PROBE_PROTOCOLS,
}


def check_setting(condition: bool, key: str, expected: str, value: Any) -> None:
    """Raise a DebiasclError naming ``key`` and the ``expected`` range unless ``condition``.

    Float settings must also be finite: ``inf`` and ``nan`` are out of every range.
    """
    if isinstance(value, float) and not math.isfinite(value):
        expected = f"a finite number {expected}"
    elif condition:
        return
    raise DebiasclError(f"setting '{key}' = {value!r} is out of range: expected {expected}")


def groups_read(train: TrainConfig, trains_on_groups: bool) -> str:
    """The groups (``train.groups``) a training reads: none unless it samples or weights by
    them or its method trains on groups (the setting alone changes nothing)."""
    used = train.group_sampling != "none" or train.group_weighting != "none" or trains_on_groups
    return train.groups if used else "none"


def _check_groups(train: TrainConfig, method: str) -> None:
    """The group settings fit together and the method (SPEC 10)."""
    check_setting(train.groups_epochs >= 1, "train.groups_epochs", ">= 1", train.groups_epochs)
    if train.groups == "discovered" and not train.groups_from and METHODS[method].driver:
        raise DebiasclError(
            f"setting 'train.groups' = 'discovered' with method '{method}', which trains in "
            "stages of its own, needs train.groups_from: a finished run whose discovery gives "
            "the groups"
        )
    if train.groups != "discovered" and train.groups_from is not None:
        raise DebiasclError(
            f"setting 'train.groups_from' is read only with train.groups=discovered "
            f"(train.groups is {train.groups!r})"
        )
    for key in ("group_sampling", "group_weighting"):
        if getattr(train, key) != "none" and train.groups == "none":
            raise DebiasclError(
                f"setting 'train.{key}' = {getattr(train, key)!r} needs groups: set "
                "train.groups to discovered or true"
            )
    if train.group_weighting != "none" and not METHODS[method].reads_sample_weights:
        raise DebiasclError(
            f"setting 'train.group_weighting' = {train.group_weighting!r}: method '{method}' "
            "does not weight its loss per sample (simclr, dcl, hcl, wcl and erm do)"
        )
    if METHODS[method].trains_on_groups and train.groups == "none":
        raise DebiasclError(
            f"method '{method}' trains on groups: set train.groups to discovered (with "
            "train.groups_from) or true"
        )
    if train.group_sampling != "none" and METHODS[method].driver is not None:
        raise DebiasclError(
            f"setting 'train.group_sampling' does not combine with method '{method}', whose "
            "stages choose their own sampling"
        )


def validate(config: Config) -> None:
    """Reject impossible settings with a message naming the key and the allowed range."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise DebiasclError(
                f"setting '{key}' = {value!r}: expected one of {', '.join(allowed)}"
            )
    _ = config.method.options  # the chosen method's options are filled and checked
    _check_optim(config)
    _check_train(config)
    _check_data(config)
    check_setting(config.model.proj_dim >= 1, "model.proj_dim", ">= 1", config.model.proj_dim)
    e = config.eval
    check_setting(e.probe_epochs >= 1, "eval.probe_epochs", ">= 1", e.probe_epochs)
    check_setting(e.probe_lr > 0, "eval.probe_lr", "> 0", e.probe_lr)
    check_setting(e.probe_batch_size >= 1, "eval.probe_batch_size", ">= 1", e.probe_batch_size)
    check_setting(e.knn_k >= 1, "eval.knn_k", ">= 1", e.knn_k)


def _check_optim(config: Config) -> None:
    """The ``optim`` section's ranges."""
    o = config.optim
    check_setting(o.lr > 0, "optim.lr", "> 0", o.lr)
    check_setting(o.lr_b > 0, "optim.lr_b", "> 0", o.lr_b)
    check_setting(o.weight_decay >= 0, "optim.weight_decay", ">= 0", o.weight_decay)
    check_setting(0 <= o.momentum < 1, "optim.momentum", "in [0, 1)", o.momentum)
    check_setting(0 < o.gamma <= 1, "optim.gamma", "in (0, 1]", o.gamma)
    check_setting(
        all(ms > 0 for ms in o.milestones), "optim.milestones", "positive epochs", o.milestones
    )


def _check_train(config: Config) -> None:
    """The ``train`` section's ranges, its group settings and its device."""
    t = config.train
    check_setting(t.epochs >= 1, "train.epochs", ">= 1", t.epochs)
    check_setting(0 <= t.seed <= MAX_SEED, "train.seed", f"in [0, {MAX_SEED}]", t.seed)
    check_setting(t.batch_size >= 2, "train.batch_size", ">= 2", t.batch_size)
    check_setting(t.log_every >= 1, "train.log_every", ">= 1", t.log_every)
    check_setting(t.checkpoint_every >= 1, "train.checkpoint_every", ">= 1", t.checkpoint_every)
    check_setting(t.checkpoint_epochs >= 1, "train.checkpoint_epochs", ">= 1", t.checkpoint_epochs)
    check_setting(
        t.knn_every >= 0, "train.knn_every", ">= 0 (0 turns the monitor off)", t.knn_every
    )
    check_setting(t.knn_k >= 1, "train.knn_k", ">= 1", t.knn_k)
    check_setting(
        t.max_consecutive_skips >= 1, "train.max_consecutive_skips", ">= 1", t.max_consecutive_skips
    )
    _check_groups(t, config.method.name)
    check_setting(
        t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"),
        "train.device",
        "auto, cpu, cuda or cuda:N",
        t.device,
    )


def _check_data(config: Config) -> None:
    """The ``data`` section's ranges."""
    d = config.data
    check_setting(d.noise_std >= 0, "data.noise_std", ">= 0", d.noise_std)
    check_setting(
        0 <= d.corruption_rate < 1, "data.corruption_rate", "in [0, 1)", d.corruption_rate
    )
    check_setting(
        d.num_workers == "auto" or (isinstance(d.num_workers, int) and d.num_workers >= 0),
        "data.num_workers",
        "auto or an integer >= 0",
        d.num_workers,
    )
    check_setting(
        d.cache_dir is None or d.cache_dir.strip() != "",
        "data.cache_dir",
        "a folder, or null for the user cache folder",
        d.cache_dir,
    )
    check_setting(
        d.image_size is None or 8 <= d.image_size <= MAX_IMAGE_SIZE,
        "data.image_size",
        f"in [8, {MAX_IMAGE_SIZE}]",
        d.image_size,
    )
