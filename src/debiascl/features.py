"""Frozen representations and the weighted kNN classifier (SPEC section 7).

Used by the trainer's kNN monitor and by evaluation, so both measure the same thing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from debiascl.data.base import BiasedDataset


@torch.no_grad()
def extract_features(
    method: torch.nn.Module,
    dataset: BiasedDataset,
    prepare: torch.nn.Module,
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
    was_training = method.training
    method.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    chunks: list[torch.Tensor] = []
    indices: list[torch.Tensor] = []
    for index, x, _, _ in loader:
        inputs = prepare(x.to(device, non_blocking=True))
        chunks.append(method.representation(inputs, encoder).float().cpu())
        indices.append(index)
    method.train(was_training)
    order = torch.cat(indices)
    return torch.cat(chunks), dataset.targets[order], dataset.attributes[order], order


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
