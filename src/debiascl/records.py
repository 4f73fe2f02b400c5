"""Readers of the files debiascl writes and later reads back: each checks the shape it expects.

Every reader raises one :class:`~debiascl.errors.DebiasclError` that names the file, what is
wrong with it and the command that writes it again (a missing, truncated, empty, NUL-filled,
non-UTF-8 or non-JSON file, or JSON of another shape); the callers of derived files (results,
discoveries) catch it and compute the file again with a log line instead. Files here:

- ``results[_<encoder>][_val].json`` (:func:`read_json`, then :func:`results_problem`;
  :func:`debiascl.compare.finished_results` evaluates again on any problem);
- ``discovery.json`` and ``discovered.csv`` (:func:`debiascl.discovery.read_discovery`, which
  uses :func:`read_json` and :func:`discovery_summary_problem`);
- the decoded-image cache's manifest (:mod:`debiascl.data.cache`, which rebuilds on any problem);
- ``error_set.json`` (:mod:`debiascl.jtt`, recomputed from stage 1 on any problem);
- ``metrics.jsonl`` (:func:`read_metrics`); ``config.yaml`` is read by
  :func:`debiascl.config.load_config`.

Results and discoveries also record what they were computed from (the run directory, seed and
the sha256 of the checkpoint, :func:`file_digest`), so that a file copied from another run is
recomputed rather than reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from debiascl.choices import SIGNALS
from debiascl.errors import DebiasclError
from debiascl.results import is_evaluation_key

DIGEST_CHUNK = 1 << 22
"""Bytes read at a time by :func:`file_digest`."""
RESULTS_TEXT_FIELDS = ("dataset", "method", "encoder", "split", "probe_protocol", "main")
NUMBER_MAPS = ("per_class", "per_group", "group_sizes")
"""Metrics that map a class or group name to a number."""


def file_digest(path: str | Path) -> str:
    """The sha256 (hex) of a file's bytes, read in chunks (sha256 ran at 1.2 GB/s on this
    project's CPU: about 0.1 s for a 134 MB checkpoint)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        while chunk := file.read(DIGEST_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_text(path: Path, what: str, redo: str, empty_ok: bool = False) -> str:
    """The UTF-8 text of ``path``, or one DebiasclError naming ``what`` it is and ``redo``.

    Raises:
        DebiasclError: the file is missing, unreadable, not UTF-8, empty (unless ``empty_ok``)
            or holds NUL bytes.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DebiasclError(f"{what} '{path}' is missing; {redo}") from None
    except UnicodeDecodeError as error:
        raise DebiasclError(
            f"{what} '{path}' is not UTF-8 text (byte {error.start}); {redo}"
        ) from None
    except OSError as error:
        raise DebiasclError(f"{what} '{path}' cannot be read: {error.strerror}; {redo}") from None
    if not empty_ok and not text.strip():
        raise DebiasclError(f"{what} '{path}' is empty; {redo}")
    if "\x00" in text:
        raise DebiasclError(f"{what} '{path}' holds NUL bytes (damaged); {redo}")
    return text


def read_json(path: Path, what: str, redo: str) -> Any:
    """The JSON value in ``path`` (:func:`read_text`, then parsed).

    Raises:
        DebiasclError: as :func:`read_text`, or the text is not JSON (with its line and column).
    """
    text = read_text(path, what, redo)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DebiasclError(
            f"{what} '{path}' is not valid JSON (line {error.lineno}, column {error.colno}: "
            f"{error.msg}); {redo}"
        ) from None
    except RecursionError:
        raise DebiasclError(f"{what} '{path}' is nested too deeply to be read; {redo}") from None


def is_number(value: Any) -> bool:
    """A finite or NaN int/float that is not a bool (JSON numbers as written by debiascl)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _metrics_problem(metrics: Any, where: str) -> str | None:
    """What is wrong with a :func:`debiascl.metrics.group_metrics` dict, or None."""
    if not isinstance(metrics, dict):
        return f"{where}.metrics is a {type(metrics).__name__}, not a mapping"
    for key, value in metrics.items():
        if key in NUMBER_MAPS:
            if not isinstance(value, dict) or not all(
                v is None or is_number(v) for v in value.values()
            ):
                return f"{where}.metrics.{key} is not a mapping of names to numbers"
        elif key.startswith("absent_"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return f"{where}.metrics.{key} is not a list of names"
        elif key.endswith("_name"):
            if not isinstance(value, str):
                return f"{where}.metrics.{key} is not a name"
        elif value is not None and not is_number(value):
            return f"{where}.metrics.{key} is {value!r}, not a number"
    return None


def results_problem(results: Any) -> str | None:
    """What is wrong with the shape of a results file's content, or None when it is sound.

    Sound: a mapping with the text labels (:data:`RESULTS_TEXT_FIELDS`), an integer ``seed``,
    ``main`` naming one of its evaluations, and each evaluation (probe, knn, classifier,
    probe_<kind>: :func:`debiascl.results.is_evaluation_key`) a mapping whose ``metrics`` hold
    numbers (or None), names, lists of names and per-class / per-group mappings of numbers.
    """
    if not isinstance(results, dict):
        return f"it holds a JSON {type(results).__name__}, not a results mapping"
    for key in RESULTS_TEXT_FIELDS:
        if not isinstance(results.get(key), str):
            return f"'{key}' is {results.get(key)!r}, expected text"
    if not isinstance(results.get("seed"), int) or isinstance(results.get("seed"), bool):
        return f"'seed' is {results.get('seed')!r}, expected an integer"
    if not is_evaluation_key(results["main"]) or results["main"] not in results:
        return f"'main' names {results['main']!r}, which it does not hold"
    for key, evaluation in results.items():
        if not is_evaluation_key(key):
            continue
        if not isinstance(evaluation, dict) or not isinstance(evaluation.get("protocol"), str):
            return f"'{key}' is not an evaluation mapping with a protocol"
        problem = _metrics_problem(evaluation.get("metrics"), key)
        if problem is not None:
            return problem
    discovery = results.get("discovery", {})
    quality = discovery.get("train", {}) if isinstance(discovery, dict) else None
    if not isinstance(quality, dict) or (
        quality.get("bias_labels")
        and not all(
            quality.get(key) is None or is_number(quality.get(key))
            for key in ("precision", "recall", "auroc")
        )
    ):
        return "'discovery' is not a discovery summary with numbers for its train quality"
    return None


def _quality_problem(quality: Any, split: str) -> str | None:
    """What is wrong with a split's discovery quality (``discovery.json`` [split]), or None."""
    if not isinstance(quality, dict):
        return f"'{split}' is a {type(quality).__name__}, not a mapping"
    if not isinstance(quality.get("num_samples"), int):
        return f"'{split}.num_samples' is {quality.get('num_samples')!r}, expected an integer"
    if quality.get("bias_labels"):
        for key in ("precision", "recall", "auroc"):
            if key not in quality:
                return f"'{split}' has no '{key}'"
            if quality[key] is not None and not is_number(quality[key]):
                return f"'{split}.{key}' is {quality[key]!r}, not a number"
    return None


def discovery_summary_problem(summary: Any) -> str | None:
    """What is wrong with the shape of ``discovery.json``'s content, or None when it is sound."""
    if not isinstance(summary, dict):
        return f"it holds a JSON {type(summary).__name__}, not a mapping"
    threshold = summary.get("threshold")
    if not is_number(threshold) or not 0.0 <= threshold < 1.0:
        return f"'threshold' is {threshold!r}, expected a number in [0, 1)"
    signal = summary.get("signal", "knn")  # files written before the signals were knn's
    if signal not in SIGNALS:
        return f"'signal' is {signal!r}, expected one of {', '.join(SIGNALS)}"
    knn = signal == "knn"
    if knn and (not isinstance(summary.get("k"), int) or isinstance(summary.get("k"), bool)):
        return f"'k' is {summary.get('k')!r}, expected an integer"
    for key in ("run_dir", "bias_run", *(("encoder",) if knn else ())):
        if not isinstance(summary.get(key), str):
            return f"'{key}' is {summary.get(key)!r}, expected text"
    flagged = summary.get("flagged_by_class")
    if not isinstance(flagged, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in flagged.values()
    ):
        return "'flagged_by_class' is not a mapping of class names to counts"
    for split in ("train", "val"):
        if split in summary or split == "train":
            problem = _quality_problem(summary.get(split), split)
            if problem is not None:
                return problem
    return None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file: one JSON object per line (blank lines skipped).

    A torn last line (a kill mid-write) is dropped; ``--resume`` repairs it in the file.

    Raises:
        DebiasclError: a line before the last that is not a JSON object, naming its number.
    """
    path = Path(path)
    redo = "it is rewritten by training the run again (debiascl train ... --resume)"
    if path.is_file() and path.stat().st_size == 0:
        return []
    text = read_text(path, "training log", redo)
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                break  # torn last record
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
            raise DebiasclError(
                f"training log '{path}' line {number} is not a JSON record with a 'kind'; {redo}"
            )
        if not all(
            value is None or is_number(value) or isinstance(value, str | dict | list)
            for value in record.values()
        ):
            raise DebiasclError(f"training log '{path}' line {number} holds a malformed value")
        records.append(record)
    return records
