"""Typed results: one :class:`Evaluation` record per scored head and one :class:`RunResults`
per results file, and the one :func:`headline_metric` rule.

A results file (``results[_<encoder>][_val].json``, written by
:func:`debiascl.evaluate.evaluate_splits`) keeps its on-disk layout: the run's labels (run_dir,
dataset, method, supervised, training_groups, ..., probe_protocol), then one mapping per
evaluation (``probe``, ``knn``, ``main`` naming the headline evaluation, ``probe_<kind>`` for
each group-robust probe with ``discovery`` after the discovered one, ``classifier`` for a
supervised method), then ``results_file``. Each evaluation mapping holds ``protocol`` (a human
description), optional details (``uses_bias_labels``, ``num_groups``, ``weight_decay``,
``head_sha256``) and ``metrics`` (:func:`debiascl.metrics.group_metrics`).

:meth:`RunResults.from_json` reads any such mapping (also the hand-made, partial ones of older
versions and tests: missing labels read as absent) and :meth:`RunResults.to_json` writes it back
key for key and in the writer's order, so a file read and written again is unchanged and the
previous version's tools read what this one writes. The shape is checked, with one error line,
by :func:`debiascl.records.results_problem` before a file is trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from debiascl.errors import DebiasclError
from debiascl.registry import PROBE_GROUP_KINDS, needs_discovery

EVALUATION_KINDS = ("probe", "knn", "classifier")
"""What scored an evaluation: a linear probe on the frozen features, the weighted kNN, or a
supervised method's own classifier."""
GROUP_PROBE_PREFIX = "probe_"
"""A group-robust probe's key in a results file: ``probe_<kind>`` (kind: a probe group kind)."""
WORST_GROUP = "worst_group"
"""The headline metric where the data has bias labels (:func:`headline_metric`)."""
TABLE_FALLBACK = "worst_class"
""":func:`headline_metric`'s fallback in the tables, plots and paired differences."""


def headline_metric(
    metrics: Iterable[Mapping[str, Any]], fallback: str = TABLE_FALLBACK, any_holds: bool = False
) -> str:
    """The metric a set of evaluations is judged by: worst_group where the data has bias
    labels, else ``fallback``.

    The one rule every table, plot, paired difference and ``--select auto`` uses. The tables
    (summary, probes.md, tradeoff.png's y axis, paired differences) fall back to worst_class,
    the worst case that needs no bias label, and take worst_group only when *every* evaluation
    has it (no row without its column). ``--select auto`` (documented: "worst_group where the
    val split has bias labels, else accuracy") passes ``fallback="accuracy"`` and
    ``any_holds=True``: worst_group when *any* val evaluation has it.

    Args:
        metrics: the metrics mappings (:attr:`Evaluation.metrics`, or flat table rows) judged.
        fallback: the metric when they do not have worst_group.
        any_holds: one evaluation with worst_group suffices (default: every one must have it).
    """
    held = [values.get(WORST_GROUP) is not None for values in metrics]
    return WORST_GROUP if (any(held) if any_holds else all(held)) else fallback


@dataclass(frozen=True)
class Evaluation:
    """One scored head of a run on one split: what scored it and its metrics.

    Attributes:
        kind: one of :data:`EVALUATION_KINDS`.
        metrics: :func:`debiascl.metrics.group_metrics`' mapping (accuracies as fractions).
        groups: the probe group kind a group-robust probe balances its loss over (a key of
            :data:`debiascl.registry.PROBE_GROUP_KINDS`); None for the plain probe, kNN,
            classifier.
        protocol: a probe's protocol ("fast" or "authors"); None for kNN and the classifier.
        split: the split scored ("test" or "val"; None where the file does not say).
        encoder: the encoder whose features were scored ("d" or "b"; None where unknown).
        description: the file's ``protocol`` text, e.g. "linear probe (fast) on frozen E_d
            features" (None where the file has none).
        details: the entry's other keys in file order (``uses_bias_labels``, ``num_groups``,
            ``weight_decay``, ``head_sha256`` of a probe).
    """

    kind: str
    metrics: Mapping[str, Any]
    groups: str | None = None
    protocol: str | None = None
    split: str | None = None
    encoder: str | None = None
    description: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The evaluation's key in a results file: probe, knn, classifier or probe_<groups>."""
        return self.kind if self.groups is None else f"{GROUP_PROBE_PREFIX}{self.groups}"

    @classmethod
    def from_json(cls, key: str, entry: Mapping[str, Any], labels: Mapping[str, Any]) -> Evaluation:
        """The record of the results file's evaluation ``key`` (``entry``: its mapping),
        ``labels``: the file's run labels (split, encoder, probe_protocol)."""
        kind, groups = key, None
        if key.startswith(GROUP_PROBE_PREFIX):
            kind, groups = "probe", key.removeprefix(GROUP_PROBE_PREFIX)
        if kind not in EVALUATION_KINDS:
            raise DebiasclError(f"results evaluation '{key}': expected one of {_keys_text()}")
        details = {k: v for k, v in entry.items() if k not in ("protocol", "metrics")}
        return cls(
            kind=kind,
            metrics=entry.get("metrics", {}),
            groups=groups,
            protocol=labels.get("probe_protocol") if kind == "probe" else None,
            split=labels.get("split"),
            encoder=labels.get("encoder"),
            description=entry.get("protocol"),
            details=details,
        )

    @property
    def reads_discovery(self) -> bool:
        """Whether this is the probe of a group kind that reads the run's bias discovery (the
        kind's registry ``discovery`` info; False for other evaluations and for a kind not
        registered here)."""
        return self.groups in PROBE_GROUP_KINDS and needs_discovery((self.groups,))

    def to_json(self) -> dict[str, Any]:
        """The evaluation's mapping in a results file: protocol, details, metrics."""
        entry: dict[str, Any] = {} if self.description is None else {"protocol": self.description}
        return entry | dict(self.details) | {"metrics": dict(self.metrics)}


def _keys_text() -> str:
    return f"{', '.join(EVALUATION_KINDS)} or {GROUP_PROBE_PREFIX}<probe group kind>"


def is_evaluation_key(key: str) -> bool:
    """Whether a results file's top-level ``key`` names an evaluation: probe, knn, classifier
    or probe_<kind> (``probe_protocol`` is a label)."""
    grouped = key.startswith(GROUP_PROBE_PREFIX) and key != "probe_protocol"
    return key in EVALUATION_KINDS or grouped


@dataclass(frozen=True)
class RunResults:
    """The content of one results file: a run's labels, its evaluations and its headline.

    Attributes:
        labels: the run's labels in file order (run_dir, dataset, method, supervised,
            training_groups, bias_labels_in_training, encoder, seed, split, train_step,
            checkpoint_sha256, num_samples, class_names, attribute_names, train_group_counts,
            probe_protocol, and any other top-level key an older version wrote).
        evaluations: every evaluation, in file order.
        main: the key of the headline evaluation (the plain probe for contrastive methods,
            the own classifier for supervised ones).
        discovery: the discovery's settings and quality, with the discovered-groups probe.
        results_file: the path the file was written to (None where it does not say).
    """

    labels: Mapping[str, Any]
    evaluations: tuple[Evaluation, ...]
    main: str
    discovery: Mapping[str, Any] | None = None
    results_file: str | None = None

    def __post_init__(self) -> None:
        """Refuse a headline that is none of the evaluations."""
        if self.main not in {evaluation.key for evaluation in self.evaluations}:
            raise DebiasclError(f"results: 'main' names {self.main!r}, which they do not hold")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunResults:
        """The record of a results file's content (as :func:`json.load` returns it).

        Raises:
            DebiasclError: ``data`` is not a mapping, an evaluation is not one, or ``main``
                names no evaluation of it.
        """
        if not isinstance(data, Mapping):
            raise DebiasclError(f"results: a {type(data).__name__}, expected a mapping")
        evaluations, labels = [], {}
        for key, value in data.items():
            if is_evaluation_key(key):
                if not isinstance(value, Mapping):
                    raise DebiasclError(f"results: '{key}' is not an evaluation mapping")
                evaluations.append(Evaluation.from_json(key, value, data))
            elif key not in ("main", "discovery", "results_file"):
                labels[key] = value
        discovery, results_file = data.get("discovery"), data.get("results_file")
        return cls(labels, tuple(evaluations), data.get("main"), discovery, results_file)

    def to_json(self) -> dict[str, Any]:
        """The results file's content, key for key and in the order the writer has always
        used: labels, probe, knn, main, each group-robust probe (discovery after the first
        that reads it, the discovered one), classifier, results_file."""
        data = dict(self.labels)
        for evaluation in self.evaluations:
            data[evaluation.key] = evaluation.to_json()
            if evaluation.key == "knn":
                data["main"] = self.main
            if self.discovery is not None and evaluation.reads_discovery:
                data.setdefault("discovery", self.discovery)
        data.setdefault("main", self.main)
        if self.discovery is not None:
            data.setdefault("discovery", self.discovery)
        if self.results_file is not None:
            data["results_file"] = self.results_file
        return data

    def get(self, key: str) -> Evaluation | None:
        """The evaluation under ``key`` (probe, knn, classifier, probe_<kind>), or None."""
        return next((e for e in self.evaluations if e.key == key), None)

    @property
    def headline(self) -> Evaluation:
        """The headline evaluation (:attr:`main`)."""
        return next(e for e in self.evaluations if e.key == self.main)

    @property
    def group_probes(self) -> list[Evaluation]:
        """The group-robust probes, in :data:`debiascl.registry.PROBE_GROUP_KINDS` order (kinds
        it does not hold after them, in file order)."""
        probes = [e for e in self.evaluations if e.groups is not None]
        known = {kind: rank for rank, kind in enumerate(PROBE_GROUP_KINDS)}
        return sorted(probes, key=lambda e: known.get(e.groups, len(known)))

    def in_table_order(self) -> list[Evaluation]:
        """The evaluations in the order tables show them: classifier, probe, each
        group-robust probe (:attr:`group_probes`), knn."""
        plain = [self.get(key) for key in ("classifier", "probe")]
        ordered = [e for e in plain if e is not None] + self.group_probes
        return ordered + [e for e in (self.get("knn"),) if e is not None]

    def label(self, key: str, default: Any = None) -> Any:
        """The run label ``key`` (method, dataset, seed, split, ...), or ``default``."""
        return self.labels.get(key, default)

    @property
    def method(self) -> str:
        """The method's name."""
        return self.labels["method"]

    @property
    def seed(self) -> int:
        """The run's seed."""
        return self.labels["seed"]

    @property
    def split(self) -> str:
        """The split scored (files without one are test results, as written before val
        evaluations existed)."""
        return self.labels.get("split", "test")

    @property
    def training_groups(self) -> str:
        """The ``train.groups`` the run trained on (none for files written before it)."""
        return self.labels.get("training_groups", "none")

    @property
    def discovery_quality(self) -> Mapping[str, Any]:
        """The discovery's quality on the train split (empty without a discovery)."""
        return (self.discovery or {}).get("train", {})
