"""Discovery signals besides E_b's neighbours: early-stopped ERM and GCE classifiers (SPEC 9)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from fakes import train_args
from sklearn.metrics import roc_auc_score

from debiascl.batch import Batch
from debiascl.cli import main
from debiascl.config import build_config
from debiascl.data import build_dataset
from debiascl.discovery import classifier_scores, read_discovery
from debiascl.methods import METHODS

PATCH_8PX = ("data.options.image_size=8", "train.knn_every=0", "train.batch_size=256")


def test_classifier_scores_are_one_minus_the_own_class_probability() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([0, 2, 1])
    expected = 1 - logits.softmax(1)[torch.arange(3), y]
    torch.testing.assert_close(classifier_scores(logits, y), expected)
    binary = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 2, (50,), generator=torch.Generator().manual_seed(1))
    wrong = binary.argmax(1) != labels
    assert torch.equal(classifier_scores(binary, labels) > 0.5, wrong)  # JTT's error set


def test_gce_loss_and_its_gradient_weight_p_y_to_the_q() -> None:
    config = build_config(overrides={"method.name": "gce"}, sets=["method.gce_q=0.7"])
    config.model.backbone, config.model.mlp_hidden_dims = "mlp", [8]
    table = SimpleNamespace(name="toy", kind="table", input_shape=(4,), num_classes=3)
    torch.manual_seed(0)
    method = METHODS["gce"](config, table)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    batch = Batch(torch.arange(5), [x], y)
    loss, _ = method.training_step(batch)
    logits = method.encoder_d(x)
    p_y = logits.softmax(1)[torch.arange(5), y]
    torch.testing.assert_close(loss, ((1 - p_y**0.7) / 0.7).mean())
    # d GCE_i / d logits_i = p_y^q * d CE_i / d logits_i (LfF's "amplify the easy samples").
    logits = logits.detach().requires_grad_()
    p_y = logits.softmax(1)[torch.arange(5), y]
    ((1 - p_y**0.7) / 0.7).sum().backward()
    ce_logits = logits.detach().requires_grad_()
    F.cross_entropy(ce_logits, y, reduction="sum").backward()
    torch.testing.assert_close(logits.grad, p_y.detach()[:, None] ** 0.7 * ce_logits.grad)
    with pytest.raises(Exception, match=r"method.gce_q' = 0.0 is out of range"):
        build_config(overrides={"method.name": "gce"}, sets=["method.gce_q=0"])


def _train(out: Path, method: str, epochs: int = 1) -> int:
    args = train_args(
        out, dataset="biased-digits-patch", method=method, epochs=epochs, settings=PATCH_8PX
    )
    return main(args)


@pytest.mark.slow
def test_erm_and_gce_signals_discover_and_are_graded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = {name: tmp_path / name for name in ("erm", "gce", "simclr")}
    for name, run in runs.items():
        assert _train(run, name) == 0
    erm, gce, simclr = (str(runs[name]) for name in ("erm", "gce", "simclr"))
    assert main(["discover", erm, "--device", "cpu", "--no-plots"]) == 0  # default: its own
    printed = capsys.readouterr().out
    assert "the erm classifier of" in printed and "precision" in printed
    splits, summary = read_discovery(runs["erm"])
    assert (summary["signal"], summary["k"], summary["encoder"]) == ("erm", None, None)
    train = splits["train"]
    assert torch.equal(train.flag, train.score > 0.5)
    dataset = build_dataset("biased-digits-patch", None, "train", image_size=8)
    conflicting = dataset.bias_conflicting[train.index]
    quality = summary["train"]
    assert quality["auroc"] == pytest.approx(roc_auc_score(conflicting.numpy(), train.score))
    assert summary["uses_bias_labels"] is False and "val" in summary

    args = ["discover", simclr, "--bias-run", gce, "--signal", "gce", "--device", "cpu"]
    assert main([*args, "--no-plots"]) == 0
    summary = json.loads((runs["simclr"] / "discovery.json").read_text())
    assert (summary["signal"], summary["bias_method"]) == ("gce", "gce")
    capsys.readouterr()
    refusals = {"gce": "trained with method 'erm'", "knn": "no bias encoder E_b"}
    for signal, message in refusals.items():
        args = ["discover", simclr, "--signal", signal, "--bias-run", erm, "--device", "cpu"]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err
