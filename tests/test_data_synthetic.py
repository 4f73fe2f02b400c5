"""Built-in biased benchmarks: construction, determinism, rho, balance, IDX reading, the CLI."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import torch

from debiascl.cli import main
from debiascl.cli.datasets import describe
from debiascl.data import build_dataset, synthetic
from debiascl.data.synthetic import benchmarks as synthetic_benchmarks
from debiascl.data.synthetic import sources as synthetic_sources
from debiascl.errors import DebiasclError

DIGIT_TRAIN_PER_CLASS = [106, 110, 107, 109, 109, 110, 109, 107, 104, 108]


def rounded(x: float) -> int:
    return math.floor(x + 0.5)


def test_digits_shapes_range_and_sizes():
    splits = {s: build_dataset("biased-digits", None, s) for s in ("train", "val", "test")}
    train = splits["train"]
    assert train.kind == "image" and train.input_shape == (3, 16, 16)
    assert (len(train), len(splits["val"]), len(splits["test"])) == (1079, 3590, 3590)
    assert torch.bincount(train.targets).tolist() == DIGIT_TRAIN_PER_CLASS
    index, x, y, a = train[5]
    assert index == 5 and x.dtype == torch.float32 and x.shape == (3, 16, 16)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and float(x.max()) > 0.9
    assert y == int(train.targets[5]) and a == int(train.attributes[5])
    assert train.num_classes == 10 and train.num_attributes == 10
    assert train.attribute_names == list(synthetic.PALETTE)
    assert len(train.mean) == 3 and all(0 < s < 0.5 for s in train.std)
    assert splits["test"].mean == train.mean and splits["test"].std == train.std
    expected_mean = train.images.float().div(255).mean(dim=(0, 2, 3))
    assert torch.allclose(torch.tensor(train.mean).float(), expected_mean, atol=1e-5)


@pytest.mark.parametrize("rho", [0.95, 0.8])
def test_digits_rho_exact_counts(rho):
    train = build_dataset("biased-digits", None, "train", rho=rho)
    expected = sum(rounded(rho * n) for n in DIGIT_TRAIN_PER_CLASS)
    assert int(train.bias_aligned.sum()) == expected
    assert abs(train.bias_aligned.float().mean().item() - rho) < 0.01
    assert torch.equal(train.bias_aligned, train.attributes == train.targets)
    for c in range(10):
        conflicting = train.attributes[(train.targets == c) & ~train.bias_aligned]
        counts = torch.bincount(conflicting, minlength=10)
        assert counts[c] == 0
        others = torch.cat([counts[:c], counts[c + 1 :]])
        assert int(others.max() - others.min()) <= 1  # conflicting colours dealt evenly


def test_train_fraction_keeps_a_seeded_stratified_part_of_train():
    full = build_dataset("biased-digits", None, "train")
    half = build_dataset("biased-digits", None, "train", train_fraction=0.5)
    kept = [rounded(0.5 * n) for n in DIGIT_TRAIN_PER_CLASS]
    assert torch.bincount(half.targets).tolist() == kept
    # the bias is assigned to the kept images: rho of each class, exactly
    assert int(half.bias_aligned.sum()) == sum(rounded(0.95 * n) for n in kept)
    # image_ids name the kept source images: each class's ids are some of the full split's
    assert len(set(half.image_ids.tolist())) == len(half)
    for c in range(10):
        ids = set(half.image_ids[half.targets == c].tolist())
        assert ids <= set(full.image_ids[full.targets == c].tolist())
    # val and test do not change; another seed keeps other images
    val = build_dataset("biased-digits", None, "val", train_fraction=0.5)
    assert torch.equal(val.images, build_dataset("biased-digits", None, "val").images)
    other = build_dataset("biased-digits", None, "train", train_fraction=0.5, seed=1)
    assert not torch.equal(half.image_ids, other.image_ids)
    binary = build_dataset("biased-digits-binary", None, "train", train_fraction=0.1)
    assert torch.bincount(binary.targets).tolist() == [rounded(0.1 * 541), rounded(0.1 * 538)]
    for bad in (0, 1.5, "x"):
        with pytest.raises(DebiasclError, match=r"train_fraction.*expected a fraction in \(0, 1\]"):
            build_dataset("biased-digits", None, "train", train_fraction=bad)


def test_digits_val_test_are_group_balanced():
    test = build_dataset("biased-digits", None, "test")
    counts = torch.zeros(10, 10, dtype=torch.long)
    counts.index_put_((test.targets, test.attributes), torch.ones_like(test.targets), True)
    assert (counts == counts[:, :1]).all()  # every image once with every colour
    assert int(test.bias_aligned.sum()) == len(test) // 10
    ids = test.image_ids.reshape(-1, 10)
    assert (ids == ids[:, :1]).all()
    single = build_dataset("biased-digits", None, "val", balanced_copies=False)
    assert len(single) == 359
    for c in range(10):
        per_colour = torch.bincount(single.attributes[single.targets == c], minlength=10)
        assert int(per_colour.max() - per_colour.min()) <= 1


def test_binary_digits_groups_and_textures():
    train = build_dataset("biased-digits-binary", None, "train")
    assert train.num_classes == 2 and train.attribute_names == ["land", "water"]
    assert torch.bincount(train.targets).tolist() == [541, 538]
    assert int(train.bias_aligned.sum()) == rounded(0.95 * 541) + rounded(0.95 * 538) == 1025
    assert torch.equal(train.groups, 2 * train.targets + train.attributes)
    test = build_dataset("biased-digits-binary", None, "test")
    assert len(test) == 718
    assert torch.bincount(test.groups, minlength=4).tolist() == [180, 180, 179, 179]
    # The corner (no stroke) shows the background: water is blue, land is green-dominant.
    corner = train.images[:, :, 0, 0].float()
    water = corner[:, 2] > corner[:, 1]
    assert torch.equal(water, train.attributes == 1)


def test_patch_digits_bias_is_the_position_of_a_white_patch():
    train = build_dataset("biased-digits-patch", None, "train")
    assert train.num_classes == 2 and train.attribute_names == ["patch top", "patch bottom"]
    assert len(train) == 1079 and int(train.bias_aligned.sum()) == 1025  # as digits-binary
    assert torch.equal(train.attributes == train.targets, train.bias_aligned)
    assert torch.equal(train.groups, 2 * train.targets + train.attributes)
    side = max(2, round(16 / 6))
    top = train.images[:, :, 1 : 1 + side, 1 : 1 + side]
    bottom = train.images[:, :, 16 - 1 - side : 16 - 1, 1 : 1 + side]
    white = torch.full_like(top, 255)
    has_top = (top == white).flatten(1).all(1)
    has_bottom = (bottom == white).flatten(1).all(1)
    assert torch.equal(has_top, train.attributes == 0)
    assert torch.equal(has_bottom, train.attributes == 1)
    # Not a colour: the colour statistics of the two attributes' images are alike (grey, same
    # patch); only where the patch sits differs.
    assert torch.equal(train.images[:, 0], train.images[:, 1])
    test = build_dataset("biased-digits-patch", None, "test")
    assert torch.bincount(test.groups, minlength=4).tolist() == [180, 180, 179, 179]


def test_render_formula():
    grey = np.array([[[0, 255], [26, 64]]], dtype=np.uint8)  # g = 0, 1, ~0.102, ~0.251
    out = synthetic.render(grey, np.array([5]), np.zeros(1), size=2, cue="colour")
    blue = torch.tensor(synthetic.PALETTE["blue"])
    assert torch.equal(out[0, :, 0, 0], (blue * 255).round().to(torch.uint8))
    assert torch.equal(out[0, :, 0, 1], torch.full((3,), 255, dtype=torch.uint8))
    g = 26 / 255
    mixed = (4 * g * g + (1 - 4 * g) * blue) * 255
    assert torch.allclose(out[0, :, 1, 0].float(), mixed, atol=0.51)
    assert torch.equal(out[0, :, 1, 1], torch.full((3,), 64, dtype=torch.uint8))  # alpha = 1


def test_determinism_and_seed():
    synthetic_benchmarks._benchmark.cache_clear()
    first = build_dataset("biased-digits-binary", None, "train", seed=7)
    synthetic_benchmarks._benchmark.cache_clear()
    again = build_dataset("biased-digits-binary", None, "train", seed=7)
    assert first.images is not again.images
    assert torch.equal(first.images, again.images)
    assert torch.equal(first.attributes, again.attributes)
    other = build_dataset("biased-digits-binary", None, "train", seed=8)
    assert not torch.equal(first.attributes, other.attributes)


def test_bad_options():
    with pytest.raises(DebiasclError, match=r"option rho=1\.5"):
        build_dataset("biased-digits", None, "train", rho=1.5)
    with pytest.raises(DebiasclError, match="unknown option"):
        build_dataset("biased-digits", None, "train", colour="red")
    with pytest.raises(DebiasclError, match="balanced_copies"):
        build_dataset("biased-digits", None, "train", balanced_copies="yes")


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def fake_fmnist(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n, compress in (("train", 200, True), ("t10k", 50, False)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, compress)
    return tmp_path


def test_fmnist_from_idx_files(fake_fmnist):
    root = str(fake_fmnist)
    sizes = [len(build_dataset("biased-fmnist", root, s)) for s in ("train", "val", "test")]
    assert sizes == [180, 20, 50]
    train = build_dataset("biased-fmnist", root, "train")
    assert train.input_shape == (3, 28, 28) and train.class_names[0] == "T-shirt/top"
    assert int(train.bias_aligned.sum()) == 10 * rounded(0.95 * 18)
    binary = [build_dataset("biased-fmnist-binary", root, s) for s in ("train", "val", "test")]
    assert [len(d) for d in binary] == [144, 16, 40]
    assert torch.bincount(binary[2].groups, minlength=4).tolist() == [10, 10, 10, 10]
    small = build_dataset("biased-fmnist-binary", root, "test", image_size=16)
    assert small.input_shape == (3, 16, 16)


def test_read_idx_errors(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, np.zeros((2, 3, 3)), compress=False)
    assert synthetic.read_idx(path).shape == (2, 3, 3)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DebiasclError, match="17 data bytes; expected 18"):
        synthetic.read_idx(path)
    path.write_bytes(b"\x00\x00\x0d\x01" + (1).to_bytes(4, "big") + b"\x00" * 4)
    with pytest.raises(DebiasclError, match="not an IDX file of unsigned bytes"):
        synthetic.read_idx(path)


def test_fmnist_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic_sources, "DEBIAN_FMNIST", tmp_path / "absent")
    with pytest.raises(DebiasclError, match="dataset-fashion-mnist"):
        build_dataset("biased-fmnist", str(tmp_path), "train")


def test_fmnist_download_failure_is_one_line_error(tmp_path, monkeypatch):
    """torchvision's RuntimeError (no network here: the class is replaced) becomes one line."""
    import torchvision.datasets

    def offline(root, train, download):
        raise RuntimeError(f"Error downloading train-images-idx3-ubyte.gz to {root}\nno network")

    monkeypatch.setattr(synthetic_sources, "DEBIAN_FMNIST", tmp_path / "absent")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DebiasclError) as caught:
        build_dataset("biased-fmnist", str(tmp_path / "new"), "train", download=True)
    message = str(caught.value)
    assert message.startswith(f"download of dataset 'biased-fmnist' into {tmp_path / 'new'} failed")
    assert message.endswith("idx3-ubyte.gz to " + str(tmp_path / "new") + " no network")
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_fmnist_root_must_exist_but_may_lack_the_files(fake_fmnist, tmp_path, monkeypatch):
    """A mistyped root is an error; an existing root without the files falls back to Debian's."""
    typo = tmp_path / "typo"
    with pytest.raises(
        DebiasclError,
        match=r"data root .*typo of dataset 'biased-fmnist' \("
        r"setting data\.root\) does not exist; expected .*IDX files",
    ):
        build_dataset("biased-fmnist", str(typo), "test")
    monkeypatch.setattr(synthetic_sources, "DEBIAN_FMNIST", fake_fmnist / "FashionMNIST" / "raw")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(build_dataset("biased-fmnist", str(empty), "test")) == 50
    assert len(build_dataset("biased-fmnist", None, "test")) == 50


@pytest.mark.slow
@pytest.mark.skipif(
    synthetic_sources._find_fmnist(None) is None, reason="Fashion-MNIST IDX files are not installed"
)
def test_real_fmnist_binary_sizes():
    test = build_dataset("biased-fmnist-binary", None, "test")
    train = build_dataset("biased-fmnist-binary", None, "train")
    assert (len(train), len(test)) == (43200, 8000)
    assert int(train.bias_aligned.sum()) == 41040
    assert torch.bincount(test.groups, minlength=4).tolist() == [2000] * 4


def test_describe_counts():
    info = describe(build_dataset("biased-digits-binary", None, "train", rho=0.9))
    assert info["size"] == 1079 and info["unknown_attribute"] == 0
    assert info["aligned"] == rounded(0.9 * 541) + rounded(0.9 * 538)
    assert info["aligned"] + info["conflicting"] == 1079
    assert info["group_counts"] == [[487, 54], [54, 484]]
    assert info["class_counts"] == [541, 538]


def test_cli_lists_and_describes(capsys):
    assert main(["datasets"]) == 0
    listing = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in listing]
    for name in ("biased-digits", "biased-digits-binary", "biased-fmnist", "adult", "csv"):
        assert name in names
    assert main(["datasets", "describe", "biased-digits-binary", "--set", "rho=0.9"]) == 0
    out = capsys.readouterr().out
    assert "biased-digits-binary (rho=0.9)" in out
    assert out.splitlines()[2].split() == ["train", "1079", "971", "108", "0"]
    assert out.splitlines()[3].split() == ["val", "718", "359", "359", "0"]
    assert "digit 0-4   487    54" in out
    assert main(["datasets", "describe", "biased-digits", "--set", "rho"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["datasets", "describe", "no-such-set"]) == 2
