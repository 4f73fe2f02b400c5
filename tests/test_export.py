"""export -> predict / embed / load_encoder / load_classifier reproduce what eval measured."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from image_files import write_csv
from PIL import Image

import debiascl
from debiascl.cli import main
from debiascl.config import build_config
from debiascl.data import build_dataset
from debiascl.data.sampling import labelled_subset
from debiascl.errors import DebiasclError
from debiascl.evaluate import ProbeSpec, fit_linear_probe, load_run
from debiascl.export import export_model
from debiascl.features import extract_features
from debiascl.metrics import group_metrics

SPLITS = {"train": 64, "val": 16, "test": 24}


def _image(y: int, a: int, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """(W, H) = size image: background colour from the bias a, a bright half from the class y."""
    width, height = size
    pixels = rng.integers(0, 60, size=(height, width, 3)).astype(np.uint8)
    pixels[..., 2 if a else 1] += 150
    half = slice(0, width // 2) if y == 0 else slice(width // 2, width)
    pixels[:, half, 0] = 230
    return Image.fromarray(pixels)


def make_image_folder(root: Path, seed: int = 0) -> Path:
    """A metadata-csv folder (filename, split, y, a): 90% of train aligned (a = y), its classes
    imbalanced (1:2), val and test balanced."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, count in SPLITS.items():
        for i in range(count):
            y = int(i % 3 == 0) if split == "train" else i % 2  # train: a third of class 1
            a = y if (split == "train" and i % 10) else (i // 2) % 2
            name = f"{split}/{i:03d}.png"
            (root / split).mkdir(parents=True, exist_ok=True)
            _image(y, a, rng, (12, 10)).save(root / name)
            rows.append([name, split, y, a])
    write_csv(root / "metadata.csv", ["filename", "split", "y", "a"], rows)
    return root


def image_config(root: Path, method: str):
    return build_config(
        overrides={
            "data.name": "metadata-csv",
            "data.root": str(root),
            "method.name": method,
            "train.epochs": 1,
            "train.batch_size": 32,
            "train.device": "cpu",
        },
        sets=[
            "data.options.image_size=10",
            "data.image_size=8",
            "data.augmentation=crop_flip",
            "data.cache=false",
            "train.knn_every=0",
            "train.progress=false",
        ],
    )


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A finished WCL run on an image folder, discovered and evaluated with every probe."""
    root = make_image_folder(tmp_path_factory.mktemp("images"))
    run_dir = debiascl.train(image_config(root, "wcl"), root.parent / "run")
    debiascl.discover(run_dir, device="cpu")
    debiascl.evaluate(run_dir, probe_groups=["discovered", "true", "class"], device="cpu")
    return run_dir


def _data_root(run_dir: Path) -> str:
    return build_config(config_file=run_dir / "config.yaml").data.root


def _eval_path(run_dir: Path, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Test features and logits of probe ``kind`` computed the way evaluate_splits does."""
    from debiascl.discovery import balanced_weights
    from debiascl.evaluate import probe_groups_of

    run = load_run(run_dir)
    features = {
        split: extract_features(run.method, labelled_subset(data), run.prepare, "d", "cpu", 512)
        for split, data in run.splits.items()
    }
    weights, val_groups = None, None
    if kind != "plain":
        groups = probe_groups_of(kind, run, features)
        weights, val_groups = balanced_weights(groups["train"]), groups["val"]
    probe = fit_linear_probe(
        features["train"][0],
        features["train"][1],
        2,
        ProbeSpec("fast"),
        val_features=features["val"][0],
        val_y=features["val"][1],
        sample_weights=weights,
        val_groups=val_groups,
    )
    return features["test"][0], probe.logits(features["test"][0])


@pytest.mark.parametrize("kind", ["plain", "discovered", "class"])
def test_export_then_predict_gives_evals_predictions_and_metrics(image_run, tmp_path, kind):
    groups = "none" if kind == "plain" else kind
    model = tmp_path / "model"
    assert main(["export", str(image_run), "--probe-groups", groups, "--out", str(model)]) == 0
    out = tmp_path / "predictions.csv"
    data_root = _data_root(image_run)
    args = [
        "predict",
        str(model),
        data_root,
        "--split",
        "test",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    test = build_dataset("metadata-csv", data_root, "test", image_size=10)
    assert [row["id"] for row in rows] == test.files
    predicted = torch.tensor([int(row["predicted"]) for row in rows])
    probabilities = torch.tensor([[float(row["prob_0"]), float(row["prob_1"])] for row in rows])
    _, logits = _eval_path(image_run, kind)
    assert torch.equal(predicted, logits.argmax(dim=1))
    torch.testing.assert_close(probabilities, torch.softmax(logits, 1), atol=1e-6, rtol=0)
    results = json.loads((image_run / "results.json").read_text())
    key = "probe" if kind == "plain" else f"probe_{kind}"
    counts = np.array(results["train_group_counts"])
    metrics = group_metrics(test.targets, predicted, test.attributes, 2, 2, counts)
    assert metrics == results[key]["metrics"]
    card = (model / "README.md").read_text()
    assert f"{100 * results[key]['metrics']['worst_group']:.2f}" in card
    assert "Bias labels used by the head**: no" in card


def test_load_encoder_gives_evals_features(image_run, tmp_path):
    features, _ = _eval_path(image_run, "plain")
    test = build_dataset("metadata-csv", _data_root(image_run), "test", image_size=10)
    x = torch.stack([test.load(i) for i in range(len(test))])
    for source in (image_run, export_model(image_run, tmp_path / "model")):
        encoder = debiascl.load_encoder(source)
        assert not encoder.training
        with torch.no_grad():
            assert torch.equal(encoder(x), features)


def test_class_probe_balances_the_classes(image_run):
    results = json.loads((image_run / "results.json").read_text())
    entry = results["probe_class"]
    assert entry["num_groups"] == 2 and entry["uses_bias_labels"] is False
    assert "class-balanced" in entry["protocol"]
    assert entry["head_sha256"] != results["probe"]["head_sha256"]  # the classes are imbalanced


PROGRAM = """
import sys
sys.modules["debiascl"] = None  # this process cannot import debiascl
import torch
program = torch.export.load(sys.argv[1]).module()
torch.save(program(torch.load(sys.argv[2])), sys.argv[3])
try:
    import debiascl
except ImportError:
    print("debiascl cannot be imported")
"""


def _python(script: str, *args: str, cwd: Path, with_debiascl: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if with_debiascl:
        env["PYTHONPATH"] = str(Path(debiascl.__file__).parents[1])
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_program_runs_without_debiascl(image_run, tmp_path):
    model = export_model(image_run, tmp_path / "model")
    x = torch.rand(5, 3, 10, 10)
    torch.save(x, tmp_path / "x.pt")
    out = _python(
        PROGRAM, str(model / "model.pt2"), "x.pt", "logits.pt", cwd=tmp_path, with_debiascl=False
    )
    assert "debiascl cannot be imported" in out
    with torch.no_grad():
        expected = debiascl.load_classifier(model)(x)
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, atol=1e-5, rtol=1e-5)


def test_a_model_folder_loads_in_a_fresh_process_without_the_run(image_run, tmp_path):
    run = shutil.copytree(image_run, tmp_path / "run")
    model = export_model(run, tmp_path / "model", probe_groups="discovered", program=False)
    assert not (model / "model.pt2").exists()
    x = torch.rand(3, 3, 10, 10)
    with torch.no_grad():
        expected = debiascl.load_classifier(run, probe_groups="discovered")(x)
    shutil.rmtree(run)
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent(
        """
        import sys, torch, debiascl
        classifier = debiascl.load_classifier(sys.argv[1])
        with torch.no_grad():
            torch.save(classifier(torch.load("x.pt")), "logits.pt")
        """
    )
    _python(script, str(model), cwd=tmp_path, with_debiascl=True)
    assert torch.equal(torch.load(tmp_path / "logits.pt"), expected)


def test_embed_writes_evals_features_and_the_ids(image_run, tmp_path):
    features, _ = _eval_path(image_run, "plain")
    test = build_dataset("metadata-csv", _data_root(image_run), "test", image_size=10)
    model = export_model(image_run, tmp_path / "model", program=False)
    for number, source in enumerate((image_run, model)):
        out = tmp_path / f"features{number}.npy"
        args = ["embed", str(source), _data_root(image_run), "--split", "test", "--out", str(out)]
        assert main([*args, "--device", "cpu", "--batch-size", "7"]) == 0
        assert np.array_equal(np.load(out), features.numpy())
        ids = out.with_suffix(".ids.csv").read_text().split()
        assert ids == ["id", *test.files]


def _fails(args: list[str], capsys, *fragments: str) -> None:
    """``debiascl ARGS`` exits 2 with one line on stderr holding every fragment."""
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_export_refuses_what_it_cannot_export(image_run, tmp_path, capsys):
    unfinished = shutil.copytree(image_run, tmp_path / "unfinished")
    (unfinished / "train_done").unlink()
    out = str(tmp_path / "model")
    _fails(["export", str(unfinished), "--out", out], capsys, "has not finished")
    undiscovered = shutil.copytree(image_run, tmp_path / "undiscovered")
    (undiscovered / "discovered.csv").unlink()
    _fails(
        ["export", str(undiscovered), "--probe-groups", "discovered", "--out", out],
        capsys,
        "no bias discovery",
        f"debiascl discover {undiscovered}",
    )
    _fails(
        ["export", str(image_run), "--encoder", "b", "--out", out],
        capsys,
        "has not been evaluated",
        "--encoder b",
    )
    _fails(["export", str(image_run), "--probe-groups", "nosuch", "--out", out], capsys, "nosuch")
    replaced = shutil.copytree(image_run, tmp_path / "replaced")
    shutil.copy(
        replaced / "probes" / "d_true.safetensors", replaced / "probes" / "d_plain.safetensors"
    )
    _fails(["export", str(replaced), "--out", out], capsys, "is not the one results.json scored")
    assert not Path(out).exists()
    Path(out).mkdir()
    (Path(out) / "keep.txt").write_text("mine")
    _fails(["export", str(image_run), "--out", out], capsys, "not an empty folder")
    assert (Path(out) / "keep.txt").read_text() == "mine"


def test_predict_reads_any_image_size_and_names_a_corrupt_image(image_run, tmp_path, capsys):
    model = export_model(image_run, tmp_path / "model", program=False)
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    Image.new("RGB", (33, 17), (200, 30, 30)).save(images / "sub" / "wide.jpg")
    Image.new("L", (5, 5), 90).save(images / "small.png")
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(model), str(images), "--out", str(out), "--device", "cpu"]) == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == ["small.png", "sub/wide.jpg"]
    assert all(row["predicted"] in ("0", "1") for row in rows)
    for row in rows:
        assert abs(float(row["prob_0"]) + float(row["prob_1"]) - 1) < 1e-6
    (images / "broken.png").write_bytes(b"not an image at all")
    _fails(
        ["predict", str(model), str(images), "--out", str(out), "--device", "cpu"],
        capsys,
        "broken.png",
    )
    _fails(
        ["predict", str(image_run), str(images), "--out", str(out)], capsys, "not a model folder"
    )
    _fails(["predict", str(model), str(out), "--out", str(out)], capsys, "reads images")


def test_supervised_export_is_its_own_classifier(image_run, tmp_path):
    from debiascl.features import predict_classes

    run_dir = debiascl.train(image_config(Path(_data_root(image_run)), "erm"), tmp_path / "erm")
    results = debiascl.evaluate(run_dir, device="cpu")
    model = export_model(run_dir, tmp_path / "model", program=False)
    info = json.loads((model / "model.json").read_text())
    assert info["head"]["kind"] == "classifier"
    out = tmp_path / "predictions.csv"
    args = ["predict", str(model), _data_root(image_run), "--split", "test", "--out", str(out)]
    assert main([*args, "--device", "cpu"]) == 0
    predicted = [int(row["predicted"]) for row in csv.DictReader(out.open())]
    run = load_run(run_dir)
    expected = predict_classes(run.method, run.splits["test"], run.prepare)
    assert predicted == expected.tolist()
    assert results["classifier"]["metrics"]["accuracy"] == float(
        (expected == run.splits["test"].targets).float().mean()
    )


def make_table(path: Path) -> None:
    """A CSV with numeric, categorical and missing values, a bias column and a split column."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(160):
        y = i % 2
        group = y if i % 10 else 1 - y
        split = "test" if i % 5 == 0 else "val" if i % 5 == 1 else "train"
        num = f"{rng.normal(2.0 * y, 1.0):.4f}" if i % 17 else "?"
        colour = ["red", "green", "blue"][(i + y) % 3] if i % 13 else ""
        rows.append([f"r{i}", num, f"{rng.normal():.3f}", colour, y, group, split])
    write_csv(path, ["key", "num", "noise", "colour", "label", "group", "split"], rows)


def test_table_model_predicts_a_csv_of_rows_as_eval(tmp_path, capsys):
    make_table(tmp_path / "table.csv")
    config = build_config(
        overrides={"data.name": "csv", "data.root": str(tmp_path), "method.name": "simclr"},
        sets=[
            "data.options.file=table.csv",
            "data.options.target=label",
            "data.options.bias=group",
            "data.options.split_column=split",
            "data.options.drop=[key]",
            "data.augmentation=gaussian_noise",
            "model.backbone=mlp",
            "train.epochs=1",
            "train.batch_size=32",
            "train.device=cpu",
            "train.knn_every=0",
            "train.progress=false",
        ],
    )
    run_dir = debiascl.train(config, tmp_path / "run")
    results = debiascl.evaluate(run_dir, device="cpu")
    model = export_model(run_dir, tmp_path / "model")
    columns = json.loads((model / "preprocessing.json").read_text())["columns"]
    assert [c["name"] for c in columns] == ["num", "noise", "colour", "group"]
    with (tmp_path / "table.csv").open() as handle:
        test_rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    order = ["colour", "key", "group", "noise", "num"]  # any column order; key as the id
    write_csv(
        tmp_path / "rows.csv",
        ["colour", "id", "group", "noise", "num"],
        [[row[c] for c in order] for row in test_rows],
    )
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(model), str(tmp_path / "rows.csv"), "--out", str(out)]) == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == [row["key"] for row in test_rows]
    predicted = torch.tensor([int(row["predicted"]) for row in rows])
    test = build_dataset("csv", str(tmp_path), "test", **config.data.options)
    counts = np.array(results["train_group_counts"])
    metrics = group_metrics(test.targets, predicted, test.attributes, 2, 2, counts)
    assert metrics == results["probe"]["metrics"]
    _, logits = _eval_path(run_dir, "plain")
    assert torch.equal(predicted, logits.argmax(dim=1))
    write_csv(tmp_path / "missing.csv", ["num", "noise", "group"], [["1", "2", "0"]])
    _fails(
        ["predict", str(model), str(tmp_path / "missing.csv"), "--out", str(out)],
        capsys,
        "missing column(s) colour",
    )
    write_csv(
        tmp_path / "extra.csv", [*order[:1], *order[2:], "label"], [["red", "0", "1", "2", "1"]]
    )
    _fails(
        ["predict", str(model), str(tmp_path / "extra.csv"), "--out", str(out)],
        capsys,
        "unexpected column(s) label",
    )
    write_csv(tmp_path / "bad.csv", ["num", "noise", "colour", "group"], [["x1", "2", "red", "0"]])
    _fails(
        ["predict", str(model), str(tmp_path / "bad.csv"), "--out", str(out)],
        capsys,
        "column 'num' has 'x1' in data row 1",
    )


def test_public_api_names_and_the_dcl_alias():
    from debiascl.config import build_config
    from debiascl.registry import METHODS

    assert set(debiascl.__all__) == {
        "DebiasclError",
        "__version__",
        "train",
        "discover",
        "evaluate",
        "load_encoder",
        "load_classifier",
    }
    assert callable(debiascl.evaluate) and debiascl.evaluate.evaluate_run  # module and function
    assert callable(debiascl.train) and callable(debiascl.discover)
    config = build_config(overrides={"method.name": "debiased_contrastive"})
    assert config.method.name == "dcl" and "debiased_contrastive" not in list(METHODS)
    assert METHODS["debiased_contrastive"] is METHODS["dcl"]
    script = (
        "import sys, debiascl; print(sorted(m for m in sys.modules if m.startswith('debiascl.')))"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stdout
    assert "debiascl.errors" in loaded  # the package was imported, lightly
    assert "debiascl.api" not in loaded and "debiascl.methods" not in loaded


def test_a_damaged_or_mismatched_model_folder_is_one_line(image_run, tmp_path, capsys):
    model = export_model(image_run, tmp_path / "model", program=False)
    with pytest.raises(DebiasclError, match="holds encoder 'd', not 'b'"):
        debiascl.load_encoder(model, encoder="b")
    with pytest.raises(DebiasclError, match="head fixed at export"):
        debiascl.load_classifier(model, probe_groups="true")
    weights = model / "encoder.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    out = str(tmp_path / "p.csv")
    _fails(["predict", str(model), _data_root(image_run), "--out", out], capsys, "is damaged")
    (model / "model.json").write_text("[1, 2]")
    _fails(["predict", str(model), _data_root(image_run), "--out", out], capsys, "a JSON object")
