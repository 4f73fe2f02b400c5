"""extract_features, predict_classes and knn_predict (the shared evaluation helpers)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from debiascl.data.base import BiasedDataset
from debiascl.features import extract_features, knn_predict, predict_classes


def _naive_knn(bank, labels, queries, num_classes, k, temperature):
    """One query at a time: cosine similarity, top-k, votes exp(s / t)."""
    bank = F.normalize(bank.double(), dim=1)
    predictions = []
    for query in F.normalize(queries.double(), dim=1):
        similarity = bank @ query
        order = sorted(range(len(bank)), key=lambda i: -float(similarity[i]))[:k]
        votes = [0.0] * num_classes
        for i in order:
            votes[int(labels[i])] += float(torch.exp(similarity[i] / temperature))
        predictions.append(max(range(num_classes), key=votes.__getitem__))
    return torch.tensor(predictions)


def test_knn_matches_naive_loop():
    generator = torch.Generator().manual_seed(0)
    bank = torch.randn(60, 8, generator=generator)
    labels = torch.randint(0, 4, (60,), generator=generator)
    queries = torch.randn(25, 8, generator=generator)
    for k, temperature in ((1, 0.5), (7, 0.1), (200, 1.0)):
        fast = knn_predict(bank, labels, queries, 4, k=k, temperature=temperature, chunk_size=10)
        expected = _naive_knn(bank, labels, queries, 4, min(k, 60), temperature)
        assert torch.equal(fast, expected), (k, temperature)


def test_knn_nearest_neighbour_recovers_bank_labels():
    generator = torch.Generator().manual_seed(1)
    bank = torch.randn(40, 16, generator=generator)
    labels = torch.randint(0, 3, (40,), generator=generator)
    assert torch.equal(knn_predict(bank, labels, bank * 3.0, 3, k=1), labels)


class _Toy(BiasedDataset):
    def __init__(self, n: int) -> None:
        self.name, self.split, self.kind = "toy", "test", "table"
        self.input_shape, self.num_classes, self.num_attributes = (3,), 2, 2
        self.class_names, self.attribute_names = ["c0", "c1"], ["b0", "b1"]
        self.inputs = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
        self.targets = torch.arange(n) % 2
        self.attributes = (torch.arange(n) // 2) % 2

    def load(self, index: int) -> torch.Tensor:
        return self.inputs[index]


class _RecordingMethod(torch.nn.Module):
    """representation = 2 * prepared input, recording the mode and encoder it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[bool, str | None]] = []

    def representation(self, x: torch.Tensor, encoder: str | None = None) -> torch.Tensor:
        self.calls.append((self.training, encoder))
        return 2 * x


def test_extract_features_order_eval_mode_and_prepare():
    dataset = _Toy(11)
    method = _RecordingMethod()
    method.train()
    features, y, a, idx = extract_features(
        method, dataset, lambda x: x + 1, encoder="b", batch_size=4
    )
    assert torch.equal(idx, torch.arange(11))
    assert torch.equal(features, 2 * (dataset.inputs + 1))
    assert torch.equal(y, dataset.targets) and torch.equal(a, dataset.attributes)
    assert method.calls == [(False, "b")] * 3
    assert method.training, "the method's mode must be restored"


class _Classifier(torch.nn.Module):
    """predict = a fixed linear map of the prepared input (3 classes), recording the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 3)
        with torch.no_grad():
            self.linear.weight.copy_(
                torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 0.5, 0.0]])
            )
            self.linear.bias.copy_(torch.tensor([0.0, 0.5, 0.0]))
        self.modes: list[bool] = []

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.linear(torch.sin(x))


def test_predict_classes_matches_full_batch_argmax_in_dataset_order():
    dataset = _Toy(11)
    method = _Classifier().train()
    predictions = predict_classes(method, dataset, lambda x: x - 2, batch_size=4)
    expected = method.linear(torch.sin(dataset.inputs - 2)).argmax(dim=1)
    assert predictions.dtype == torch.long and predictions.shape == (11,)
    assert torch.equal(predictions, expected)
    assert len(set(expected.tolist())) > 1, "the fixture must produce several classes"
    assert method.modes == [False] * 3
    assert method.training, "the method's mode must be restored"
