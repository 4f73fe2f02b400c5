"""The cross-group contrast (method cnc): its loss against a loop over the formula, its
gradient, and the method's step on a batch with groups."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from debiascl.batch import Batch
from debiascl.config import build_config
from debiascl.errors import DebiasclError
from debiascl.losses import info_nce_loss
from debiascl.methods import build_method, cross_group_contrast

DIGITS_8PX = SimpleNamespace(
    name="biased-digits-binary", kind="image", input_shape=(3, 8, 8), num_classes=2
)


def naive_cross_group(z: torch.Tensor, y: list[int], g: list[int], t: float) -> torch.Tensor:
    """The formula, anchor by anchor."""
    z = torch.nn.functional.normalize(z, dim=1)
    losses = []
    for i in range(len(y)):
        positives = [j for j in range(len(y)) if j != i and y[j] == y[i] and g[j] != g[i]]
        negatives = [j for j in range(len(y)) if y[j] != y[i]]
        if not positives or not negatives:
            continue
        top = sum(math.exp(float(z[i] @ z[j]) / t) for j in positives)
        bottom = top + sum(math.exp(float(z[i] @ z[j]) / t) for j in negatives)
        losses.append(-math.log(top / bottom))
    return torch.tensor(sum(losses) / len(losses), dtype=torch.float64)


@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_cross_group_contrast_equals_the_formula(temperature: float) -> None:
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    y = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0]
    g = [0, 0, 1, 0, 1, 2, 2, 3, 2, 2, 2, 0]  # sample 11: its class's other group exists
    got = cross_group_contrast(z, torch.tensor(y), torch.tensor(g), temperature)
    torch.testing.assert_close(
        got.double(), naive_cross_group(z, y, g, temperature), rtol=1e-5, atol=1e-6
    )


def test_cross_group_contrast_gradient_and_its_empty_case() -> None:
    z = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    y, g = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert torch.autograd.gradcheck(
        lambda x: cross_group_contrast(x, y, g, 0.5).double(), (z,), eps=1e-6, atol=1e-4
    )
    # one group per class: no anchor has a positive, the term is 0 with a zero gradient
    alone = cross_group_contrast(z, y, y, 0.5)
    alone.backward()
    assert float(alone.detach()) == 0.0 and torch.count_nonzero(z.grad) == 0


def test_cross_group_contrast_pulls_a_class_s_groups_together() -> None:
    """Moving a sample towards its class's other group lowers the loss."""
    y, g = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 2, 3])
    apart = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    together = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0], [-1.0, -0.1]])
    assert cross_group_contrast(together, y, g, 0.5) < cross_group_contrast(apart, y, g, 0.5)


def test_the_cnc_step_adds_the_weighted_term_to_info_nce() -> None:
    config = build_config(
        preset="biased-digits-binary",
        overrides={"method.name": "cnc"},
        sets=["method.cnc_weight=0.5", "train.groups=true"],
    )
    torch.manual_seed(0)
    method = build_method(config, DIGITS_8PX)
    views = [torch.rand(16, 3, 8, 8) for _ in range(2)]
    y = torch.tensor([0, 1] * 8)
    groups = y * 2 + torch.tensor([0, 0, 1, 1] * 4)
    batch = Batch(torch.arange(16), views, y, group=groups, group_sizes=torch.full((4,), 4))
    loss, logs = method.training_step(batch)
    z1, z2 = method.project("d", views)
    expected = info_nce_loss(z1, z2, 0.5) + 0.5 * cross_group_contrast(
        torch.cat([z1, z2]), y.repeat(2), groups.repeat(2), 0.5
    )
    torch.testing.assert_close(loss, expected)
    assert float(logs["loss_cross_group"]) > 0
    loss.backward()
    assert all(p.grad is not None for p in method.encoder_d.parameters() if p.requires_grad)
    with pytest.raises(DebiasclError, match="method 'cnc' trains on groups"):
        method.training_step(Batch(torch.arange(16), views, y))


def test_cnc_without_groups_is_refused_in_one_line() -> None:
    with pytest.raises(DebiasclError, match="method 'cnc' trains on groups"):
        build_config(preset="biased-digits-binary", overrides={"method.name": "cnc"})
