"""Bias discovery on trained runs: score every training sample with a bias signal (SPEC 9).

Signals (``signal``; each uses the data and y only):

- ``knn``: the frozen backbone features h_b of a bias encoder (by default E_b of the run itself,
  a WCL or triplet run; any finished run's encoder with ``bias_run`` / ``encoder``); the train
  split is scored leave-one-out and the val split against the train bank.
- ``erm``: the classifier of a finished (early-stopped) ``erm`` run, as JTT's stage 1: score
  1 - p_y of each un-augmented sample; flagged above the threshold (0.5: for two classes, the
  misclassified samples, JTT's error set).
- ``gce``: the same with a ``gce`` run, a bias-amplified classifier (LfF's biased model).

The default is the bias run's own kind (:func:`default_signal`): its classifier for an erm or gce
run, else its E_b. :func:`discover_run` writes into the run directory:

- ``discovered.csv``: split, index, y, score, flag and the true a (-1 where unknown; never used);
- ``discovery.json``: the settings, the flagged counts per class and, where bias labels exist,
  precision / recall / AUROC against the true bias-conflicting samples and the flagged set's
  composition by true group (train and val);
- ``discovery_scores.png`` and ``discovered_flagged.{png,md,csv,json}``
  (:func:`debiascl.report.write_discovery_report`).

The discovered groups (class x flag) then balance the linear probe of ``debiascl eval
--probe-groups discovered`` without any bias label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from debiascl.choices import DEFAULT_K, DEFAULT_THRESHOLD, SIGNALS
from debiascl.config import DataConfig, load_config
from debiascl.data.base import BiasedDataset
from debiascl.data.sampling import labelled_subset
from debiascl.discovery.scores import (
    SplitDiscovery,
    classifier_scores,
    conflict_scores,
    discovery_quality,
    read_discovery,
    write_discovery,
)
from debiascl.errors import DebiasclError
from debiascl.evaluate import LoadedRun, load_run
from debiascl.features import class_logits
from debiascl.metrics import group_counts
from debiascl.records import file_digest
from debiascl.report import write_discovery_report
from debiascl.rundir import check_finished, checkpoint_path, config_path, discovery_paths

logger = logging.getLogger(__name__)


def default_signal(method: str) -> str:
    """The signal of a bias run of ``method``: its classifier for erm / gce, else knn on E_b."""
    return method if method in SIGNALS else "knn"


def check_signal(signal: str, run: LoadedRun | None = None) -> None:
    """Refuse an unknown signal, or a classifier signal on a ``run`` of another method."""
    if signal not in SIGNALS:
        raise DebiasclError(f"discovery signal '{signal}': expected one of {', '.join(SIGNALS)}")
    if run is not None and signal != "knn" and run.method.name != signal:
        raise DebiasclError(
            f"discovery signal '{signal}' reads the classifier of a finished {signal} run, but "
            f"run '{run.run_dir}' was trained with method '{run.method.name}'; give a {signal} "
            "run as the bias run"
        )


def bias_encoder_key(run: LoadedRun, encoder: str | None) -> str:
    """The encoder of ``run`` that discovery reads: ``encoder``, or E_b when None.

    Raises:
        DebiasclError: the run's method has no such encoder (e.g. simclr has no E_b).
    """
    if encoder is not None:
        return run.encoder_key(encoder)
    if run.method.bias_encoder is None:
        raise DebiasclError(
            f"run '{run.run_dir}' (method '{run.method.name}') has no bias encoder E_b: point "
            "the bias run at a finished wcl or triplet run of the same data (bias_run), or "
            "choose one of its encoders explicitly (encoder)"
        )
    return run.method.bias_encoder


def check_same_data(data: DataConfig, user: str, bias_dir: Path, role: str = "bias run") -> None:
    """Refuse a run ``bias_dir`` trained on other data than ``data`` (its samples would differ).

    Args:
        data: the data of ``user`` (e.g. "run 'runs/simclr'").
        user: who needs the other run, for the message.
        bias_dir: the other run (its ``config.yaml`` is read).
        role: what the other run is to ``user``, for the message ("bias run", "groups_from run").
    """
    bias_data = load_config(config_path(bias_dir)).data
    mine = (data.name, dict(data.options))
    theirs = (bias_data.name, dict(bias_data.options))
    if mine != theirs:
        raise DebiasclError(
            f"{role} '{bias_dir}' was trained on {theirs[0]} {theirs[1]}, but {user} on "
            f"{mine[0]} {mine[1]}: the {role} must use the same data set and data options"
        )


def _split_discovery(
    run: LoadedRun,
    key: str,
    split: str,
    k: int,
    threshold: float,
    bank: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[SplitDiscovery, torch.Tensor]:
    """Scores of ``split`` under encoder ``key`` (signal knn) and its (n, F) features.

    ``bank`` None scores the split leave-one-out against itself (train); else against the
    given (features, classes) of the train split (val).
    """
    features, y, a, index = run.features(split, key)
    if bank is None:
        scores = conflict_scores(features, y, k)
    else:
        bank_features, bank_y = bank
        scores = conflict_scores(bank_features, bank_y, k, queries=features, query_y=y)
    return SplitDiscovery(index, y, a, scores, scores > threshold), features


def _classifier_discovery(run: LoadedRun, split: str, threshold: float) -> SplitDiscovery:
    """Scores 1 - p_y of ``split`` under the run's own classifier (signals erm, gce)."""
    logits, y, a, index = class_logits(
        run.method, labelled_subset(run.splits[split]), run.prepare, run.device
    )
    scores = classifier_scores(logits, y)
    return SplitDiscovery(index, y, a, scores, scores > threshold)


def _discover_splits(
    run: LoadedRun, signal: str, encoder: str | None, k: int, threshold: float
) -> tuple[dict[str, SplitDiscovery], str | None]:
    """The train (and, when not empty, val) discovery of ``signal``; the encoder knn read."""
    has_val = len(run.splits["val"]) > 0
    if signal != "knn":
        splits = {"train": _classifier_discovery(run, "train", threshold)}
        if has_val:
            splits["val"] = _classifier_discovery(run, "val", threshold)
        return splits, None
    key = bias_encoder_key(run, encoder)
    train, train_features = _split_discovery(run, key, "train", k, threshold, None)
    splits = {"train": train}
    if has_val:
        bank = (train_features, train.y)
        splits["val"] = _split_discovery(run, key, "val", k, threshold, bank)[0]
    return splits, key


def _rounded(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


@dataclass(frozen=True)
class FoundBias:
    """What a bias encoder discovered, ready to be recorded into any run directory whose run
    shares the bias run's data (:func:`record_discovery`).

    Attributes:
        splits: "train" (and "val" when not empty) -> its scores and flags.
        summary: ``discovery.json``'s content but ``run_dir``.
        train_set: the bias run's training split (the plots show its samples).
        title: names the bias run and encoder in the plots.
    """

    splits: dict[str, SplitDiscovery]
    summary: dict[str, Any]
    train_set: BiasedDataset
    title: str


def find_bias(
    bias: LoadedRun, encoder: str | None, k: int, threshold: float, signal: str | None = None
) -> FoundBias:
    """Score the train split of ``bias`` (leave-one-out for knn) and its val split (against
    the train bank for knn).

    Args:
        bias: the loaded bias run (with its train and val splits); its features are shared.
        encoder: its encoder for knn ("d" or "b"; None: E_b).
        k: neighbours per sample (knn).
        threshold: flag samples whose score exceeds it, in [0, 1) (checked by the callers).
        signal: one of :data:`SIGNALS`; None: :func:`default_signal` of the bias run's method.
    """
    signal = default_signal(bias.method.name) if signal is None else signal
    check_signal(signal, bias)
    splits, key = _discover_splits(bias, signal, encoder, k, threshold)
    train = splits["train"]
    dataset = bias.splits["train"]
    counts = (
        group_counts(train.y, train.a, dataset.num_classes, dataset.num_attributes)
        if dataset.num_attributes > 0 and bool((train.a >= 0).any())
        else None
    )
    summary: dict[str, Any] = {
        "bias_run": str(bias.run_dir.resolve()),  # read back from any working directory
        "bias_checkpoint_sha256": file_digest(checkpoint_path(bias.run_dir)),
        "bias_method": bias.method.name,
        "signal": signal,
        "encoder": key,
        "k": k if signal == "knn" else None,
        "threshold": threshold,
        "uses_bias_labels": False,
        "flagged_by_class": {
            name: int(train.flag[train.y == label].sum())
            for label, name in enumerate(dataset.class_names)
        },
    }
    for split, part in splits.items():
        summary[split] = {"num_samples": int(part.y.numel())} | discovery_quality(
            part.score, part.flag, part.y, part.a, counts
        )
    title = f"{_reader(key, signal)} of {bias.method.name} run {bias.run_dir.name}"
    return FoundBias(splits, summary, dataset, title)


def _reader(key: str | None, signal: str) -> str:
    """What discovered: E_<key> for knn, else the signal's classifier."""
    return f"E_{key}" if key else f"the {signal} classifier"


def record_discovery(
    run_dir: Path, found: FoundBias, plots: bool
) -> tuple[dict[str, Any], list[Path]]:
    """Write ``found`` into ``run_dir`` (discovered.csv, discovery.json, and the plots when
    ``plots``) and log what it flagged.

    Returns:
        The summary written to ``discovery.json`` and the plots written.
    """
    summary = {"run_dir": str(Path(run_dir).resolve()), **found.summary}
    write_discovery(run_dir, found.splits, summary)
    train, quality = found.splits["train"], summary["train"]
    logger.info(
        "discovery with %s of %s: %d of %d training samples flagged%s",
        _reader(summary["encoder"], summary["signal"]),
        summary["bias_run"],
        int(train.flag.sum()),
        train.flag.numel(),
        ""
        if not quality.get("bias_labels")
        else " (precision {}, recall {}, AUROC {})".format(
            *(_rounded(quality[key]) for key in ("precision", "recall", "auroc"))
        ),
    )
    if not plots:
        return summary, []
    written = write_discovery_report(
        found.train_set,
        train.index,
        train.score,
        train.flag,
        summary["threshold"],
        run_dir,
        found.title,
    )
    return summary, written


def check_bias_run(run_dir: Path, bias_run: str | Path | None) -> Path:
    """The directory of the bias run of ``run_dir`` (itself when None).

    Raises:
        DebiasclError: the bias run is not finished, or was trained on other data.
    """
    bias_dir = run_dir if bias_run is None else check_finished(bias_run)
    if bias_dir != run_dir:
        check_same_data(load_config(config_path(run_dir)).data, f"run '{run_dir}'", bias_dir)
    return bias_dir


def discover_run(
    run_dir: str | Path,
    bias_run: str | Path | None = None,
    encoder: str | None = None,
    k: int = DEFAULT_K,
    threshold: float = DEFAULT_THRESHOLD,
    device: str | torch.device = "cpu",
    plots: bool = True,
    signal: str | None = None,
) -> dict[str, Any]:
    """Discover the bias-conflicting training samples of a finished run without bias labels.

    Args:
        run_dir: the finished run whose probe will use the discovered groups (files go here).
        bias_run: the finished run whose encoder or classifier discovers (default: ``run_dir``).
        encoder: that run's encoder ("d" or "b"; default E_b; signal knn only).
        k: neighbours per sample (signal knn only).
        threshold: flag samples whose score exceeds it, in [0, 1).
        device: where to run the encoder.
        plots: also write the score histograms and the flagged samples.
        signal: one of :data:`SIGNALS`; None: :func:`default_signal` of the bias run's method.

    Returns:
        The summary written to ``discovery.json``.
    """
    if not 0.0 <= threshold < 1.0:
        raise DebiasclError(f"threshold = {threshold}: expected a number in [0, 1)")
    if signal is not None:
        check_signal(signal)
    run_dir = check_finished(run_dir)
    bias_dir = check_bias_run(run_dir, bias_run)
    bias = load_run(bias_dir, device, splits=("train", "val"))
    found = find_bias(bias, encoder, k, threshold, signal)
    return record_discovery(run_dir, found, plots)[0]


def ensure_discovery(
    run_dir: str | Path,
    bias_run: str | Path | None = None,
    k: int | None = None,
    threshold: float | None = None,
    device: str | torch.device = "cpu",
    plots: bool = True,
) -> None:
    """Discover in ``run_dir`` unless a discovery is there and no setting was asked for.

    A run directory that already holds a sound discovery (``debiascl discover``) keeps it when
    ``bias_run``, ``k`` and ``threshold`` are all None; otherwise :func:`discover_run` runs with
    the given settings (the defaults for those left None). A discovery that cannot be reused
    (:func:`_stored_discovery`: malformed or hand-edited files, made for another run, or with a
    bias run trained again since) is made again with its recorded settings, with a log line.
    """
    asked = (bias_run, k, threshold) != (None, None, None)
    summary: dict[str, Any] = {}
    if not asked and discovery_paths(run_dir)[0].is_file():
        summary, problem = _stored_discovery(Path(run_dir))
        if problem is None:
            return
        logger.warning("%s; discovering again", problem)
    discover_run(
        run_dir,
        bias_run=summary.get("bias_run") if bias_run is None else bias_run,
        encoder=summary.get("encoder"),
        k=(summary.get("k") or DEFAULT_K) if k is None else k,
        threshold=summary.get("threshold", DEFAULT_THRESHOLD) if threshold is None else threshold,
        device=device,
        plots=plots,
        signal=summary.get("signal"),
    )


def _stored_discovery(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """The summary of ``run_dir``'s discovery (empty when unreadable) and why it cannot be
    reused (None when it can): malformed or edited files (:func:`read_discovery`), a discovery
    made for another run directory, or with a bias run whose checkpoint changed since."""
    try:
        _, summary = read_discovery(run_dir)
    except DebiasclError as error:
        return {}, str(error).rpartition("; run `")[0] or str(error)
    summary_path = discovery_paths(run_dir)[1]
    if Path(summary["run_dir"]).resolve() != run_dir.resolve():
        return {}, f"'{summary_path}' was made for run '{summary['run_dir']}'"
    bias_dir = Path(summary["bias_run"])
    digest = summary.get("bias_checkpoint_sha256")
    if not checkpoint_path(bias_dir).is_file():
        return {}, f"the bias run '{bias_dir}' of '{summary_path}' has no checkpoint"
    if digest is not None and digest != file_digest(checkpoint_path(bias_dir)):
        return summary, f"the bias run '{bias_dir}' of '{summary_path}' was trained again"
    return summary, None
