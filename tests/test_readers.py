"""No silent wrong result: every file debiascl writes and reads back is checked (issue 26).

Each reader meets truncated, empty, wrong-type, NUL-filled and huge-field variants of its file:
a derived file (results, a discovery, the decoded-image cache, JTT's error set) is computed
again with a log line, any other (a run's config.yaml, metrics.jsonl) is one line
``debiascl: error: ...`` and exit status 2. Results and discoveries copied from another run, and
a hand-edited discovered.csv, are recomputed, never reused; grid axes, ``--set`` keys and seed
ranges that cannot be meant are refused before any work; failing plugins are one line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fakes import DATASET
from fakes import train_args as shared_train_args
from PIL import Image
from test_guarantees import one_line_error as one_line

from debiascl.cli import main
from debiascl.compare import RunSettings, bias_runs, plan_runs
from debiascl.data import build_dataset
from debiascl.data.cache import attach_cache
from debiascl.data.images import decode_image
from debiascl.discovery import read_discovery
from debiascl.errors import DebiasclError
from debiascl.grid import parse_grid
from debiascl.jtt import error_set_problem
from debiascl.records import results_problem
from debiascl.registry import METHODS

TINY = ("data.options.image_size=8", "train.knn_every=0")
HUGE = "9" * 200_000
"""A field larger than the csv module's default limit (131,072 characters)."""


def train_args(out: Path, *extra: str, method: str = "simclr", **options: object) -> list[str]:
    return shared_train_args(out, *extra, method=method, settings=TINY, **options)


def compare_args(out: Path, *extra: str, seeds: str = "0,1") -> list[str]:
    head = ["compare", "--dataset", DATASET, "--methods", "simclr", "--seeds", seeds]
    tiny = ["--epochs", "1", "--device", "cpu", "--no-plots"]
    return [*head, *tiny, *(f"--set={s}" for s in TINY), "--out", str(out), *extra]


def damaged(kind: str, good: bytes) -> bytes:
    """``good`` (a file's bytes) damaged as ``kind`` says."""
    return {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "wrong type": b"[1, 2, 3]\n",
        "NUL-filled": b"\0" * max(len(good), 16),
        "huge field": json.dumps({"key": HUGE}).encode(),
    }[kind]


DAMAGE = ("truncated", "empty", "wrong type", "NUL-filled", "huge field")


# ----------------------------------------------------------------------------- results


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny comparison (simclr, seeds 0 and 1), made once for the module."""
    return _made(compare_args(tmp_path_factory.mktemp("comparison") / "cmp"))


def _made(args: list[str]) -> Path:
    """The ``--out`` folder of the CLI command ``args``, run to success."""
    assert main(args) == 0
    return Path(args[args.index("--out") + 1])


@pytest.fixture
def comparison_copy(comparison: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(comparison, tmp_path / "cmp"))


def _seeds_in(out: Path) -> list[int]:
    return [row["seed"] for row in json.loads((out / "results.json").read_text())]


def test_results_copied_from_another_seed_are_evaluated_again(
    comparison_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = comparison_copy / "runs" / "simclr"
    shutil.copy(runs / "seed0" / "results.json", runs / "seed1" / "results.json")
    capsys.readouterr()
    assert main(compare_args(comparison_copy)) == 0
    err = capsys.readouterr().err
    assert "seed 1: 'results.json' holds the results of simclr seed 0" in err, err
    assert "evaluating it again" in err
    assert _seeds_in(comparison_copy) == [0, 1]
    assert json.loads((runs / "seed1" / "results.json").read_text())["seed"] == 1


def test_results_of_another_checkpoint_are_evaluated_again(
    comparison_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = comparison_copy / "runs" / "simclr" / "seed1" / "results.json"
    results = json.loads(path.read_text())
    path.write_text(json.dumps(results | {"checkpoint_sha256": "0" * 64}))
    capsys.readouterr()
    assert main(compare_args(comparison_copy)) == 0
    assert "was computed from another checkpoint than the run's" in capsys.readouterr().err


def test_results_of_a_moved_comparison_are_reused(
    comparison: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    moved = Path(shutil.move(shutil.copytree(comparison, tmp_path / "a"), tmp_path / "b"))
    capsys.readouterr()
    assert main(compare_args(moved)) == 0
    assert capsys.readouterr().err.count("finished earlier: skipped") == 2


@pytest.mark.parametrize("kind", [*DAMAGE, "text accuracy", "number main"])
def test_damaged_results_are_evaluated_again_with_a_log_line(
    kind: str, comparison_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = comparison_copy / "runs" / "simclr" / "seed1" / "results.json"
    good = path.read_bytes()
    results = json.loads(good)
    if kind == "text accuracy":
        results["probe"]["metrics"]["accuracy"] = "0.9"
        bad = json.dumps(results).encode()
    elif kind == "number main":
        bad = json.dumps(results | {"main": 3}).encode()
    else:
        bad = damaged(kind, good)
    path.write_bytes(bad)
    capsys.readouterr()
    assert main(compare_args(comparison_copy)) == 0
    err = capsys.readouterr().err
    assert "seed 1: 'results.json'" in err and "evaluating it again" in err, err
    assert results_problem(json.loads(path.read_text())) is None
    assert _seeds_in(comparison_copy) == [0, 1]


# ----------------------------------------------------------------------------- discovery


@pytest.fixture(scope="module")
def discovered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny wcl run with its bias discovery."""
    run_dir = tmp_path_factory.mktemp("discovered") / "wcl"
    assert main(train_args(run_dir, method="wcl")) == 0
    assert main(["discover", str(run_dir), "--device", "cpu", "--no-plots"]) == 0
    return run_dir


@pytest.fixture
def discovered_copy(discovered: Path, tmp_path: Path) -> Path:
    run_dir = Path(shutil.copytree(discovered, tmp_path / "wcl"))
    summary = json.loads((run_dir / "discovery.json").read_text())
    summary["run_dir"] = str(run_dir)  # as if discovered here
    (run_dir / "discovery.json").write_text(json.dumps(summary))
    return run_dir


def _edit_flags(run_dir: Path, edit: Callable[[list[str]], list[str]]) -> None:
    path = run_dir / "discovered.csv"
    lines = path.read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    path.write_text("\n".join([lines[0], *(",".join(edit(row)) for row in rows)]) + "\n")


EDITS = {
    "flags set to 2": lambda row: [*row[:4], "2" if row[4] == "1" else row[4], row[5]],
    "flags cleared": lambda row: [*row[:4], "0", row[5]],
    "flags on every sample": lambda row: [*row[:4], "1", row[5]],
}


@pytest.mark.parametrize("edit", EDITS)
def test_a_hand_edited_discovery_is_refused(edit: str, discovered_copy: Path) -> None:
    _edit_flags(discovered_copy, EDITS[edit])
    with pytest.raises(DebiasclError) as error:
        read_discovery(discovered_copy)
    message = str(error.value)
    assert "discovered.csv" in message and "debiascl discover" in message and "\n" not in message


def _discovery_file_variants() -> list[tuple[str, str]]:
    return [(name, kind) for name in ("discovered.csv", "discovery.json") for kind in DAMAGE] + [
        ("discovery.json", "a number"),
        ("discovery.json", "no precision"),
        ("discovered.csv", "huge CSV field"),
    ]


@pytest.mark.parametrize(("name", "kind"), _discovery_file_variants())
def test_every_damaged_discovery_file_is_one_error_naming_it(
    name: str, kind: str, discovered_copy: Path
) -> None:
    path = discovered_copy / name
    good = path.read_bytes()
    if kind == "a number":
        bad = b"5\n"
    elif kind == "no precision":
        summary = json.loads(good)
        del summary["train"]["precision"]
        bad = json.dumps(summary).encode()
    elif kind == "huge CSV field":
        bad = good + f"train,{HUGE},0,0.1,0,0\n".encode()
    else:
        bad = damaged(kind, good)
    path.write_bytes(bad)
    with pytest.raises(DebiasclError) as error:
        read_discovery(discovered_copy)
    message = str(error.value)
    assert name in message and "debiascl discover" in message and "\n" not in message


@pytest.mark.parametrize("edit", ["flags set to 2", "flags cleared", "summary a number"])
def test_eval_discovers_again_instead_of_using_an_edited_discovery(
    edit: str,
    discovered_copy: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = (discovered_copy / "discovered.csv").read_text()
    if edit == "summary a number":
        (discovered_copy / "discovery.json").write_text("5")
    else:
        _edit_flags(discovered_copy, EDITS[edit])
    args = ["eval", str(discovered_copy), "--probe-groups", "discovered", "--no-plots"]
    assert main([*args, "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "; discovering again" in err, err
    assert (discovered_copy / "discovered.csv").read_text() == original
    results = json.loads((discovered_copy / "results.json").read_text())
    rows = [line.split(",") for line in original.splitlines()[1:]]
    flagged = sum(int(row[4]) for row in rows if row[0] == "train")
    assert results["discovery"]["train"]["flagged"] == flagged > 0


def test_a_discovery_made_for_another_run_is_made_again(
    discovered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = Path(shutil.copytree(discovered, tmp_path / "copy"))
    args = ["eval", str(copy), "--probe-groups", "discovered", "--no-plots", "--device", "cpu"]
    assert main(args) == 0
    assert f"was made for run '{discovered}'; discovering again" in capsys.readouterr().err
    assert json.loads((copy / "discovery.json").read_text())["run_dir"] == str(copy)


# ----------------------------------------------------------------------------- run files


@pytest.mark.parametrize("kind", DAMAGE)
@pytest.mark.parametrize("name", ["config.yaml", "metrics.jsonl"])
def test_damaged_run_files_are_one_line_through_eval(
    name: str, kind: str, discovered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = Path(shutil.copytree(discovered, tmp_path / "run"))
    path = run_dir / name
    good = path.read_bytes()
    bad = damaged(kind, good)
    if name == "metrics.jsonl" and kind in ("truncated", "empty"):
        bad = b'{"kind": "step"\n' + good  # a torn last line is legal; a torn middle one not
    path.write_bytes(bad)
    status = main(["eval", str(run_dir), "--device", "cpu"])
    one_line(capsys, status, str(path))


@pytest.mark.parametrize(
    "record",
    [
        [1, 2],
        {"jtt_epochs": 1, "jtt_upweight": 2, "train_size": 5, "size": 1, "epoch_size": 6},
        {"jtt_epochs": 1, "jtt_upweight": 2, "train_size": 5, "size": 1, "epoch_size": 6,
         "indices": [7]},
        {"jtt_epochs": 1, "jtt_upweight": 2, "train_size": 5, "size": 2, "epoch_size": 6,
         "indices": [1]},
        {"jtt_epochs": "1", "jtt_upweight": 2, "train_size": 5, "size": 1, "epoch_size": 6,
         "indices": [1]},
    ],
)  # fmt: skip
def test_error_sets_of_the_wrong_shape_are_named(record: object) -> None:
    assert error_set_problem(record) is not None
    sound = {"jtt_epochs": 1, "jtt_upweight": 2, "train_size": 5, "size": 1, "epoch_size": 6}
    assert error_set_problem(sound | {"indices": [4], "composition": None}) is None


JTT = ("method.jtt_epochs=1", "method.jtt_upweight=2")


@pytest.fixture(scope="module")
def jtt_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny JTT run (one stage-1 epoch, one stage-2 epoch)."""
    return _made(train_args(tmp_path_factory.mktemp("jtt") / "jtt", *_jtt_sets(), method="jtt"))


def _jtt_sets() -> list[str]:
    return [arg for setting in JTT for arg in ("--set", setting)]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_error_set_is_computed_again_through_train_resume(
    kind: str, jtt_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = Path(shutil.copytree(jtt_run, tmp_path / "jtt"))
    path = run_dir / "error_set.json"
    good = json.loads(path.read_text())
    path.write_bytes(damaged(kind, path.read_bytes()))
    capsys.readouterr()
    assert main(train_args(run_dir, *_jtt_sets(), "--resume", method="jtt")) == 0
    err = capsys.readouterr().err
    assert f"JTT error set '{path}' is unusable" in err and "computing it again" in err, err
    assert json.loads(path.read_text()) == good


# ----------------------------------------------------------------------------- cache


def _folder(root: Path, images: dict[str, Image.Image], metadata: bytes | None = None) -> Path:
    """A metadata-csv folder of ``images`` (all in train)."""
    root.mkdir(parents=True)
    lines = ["filename,split,y,a"]
    for k, (name, image) in enumerate(images.items()):
        image.save(root / name)
        lines.append(f"{name},0,{k % 2},{k // 2 % 2}")
    (root / "metadata.csv").write_bytes(metadata or ("\n".join(lines) + "\n").encode())
    return root


def _noise(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))


def _cached(root: Path, cache: Path) -> torch.Tensor:
    dataset = attach_cache(build_dataset("metadata-csv", str(root), "train", image_size=16), cache)
    return dataset.load_batch(list(range(len(dataset))))


def test_an_image_rewritten_with_its_mtime_restored_rebuilds_the_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _folder(tmp_path / "data", {f"i{k}.png": _noise(k) for k in range(4)})
    before = _cached(root, tmp_path / "cache")
    path = root / "i2.png"
    stat = path.stat()
    _noise(99).save(path)  # other pixels, the same size, as rsync -t or a restore leaves it
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    with caplog.at_level(logging.INFO, logger="debiascl"):
        after = _cached(root, tmp_path / "cache")
    assert "out of date" in caplog.text and "rebuilding it" in caplog.text
    assert torch.equal(after[[0, 1, 3]], before[[0, 1, 3]]) and not torch.equal(after[2], before[2])


def test_zeroed_bytes_inside_the_cache_are_detected_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _folder(tmp_path / "data", {f"i{k}.png": _noise(k) for k in range(4)})
    expected = _cached(root, tmp_path / "cache")
    (npy,) = (tmp_path / "cache" / "images").glob("*.npy")
    with npy.open("r+b") as handle:  # header and size intact
        handle.seek(npy.stat().st_size - 2000)
        handle.write(bytes(1000))
    with caplog.at_level(logging.INFO, logger="debiascl"):
        assert torch.equal(_cached(root, tmp_path / "cache"), expected)
    assert "fail their checksum); rebuilding it" in caplog.text


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_cache_manifest_is_rebuilt(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _folder(tmp_path / "data", {f"i{k}.png": _noise(k) for k in range(4)})
    expected = _cached(root, tmp_path / "cache")
    (manifest,) = (tmp_path / "cache" / "images").glob("*.json")
    manifest.write_bytes(damaged(kind, manifest.read_bytes()))
    with caplog.at_level(logging.INFO, logger="debiascl"):
        assert torch.equal(_cached(root, tmp_path / "cache"), expected)
    assert "rebuilding it" in caplog.text


def _split_folder(root: Path) -> Path:
    """A metadata-csv folder of 24 noise images spread over train, val and test."""
    images = {f"i{k}.png": _noise(k) for k in range(24)}
    lines = ["filename,split,y,a", *(f"i{k}.png,{k % 3},{k % 2},{k // 2 % 2}" for k in range(24))]
    return _folder(root, images, ("\n".join(lines) + "\n").encode())


def _image_args(data: Path, out: Path) -> list[str]:
    """``debiascl train`` of the tiny simclr run on the images in ``data``, batches of 8."""
    return train_args(out, "--batch-size", "8", "--data-dir", str(data), dataset="metadata-csv")


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished tiny run on image files and the decoded-image cache it built."""
    root = tmp_path_factory.mktemp("cached")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEBIASCL_CACHE_DIR", str(root / "cache"))
        run_dir = _made(_image_args(_split_folder(root / "data"), root / "run"))
    return run_dir, root / "cache"


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_cache_manifest_is_rebuilt_through_eval(
    kind: str, cached_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = Path(shutil.copytree(cached_run[0], tmp_path / "run"))
    cache = Path(
        shutil.copytree(cached_run[1], os.environ["DEBIASCL_CACHE_DIR"], dirs_exist_ok=True)
    )
    manifest = sorted((cache / "images").glob("*.json"))[0]
    good = manifest.read_bytes()
    manifest.write_bytes(damaged(kind, good))
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--no-plots", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"decoded-image cache {manifest.with_suffix('.npy')} is" in err, err
    assert "rebuilding it" in err
    assert json.loads(manifest.read_bytes()) == json.loads(good)
    assert (run_dir / "results.json").is_file()


def test_a_killed_build_leaves_no_orphan_and_the_manifest_is_readable_by_all(
    tmp_path: Path,
) -> None:
    root = _folder(tmp_path / "data", {f"i{k}.png": _noise(k) for k in range(4)})
    folder = tmp_path / "cache" / "images"
    _cached(root, tmp_path / "cache")
    (npy,) = folder.glob("*.npy")
    orphan = folder / f".{npy.name}.abc123.tmp"  # what a kill -9 mid-build leaves
    orphan.write_bytes(npy.read_bytes())
    npy.with_suffix(".json").unlink()
    _cached(root, tmp_path / "cache")
    assert not orphan.exists()
    assert npy.with_suffix(".json").stat().st_mode & 0o777 == npy.stat().st_mode & 0o777 == 0o644


def _modes() -> dict[str, tuple[Image.Image, tuple[int, int, int]]]:
    """Images of one colour in many PIL modes and the RGB pixel each must decode to."""
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 200, 40, 10] + [0] * 762)
    transparent = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    half = Image.new("LA", (8, 8), (200, 128))
    return {
        "I;16.png": (Image.fromarray(np.full((8, 8), 257 * 100, np.uint16)), (100,) * 3),
        "I.tif": (Image.fromarray(np.full((8, 8), 257 * 30, np.int32), mode="I"), (30,) * 3),
        "F.tif": (Image.fromarray(np.full((8, 8), 0.5, np.float32), mode="F"), (128,) * 3),
        "P.png": (palette, (200, 40, 10)),
        "RGBA.png": (transparent, (0, 0, 0)),
        "LA.png": (half, (100, 100, 100)),
        "CMYK.jpg": (Image.new("CMYK", (8, 8), (0, 255, 0, 0)), (255, 0, 255)),
        "1.png": (Image.new("1", (8, 8), 1), (255, 255, 255)),
    }


@pytest.mark.parametrize("name", list(_modes()))
def test_every_image_mode_is_converted_faithfully(name: str, tmp_path: Path) -> None:
    image, expected = _modes()[name]
    path = tmp_path / name
    image.save(path)
    decoded = decode_image(path, 8)
    for channel, value in enumerate(expected):
        assert abs(int(decoded[channel].float().mean()) - value) <= 2, (name, decoded[:, 0, 0])


def test_a_mode_that_cannot_be_converted_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "far.tif"
    Image.fromarray(np.full((8, 8), 7.0, np.float32), mode="F").save(path)
    with pytest.raises(DebiasclError, match=f"cannot read image {path}: its mode F pixels"):
        decode_image(path, 8)


def test_a_folder_of_16_bit_greyscale_pngs_is_not_blank(tmp_path: Path) -> None:
    ramp = (np.arange(256, dtype=np.uint32).reshape(16, 16) * 200).astype(np.uint16)
    images = {f"g{k}.png": Image.fromarray(ramp // (k + 1)) for k in range(4)}
    pixels = _cached(_folder(tmp_path / "data", images), tmp_path / "cache")
    assert pixels.min() == 0 and 0.5 < float(pixels.max()) < 0.8  # 51000 / 65535


def test_a_metadata_csv_with_a_bom_crlf_and_quoted_fields_is_read(tmp_path: Path) -> None:
    images = {"a.png": _noise(0), "b c.png": _noise(1)}
    metadata = '\ufefffilename,split,y,a\r\n"a.png",0,0,1\r\n"b c.png","0",1,0\r\n'
    root = _folder(tmp_path / "data", images, metadata.encode("utf-8"))
    dataset = build_dataset("metadata-csv", str(root), "train", image_size=16)
    assert dataset.targets.tolist() == [0, 1] and dataset.attributes.tolist() == [1, 0]


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--grid", "method.tau_pluss=0.05,0.1"], ["did you mean 'method.tau_plus'?"]),
        (["--grid", "method.beta=0.5,1"], ["'method.beta' belongs to none of the methods"]),
        (["--grid", "tau_pluss=0.1,0.2"], ["did you mean 'method.tau_plus'?"]),
        (["--set", "method.tau_pluss=0.1"], ["did you mean 'method.tau_plus'?"]),
        (["--set", "optim.lrr=0.1"], ["did you mean 'optim.lr'?"]),
    ],
)
def test_unknown_settings_name_the_closest_valid_one(
    extra: list[str], fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line(capsys, main(compare_args(tmp_path / "c", *extra)), *fragments)
    assert not (tmp_path / "c").exists()


def test_an_unknown_setting_in_a_config_file_names_the_closest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  epochz: 3\n")
    status = main(compare_args(tmp_path / "c", "--config", str(config)))
    one_line(capsys, status, str(config), "did you mean 'train.epochs'?")


@pytest.mark.parametrize(
    ("seeds", "extra", "fragment"),
    [
        ("0-9999999", [], "--seeds: '0-9999999' gives more than 1000 seeds"),
        ("0-99999999999", [], "--seeds: '0-99999999999' gives more than 1000 seeds"),
        ("0-199", ["--grid", "train.epochs=1,2,3,4,5,6"], "plans 1200 runs"),
        ("0-9", ["--max-runs", "5"], "--seeds: '0-9' gives more than 5 seeds"),
    ],
)
def test_plans_above_the_run_limit_are_refused_before_planning(
    seeds: str,
    extra: list[str],
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    one_line(capsys, main(compare_args(tmp_path / "c", *extra, seeds=seeds)), fragment)
    assert not (tmp_path / "c").exists()


def test_a_grid_over_data_options_plans_a_bias_run_per_point(tmp_path: Path) -> None:
    settings = RunSettings(epochs=1, probe_groups=("discovered",))
    grid = [parse_grid("data.options.rho=0.9,0.99")]
    runs = plan_runs(DATASET, ["simclr"], [0], tmp_path, settings, grid)
    helpers = bias_runs(DATASET, runs, tmp_path, settings)
    assert [run.bias_run for run in runs] == [helper.run_dir for helper in helpers]
    for run, helper in zip(runs, helpers, strict=True):
        assert helper.method == "triplet" and helper.point == run.point
        assert helper.config.data.options["rho"] == run.config.data.options["rho"]


HOLDER = """
import sys, time
from debiascl.rundir import hold_run_dir
with hold_run_dir(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_compare_whose_bias_run_is_held_skips_the_runs_needing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    helper = out / "runs" / "triplet" / "seed0"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(helper)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        status = main(compare_args(out, "--probe-groups", "discovered", seeds="0"))
    finally:
        holder.kill()
        holder.wait()
    line = one_line(capsys, status, "2 of 2 runs were skipped")
    assert "waits for its bias run" in line and "Rerun the same command" in line
    assert not (out / "runs" / "simclr" / "seed0" / "config.yaml").exists()


# ----------------------------------------------------------------------------- plugins


PLUGINS = {
    "syntax error": ("x = (\n", "SyntaxError: '(' was never closed", ":1)"),
    "raises": ("def f():\n    raise RuntimeError('boom')\n\n\nf()\n", "RuntimeError: boom", ":2)"),
    "missing dependency": ("import not_a_dependency_xyz\n", "ModuleNotFoundError", ":1)"),
    "method name clash": (
        "from debiascl.methods import SingleEncoderContrastive, register_method\n\n\n"
        "@register_method\nclass Clash(SingleEncoderContrastive):\n    name = 'simclr'\n",
        "ValueError: method.name 'simclr' is registered twice",
        ":4)",
    ),
}


@pytest.fixture
def registry_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS.items()))


@pytest.mark.parametrize("case", PLUGINS)
def test_a_failing_plugin_is_one_line_naming_its_own_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], registry_restored: None
) -> None:
    source, error, line = PLUGINS[case]
    path = tmp_path / f"bad_{case.replace(' ', '_')}.py"
    path.write_text(source)
    status = main(["--plugin", str(path), "datasets"])
    sys.modules.pop(path.stem, None)
    one_line(capsys, status, f"plugin '{path}' failed to import", error, f"(at {path}{line}")


def test_a_plugin_declaring_a_setting_with_another_type_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], registry_restored: None
) -> None:
    path = tmp_path / "typed.py"
    path.write_text(
        "from dataclasses import dataclass\n\n"
        "from debiascl.methods import MethodOptions, SingleEncoderContrastive, register_method\n"
        "\n\n@register_method\nclass Typed(SingleEncoderContrastive):\n    name = 'typed'\n\n"
        "    @dataclass\n    class Options(MethodOptions):\n        tau_plus: str = 'x'\n"
    )
    status = main(["--plugin", str(path), "datasets"])
    sys.modules.pop("typed", None)
    one_line(capsys, status, "method 'typed' declares setting 'method.tau_plus' as")


def test_a_relative_plugin_module_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEBIASCL_PLUGINS", "..relative")
    one_line(capsys, main(["datasets"]), "plugin '..relative': a relative module name")


@pytest.mark.allow_traceback
def test_debug_shows_a_plugins_full_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "boom.py"
    path.write_text("raise RuntimeError('boom')\n")
    monkeypatch.setenv("DEBIASCL_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["--plugin", str(path), "datasets"])
    sys.modules.pop("boom", None)


# ----------------------------------------------------------------------------- data paths


def test_a_run_trained_with_a_relative_data_dir_evaluates_from_elsewhere_and_when_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    _split_folder(work / "data")
    monkeypatch.chdir(work)
    args = ["train", "--dataset", "metadata-csv", "--data-dir", "data", "--method", "simclr"]
    tiny = ["--epochs", "1", "--batch-size", "8", "--device", "cpu", "--set=train.knn_every=0"]
    assert main([*args, *tiny, "--set=data.options.image_size=16", "--out", "run"]) == 0
    stored = yaml.safe_load(Path("run/config.yaml").read_text())
    assert (stored["data"]["root"], stored["data"]["root_given"]) == (str(work / "data"), "data")
    moved = Path(shutil.move(work / "run", tmp_path / "moved"))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["eval", str(moved), "--no-plots", "--device", "cpu"]) == 0
    assert (moved / "results.json").is_file()


def test_every_test_the_readme_names_for_these_guarantees_exists() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("**No silent wrong result") : readme.index("- **Losses.**")]
    cited = set(re.findall(r"`(test_\w+)`", section))
    assert len(cited) >= 20
    assert cited <= {name for name in globals() if name.startswith("test_")}
