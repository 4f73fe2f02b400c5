"""The method registry: losses, gradient routing, parameter groups and ERM of debiascl.methods."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from fakes import BUILT_IN_METHODS

import debiascl.losses.functional as loss_functions
from debiascl.batch import Batch
from debiascl.config import Config
from debiascl.errors import DebiasclError
from debiascl.losses import dcl_loss, hcl_loss, info_nce_loss, triplet_loss, wcl_loss
from debiascl.methods import METHODS, Method, build_method

TABLE = SimpleNamespace(name="toy", kind="table", input_shape=(6,), num_classes=3)


def make_config(name: str, **method: object) -> Config:
    """A small MLP config with non-default hyper-parameters, so pass-through is checked."""
    config = Config()
    config.model.backbone = "mlp"
    config.model.mlp_hidden_dims = [16]
    config.model.head_hidden_dim = 12
    config.model.proj_dim = 8
    config.method.name = name
    config.method.temperature = 0.3
    config.method.tau_plus = 0.2
    config.method.beta = 0.7
    config.optim.lr, config.optim.lr_b, config.optim.weight_decay = 1e-3, 5e-2, 1e-4
    for key, value in method.items():
        setattr(config.method, key, value)
    return config


def make_method(name: str, **method: object) -> Method:
    torch.manual_seed(0)
    return build_method(make_config(name, **method), TABLE)


def make_views(batch: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 6, generator=generator)
    return x + 0.1 * torch.randn(batch, 6, generator=generator), x


def batch_of(views, y: torch.Tensor | None = None, **fields: torch.Tensor) -> Batch:
    """The trainer's batch of ``views`` (index 0..B-1; y all 0 unless given)."""
    size = len(views[0])
    y = torch.zeros(size, dtype=torch.long) if y is None else y
    return Batch(torch.arange(size), list(views), y, **fields)


def projections(method: Method, key: str, views) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference forward: both views of the batch through encoder ``key`` together."""
    z = method.encoders()[key](torch.cat(views))
    return z[: len(views[0])], z[len(views[0]) :]


def grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in module.parameters()]


def assert_grads_close(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-7)


REFERENCES = {
    "simclr": lambda z1, z2: info_nce_loss(z1, z2, temperature=0.3),
    "dcl": lambda z1, z2: dcl_loss(z1, z2, temperature=0.3, tau_plus=0.2),
    "hcl": lambda z1, z2: hcl_loss(z1, z2, temperature=0.3, tau_plus=0.2, beta=0.7),
    "triplet": lambda z1, z2: triplet_loss(z1, z2, tau_plus=0.2, debias=True),
}


def test_registry_names() -> None:
    assert set(METHODS) == BUILT_IN_METHODS
    assert all(cls.name == name for name, cls in METHODS.items())
    assert [name for name, cls in METHODS.items() if cls.supervised] == [
        "erm",
        "jtt",
        "gce",
        "gdro",
    ]


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_single_encoder_loss_and_gradient_equal_the_loss_function(name: str) -> None:
    method = make_method(name)
    key = method.product_encoder
    assert list(method.encoders()) == [key]
    views = make_views()
    loss, logs = method.training_step(batch_of(views))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    step_grads = grads(method)
    method.zero_grad(set_to_none=True)
    expected = REFERENCES[name](*projections(method, key, views))
    expected.backward()
    torch.testing.assert_close(loss, expected)
    assert_grads_close(step_grads, grads(method))
    assert set(logs) == {f"loss_{key}"}
    assert not logs[f"loss_{key}"].requires_grad
    torch.testing.assert_close(logs[f"loss_{key}"], expected.detach())


def test_options_reach_the_losses() -> None:
    views = make_views()
    plain = make_method("triplet", triplet_debias=False)
    loss, _ = plain.training_step(batch_of(views))
    expected = triplet_loss(*projections(plain, "b", views), tau_plus=0.2, debias=False)
    torch.testing.assert_close(loss, expected)
    detached = make_method("hcl", detach_weights=True)
    loss, _ = detached.training_step(batch_of(views))
    loss.backward()
    step_grads = grads(detached)
    detached.zero_grad(set_to_none=True)
    z1, z2 = projections(detached, "d", views)
    hcl_loss(z1, z2, 0.3, 0.2, 0.7, detach_weights=True).backward()
    assert_grads_close(step_grads, grads(detached))


LOSSES_USED = {
    "simclr": ["info_nce_loss"],
    "dcl": ["dcl_loss"],
    "hcl": ["hcl_loss"],
    "triplet": ["triplet_loss"],
    "wcl": ["triplet_loss", "wcl_loss"],
}


@pytest.mark.parametrize("name", sorted(LOSSES_USED))
def test_gather_flag_is_passed_to_the_losses(name: str, monkeypatch) -> None:
    seen = {}

    def spy(loss_name, loss_fn):
        def wrapped(*args, **kwargs):
            seen[loss_name] = kwargs.get("gather_distributed")
            return loss_fn(*args, **kwargs)

        return wrapped

    for loss_name in LOSSES_USED[name]:
        loss_fn = getattr(loss_functions, loss_name)  # what the methods' criteria call
        monkeypatch.setattr(loss_functions, loss_name, spy(loss_name, loss_fn))
    torch.manual_seed(0)
    method = build_method(make_config(name), TABLE, gather_distributed=True)
    method.training_step(batch_of(make_views()))  # no process group: the losses fall back to local
    assert seen == dict.fromkeys(LOSSES_USED[name], True)


def test_wcl_loss_is_triplet_plus_weighted() -> None:
    method = make_method("wcl")
    views = make_views()
    loss, logs = method.training_step(batch_of(views))
    zd1, zd2 = projections(method, "d", views)
    zb1, zb2 = projections(method, "b", views)
    loss_b = triplet_loss(zb1, zb2, tau_plus=0.2)
    loss_d = wcl_loss(zd1, zd2, zb1, zb2, temperature=0.3, tau_plus=0.2)
    torch.testing.assert_close(loss, loss_b + loss_d)
    torch.testing.assert_close(logs["loss_b"], loss_b.detach())
    torch.testing.assert_close(logs["loss_d"], loss_d.detach())
    assert method.encoder_d is not method.encoder_b
    d_params = {id(p) for p in method.encoder_d.parameters()}
    assert d_params.isdisjoint(id(p) for p in method.encoder_b.parameters())


@pytest.mark.parametrize("form", ["paper", "mirror", "none"])
def test_wcl_weight_form_reaches_the_loss(form: str) -> None:
    method = make_method("wcl", weight_form=form)
    assert method.criterion.weight_form == form
    views = make_views()
    _, logs = method.training_step(batch_of(views))
    zd1, zd2 = projections(method, "d", views)
    zb1, zb2 = projections(method, "b", views)
    expected = wcl_loss(zd1, zd2, zb1, zb2, temperature=0.3, tau_plus=0.2, weight_form=form)
    torch.testing.assert_close(logs["loss_d"], expected.detach())


def test_wcl_without_weights_is_exactly_dcl() -> None:
    method = make_method("wcl", weight_form="none")
    views = make_views()
    loss, logs = method.training_step(batch_of(views))
    zd1, zd2 = projections(method, "d", views)
    zb1, zb2 = projections(method, "b", views)
    dcl = dcl_loss(zd1, zd2, temperature=0.3, tau_plus=0.2)
    assert torch.equal(logs["loss_d"], dcl.detach())
    torch.testing.assert_close(loss, triplet_loss(zb1, zb2, tau_plus=0.2) + dcl)


def test_wcl_gradients_do_not_cross_between_encoders() -> None:
    method = make_method("wcl")
    views = make_views()
    loss, _ = method.training_step(batch_of(views))
    loss.backward()
    step_d, step_b = grads(method.encoder_d), grads(method.encoder_b)
    assert all(g.abs().sum() > 0 for g in step_d + step_b if g.numel() > 0)

    method.zero_grad(set_to_none=True)
    triplet_loss(*projections(method, "b", views), tau_plus=0.2).backward()
    assert_grads_close(step_b, grads(method.encoder_b))
    assert all(p.grad is None for p in method.encoder_d.parameters())

    method.zero_grad(set_to_none=True)
    zd, zb = projections(method, "d", views), projections(method, "b", views)
    wcl_loss(*zd, *zb, temperature=0.3, tau_plus=0.2).backward()
    assert_grads_close(step_d, grads(method.encoder_d))
    assert all(p.grad is None or not p.grad.any() for p in method.encoder_b.parameters())


def test_wcl_training_reduces_the_loss() -> None:
    method = make_method("wcl")
    optimizers = [torch.optim.Adam([group]) for group in method.param_groups(Config().optim)]
    views = make_views(16)
    history = []
    for _ in range(25):
        loss, logs = method.training_step(batch_of(views))
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        history.append({key: float(value) for key, value in logs.items()})
    first, last = history[0], history[-1]
    assert last["loss_d"] < 0.8 * first["loss_d"]  # each encoder's own objective goes down
    assert last["loss_b"] < first["loss_b"] - 1.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [("simclr", [("d", 1e-3)]), ("triplet", [("b", 5e-2)]), ("wcl", [("d", 1e-3), ("b", 5e-2)])],
)
def test_param_groups(name: str, expected: list[tuple[str, float]]) -> None:
    config = make_config(name)
    method = build_method(config, TABLE)
    groups = method.param_groups(config.optim)
    assert [(g["name"], g["lr"]) for g in groups] == expected
    assert all(g["weight_decay"] == 1e-4 for g in groups)
    for group in groups:
        encoder = method.encoders()[group["name"]]
        assert [id(p) for p in group["params"]] == [id(p) for p in encoder.parameters()]
    assert sum(len(g["params"]) for g in groups) == len(list(method.parameters()))


def test_representation_of_each_encoder() -> None:
    method = make_method("wcl").eval()
    x = torch.randn(4, 6)
    assert method.product_encoder == "d"
    torch.testing.assert_close(method.representation(x), method.encoder_d.backbone(x))
    torch.testing.assert_close(method.representation(x, "b"), method.encoder_b.backbone(x))
    assert method.representation(x).shape == (4, 16)
    triplet = make_method("triplet").eval()
    torch.testing.assert_close(triplet.representation(x), triplet.encoder_b.backbone(x))
    with pytest.raises(DebiasclError, match="no encoder 'd'"):
        triplet.representation(x, "d")


def test_views_must_match() -> None:
    with pytest.raises(ValueError, match="views"):
        make_method("simclr").training_step(batch_of((torch.randn(4, 6), torch.randn(3, 6))))


def test_contrastive_methods_need_two_views_and_erm_reads_every_view() -> None:
    three = (*make_views(), torch.randn(10, 6))
    for name in ("simclr", "wcl"):
        with pytest.raises(DebiasclError, match=f"method '{name}' compares two views.*has 3"):
            make_method(name).training_step(batch_of(three))
    method, y = make_method("erm"), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    loss, _ = method.training_step(batch_of(three, y))
    expected = F.cross_entropy(method.encoder_d(torch.cat(three)), y.repeat(3))
    torch.testing.assert_close(loss, expected)


def test_erm_cross_entropy_on_both_views() -> None:
    method = make_method("erm")
    assert method.supervised and list(method.encoders()) == ["d"]
    views, y = make_views(), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    loss, logs = method.training_step(batch_of(views, y))
    logits = method.encoder_d(torch.cat(views))
    assert logits.shape == (20, 3)
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.cat([y, y])))
    accuracy = (logits.argmax(1) == torch.cat([y, y])).float().mean()
    torch.testing.assert_close(logs["acc"], accuracy)
    method.eval()
    torch.testing.assert_close(method.predict(views[0]), method.encoder_d(views[0]))
    assert method.predict(views[0]).shape == (10, 3)
    assert method.representation(views[0]).shape == (10, 16)


def test_erm_sample_weights() -> None:
    method = make_method("erm")
    views, y = make_views(), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    unweighted, _ = method.training_step(batch_of(views, y))
    ones, _ = method.training_step(batch_of(views, y, weight=torch.ones(10)))
    torch.testing.assert_close(ones, unweighted)
    weights = torch.tensor([3.0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    weighted, _ = method.training_step(batch_of(views, y, weight=weights))
    per_example = F.cross_entropy(method.encoder_d(torch.cat(views)), y.repeat(2), reduction="none")
    expected = (
        3 * per_example[[0, 10]].sum() + per_example[[2, 12]].sum()
    ) / 20  # not renormalised
    torch.testing.assert_close(weighted, expected)


@pytest.mark.parametrize("name", ["simclr", "dcl", "hcl", "wcl"])
def test_contrastive_methods_weight_their_anchors_by_the_batch_weights(name: str) -> None:
    method, views = make_method(name), make_views()
    weights = torch.rand(10, generator=torch.Generator().manual_seed(3)) * 2
    _, logs = method.training_step(batch_of(views, weight=weights))
    zd = projections(method, "d", views)
    zb = projections(method, "b", views) if name == "wcl" else ()
    expected = method.criterion(*zd, *zb, sample_weights=weights)
    torch.testing.assert_close(logs["loss_d"], expected.detach())
    assert not torch.allclose(expected, method.criterion(*zd, *zb))
    if name == "wcl":  # E_b's triplet loss stays unweighted
        _, plain = method.training_step(batch_of(views))
        torch.testing.assert_close(logs["loss_b"], plain["loss_b"])


def test_gdro_needs_the_groups_in_the_batch() -> None:
    with pytest.raises(DebiasclError, match="method 'gdro' trains on groups"):
        make_method("gdro").training_step(batch_of(make_views()))


def test_unknown_method() -> None:
    config = make_config("nope")
    with pytest.raises(DebiasclError, match=r"method.name.*simclr"):
        build_method(config, TABLE)


def test_methods_on_images_with_small_cnn() -> None:
    config = Config()
    config.model.proj_dim = 32
    images = SimpleNamespace(name="img", kind="image", input_shape=(3, 16, 16), num_classes=10)
    for name in METHODS:
        config.method.name = name
        method = build_method(config, images)
        views = (torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16))
        groups = {"group": torch.tensor([0, 1, 1, 0]), "group_sizes": torch.tensor([5, 3])}
        loss, _ = method.training_step(batch_of(views, torch.arange(4), **groups))
        assert loss.ndim == 0 and torch.isfinite(loss)


def test_pretrained_weights_reach_both_wcl_encoders(tmp_path) -> None:
    source = make_method("simclr").encoder_d.backbone
    path = tmp_path / "backbone.pt"
    torch.save(source.state_dict(), path)
    config = make_config("wcl")
    config.model.pretrained = str(path)
    method = build_method(config, TABLE)
    for encoder in (method.encoder_d, method.encoder_b):
        for key, value in source.state_dict().items():
            torch.testing.assert_close(encoder.backbone.state_dict()[key], value)
