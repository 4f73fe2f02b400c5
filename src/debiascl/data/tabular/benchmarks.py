"""The fairness benchmarks: UCI Adult, ProPublica COMPAS and Statlog German credit."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from debiascl.data.base import SPLIT_CODES, register_dataset
from debiascl.data.options import choice_option, number_option, resolve_options
from debiascl.data.sampling import stratified_split
from debiascl.data.tabular.dataset import (
    SEEDED_SPLIT_OPTIONS,
    RawTable,
    TableDataset,
    build_split,
    group_strata,
    seeded_splits,
)
from debiascl.data.tabular.encoding import MISSING, parse_float
from debiascl.data.tabular.files import (
    binary_column,
    check_width,
    find_file,
    header_index,
    read_rows,
    select_columns,
)
from debiascl.errors import DebiasclError

logger = logging.getLogger("debiascl")

ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
]
GERMAN_COLUMNS = [
    "checking_status",
    "duration",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings",
    "employment_since",
    "installment_rate",
    "personal_status",
    "other_debtors",
    "residence_since",
    "property",
    "age",
    "other_installment_plans",
    "housing",
    "existing_credits",
    "job",
    "people_liable",
    "telephone",
    "foreign_worker",
    "credit",
]
COMPAS_FEATURES = [
    "sex",
    "age",
    "age_cat",
    "race",
    "juv_fel_count",
    "juv_misd_count",
    "juv_other_count",
    "priors_count",
    "c_charge_degree",
]
GERMAN_FEMALE = frozenset({"A92", "A95"})
GERMAN_MALE = frozenset({"A91", "A93", "A94"})


def _adult_rows(path: Path, test_file: bool) -> tuple[list[list[str]], np.ndarray]:
    """Rows of adult.data / adult.test (15 fields each) and their (n,) class (1: >50K)."""
    rows = read_rows(path, skip_initial_space=True)
    if test_file and rows and len(rows[0]) == 1:
        rows = rows[1:]  # adult.test starts with the line "|1x3 Cross validator"
    check_width(path, rows, len(ADULT_COLUMNS))
    labels = []
    for number, row in enumerate(rows, start=1):
        label = row[-1].strip().rstrip(".")  # adult.test writes "<=50K." and ">50K."
        if label not in ("<=50K", ">50K"):
            raise DebiasclError(
                f"{path}: data row {number} has income {row[-1]!r}; expected <=50K or >50K"
            )
        labels.append(int(label == ">50K"))
    return rows, np.array(labels, dtype=np.int64)


@register_dataset("adult")
def adult(root: str | None, split: str, download: bool = False, **options: object) -> TableDataset:
    """UCI Adult (income >50K), bias sex (Female/Male) or race (non-White/White).

    Files ``adult.data`` (train; val is a seeded ``val_fraction`` holdout of it, stratified by
    group) and ``adult.test`` (test; its first line is skipped and the trailing '.' of its labels
    removed). ``fnlwgt`` (a census sampling weight) is dropped; the other 13 columns are features.
    Options: bias ("sex", default, or "race": a = 1 for White, 0 for every other race),
    include_bias (True), val_fraction (0.1), seed (0).
    """
    defaults = {"bias": "sex", "include_bias": True, "val_fraction": 0.1, "seed": 0}
    options = resolve_options("adult", options, defaults)
    bias = choice_option("adult", "bias", options["bias"], ("sex", "race"))
    hint = "from https://archive.ics.uci.edu/dataset/2/adult"
    data_path = find_file("adult", root, "adult.data", "adult/adult.data", hint)
    test_path = find_file("adult", root, "adult.test", "adult/adult.test", hint)
    train_rows, train_y = _adult_rows(data_path, test_file=False)
    test_rows, test_y = _adult_rows(test_path, test_file=True)
    rows = train_rows + test_rows
    values = [row[ADULT_COLUMNS.index(bias)].strip() for row in rows]
    if bias == "sex":
        names, codes = ["Female", "Male"], {"Female": 0, "Male": 1}
        attributes = np.array([codes.get(v, -1) for v in values], dtype=np.int64)
    else:
        names = ["non-White", "White"]
        attributes = np.array([-1 if v in MISSING else int(v == "White") for v in values])
    targets = np.concatenate([train_y, test_y])
    n_train = len(train_rows)
    splits = np.full(len(rows), SPLIT_CODES["test"], dtype=np.int64)
    splits[:n_train] = stratified_split(
        group_strata(targets[:n_train], attributes[:n_train]),
        float(number_option("adult", "val_fraction", options["val_fraction"], float)),
        0.0,
        int(number_option("adult", "seed", options["seed"], int)),
    )
    dropped = {"fnlwgt", "income"} | (set() if options["include_bias"] else {bias})
    features = [name for name in ADULT_COLUMNS if name not in dropped]
    raw = RawTable(
        f"{data_path}, {test_path}",
        select_columns(ADULT_COLUMNS, rows, features),
        targets,
        attributes,
        splits,
        ["<=50K", ">50K"],
        names,
    )
    return build_split("adult", split, raw)


def _propublica_keep(row: list[str], index: dict[str, int]) -> bool:
    """The ProPublica filter of compas-scores-two-years.csv (their analysis notebook)."""
    days = parse_float(row[index["days_b_screening_arrest"]])
    return (
        days is not None
        and -30 <= days <= 30
        and row[index["is_recid"]].strip() != "-1"
        and row[index["c_charge_degree"]].strip() != "O"
        and row[index["score_text"]].strip() != "N/A"
    )


@register_dataset("compas")
def compas(root: str | None, split: str, download: bool = False, **options: object) -> TableDataset:
    """ProPublica COMPAS (target two_year_recid), bias race (Caucasian/African-American).

    File ``compas-scores-two-years.csv`` with ProPublica's filter (days_b_screening_arrest in
    [-30, 30], is_recid != -1, c_charge_degree != 'O', score_text != 'N/A': 6172 of 7214 rows).
    Features: sex, age, age_cat, race, juv_fel_count, juv_misd_count, juv_other_count,
    priors_count, c_charge_degree (COMPAS's own scores are not features). Options: other_races
    ("drop", default: keep African-American (a = 1) and Caucasian (a = 0) rows only, 5278 rows;
    "merge": a = 0 for every race but African-American), include_bias (True), val_fraction (0.1),
    test_fraction (0.2), seed (0).
    """
    defaults = {"other_races": "drop", "include_bias": True, **SEEDED_SPLIT_OPTIONS}
    options = resolve_options("compas", options, defaults)
    other = choice_option("compas", "other_races", options["other_races"], ("drop", "merge"))
    path = find_file(
        "compas",
        root,
        "compas-scores-two-years.csv",
        "compas/compas-scores-two-years.csv",
        "from https://github.com/propublica/compas-analysis",
    )
    rows = read_rows(path)
    if not rows:
        raise DebiasclError(f"{path}: empty file; expected a header and data rows")
    header = [column.strip() for column in rows[0]]
    filter_columns = ["days_b_screening_arrest", "is_recid", "score_text", "two_year_recid"]
    index = header_index(path, header, [*filter_columns, *COMPAS_FEATURES])
    check_width(path, rows[1:], len(header))
    filtered = [row for row in rows[1:] if _propublica_keep(row, index)]
    kept = filtered
    names = ["other", "African-American"]
    if other == "drop":
        pair = ("African-American", "Caucasian")
        kept = [row for row in filtered if row[index["race"]].strip() in pair]
        names = ["Caucasian", "African-American"]
    logger.info(
        "compas: %d of %d rows pass the ProPublica filter; %d kept (other races: %s)",
        len(filtered),
        len(rows) - 1,
        len(kept),
        other,
    )
    attributes = np.array([int(row[index["race"]].strip() == "African-American") for row in kept])
    targets = binary_column(
        path, "two_year_recid", [row[index["two_year_recid"]] for row in kept], {"0": 0, "1": 1}
    )
    features = [c for c in COMPAS_FEATURES if options["include_bias"] or c != "race"]
    raw = RawTable(
        str(path),
        select_columns(header, kept, features),
        targets,
        attributes,
        seeded_splits("compas", targets, attributes, options),
        ["no recidivism", "recidivism"],
        names,
    )
    return build_split("compas", split, raw)


@register_dataset("german")
def german(root: str | None, split: str, download: bool = False, **options: object) -> TableDataset:
    """Statlog German credit (target good credit), bias sex or age.

    File ``german.data`` (1000 rows of 20 space-separated attributes and the class, 1 good / 2 bad;
    y = 1 for good). Options: bias ("sex", default: from personal_status, A92/A95 female (a = 0),
    A91/A93/A94 male (a = 1); or "age": a = 1 when age > 25), include_bias (True: keep the
    personal_status / age column as a feature), val_fraction (0.1), test_fraction (0.2), seed (0).
    """
    defaults = {"bias": "sex", "include_bias": True, **SEEDED_SPLIT_OPTIONS}
    options = resolve_options("german", options, defaults)
    bias = choice_option("german", "bias", options["bias"], ("sex", "age"))
    path = find_file(
        "german",
        root,
        "german.data",
        "german/german.data",
        "from https://archive.ics.uci.edu/dataset/144/statlog+german+credit+data",
    )
    rows = [[cell for cell in row if cell] for row in read_rows(path, delimiter=" ")]
    check_width(path, rows, len(GERMAN_COLUMNS))
    targets = binary_column(path, "credit (21st)", [row[-1] for row in rows], {"1": 1, "2": 0})
    if bias == "sex":
        status = [row[GERMAN_COLUMNS.index("personal_status")] for row in rows]
        codes = {**dict.fromkeys(GERMAN_FEMALE, 0), **dict.fromkeys(GERMAN_MALE, 1)}
        attributes = binary_column(path, "personal_status (9th)", status, codes)
        names, bias_column = ["female", "male"], "personal_status"
    else:
        ages = [parse_float(row[GERMAN_COLUMNS.index("age")]) for row in rows]
        if any(age is None for age in ages):
            raise DebiasclError(f"{path}: column age (13th) has a non-numeric value")
        attributes = np.array([int(age > 25) for age in ages], dtype=np.int64)
        names, bias_column = ["age<=25", "age>25"], "age"
    dropped = {"credit"} | (set() if options["include_bias"] else {bias_column})
    features = [name for name in GERMAN_COLUMNS if name not in dropped]
    raw = RawTable(
        str(path),
        select_columns(GERMAN_COLUMNS, rows, features),
        targets,
        attributes,
        seeded_splits("german", targets, attributes, options),
        ["bad", "good"],
        names,
    )
    return build_split("german", split, raw)
