"""Seeded sampling: per-epoch data order, rank slices, seeded subsets, stratified splits.

The order of epoch e is a pure function of (seed, e), so a run can be resumed in the middle of an
epoch and K DDP ranks together see exactly the batches of a single process.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from debiascl.data.base import SPLIT_CODES, BiasedDataset
from debiascl.errors import DebiasclError


def mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed that is a pure function of the integers ``values``."""
    entropy = [value % 2**64 for value in values]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """(num_samples,) int64: the data order of ``epoch``, a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(mix_seed(seed, epoch))
    return torch.randperm(num_samples, generator=generator)


def balanced_probabilities(groups: torch.Tensor) -> torch.Tensor:
    """(n,) float64 p_i = 1 / (G * n_{g_i}) for group ids (n,): every group drawn equally often.

    G is the number of groups present and n_g their sizes (SPEC 10); the p_i sum to 1.
    """
    _, inverse, sizes = torch.unique(groups, return_inverse=True, return_counts=True)
    return 1.0 / (sizes.numel() * sizes[inverse].double())


def balanced_draws(probabilities: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """(n,) int64 indices of one epoch's n draws with replacement, sample i with probability
    ``probabilities[i]`` ((n,), summing to 1); a pure function of (probabilities, seed, epoch).
    """
    generator = torch.Generator().manual_seed(mix_seed(seed, epoch))
    return torch.multinomial(probabilities, probabilities.numel(), True, generator=generator)


def epoch_order(
    num_samples: int,
    seed: int,
    epoch: int,
    repeats: torch.Tensor | None = None,
    probabilities: torch.Tensor | None = None,
) -> torch.Tensor:
    """(M,) int64 sample indices in the order of ``epoch``; a pure function of its arguments.

    Without ``repeats`` or ``probabilities`` this is :func:`epoch_permutation`
    (M = num_samples). With ``repeats`` ((num_samples,) non-negative int64), sample i appears
    ``repeats[i]`` times in the epoch (M = repeats.sum()), shuffled together: JTT's
    up-weighting by resampling. With ``probabilities`` ((num_samples,), summing to 1; e.g.
    :func:`balanced_probabilities`), the epoch is M = num_samples draws with replacement
    (:func:`balanced_draws`); the two are not combined.
    """
    if probabilities is not None:
        if repeats is not None:
            raise ValueError("epoch_order: give repeats or probabilities, not both")
        return balanced_draws(probabilities, seed, epoch)
    if repeats is None:
        return epoch_permutation(num_samples, seed, epoch)
    pool = torch.repeat_interleave(torch.arange(num_samples), repeats)
    return pool[epoch_permutation(pool.numel(), seed, epoch)]


class EpochBatchSampler(Sampler[list[int]]):
    """This rank's batches of one epoch, starting at global batch ``start``.

    Global batch g is ``order[g * G:(g + 1) * G]`` with ``order`` from :func:`epoch_order`
    (G = global batch size, the incomplete last batch dropped); rank r takes its contiguous
    slice of G / world_size indices, so the ranks together see exactly the batches of a single
    process (``shard``: this process's (rank, world_size)). Batches before ``start`` are
    skipped without being loaded (used to resume in the middle of an epoch). ``repeats``
    (num_samples,) makes sample i appear repeats[i] times; ``probabilities`` (num_samples,)
    draws the epoch with replacement instead (group-balanced sampling); see
    :func:`epoch_order`.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        seed: int,
        epoch: int,
        shard: tuple[int, int] = (0, 1),
        start: int = 0,
        repeats: torch.Tensor | None = None,
        probabilities: torch.Tensor | None = None,
    ) -> None:
        self.num_samples = num_samples
        self.repeats = repeats
        self.probabilities = probabilities
        self.global_batch = global_batch
        self.seed = seed
        self.epoch = epoch
        rank, world_size = shard
        self.local_batch = global_batch // world_size
        self.offset = rank * self.local_batch
        self.start = start
        epoch_size = num_samples if repeats is None else int(repeats.sum())
        self.num_batches = epoch_size // global_batch

    def __len__(self) -> int:
        return max(self.num_batches - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_order(
            self.num_samples, self.seed, self.epoch, self.repeats, self.probabilities
        )
        for batch in range(self.start, self.num_batches):
            first = batch * self.global_batch + self.offset
            yield order[first : first + self.local_batch].tolist()


class IndexedSubset(Dataset):
    """Some samples of a BiasedDataset that keep their original index (for extract_features).

    ``targets``/``attributes`` are the full data set's, indexed by the original indices that
    ``__getitem__`` returns.
    """

    def __init__(self, dataset: BiasedDataset, indices: torch.Tensor) -> None:
        self.dataset = dataset
        self.indices = indices.tolist()
        self.targets = dataset.targets
        self.attributes = dataset.attributes

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, torch.Tensor, int, int]:
        return self.dataset[self.indices[position]]

    def get_batch(
        self, positions: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Items at ``positions`` collated (:meth:`BiasedDataset.get_batch`), original indices."""
        return self.dataset.get_batch([self.indices[position] for position in positions])


def labelled_subset(dataset: BiasedDataset) -> Dataset:
    """The samples with a class (y >= 0): the whole data set, or an :class:`IndexedSubset`.

    Unlabelled samples (y = -1, e.g. STL-10's unlabeled images added for pre-training) can serve
    contrastive training but not a linear probe, a kNN bank or a supervised loss.
    """
    labelled = dataset.targets >= 0
    if bool(labelled.all()):
        return dataset
    return IndexedSubset(dataset, labelled.nonzero().squeeze(1))


def sample_subset(dataset: BiasedDataset, limit: int, seed: int) -> Dataset:
    """The whole data set, or a seeded random subset of ``limit`` samples when it is larger."""
    if len(dataset) <= limit:
        return dataset
    generator = torch.Generator().manual_seed(seed)
    return IndexedSubset(dataset, torch.randperm(len(dataset), generator=generator)[:limit])


def stratified_split(
    strata: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    generator: Literal["numpy", "torch"] = "numpy",
) -> np.ndarray:
    """Seeded stratified assignment of rows to train / val / test (every data set's splitter).

    The one rounding rule: ``floor(fraction * n_stratum + 0.5)`` rows of each stratum (halves
    round up), test first, then val, in a seeded random order inside the stratum.

    Args:
        strata: (n,) int64 stratum of each row.
        val_fraction, test_fraction: fractions of every stratum sent to val and test.
        seed: seed of the permutations inside the strata (one generator, strata in sorted order).
        generator: "numpy" (``numpy.random.default_rng(seed)``: tables and the built-in
            benchmarks) or "torch" (``torch.Generator().manual_seed(seed)``: the image data
            sets' class-stratified holdouts); each keeps the splits its data sets always had.

    Returns:
        (n,) int64 split codes (:data:`~debiascl.data.base.SPLIT_CODES`: 0 train, 1 val, 2 test).
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DebiasclError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction}: expected two "
            "fractions in [0, 1) whose sum is below 1"
        )
    if generator == "numpy":
        permutation = np.random.default_rng(seed).permutation
    else:
        torch_generator = torch.Generator().manual_seed(seed)

        def permutation(n: int) -> np.ndarray:
            return torch.randperm(n, generator=torch_generator).numpy()

    codes = np.zeros(len(strata), dtype=np.int64)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        rows = members[permutation(len(members))]
        n_test = math.floor(test_fraction * len(rows) + 0.5)
        n_val = math.floor(val_fraction * len(rows) + 0.5)
        codes[rows[:n_test]] = SPLIT_CODES["test"]
        codes[rows[n_test : n_test + n_val]] = SPLIT_CODES["val"]
    return codes
