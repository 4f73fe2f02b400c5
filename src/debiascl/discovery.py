"""Bias discovery without bias labels, and group-balanced probe weights (SPEC section 9).

A bias encoder (WCL's or the triplet baseline's E_b) groups samples by the bias, so the class
labels of a bias-conflicting sample's nearest neighbours in E_b's representation mostly disagree
with its own. For every training sample i:

    s_i = (1/k) * #{ j in kNN_b(i) : y_j != y_i }      (cosine kNN, leave-one-out)
    f_i = 1 if s_i > threshold (default 0.5)

The default threshold 0.5 flags a sample when most of its neighbours carry another class: with
k = 10 that is 6 or more of 10. It needs no tuning and no bias label, and it is where a
sample's neighbourhood switches from "its own class" to "another class"; lower it to trade
precision for recall. Val samples are scored against the train split's bank (they are not in it,
so nothing is left out), which gives val its discovered groups for model selection.

Only class labels y are used, the labels a linear probe uses anyway; the bias attribute a only
grades the discovery (precision, recall, AUROC of the flag and score against the true
bias-conflicting samples, :func:`discovery_quality`) where it is known.

This module is pure: tensors in, tensors out, plus the two files a discovery writes into a run
directory (``discovered.csv``, ``discovery.json``); :mod:`debiascl.discover` runs it on a trained
run.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from debiascl.atomic import write_json, write_text_atomic
from debiascl.choices import DEFAULT_K
from debiascl.errors import DebiasclError
from debiascl.metrics import group_ids, group_name, majority_aligned
from debiascl.records import discovery_summary_problem, read_json, read_text
from debiascl.rundir import SCORES_FILE, discovery_paths

DEFAULT_CHUNK_SIZE = 4096
"""Queries and bank rows per block of the exact kNN: memory is O(chunk^2), not O(n^2)."""
CSV_COLUMNS = ("split", "index", "y", "score", "flag", "a")
FLAG_TOLERANCE = 1e-5
"""Scores this close to the threshold may round across it in discovered.csv's 6 digits."""


@torch.no_grad()
def nearest_neighbours(
    bank: torch.Tensor,
    k: int,
    queries: torch.Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """Exact cosine k-nearest neighbours, computed block by block.

    Args:
        bank: (n, F) features searched.
        k: neighbours per query.
        queries: (m, F) features whose neighbours are sought; None means the bank itself,
            leave-one-out (a sample is never its own neighbour).
        chunk_size: rows of queries and of the bank per block; each block's similarities are
            merged into a running top-k, so peak memory is O(chunk_size * (chunk_size + k)).

    Returns:
        (m, k) int64 bank positions, most similar first.
    """
    leave_one_out = queries is None
    available = bank.shape[0] - (1 if leave_one_out else 0)
    if k < 1 or k > available:
        raise DebiasclError(
            f"k = {k} neighbours: expected 1 <= k <= {available} "
            f"({bank.shape[0]} samples{', leave-one-out' if leave_one_out else ''})"
        )
    bank = F.normalize(bank.float(), dim=1)
    queries = bank if queries is None else F.normalize(queries.float(), dim=1)
    result = torch.empty(queries.shape[0], k, dtype=torch.long)
    for q_start in range(0, queries.shape[0], chunk_size):
        block = queries[q_start : q_start + chunk_size]
        best_sim = block.new_empty(block.shape[0], 0)
        best_pos = torch.empty(block.shape[0], 0, dtype=torch.long, device=block.device)
        for b_start in range(0, bank.shape[0], chunk_size):
            similarities = block @ bank[b_start : b_start + chunk_size].T
            positions = torch.arange(
                b_start, b_start + similarities.shape[1], device=block.device
            ).expand_as(similarities)
            if leave_one_out:
                own = torch.arange(q_start, q_start + block.shape[0], device=block.device)
                similarities = similarities.masked_fill(positions == own[:, None], float("-inf"))
            candidates = torch.cat([best_sim, similarities], dim=1)
            top = candidates.topk(min(k, candidates.shape[1]), dim=1)
            best_sim = top.values
            best_pos = torch.cat([best_pos, positions], dim=1).gather(1, top.indices)
        result[q_start : q_start + block.shape[0]] = best_pos.cpu()
    return result


def conflict_scores(
    bank: torch.Tensor,
    bank_y: torch.Tensor,
    k: int = DEFAULT_K,
    queries: torch.Tensor | None = None,
    query_y: torch.Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """The bias-conflict score s of SPEC 9: the share of a sample's k neighbours of another class.

    Args:
        bank: (n, F) bias-encoder features of the train split.
        bank_y: (n,) their classes.
        k: neighbours (cosine, exact).
        queries, query_y: (m, F) features and (m,) classes to score against the bank; None
            scores the bank itself, leave-one-out.
        chunk_size: see :func:`nearest_neighbours`.

    Returns:
        (m,) float32 scores in [0, 1] (multiples of 1/k).
    """
    if (queries is None) != (query_y is None):
        raise ValueError("give queries and query_y together")
    own_y = bank_y if query_y is None else query_y
    neighbours = nearest_neighbours(bank, k, queries, chunk_size)
    return (bank_y.cpu()[neighbours] != own_y.cpu()[:, None]).float().mean(dim=1)


def classifier_scores(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The bias-conflict score of a classifier signal: 1 - p_y, one minus the softmax
    probability of each sample's own class (the order of its cross-entropy).

    A classifier that leans on the bias (early-stopped ERM, as JTT's stage 1; GCE, as LfF's
    biased model) gets the bias-conflicting samples wrong, so their score is high; with two
    classes, score > 0.5 is exactly "misclassified", JTT's error set.

    Args:
        logits: (n, C) class logits; y: (n,) classes.

    Returns:
        (n,) float32 scores in [0, 1].
    """
    probabilities = logits.float().softmax(dim=1)
    return 1 - probabilities.gather(1, y.long()[:, None]).squeeze(1)


def balanced_weights(groups: torch.Tensor) -> torch.Tensor:
    """Per-sample loss weights that give every group the same total weight (SPEC 9).

    Args:
        groups: (n,) int64 group id of each sample (any integers).

    Returns:
        (n,) float32 w_i = n / (G * n_{g_i}), G the number of groups present; mean 1, and every
        group's weights sum to n / G.
    """
    _, inverse, sizes = torch.unique(groups, return_inverse=True, return_counts=True)
    return (groups.numel() / (sizes.numel() * sizes[inverse].float())).float()


def _fraction(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def discovery_quality(
    scores: torch.Tensor,
    flags: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    train_group_counts: np.ndarray | None,
) -> dict[str, Any]:
    """How well the flags and scores find the true bias-conflicting samples of a split.

    A sample is bias-conflicting when its attribute is not its class's majority attribute in
    the training split (:func:`debiascl.metrics.majority_aligned`, the project's one definition).

    Args:
        scores: (n,) conflict scores; flags: (n,) bool.
        y: (n,) classes; a: (n,) bias attributes, -1 where unknown.
        train_group_counts: (C, A) training samples per group
            (:func:`debiascl.metrics.group_counts`); None when the data has no bias attribute.

    Returns:
        ``{"bias_labels": False}`` without known attributes; else ``bias_labels``, the number of
        ``conflicting`` samples, ``precision`` and ``recall`` of the flag, ``auroc`` of the score
        (None where undefined: no flag, no conflicting sample, or only one kind), and
        ``flagged_by_group`` / ``size_by_group``, counts per true group (y, a).
    """
    y_np, a_np = y.cpu().numpy(), a.cpu().numpy()
    flags_np, scores_np = flags.cpu().numpy().astype(bool), scores.cpu().numpy()
    if train_group_counts is None or not (a_np >= 0).any():
        return {"bias_labels": False}
    num_classes, num_attributes = np.asarray(train_group_counts).shape
    aligned, known = majority_aligned(y_np, a_np, train_group_counts)
    conflicting = known & ~aligned
    hits = int((flags_np & conflicting).sum())
    labels_known = conflicting[known]
    auroc = None
    if 0 < labels_known.sum() < labels_known.size:
        auroc = float(roc_auc_score(labels_known, scores_np[known]))
    flagged_by_group: dict[str, int] = {}
    size_by_group: dict[str, int] = {}
    for label in range(num_classes):
        for attribute in range(num_attributes):
            members = (y_np == label) & (a_np == attribute)
            name = group_name(label, attribute)
            size_by_group[name] = int(members.sum())
            flagged_by_group[name] = int((members & flags_np).sum())
    return {
        "bias_labels": True,
        "conflicting": int(conflicting.sum()),
        "flagged": int(flags_np.sum()),
        "precision": _fraction(hits, int((flags_np & known).sum())),
        "recall": _fraction(hits, int(conflicting.sum())),
        "auroc": auroc,
        "flagged_by_group": flagged_by_group,
        "size_by_group": size_by_group,
    }


@dataclass
class SplitDiscovery:
    """The discovery of one split, rows in the order of the split's labelled samples.

    Attributes:
        index: (n,) dataset index of each sample.
        y: (n,) class; a: (n,) bias attribute (-1 where unknown; never used to discover).
        score: (n,) float32 conflict score; flag: (n,) bool, score > threshold.
    """

    index: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor
    score: torch.Tensor
    flag: torch.Tensor

    @property
    def groups(self) -> torch.Tensor:
        """(n,) int64 discovered group id of each sample: g = 2 * class + flag
        (:func:`debiascl.metrics.group_ids`)."""
        return group_ids(self.y, self.flag, 2)


def write_discovery(
    run_dir: str | Path, splits: dict[str, SplitDiscovery], summary: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``discovered.csv`` (one row per sample of every split) and ``discovery.json``.

    Returns:
        The two paths.
    """
    lines = [",".join(CSV_COLUMNS)]
    for split, part in splits.items():
        for index, y, score, flag, a in zip(
            part.index.tolist(),
            part.y.tolist(),
            part.score.tolist(),
            part.flag.tolist(),
            part.a.tolist(),
            strict=True,
        ):
            lines.append(f"{split},{index},{y},{score:.6g},{int(flag)},{a}")
    scores_path, summary_path = discovery_paths(run_dir)
    write_text_atomic(scores_path, "\n".join(lines) + "\n")
    write_json(summary_path, summary)
    return scores_path, summary_path


def read_discovery(run_dir: str | Path) -> tuple[dict[str, SplitDiscovery], dict[str, Any]]:
    """Read what :func:`write_discovery` wrote into ``run_dir``, checked.

    The summary must have :func:`debiascl.records.discovery_summary_problem`'s shape, and every
    row of the scores its columns, an integer index, class and bias value, a score in [0, 1] and
    a flag of 0 or 1 that agrees with its score and the summary's threshold (score > threshold),
    and the train flags must add up to the summary's ``flagged_by_class``: a hand-edited file
    is refused, not used.

    Raises:
        DebiasclError: the files are missing, malformed or disagree (the message names the file
            and says how to redo them).
    """
    scores_path, summary_path = discovery_paths(run_dir)
    redo = f"run `debiascl discover {run_dir}` again"
    if not scores_path.is_file() or not summary_path.is_file():
        raise DebiasclError(f"run '{run_dir}' has no bias discovery ({SCORES_FILE}); {redo}")
    summary = read_json(summary_path, "bias discovery summary", redo)
    problem = discovery_summary_problem(summary)
    if problem is not None:
        raise DebiasclError(
            f"bias discovery summary '{summary_path}' is malformed: {problem}; {redo}"
        )
    columns = _read_scores(scores_path, read_text(scores_path, "bias discovery", redo), redo)
    splits = {
        split: SplitDiscovery(
            index=torch.tensor(part["index"], dtype=torch.long),
            y=torch.tensor(part["y"], dtype=torch.long),
            a=torch.tensor(part["a"], dtype=torch.long),
            score=torch.tensor(part["score"], dtype=torch.float32),
            flag=torch.tensor(part["flag"], dtype=torch.bool),
        )
        for split, part in columns.items()
    }
    _check_flags(splits, summary, scores_path, summary_path, redo)
    return splits, summary


def _read_scores(path: Path, text: str, redo: str) -> dict[str, dict[str, list]]:
    """``discovered.csv``'s columns per split: index, y, a (int), score (float), flag (0/1)."""
    columns: dict[str, dict[str, list]] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or tuple(header) != CSV_COLUMNS:
            raise ValueError(f"columns {header}, expected {list(CSV_COLUMNS)}")
        for row in reader:
            if len(row) != len(CSV_COLUMNS):
                raise ValueError(f"{len(row)} fields, expected {len(CSV_COLUMNS)}")
            split, index, y, score, flag, a = row
            if split not in ("train", "val"):
                raise ValueError(f"split {split!r}, expected train or val")
            value = float(score)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"score {score!r}, expected a number in [0, 1]")
            if flag not in ("0", "1"):
                raise ValueError(f"flag {flag!r}, expected 0 or 1")
            part = columns.setdefault(split, {key: [] for key in CSV_COLUMNS[1:]})
            for key, item in (("index", index), ("y", y), ("a", a), ("flag", flag)):
                part[key].append(int(item))
            part["score"].append(value)
    except (ValueError, csv.Error) as error:
        raise DebiasclError(
            f"bias discovery '{path}' line {reader.line_num} is malformed ({error}); {redo}"
        ) from None
    if "train" not in columns:
        raise DebiasclError(f"bias discovery '{path}' has no train rows; {redo}")
    return columns


def _check_flags(
    splits: dict[str, SplitDiscovery],
    summary: dict[str, Any],
    scores_path: Path,
    summary_path: Path,
    redo: str,
) -> None:
    """Refuse flags that disagree with their scores and the threshold, or with the summary."""
    threshold = summary["threshold"]
    for split, part in splits.items():
        expected = part.score > threshold  # float32 scores, as discover_run compares them
        undecided = (part.score.double() - threshold).abs() < FLAG_TOLERANCE  # 6 digits written
        wrong = int(((part.flag != expected) & ~undecided).sum())
        if wrong:
            raise DebiasclError(
                f"bias discovery '{scores_path}': {wrong} {split} flags disagree with their "
                f"scores and the threshold {threshold} of '{summary_path}' (edited by hand?); "
                f"{redo}"
            )
    flagged = int(splits["train"].flag.sum())
    if flagged != sum(summary["flagged_by_class"].values()):
        raise DebiasclError(
            f"bias discovery '{scores_path}' flags {flagged} train samples, but "
            f"'{summary_path}' counts {sum(summary['flagged_by_class'].values())}; {redo}"
        )
