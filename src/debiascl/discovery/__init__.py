"""Bias discovery without bias labels (SPEC section 9), by layer.

- :mod:`~debiascl.discovery.scores`: pure scoring (kNN conflict scores, classifier scores),
  balanced weights, the discovery's quality, and the two files a discovery
  writes into a run directory (``discovered.csv``, ``discovery.json``); its public names are
  re-exported here (``from debiascl.discovery import read_discovery``);
- :mod:`~debiascl.discovery.run`: the per-run pipeline (a trained run's bias signal -> those
  files and the report), which the public :mod:`debiascl.discover` (``debiascl.discover(run)``,
  ``debiascl discover``) exposes;
- :mod:`~debiascl.discovery.stage`: the stage-1 run of ``train.groups=discovered`` without
  ``train.groups_from``.
"""

from debiascl.discovery.scores import (
    CSV_COLUMNS,
    DEFAULT_CHUNK_SIZE,
    FLAG_TOLERANCE,
    SplitDiscovery,
    balanced_weights,
    classifier_scores,
    conflict_scores,
    discovery_quality,
    nearest_neighbours,
    read_discovery,
    write_discovery,
)

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_CHUNK_SIZE",
    "FLAG_TOLERANCE",
    "SplitDiscovery",
    "balanced_weights",
    "classifier_scores",
    "conflict_scores",
    "discovery_quality",
    "nearest_neighbours",
    "read_discovery",
    "write_discovery",
]
