"""Frozen representations, class predictions and the weighted kNN classifier (SPEC section 7).

Used by the trainer's kNN monitor, by JTT's error set and by evaluation, so all of them measure
the same thing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, Dataset, SequentialSampler

from debiascl.config import Config
from debiascl.data.base import BiasedDataset
from debiascl.data.loading import batch_loader, configured_dataset
from debiascl.data.sampling import labelled_subset, sample_subset

LOGGER = logging.getLogger("debiascl")

KNN_SAMPLE_LIMIT = 10_000
"""The kNN monitor uses at most this many training samples as bank and val samples as queries."""

Prepare = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def _map_dataset(
    method: torch.nn.Module,
    dataset: Dataset,
    prepare: Prepare,
    forward: Callable[[torch.Tensor], torch.Tensor],
    device: str | torch.device,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``forward(prepare(x))`` of every sample, in dataset order, with ``method`` in eval mode.

    Args:
        method: the network ``forward`` uses; put in eval mode, then back in its former mode.
        dataset: items (index, x, y, a), read a batch at a time (``get_batch``).
        prepare: (B, *input_shape) -> network input (resize + normalise), on ``device``.
        forward: network input (B, ...) -> (B, ...) outputs.
        device: where to run the network.
        batch_size: samples per forward pass.

    Returns:
        outputs (n, ...) on CPU and the samples' indices (n,) int64.

    Raises:
        ValueError: ``dataset`` is empty (callers skip empty splits).
    """
    if len(dataset) == 0:
        raise ValueError("cannot map an empty data set; skip empty splits before calling")
    was_training = method.training
    method.eval()
    outputs: list[torch.Tensor] = []
    indices: list[torch.Tensor] = []
    batches = BatchSampler(SequentialSampler(range(len(dataset))), batch_size, drop_last=False)
    for index, x, _, _ in batch_loader(dataset, batches, 0, torch.device(device)):
        outputs.append(forward(prepare(x.to(device, non_blocking=True))).cpu())
        indices.append(index)
    method.train(was_training)
    return torch.cat(outputs), torch.cat(indices)


def extract_features(
    method: torch.nn.Module,
    dataset: BiasedDataset,
    prepare: Prepare,
    encoder: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Representations h = f(x) of a whole split, in eval mode, without augmentation.

    Args:
        method: a trained method exposing ``representation(x, encoder)``.
        dataset: the split to embed.
        prepare: maps a raw batch (B, *input_shape) to the network input (resize + normalise);
            a ViewPipeline's ``prepare``.
        encoder: None for the method's product encoder, or "d" / "b".
        device: where to run the network.
        batch_size: samples per forward pass.

    Returns:
        features (n, F) float32 on CPU, targets (n,), attributes (n,), indices (n,) int64.
    """
    features, order = _map_dataset(
        method,
        dataset,
        prepare,
        lambda inputs: method.representation(inputs, encoder).float(),
        device,
        batch_size,
    )
    return features, dataset.targets[order], dataset.attributes[order], order


def predict_classes(
    method: torch.nn.Module,
    dataset: BiasedDataset,
    prepare: Prepare,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
) -> torch.Tensor:
    """A supervised method's own predicted class of every sample, in eval mode, un-augmented.

    Args:
        method: a supervised method exposing ``predict(x) -> (B, num_classes)`` logits.
        dataset: the split to classify.
        prepare: the deterministic transform (B, *input_shape) -> network input.
        device: where to run the network.
        batch_size: samples per forward pass.

    Returns:
        (n,) int64 on CPU, in dataset order: entry i is ``predict(prepare(x_i)).argmax()``.
    """
    return class_logits(method, dataset, prepare, device, batch_size)[0].argmax(dim=1)


def class_logits(
    method: torch.nn.Module,
    dataset: Dataset,
    prepare: Prepare,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A supervised method's class logits of a whole split, in eval mode, un-augmented.

    Args:
        method: a supervised method exposing ``predict(x) -> (B, num_classes)`` logits.
        dataset: the split (or a subset keeping the original indices).
        prepare: the deterministic transform (B, *input_shape) -> network input.
        device: where to run the network.
        batch_size: samples per forward pass.

    Returns:
        logits (n, num_classes) float32 on CPU, targets (n,), attributes (n,), indices (n,).
    """
    logits, order = _map_dataset(
        method, dataset, prepare, lambda inputs: method.predict(inputs).float(), device, batch_size
    )
    return logits, dataset.targets[order], dataset.attributes[order], order


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.5,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Weighted kNN on cosine similarity, neighbours voting with weight exp(s / t).

    Args:
        train_features: (n, F) memory bank.
        train_labels: (n,) int64 classes of the bank.
        query_features: (m, F) samples to classify.
        num_classes: number of classes C.
        k: neighbours per query (capped at n).
        temperature: t in the vote weight exp(s / t).
        chunk_size: queries per similarity block (bounds memory at chunk_size x n).

    Returns:
        (m,) int64 predicted classes.
    """
    bank = F.normalize(train_features.float(), dim=1)
    queries = F.normalize(query_features.float(), dim=1)
    k = min(k, bank.shape[0])
    predictions = []
    for start in range(0, queries.shape[0], chunk_size):
        similarity = queries[start : start + chunk_size] @ bank.T
        top_similarity, top_index = similarity.topk(k, dim=1)
        votes = torch.zeros(top_index.shape[0], num_classes)
        votes.scatter_add_(1, train_labels[top_index], (top_similarity / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(
    method: torch.nn.Module,
    train_set: BiasedDataset,
    val_set: BiasedDataset,
    prepare: Prepare,
    k: int,
    temperature: float,
    device: torch.device,
    seed: int = 0,
) -> float:
    """Top-1 accuracy of the weighted kNN classifier (bank: train, queries: val).

    Each split is capped at :data:`KNN_SAMPLE_LIMIT` samples (a subset seeded by ``seed``);
    unlabelled training samples (y = -1) are left out of the bank.
    """
    bank, _, _, bank_index = extract_features(
        method,
        sample_subset(labelled_subset(train_set), KNN_SAMPLE_LIMIT, seed),
        prepare,
        None,
        device,
    )
    queries, _, _, query_index = extract_features(
        method, sample_subset(val_set, KNN_SAMPLE_LIMIT, seed + 1), prepare, None, device
    )
    predictions = knn_predict(
        bank, train_set.targets[bank_index], queries, train_set.num_classes, k, temperature
    )
    return float((predictions == val_set.targets[query_index]).float().mean())


class KnnMonitor:
    """The trainer's kNN monitor: :func:`knn_accuracy` of the val split under a forked RNG.

    The val split is opened on first use; when it is empty the monitor says so once and stays
    off. The RNG is forked (CPU and the CUDA device), so monitoring never changes the training
    trajectory.

    Args:
        config: the run's configuration (data, ``train.knn_k``, ``method.temperature``, seed).
        train_set: the training split (the bank).
        prepare: the deterministic transform (B, *input_shape) -> network input.
        device: the training device.
        world_size: training processes (they share the machine's CPUs when caching).
    """

    def __init__(
        self,
        config: Config,
        train_set: BiasedDataset,
        prepare: Prepare,
        device: torch.device,
        world_size: int = 1,
    ) -> None:
        self.config = config
        self.train_set = train_set
        self.prepare = prepare
        self.device = device
        self.world_size = world_size
        self._val_set: BiasedDataset | None = None

    def accuracy(self, method: torch.nn.Module) -> float | None:
        """The weighted kNN accuracy of ``method``'s representation; None for an empty val split."""
        if self._val_set is None:
            data = self.config.data
            self._val_set = configured_dataset(data, "val", data.download, self.world_size)
            if len(self._val_set) == 0:
                LOGGER.warning("the val split is empty: the kNN monitor is off for this run")
        if len(self._val_set) == 0:
            return None
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return knn_accuracy(
                method,
                self.train_set,
                self._val_set,
                self.prepare,
                k=self.config.train.knn_k,
                temperature=self.config.method.temperature,
                device=self.device,
                seed=self.config.train.seed,
            )
