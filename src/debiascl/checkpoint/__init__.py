"""Training checkpoints, in three layers.

- :mod:`~debiascl.checkpoint.file_format`: the file itself (its entries, atomic writes,
  checksums, safe loading and validation, whether its weights fit a model);
- :mod:`~debiascl.checkpoint.rng` and :mod:`~debiascl.checkpoint.resume`: the resume policy
  (seeding and RNG state, the training counters, which settings a resumed run may change);
- :mod:`~debiascl.checkpoint.rebuild`: a trained method rebuilt from a run directory.

The names below are re-exported so that callers import them from ``debiascl.checkpoint``.
"""

from debiascl.checkpoint.file_format import (
    FORMAT,
    REQUIRED_KEYS,
    VERSION,
    check_compatible,
    load_checkpoint,
    save_checkpoint,
)
from debiascl.checkpoint.rebuild import load_trained
from debiascl.checkpoint.resume import (
    TrainingCounters,
    TrainingState,
    check_resumable,
    open_run_dir,
)
from debiascl.checkpoint.rng import capture_rng_state, restore_rng_state, seed_everything

__all__ = [
    "FORMAT",
    "REQUIRED_KEYS",
    "VERSION",
    "TrainingCounters",
    "TrainingState",
    "capture_rng_state",
    "check_compatible",
    "check_resumable",
    "load_checkpoint",
    "load_trained",
    "open_run_dir",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
]
