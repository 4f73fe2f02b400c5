"""Tests of the batched view pipelines (debiascl.data.views)."""

from __future__ import annotations

import re

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

import debiascl.data.views.colour as colour_module
import debiascl.data.views.pipelines as pipelines_module
from debiascl.data.base import BiasedDataset
from debiascl.data.views import (
    adjust_hue_,
    build_views,
    color_jitter_,
    random_gaussian_blur_,
    random_grayscale_,
    reference_table,
    resampling_weights,
    resized_crop,
    sample_crop_boxes,
    sample_jitter,
)
from debiascl.errors import DebiasclError

MEAN = (0.4, 0.5, 0.6)
STD = (0.2, 0.25, 0.3)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class ImageSet(BiasedDataset):
    """Random images of shape (C, S, S) in [0, 1]."""

    def __init__(self, channels: int = 3, size: int = 16, n: int = 8) -> None:
        self.name, self.split, self.kind = "toy-images", "train", "image"
        self.input_shape = (channels, size, size)
        self.num_classes, self.num_attributes = 2, 0
        self.class_names, self.attribute_names = ["a", "b"], []
        self.targets = torch.zeros(n, dtype=torch.long)
        self.attributes = torch.full((n,), -1, dtype=torch.long)
        self.mean, self.std = MEAN[:channels], STD[:channels]
        self.images = torch.rand(n, *self.input_shape, generator=torch.Generator().manual_seed(1))

    def load(self, index: int) -> torch.Tensor:
        return self.images[index]


class TableSet(BiasedDataset):
    """Random standardised rows (n, F)."""

    def __init__(self, n: int = 50, features: int = 20) -> None:
        self.name, self.split, self.kind = "toy-table", "train", "table"
        self.input_shape = (features,)
        self.num_classes, self.num_attributes = 2, 2
        self.class_names, self.attribute_names = ["a", "b"], ["u", "v"]
        self.targets = torch.zeros(n, dtype=torch.long)
        self.attributes = torch.zeros(n, dtype=torch.long)
        self.rows = torch.randn(n, features, generator=torch.Generator().manual_seed(2))

    def load(self, index: int) -> torch.Tensor:
        return self.rows[index]


def _images(batch: int, channels: int = 3, size: int = 16, device: str = "cpu") -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(3)).to(
        device
    )


# --------------------------------------------------------------------------- shapes and devices


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("augmentation", ["simclr", "crop_flip", "none"])
@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("image_size", [None, 12])
def test_image_views_shape_dtype_device(
    device: str, augmentation: str, channels: int, image_size: int | None
) -> None:
    pipeline = build_views(augmentation, ImageSet(channels), image_size=image_size).to(device)
    x = _images(5, channels, device=device)
    size = image_size or 16
    with torch.no_grad():
        views = [*pipeline(x), pipeline.prepare(x)]
    for v in views:
        assert v.shape == (5, channels, size, size)
        assert v.dtype == torch.float32
        assert v.device.type == device
        assert torch.isfinite(v).all()
    assert pipeline.output_shape == (channels, size, size)


@pytest.mark.parametrize(
    ("augmentation", "dataset"),
    [
        ("simclr", ImageSet()),
        ("crop_flip", ImageSet()),
        ("none", ImageSet()),
        ("scarf", TableSet()),
    ],
)
def test_inputs_are_left_unchanged(augmentation: str, dataset: BiasedDataset) -> None:
    pipeline = build_views(augmentation, dataset)
    x = _images(4) if dataset.kind == "image" else torch.randn(4, 20)
    before = x.clone()
    pipeline(x)
    pipeline.prepare(x)
    assert torch.equal(x, before)


def test_uint8_images_are_scaled() -> None:
    pipeline = build_views("none", ImageSet())
    x = _images(3)
    as_bytes = (x * 255).round().to(torch.uint8)
    expected = pipeline.prepare(as_bytes.float() / 255)
    torch.testing.assert_close(pipeline.prepare(as_bytes), expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("augmentation", ["gaussian_noise", "scarf", "none"])
def test_table_views_shape_dtype_device(device: str, augmentation: str) -> None:
    pipeline = build_views(augmentation, TableSet()).to(device)
    x = torch.randn(7, 20, device=device)
    with torch.no_grad():
        for v in [*pipeline(x), pipeline.prepare(x)]:
            assert v.shape == (7, 20)
            assert v.dtype == torch.float32
            assert v.device.type == device


# --------------------------------------------------------------------------- randomness


@pytest.mark.parametrize("augmentation", ["simclr", "crop_flip"])
def test_image_views_differ_between_views_and_samples(augmentation: str) -> None:
    pipeline = build_views(augmentation, ImageSet())
    x = _images(1).expand(16, -1, -1, -1)  # the same image 16 times
    v1, v2 = pipeline(x)
    assert not torch.allclose(v1, v2)
    flat = v1.flatten(1)
    distance = torch.cdist(flat, flat)
    off_diagonal = distance[~torch.eye(16, dtype=torch.bool)]
    assert (off_diagonal > 1e-3).all(), "two samples got the same random parameters"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("augmentation", "dataset"),
    [
        ("simclr", ImageSet()),
        ("crop_flip", ImageSet()),
        ("gaussian_noise", TableSet()),
        ("scarf", TableSet()),
    ],
)
def test_views_reproducible_under_manual_seed(
    device: str, augmentation: str, dataset: BiasedDataset
) -> None:
    pipeline = build_views(augmentation, dataset).to(device)
    x = _images(6, device=device) if dataset.kind == "image" else torch.randn(6, 20, device=device)
    torch.manual_seed(0)
    first = pipeline(x)
    torch.manual_seed(0)
    again = pipeline(x)
    torch.manual_seed(1)
    other = pipeline(x)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])


def test_cpu_views_in_chunks_keep_each_sample_in_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch augmented in several CPU chunks: row i of both views still comes from sample i."""
    pipeline = build_views("crop_flip", ImageSet(size=16))
    sample_floats = 3 * 16 * 16
    monkeypatch.setattr(pipelines_module, "CPU_CHUNK_BYTES", 2 * 4 * sample_floats * 3)
    x = torch.linspace(0.05, 0.95, 10)[:, None, None, None].expand(10, 3, 16, 16).contiguous()
    assert pipeline.chunk_size(x) == 3  # 4 chunks: 3 + 3 + 3 + 1
    v1, v2 = pipeline(x)
    expected = pipeline.prepare(x)  # constant images: every crop and flip leaves them as they are
    assert v1.shape == v2.shape == expected.shape
    torch.testing.assert_close(v1, expected)
    torch.testing.assert_close(v2, expected)
    torch.manual_seed(0)
    chunked = pipeline(_images(10))
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(chunked, pipeline(_images(10)), strict=True))


def test_chunk_size_is_the_whole_batch_off_the_cpu_and_for_small_images() -> None:
    pipeline = build_views("simclr", ImageSet(size=32))
    assert pipeline.chunk_size(torch.empty(256, 3, 32, 32)) == 256  # CIFAR batch: one pass
    assert pipeline.chunk_size(torch.empty(512, 3, 32, 32, device="meta")) == 512
    big = build_views("simclr", ImageSet(size=128))
    assert 1 < big.chunk_size(torch.empty(512, 3, 128, 128)) < 512


def test_none_is_deterministic() -> None:
    images = build_views("none", ImageSet(), image_size=8)
    x = _images(4)
    v1, v2 = images(x)
    assert torch.equal(v1, v2)
    assert torch.equal(v1, images.prepare(x))
    table = build_views("none", TableSet())
    rows = torch.randn(4, 20)
    t1, t2 = table(rows)
    assert torch.equal(t1, rows)
    assert torch.equal(t2, rows)


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("image_size", [None, 8])
def test_prepare_normalises_per_channel(image_size: int | None) -> None:
    pipeline = build_views("simclr", ImageSet(), image_size=image_size)
    values = torch.tensor([0.1, 0.5, 0.9])
    x = values[None, :, None, None].expand(2, 3, 16, 16).contiguous()
    out = pipeline.prepare(x)
    expected = (values - torch.tensor(MEAN)) / torch.tensor(STD)
    size = image_size or 16
    torch.testing.assert_close(out, expected[None, :, None, None].expand(2, 3, size, size))


def test_prepare_resizes_like_torchvision() -> None:
    pipeline = build_views("none", ImageSet(), image_size=8)
    x = _images(2)
    expected = TF.resize(x, [8, 8], antialias=True)
    expected = TF.normalize(expected, list(MEAN), list(STD))
    torch.testing.assert_close(pipeline.prepare(x), expected, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- geometry


def _ramp_images(batch: int, size: int) -> torch.Tensor:
    """Channel 0 = x coordinate, channel 1 = y coordinate of the pixel centre, in (0, 1)."""
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    x = torch.zeros(batch, 3, size, size)
    x[:, 0] = coords[None, None, :]
    x[:, 1] = coords[None, :, None]
    return x


@pytest.mark.parametrize(
    ("augmentation", "min_area", "small_area"),
    [("crop_flip", 0.7, 0.75), ("crop_flip_wide", 0.08, 0.15)],
)
def test_crop_flip_keeps_its_share_of_the_area(
    augmentation: str, min_area: float, small_area: float
) -> None:
    """crop_flip keeps at least 70% of the area, crop_flip_wide 8%; neither changes colours
    (the ramps stay linear)."""
    dataset = ImageSet(size=32)
    dataset.mean, dataset.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    pipeline = build_views(augmentation, dataset)
    torch.manual_seed(0)
    v1, v2 = pipeline(_ramp_images(200, 32))
    views = torch.cat([v1, v2])
    # Bilinear resampling keeps the ramps linear: the step between neighbouring output pixels is
    # (crop side / image side) / output side, so the interior steps give the crop's size.
    dx = (views[:, 0, 16, 9:23].diff(dim=-1)).mean(dim=-1) * 32
    dy = (views[:, 1, 9:23, 16].diff(dim=-1)).mean(dim=-1) * 32
    area = dx.abs() * dy
    assert area.min() >= min_area - 1e-3
    assert area.max() <= 1.0 + 1e-3
    assert area.min() < small_area  # the full range is used
    aspect = dx.abs() / dy
    assert aspect.min() >= 3 / 4 - 1e-3 and aspect.max() <= 4 / 3 + 1e-3
    flipped = (dx < 0).float().mean()
    assert 0.35 < flipped < 0.65


def test_simclr_crop_boxes_follow_random_resized_crop() -> None:
    torch.manual_seed(0)
    boxes = sample_crop_boxes(4000, 32, 24, scale=(0.08, 1.0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all()
    assert (boxes[:, 2] <= 24 + 1e-4).all() and (boxes[:, 3] <= 32 + 1e-4).all()
    area = w * h / (32 * 24)
    aspect = w / h
    assert area.min() >= 0.08 - 1e-4 and area.min() < 0.1
    assert area.max() <= 1.0 + 1e-4
    assert (aspect >= 3 / 4 - 1e-4).all() and (aspect <= 4 / 3 + 1e-4).all()
    # Large areas rarely fit, so accepted areas are not uniform: the mean is below (0.08 + 1) / 2.
    assert 0.3 < area.mean() < 0.54


def test_crop_box_fallback_is_the_central_crop() -> None:
    # A 1x100 image: no box with aspect ratio in [3/4, 4/3] and area >= 0.5 fits.
    boxes = sample_crop_boxes(10, 1, 100, scale=(0.5, 1.0))
    expected = torch.tensor([100 / 2 - 4 / 3 / 2, 0.0, 100 / 2 + 4 / 3 / 2, 1.0])
    torch.testing.assert_close(boxes, expected.expand(10, 4))


def test_resized_crop_matches_torchvision_inside_the_box() -> None:
    x = _images(3, size=32)
    boxes = torch.tensor([[3.0, 2.0, 21.0, 24.0], [0.0, 0.0, 32.0, 32.0], [4.0, 0.0, 28.0, 32.0]])
    up = resized_crop(x, boxes, (40, 40))
    first = TF.resized_crop(x[0], 2, 3, 22, 18, [40, 40], antialias=True)
    # torchvision clamps at the crop's edge, we read the pixels beyond it: compare inside.
    torch.testing.assert_close(up[0, :, 2:-2, 2:-2], first[:, 2:-2, 2:-2])
    torch.testing.assert_close(up[1], TF.resize(x[1], [40, 40], antialias=True))
    down = resized_crop(x, boxes, (12, 12), flip=torch.tensor([False, True, False]))
    torch.testing.assert_close(down[1], TF.resize(x[1], [12, 12], antialias=True).flip(-1))
    third = TF.resized_crop(x[2], 0, 4, 32, 24, [12, 12], antialias=True)
    torch.testing.assert_close(down[2, :, :, 2:-2], third[:, :, 2:-2])


def test_crops_without_shrink_equal_the_resampling_matrices() -> None:
    # The two-tap path (images no larger than the output) against the dense matrices of the
    # same filter, with flips, boxes on the border, and several boxes cropping one image.
    torch.manual_seed(0)
    x = _images(4, size=12)
    boxes = sample_crop_boxes(9, 12, 12, scale=(0.08, 1.0))
    boxes[0] = torch.tensor([0.0, 0.0, 12.0, 12.0])
    boxes[1] = torch.tensor([0.0, 9.5, 2.5, 12.0])
    flip = torch.rand(9) < 0.5
    source = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0, 0])
    crops = resized_crop(x, boxes, (12, 12), flip, source)
    x0, y0, x1, y1 = boxes.unbind(1)
    x0, x1 = torch.where(flip, x1, x0), torch.where(flip, x0, x1)
    rows, cols = resampling_weights(y0, y1, 12, 12), resampling_weights(x0, x1, 12, 12)
    expected = rows[:, None] @ x[source] @ cols.transpose(1, 2)[:, None]
    torch.testing.assert_close(crops, expected)


@pytest.mark.parametrize("augmentation", ["simclr", "crop_flip", "none"])
def test_augment_pair_equals_augmenting_the_batch_twice(augmentation: str) -> None:
    views = build_views(augmentation, ImageSet(size=16), image_size=16)
    x = ImageSet(size=16).images
    torch.manual_seed(3)
    pair = views.augment_pair(x)
    torch.manual_seed(3)
    torch.testing.assert_close(pair, views.augment(torch.cat([x, x])))


# --------------------------------------------------------------------------- colour

TORCHVISION_STEPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def _tricky_images(channels: int) -> torch.Tensor:
    x = _images(12, channels=channels, size=8)
    x[0] = 0.5  # gray: hue undefined
    x[1, :, 0, 0] = torch.tensor([0.3, 0.3, 0.1])[:channels]  # two channels share the maximum
    x[2] = x[2] * 0.2 + 0.8  # bright: brightness > 1 clamps, so the step order matters
    return x


@pytest.mark.parametrize("channels", [3, 1])
def test_color_jitter_matches_torchvision_per_sample(channels: int) -> None:
    x = _tricky_images(channels)
    torch.manual_seed(0)
    factors, order = sample_jitter(12, strength=(0.6, 0.6, 0.6, 0.5), p=0.8)
    out = color_jitter_(x.clone(), factors, order)
    for i in range(12):
        expected = x[i]
        for step in order[i].tolist():
            if step >= 0:
                expected = TORCHVISION_STEPS[step](expected, float(factors[i, step]))
        torch.testing.assert_close(out[i], expected, atol=3e-6, rtol=0)


def test_sample_jitter_distribution() -> None:
    torch.manual_seed(0)
    factors, order = sample_jitter(4000, strength=(0.4, 0.3, 0.2, 0.1), p=0.8)
    for column, s in enumerate((0.4, 0.3, 0.2)):
        assert factors[:, column].min() >= 1 - s and factors[:, column].max() <= 1 + s
        assert abs(factors[:, column].mean().item() - 1.0) < 0.01
    assert factors[:, 3].abs().max() <= 0.1 and factors[:, 3].abs().max() > 0.09
    jittered = order[:, 0] >= 0
    assert 0.77 < jittered.float().mean() < 0.83
    assert (order[~jittered] == -1).all()
    assert (order[jittered].sort(dim=1).values == torch.arange(4)).all()  # permutations
    assert order[jittered].unique(dim=0).shape[0] == 24  # every order occurs


def test_hue_matches_torchvision_and_is_periodic() -> None:
    x = _tricky_images(3)
    shift = torch.linspace(-0.5, 0.5, 12)
    expected = torch.stack([TF.adjust_hue(x[i], float(shift[i])) for i in range(12)])
    torch.testing.assert_close(adjust_hue_(x.clone(), shift), expected, atol=2e-6, rtol=0)
    half = torch.full((12,), 0.5)
    back = adjust_hue_(adjust_hue_(x.clone(), half), -half)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)


def test_gaussian_blur_matches_torchvision() -> None:
    x = _images(16, size=8)
    torch.manual_seed(0)
    out = random_gaussian_blur_(x.clone(), p=1.0)
    torch.manual_seed(0)
    torch.rand(16)  # the application draws
    sigmas = torch.rand(16) * 1.9 + 0.1
    expected = torch.stack([TF.gaussian_blur(x[i], [3, 3], [float(sigmas[i])]) for i in range(16)])
    torch.testing.assert_close(out, expected)
    assert torch.equal(random_gaussian_blur_(x.clone(), p=0.0), x)


@pytest.mark.parametrize("shape", [(3, 2, 1, 5, 7), (2, 3, 2, 2)])
def test_reflected_neighbours_equal_reflect_padding(shape: tuple[int, ...]) -> None:
    x = torch.rand(*shape[-4:], generator=torch.Generator().manual_seed(4))
    for dim, pad in ((3, (1, 1, 0, 0)), (2, (0, 0, 1, 1))):
        padded = torch.nn.functional.pad(x, pad, mode="reflect")
        expected = padded.narrow(dim, 0, x.shape[dim]) + padded.narrow(dim, 2, x.shape[dim])
        assert torch.equal(colour_module._reflected_neighbours(x, dim), expected)


def test_random_grayscale_fraction() -> None:
    torch.manual_seed(0)
    x = _images(1).expand(1000, -1, -1, -1).contiguous()
    out = random_grayscale_(x.clone(), p=0.2)
    gray = (out.amax(dim=1) - out.amin(dim=1)).flatten(1).amax(dim=1) < 1e-6
    assert 0.16 < gray.float().mean() < 0.24
    expected = TF.rgb_to_grayscale(x[0], num_output_channels=3)
    torch.testing.assert_close(out[gray], expected.expand(int(gray.sum()), -1, -1, -1))
    assert torch.equal(out[~gray], x[~gray])


def test_simclr_views_use_all_steps() -> None:
    pipeline = build_views("simclr", ImageSet())
    pipeline.mean.zero_()
    pipeline.std.fill_(1.0)
    torch.manual_seed(0)
    v1, v2 = pipeline(_images(1).expand(500, -1, -1, -1))
    views = torch.cat([v1, v2])
    gray = (views.amax(dim=1) - views.amin(dim=1)).flatten(1).amax(dim=1) < 1e-5
    assert 0.14 < gray.float().mean() < 0.26
    assert views.min() >= 0.0 and views.max() <= 1.0
    channel_means = views.mean(dim=(2, 3))
    assert channel_means.std(dim=0).min() > 0.05  # colours vary between views


# --------------------------------------------------------------------------- tables


def test_gaussian_noise_std() -> None:
    pipeline = build_views("gaussian_noise", TableSet(), noise_std=0.3)
    x = torch.randn(4000, 20)
    v1, v2 = pipeline(x)
    noise = torch.cat([v1 - x, v2 - x])
    assert abs(noise.std().item() - 0.3) < 0.01
    assert abs(noise.mean().item()) < 0.01
    assert not torch.equal(v1, v2)
    assert torch.equal(pipeline.prepare(x), x)


def test_scarf_replaces_features_from_the_same_column() -> None:
    dataset = TableSet(n=50, features=20)
    pipeline = build_views("scarf", dataset, corruption_rate=0.6)
    x = torch.randn(300, 20) + 100.0  # disjoint from the table: every replacement is visible
    v1, v2 = pipeline(x)
    for v in (v1, v2):
        corrupted = v != x
        assert (corrupted.sum(dim=1) == 12).all()  # round(0.6 * 20) per sample
        column_share = corrupted.float().mean(dim=0)
        assert (column_share > 0.45).all() and (column_share < 0.75).all()
        rows, cols = corrupted.nonzero(as_tuple=True)
        in_column = (v[rows, cols][:, None] == dataset.rows[:, cols].T).any(dim=1)
        assert in_column.all()
        donors = (v[rows, cols][:, None] == dataset.rows[:, cols].T).float().argmax(dim=1)
        assert donors.unique().numel() > 40  # donors are drawn from many rows
    assert not torch.equal(v1, v2)
    assert torch.equal(pipeline.prepare(x), x)


def test_scarf_reference_table_is_capped() -> None:
    dataset = TableSet(n=30, features=4)
    table = reference_table(dataset, max_rows=10)
    assert table.shape == (10, 4)
    is_row = (table[:, None, :] == dataset.rows[None]).all(dim=2)
    assert (is_row.sum(dim=1) == 1).all()
    assert is_row.any(dim=0).sum() == 10
    assert torch.equal(reference_table(dataset, max_rows=30), dataset.rows)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("augmentation", "dataset", "allowed"),
    [
        ("rotate", ImageSet(), "simclr, crop_flip, crop_flip_wide, none"),
        ("scarf", ImageSet(), "simclr, crop_flip, crop_flip_wide, none"),
        ("gaussian_noise", ImageSet(), "simclr, crop_flip, crop_flip_wide, none"),
        ("simclr", TableSet(), "gaussian_noise, scarf, none"),
    ],
)
def test_wrong_augmentation_is_a_clear_error(
    augmentation: str, dataset: BiasedDataset, allowed: str
) -> None:
    with pytest.raises(DebiasclError, match=f"augmentation '{augmentation}'") as info:
        build_views(augmentation, dataset)
    assert allowed in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"augmentation": "scarf", "corruption_rate": 1.5}, "data.corruption_rate"),
        ({"augmentation": "gaussian_noise", "noise_std": -0.1}, "data.noise_std"),
    ],
)
def test_bad_table_settings(kwargs: dict, setting: str) -> None:
    with pytest.raises(DebiasclError, match=re.escape(setting)):
        build_views(dataset=TableSet(), **kwargs)


def test_bad_image_settings() -> None:
    with pytest.raises(DebiasclError, match=r"data\.image_size"):
        build_views("simclr", ImageSet(), image_size=0)
    dataset = ImageSet()
    dataset.mean = (0.5,)
    with pytest.raises(DebiasclError, match="one per channel"):
        build_views("simclr", dataset)


def test_wrong_input_shape_is_a_clear_error() -> None:
    pipeline = build_views("simclr", ImageSet())
    with pytest.raises(DebiasclError, match=r"\(B, 3, 16, 16\)"):
        pipeline(torch.rand(2, 3, 8, 8))
    with pytest.raises(DebiasclError, match="float or uint8"):
        pipeline.prepare(torch.zeros(2, 3, 16, 16, dtype=torch.long))
    with pytest.raises(DebiasclError, match="expects float inputs"):
        build_views("gaussian_noise", TableSet())(torch.zeros(2, 20, dtype=torch.uint8))
